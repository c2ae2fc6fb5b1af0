import { createHash, randomUUID } from 'node:crypto';
import { closeSync, copyFileSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { FdlError } from '../errors.ts';

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Writes a whole file so that it survives a power cut once this returns: the bytes go to a
 * temporary name and are fsynced, then renamed over `path`, then the directory is fsynced (the
 * rename itself is only durable once the directory entry is). A crash never leaves a half file
 * under the real name. Any failure (disk full, permissions, a path that is not a directory)
 * throws STORE_WRITE_FAILED naming `what` and the system's cause, and leaves no temporary file.
 */
export function writeFileDurably(path: string, bytes: Uint8Array, what: string): void {
  const tmp = `${path}.${randomUUID()}.tmp`;
  try {
    const fd = openSync(tmp, 'w');
    try {
      for (let written = 0; written < bytes.byteLength; ) written += writeSync(fd, bytes, written);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    fsyncFolder(dirname(path));
  } catch (e) {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // Its folder is not there or not a folder: no temporary file was made either.
    }
    throw new FdlError('STORE_WRITE_FAILED', `${what} could not be written: ${(e as Error).message}`, { cause: e });
  }
}

function fsyncFolder(path: string): void {
  const dir = openSync(path, 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/** A resource's bytes as read from the store, refused unless they match their sha256. */
export function checkedBytes(id: string, bytes: Uint8Array | undefined, sha256: string): Uint8Array {
  if (!bytes) throw new FdlError('UNKNOWN_RESOURCE', `resource ${id} has no bytes in the store`);
  if (sha256Hex(bytes) !== sha256) throw new FdlError('CHECKSUM_MISMATCH', `resource ${id} in the store does not match its sha256`);
  return bytes;
}

/**
 * Resource bytes as files, named by resource id, checked against their sha256 on every read.
 * Written durably (see writeFileDurably) before the caller records the row that points at them.
 * With `dir` undefined (an in-memory store for tests) the bytes stay in a map.
 */
export class BlobStore {
  private readonly memory = new Map<string, Uint8Array>();
  /** Where streamed resources are written as their chunks arrive (docs/PROTOCOL.md, "Streamed resources"). */
  readonly incoming: string;

  constructor(private readonly dir: string | undefined) {
    if (dir) mkdirSync(dir, { recursive: true });
    this.incoming = dir ? join(dir, 'incoming') : mkdtempSync(join(tmpdir(), 'fdl-incoming-'));
    mkdirSync(this.incoming, { recursive: true });
  }

  /**
   * Takes a complete, fsynced file as resource `id`'s bytes: moved into place (or copied, when
   * the file must stay where it is), then the folder is fsynced. The in-memory store reads it.
   */
  adopt(id: string, path: string, how: 'move' | 'copy'): string {
    if (!this.dir) {
      this.memory.set(id, readFileSync(path));
      if (how === 'move') rmSync(path, { force: true });
      return `memory:${id}`;
    }
    const target = this.pathOf(id);
    try {
      if (how === 'move') renameSync(path, target);
      else {
        copyFileSync(path, target);
        const fd = openSync(target, 'r');
        try {
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
      }
      fsyncFolder(this.dir);
    } catch (e) {
      rmSync(target, { force: true });
      throw new FdlError('STORE_WRITE_FAILED', `resource ${id} could not be written: ${(e as Error).message}`, { cause: e });
    }
    return `${id}.bin`;
  }

  /** The file holding resource `id`'s bytes (not checked here: a streamed reader checks them), if they are a file. */
  fileOf(id: string): string | undefined {
    return this.dir ? this.pathOf(id) : undefined;
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
    writeFileDurably(this.pathOf(id), bytes, `resource ${id}`);
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
    return checkedBytes(id, bytes, sha256);
  }

  /** False for the in-memory store of tests. */
  get isOnDisk(): boolean {
    return this.dir !== undefined;
  }

  delete(id: string): void {
    if (!this.dir) this.memory.delete(id);
    else rmSync(this.pathOf(id), { force: true });
  }
}
