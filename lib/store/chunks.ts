import { createHash, randomUUID } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { FdlError } from '../errors.ts';
import type { Engine } from './engine.ts';

/**
 * Large resources as rows, for the PostgreSQL store: every replica of the scheduler must read
 * them, so they cannot be files on one machine's disk. A resource is cut into `resource_chunks`
 * rows of CHUNK_BYTES, written in the caller's transaction (the group commit makes them durable
 * with the resource's row, before anyone hears of it), read back one chunk at a time into a local
 * cache file (the file SQLite's store would have had) whose sha256 and size are checked before
 * the file is used. Neither way is a resource ever whole in memory.
 */

/** One row's bytes: large enough that the per-row cost is small, small enough to cross the bridge freely. */
export const CHUNK_BYTES = 1024 * 1024;

/** The `location` of a resource whose bytes are `resource_chunks` rows. */
export const CHUNKS_LOCATION = 'chunks';

export class ResourceChunks {
  constructor(private readonly db: Engine) {}

  /** Writes `bytes` as chunk rows of resource `id` (inside the caller's transaction). */
  putBytes(id: string, bytes: Uint8Array): void {
    const insert = this.insert();
    for (let seq = 0, at = 0; at < bytes.byteLength || seq === 0; seq++, at += CHUNK_BYTES) {
      insert.run(id, seq, bytes.subarray(at, Math.min(at + CHUNK_BYTES, bytes.byteLength)));
    }
  }

  /** Copies a file into chunk rows of resource `id`, one chunk in memory at a time; returns its size. */
  putFile(id: string, path: string): number {
    const insert = this.insert();
    const fd = openSync(path, 'r');
    try {
      const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
      let size = 0;
      for (let seq = 0; ; seq++) {
        let filled = 0;
        for (let n = -1; filled < CHUNK_BYTES && n !== 0; filled += n) n = readSync(fd, buffer, filled, CHUNK_BYTES - filled, null);
        if (filled === 0 && seq > 0) return size;
        insert.run(id, seq, buffer.subarray(0, filled));
        size += filled;
        if (filled < CHUNK_BYTES) return size;
      }
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Resource `id`'s bytes as the file `target`, assembled chunk by chunk and checked against its
   * sha256 and size first (CHECKSUM_MISMATCH, or UNKNOWN_RESOURCE when chunks are missing). A
   * file already there was checked when it was made.
   */
  toFile(id: string, target: string, sha256: string, size: number): string {
    if (existsSync(target)) return target;
    const select = this.db.prepare('SELECT bytes FROM resource_chunks WHERE resource_id = ? AND seq = ?');
    const tmp = `${target}.${randomUUID()}.tmp`;
    const hash = createHash('sha256');
    let written = 0;
    const fd = openSync(tmp, 'w');
    try {
      for (let seq = 0; written < size || seq === 0; seq++) {
        const chunk = select.value<Buffer>(id, seq);
        if (!chunk) {
          if (written < size) throw new FdlError('UNKNOWN_RESOURCE', `resource ${id} is missing its chunk ${seq} in the store`);
          break;
        }
        hash.update(chunk);
        for (let at = 0; at < chunk.byteLength; ) at += writeSync(fd, chunk, at);
        written += chunk.byteLength;
      }
      if (written !== size || hash.digest('hex') !== sha256) {
        throw new FdlError('CHECKSUM_MISMATCH', `resource ${id} in the store does not match its sha256`);
      }
      fsyncSync(fd);
    } catch (e) {
      closeSync(fd);
      rmSync(tmp, { force: true });
      throw e;
    }
    closeSync(fd);
    renameSync(tmp, target);
    return target;
  }

  private insert() {
    return this.db.prepare('INSERT INTO resource_chunks (resource_id, seq, bytes) VALUES (?, ?, ?)');
  }
}
