import { createCipheriv, hkdfSync } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { decodeValue, encodeValue } from '../../protocols/codec.ts';
import { FdlError } from '../errors.ts';
import type { Locals } from '../ops/context.ts';
import { writeFileDurably } from './blobs.ts';

/** The folder of a node's locals inside its work directory. */
export const LOCALS_DIR = 'locals';

/**
 * Where the locals are rows instead of files: the PostgreSQL store (the Store implements it), so
 * that every replica of the scheduler finds the initiator's masks. A write joins the store's open
 * transaction: it is durable with the state that follows from it (group commit).
 */
export interface LocalsRows {
  readLocals(artifactId: string): Uint8Array | undefined;
  writeLocals(artifactId: string, bytes: Uint8Array): void;
  deleteLocals(artifactId: string): void;
}

/**
 * A node's private per-artifact variables (a GroupCount's keys, a worker's DP noise; the masks of
 * the Sequential estimators on a node without a secret — with one, the masks are derived, see
 * `deriver`, and nothing is written for them). Written durably to `<workdir>/locals/<artifactId>.msgpack` so that a restarted node can still
 * finish what its init step began. The file is the only copy: a value whose write failed is not
 * kept in memory (it would be lost at a restart, and the final step could not unmask), the `set`
 * throws STORE_WRITE_FAILED and the operation, hence its attempt, fails. Nothing is cached per
 * artifact, so a long-running node does not grow with every artifact it ever served; reads are a
 * few per Sequential step. Without a workdir (tests) the variables live in memory. With `rows`
 * (the scheduler's initiator on PostgreSQL) they are rows of the store, with the same promises.
 */
export class LocalsStore {
  private readonly memory = new Map<string, Map<string, unknown>>();

  /**
   * `secret`: the node's durable secret for `Locals.derive` (`localsSecret` of its identity),
   * which then derives the initiator's masks instead of drawing and writing them. Absent: no derive.
   */
  constructor(
    private readonly dir: string | undefined,
    private readonly rows?: LocalsRows,
    private readonly secret?: Uint8Array,
  ) {
    if (dir) mkdirSync(dir, { recursive: true });
  }

  /**
   * AES-256-CTR's keystream under a key that HKDF-SHA256 draws from the secret, the artifact and
   * `key`: a pseudorandom function, so bytes for one (artifact, key) tell nothing of another's.
   */
  private deriver(artifactId: string): Locals['derive'] {
    const secret = this.secret;
    if (!secret) return undefined;
    return (key, size) => {
      const k = Buffer.from(hkdfSync('sha256', secret, '', `fdl-locals-v1\0${artifactId}\0${key}`, 32));
      return createCipheriv('aes-256-ctr', k, Buffer.alloc(16)).update(Buffer.alloc(size));
    };
  }

  private fileOf(artifactId: string): string | undefined {
    return this.dir && /^[A-Za-z0-9_-]+$/.test(artifactId) ? join(this.dir, `${artifactId}.msgpack`) : undefined;
  }

  /** Forgets an artifact's locals, in memory and on disk (the artifact was deleted). */
  delete(artifactId: string): void {
    this.memory.delete(artifactId);
    if (this.rows) {
      this.rows.deleteLocals(artifactId);
      return;
    }
    const file = this.fileOf(artifactId);
    if (file) rmSync(file, { force: true });
  }

  for(artifactId: string): Locals {
    const derive = this.deriver(artifactId);
    const locals = this.variables(artifactId);
    return derive ? { ...locals, derive } : locals;
  }

  private variables(artifactId: string): Locals {
    if (this.rows) return this.inRows(this.rows, artifactId);
    const file = this.fileOf(artifactId);
    if (!file) {
      const vars = this.memory.get(artifactId) ?? new Map<string, unknown>();
      this.memory.set(artifactId, vars);
      return { get: (key) => vars.get(key), set: (key, value) => vars.set(key, value) };
    }
    const read = (): Record<string, unknown> => {
      try {
        return decodeValue(readFileSync(file)) as Record<string, unknown>;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
        throw new FdlError('INTERNAL', `the locals of artifact ${artifactId} cannot be read: ${(e as Error).message}`, { cause: e });
      }
    };
    return {
      get: (key) => read()[key],
      set: (key, value) => {
        const what = `the locals of artifact ${artifactId}`;
        let current: Record<string, unknown>;
        try {
          current = read();
        } catch (e) {
          // A set is read, change, write: not being able to read the file is a failed write.
          throw new FdlError('STORE_WRITE_FAILED', `${what} could not be written: ${(e as Error).message}`, { cause: e });
        }
        writeFileDurably(file, encodeValue({ ...current, [key]: value }), what);
      },
    };
  }

  private inRows(rows: LocalsRows, artifactId: string): Locals {
    const what = `the locals of artifact ${artifactId}`;
    const read = (): Record<string, unknown> => {
      const bytes = rows.readLocals(artifactId);
      return bytes ? (decodeValue(bytes) as Record<string, unknown>) : {};
    };
    return {
      get: (key) => read()[key],
      set: (key, value) => {
        try {
          rows.writeLocals(artifactId, encodeValue({ ...read(), [key]: value }));
        } catch (e) {
          throw new FdlError('STORE_WRITE_FAILED', `${what} could not be written: ${(e as Error).message}`, { cause: e });
        }
      },
    };
  }
}
