import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/**
 * A SHA-256 computed on a thread of its own, for a pass that has other CPU work on its own thread
 * (a sealed product's first pass encrypts each segment here and hashes it there: the two overlap
 * where a core is free). `update` copies the bytes to the thread (a 1 MiB copy is ~1/20 of its
 * hash) and waits only when `window` updates are still unhashed, so memory stays bounded.
 * Plain JavaScript evaluated as it is: no module to build or load through tsx.
 */
const HASH_THREAD_CODE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hash = createHash('sha256');
parentPort.on('message', (m) => {
  if (m === 'digest') parentPort.postMessage({ digest: hash.digest('hex') });
  else {
    hash.update(m);
    parentPort.postMessage({ hashed: 1 });
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
  private readonly thread = new Worker(HASH_THREAD_CODE, { eval: true });
  private pending = 0;
  private wake: (() => void) | undefined;
  private failed: Error | undefined;
  private digested: ((hex: string) => void) | undefined;

  constructor(private readonly window = 8) {
    this.thread.unref();
    this.thread.on('message', (m: { hashed?: 1; digest?: string }) => {
      if (m.digest !== undefined) {
        this.digested?.(m.digest);
        return;
      }
      this.pending--;
      this.wake?.();
    });
    this.thread.on('error', (e) => {
      this.failed = e;
      this.wake?.();
      this.digested?.('');
    });
  }

  async update(bytes: Uint8Array): Promise<void> {
    if (this.failed) throw this.failed;
    // A copy of exactly these bytes, moved (a view posted as it is would clone its whole buffer).
    const copy = new Uint8Array(bytes);
    this.thread.postMessage(copy, [copy.buffer]);
    this.pending++;
    while (this.pending >= this.window && !this.failed) await new Promise<void>((r) => (this.wake = r));
    this.wake = undefined;
    if (this.failed) throw this.failed;
  }

  /** The hex digest of every update, in order (messages to a thread keep their order); ends the thread. */
  async digest(): Promise<string> {
    try {
      if (this.failed) throw this.failed;
      const hex = await new Promise<string>((resolve) => {
        this.digested = resolve;
        this.thread.postMessage('digest');
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
