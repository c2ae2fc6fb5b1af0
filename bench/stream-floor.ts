import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

/**
 * The floor of a streamed crossing on this machine: the best ratio to bare ws that any
 * implementation of issue 10's streaming could reach, measured in the same run as the bench.
 *
 * Whatever the code, a sealed resource crossing worker → scheduler → worker must, per byte, be
 * moved by ws (the bare baseline's own CPU, both hops), sealed once and opened once (AES-256-GCM),
 * hashed whole at each end that checks it (SHA-256: the producer names it in its offer, the store
 * checks what it keeps, the consumer checks what it uses) with a CRC-32 per chunk, and written
 * into the store's file. Those passes are timed here in this process, on the same bytes in the
 * same chunks, with nothing else: no allocation but the ciphers' own output, no frames, no
 * waiting. The floor assumes perfect overlap on all cores (every pass of every process running in
 * parallel with the sockets, store-and-forward ignored): wall ≥ (bare CPU + passes CPU) / cores.
 * So the ceiling printed is generous: no implementation does better here, most do worse.
 */
export interface StreamFloor {
  /** CPU ms of each mandatory pass over all the bytes, once. */
  passMs: { seal: number; open: number; sha256: number; crc32: number; write: number };
  /** CPU ms of the mandatory passes of one crossing (counts below). */
  mandatoryMs: number;
  /** The same with SHA-256 at the consumer only (the store trusting the per-chunk CRC-32 for what it keeps). */
  leanMs: number;
  cores: number;
}

/** How many times a sealed crossing needs each pass (see the comment above). */
export const SEALED_PASSES = { seal: 1, open: 1, sha256: 3, crc32: 3, write: 1 } as const;
const PLAIN_PASSES = { seal: 0, open: 0, sha256: 3, crc32: 3, write: 1 } as const;

function cpuMs(fn: () => void): number {
  const t0 = process.cpuUsage();
  fn();
  const t = process.cpuUsage(t0);
  return (t.user + t.system) / 1000;
}

/** Times each pass over `bytes` in `chunkBytes` pieces (AES-GCM per segment, as the wire seals them). */
export function measurePasses(bytes: number, chunkBytes: number, dir: string, sealed: boolean): StreamFloor {
  const chunk = randomBytes(chunkBytes);
  const n = Math.ceil(bytes / chunkBytes);
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const sealedChunks: Array<{ ct: Buffer; tag: Buffer }> = [];
  const seal = cpuMs(() => {
    for (let i = 0; i < n; i++) {
      iv.writeUInt32BE(i, 8);
      const c = createCipheriv('aes-256-gcm', key, iv);
      const ct = c.update(chunk);
      c.final();
      // Keep one segment to open below; the rest are dropped as the producer's socket would.
      if (i === 0) sealedChunks.push({ ct, tag: c.getAuthTag() });
    }
  });
  const first = sealedChunks[0] as { ct: Buffer; tag: Buffer };
  const open = cpuMs(() => {
    iv.writeUInt32BE(0, 8);
    for (let i = 0; i < n; i++) {
      const d = createDecipheriv('aes-256-gcm', key, iv);
      d.setAuthTag(first.tag);
      d.update(first.ct);
      d.final();
    }
  });
  const sha256 = cpuMs(() => {
    const h = createHash('sha256');
    for (let i = 0; i < n; i++) h.update(chunk);
    h.digest();
  });
  const crc = cpuMs(() => {
    for (let i = 0; i < n; i++) crc32(chunk);
  });
  const file = join(dir, 'floor.bin');
  const fd = openSync(file, 'w');
  // Into the page cache only: the store's fsync waits on the disk, not on this CPU.
  const write = cpuMs(() => {
    for (let i = 0; i < n; i++) writeSync(fd, chunk, 0, chunk.length, i * chunkBytes);
  });
  closeSync(fd);
  rmSync(file, { force: true });
  const passMs = { seal, open, sha256, crc32: crc, write };
  const counts = sealed ? SEALED_PASSES : PLAIN_PASSES;
  const total = (c: Record<keyof typeof passMs, number>) =>
    (Object.keys(passMs) as Array<keyof typeof passMs>).reduce((s, k) => s + passMs[k] * c[k], 0);
  return { passMs, mandatoryMs: total(counts), leanMs: total({ ...counts, sha256: 1 }), cores: availableParallelism() };
}

/** The least wall time a crossing can take: the bare baseline's CPU plus the passes, spread on every core. */
export function floorWallMs(bareWallMs: number, bareCpuMs: number, passesMs: number, cores: number): number {
  return Math.max(bareWallMs, (bareCpuMs + passesMs) / cores);
}
