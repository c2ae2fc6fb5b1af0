import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/**
 * A SHA-256 computed on a thread of its own, for a pass that has other CPU work on its own thread
 * (a sealed product's first pass encrypts each segment here and hashes it there: the two overlap
 * where a core is free). `update` copies the bytes into a slot of a fixed ring of shared memory
 * (a 1 MiB copy is ~1/20 of its hash) and waits only when every slot is still unhashed. Nothing is
 * allocated per update on either side: a thread's heap collects its garbage late (an update
 * moved as a fresh buffer grew the producer's RSS by ~50 MiB at 256 MiB sealed), and the ring is
 * what bounds the memory. Plain JavaScript evaluated as it is: no module to build or load through tsx.
 */
const HASH_THREAD_CODE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const ring = Buffer.from(workerData.ring);
const hash = createHash('sha256');
parentPort.on('message', (m) => {
  if (m.digest) parentPort.postMessage({ digest: hash.digest('hex') });
  else {
    hash.update(ring.subarray(m.at, m.at + m.length));
    parentPort.postMessage({ slot: m.slot });
  }
});
`;

export interface Sha256Pass {
  update(bytes: Uint8Array): void | Promise<void>;
  digest(): Promise<string>;
}

/** An inline SHA-256 with the same shape (small inputs: a thread costs more than it saves). */
export function inlineSha256(): Sha256Pass {
  const hash = createHash('sha256');
  return {
    update: (bytes) => void hash.update(bytes),
    digest: async () => hash.digest('hex'),
  };
}

export class HashThread implements Sha256Pass {
  private readonly ring: Buffer;
  private readonly thread: Worker;
  /** Slots free to fill, in the order they were handed back (messages keep their order, so the hash does too). */
  private readonly free: number[];
  private wake: (() => void) | undefined;
  private failed: Error | undefined;
  private digested: ((hex: string) => void) | undefined;

  /** `slotBytes`: the largest update (a sealed segment and its tag); `slots`: the updates in flight at most. */
  constructor(
    private readonly slotBytes: number,
    slots = 8,
  ) {
    const shared = new SharedArrayBuffer(slotBytes * slots);
    this.ring = Buffer.from(shared);
    this.free = Array.from({ length: slots }, (_, i) => i);
    this.thread = new Worker(HASH_THREAD_CODE, { eval: true, workerData: { ring: shared } });
    this.thread.unref();
    this.thread.on('message', (m: { slot?: number; digest?: string }) => {
      if (m.digest !== undefined) this.digested?.(m.digest);
      else {
        this.free.push(m.slot as number);
        this.wake?.();
      }
    });
    this.thread.on('error', (e) => {
      this.failed = e;
      this.wake?.();
      this.digested?.('');
    });
  }

  async update(bytes: Uint8Array): Promise<void> {
    for (let at = 0; at < bytes.byteLength; at += this.slotBytes) {
      while (this.free.length === 0 && !this.failed) await new Promise<void>((r) => (this.wake = r));
      this.wake = undefined;
      if (this.failed) throw this.failed;
      const slot = this.free.shift() as number;
      const piece = bytes.subarray(at, Math.min(bytes.byteLength, at + this.slotBytes));
      this.ring.set(piece, slot * this.slotBytes);
      this.thread.postMessage({ slot, at: slot * this.slotBytes, length: piece.byteLength });
    }
  }

  /** The hex digest of every update, in order; ends the thread. */
  async digest(): Promise<string> {
    try {
      if (this.failed) throw this.failed;
      const hex = await new Promise<string>((resolve) => {
        this.digested = resolve;
        this.thread.postMessage({ digest: true });
      });
      if (this.failed) throw this.failed;
      return hex;
    } finally {
      void this.thread.terminate();
    }
  }

  /** Ends the thread without a digest (a pass that failed). */
  close(): void {
    void this.thread.terminate();
  }
}
