import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FdlError } from '../errors.ts';

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Resource bytes as files, named by resource id, checked against their sha256 on every read.
 * Written to a temporary name and renamed, so a crash never leaves a half file under a real name.
 * With `dir` undefined (an in-memory store for tests) the bytes stay in a map.
 */
export class BlobStore {
  private readonly memory = new Map<string, Uint8Array>();

  constructor(private readonly dir: string | undefined) {
    if (dir) mkdirSync(dir, { recursive: true });
  }

  private pathOf(id: string): string {
    if (!/^[A-Za-z0-9_-]+$/.test(id)) throw new FdlError('INTERNAL', `bad resource id ${JSON.stringify(id)}`);
    return join(this.dir as string, `${id}.bin`);
  }

  /** Returns the relative location recorded in the database. */
  put(id: string, bytes: Uint8Array): string {
    if (!this.dir) {
      this.memory.set(id, bytes);
      return `memory:${id}`;
    }
    const path = this.pathOf(id);
    const tmp = `${path}.${randomUUID()}.tmp`;
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
    return `${id}.bin`;
  }

  get(id: string, sha256: string): Uint8Array {
    let bytes: Uint8Array | undefined;
    if (!this.dir) bytes = this.memory.get(id);
    else {
      try {
        bytes = readFileSync(this.pathOf(id));
      } catch {
        bytes = undefined;
      }
    }
    if (!bytes) throw new FdlError('UNKNOWN_RESOURCE', `resource ${id} has no bytes in the store`);
    if (sha256Hex(bytes) !== sha256) {
      throw new FdlError('CHECKSUM_MISMATCH', `resource ${id} on disk does not match its sha256`);
    }
    return bytes;
  }

  delete(id: string): void {
    if (!this.dir) this.memory.delete(id);
    else rmSync(this.pathOf(id), { force: true });
  }
}
