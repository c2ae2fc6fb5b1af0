import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeValue, encodeValue } from '../../protocols/codec.ts';
import type { Locals } from '../ops/context.ts';

/** The folder of a node's locals inside its work directory. */
export const LOCALS_DIR = 'locals';

/**
 * A node's private per-artifact variables (the masks of the Sequential estimators).
 * Written through to `<workdir>/locals/<artifactId>.msgpack` so that a restarted node
 * can still finish what its init step began; kept in memory when there is no workdir.
 */
export class LocalsStore {
  private readonly cache = new Map<string, Map<string, unknown>>();

  constructor(private readonly dir: string | undefined) {
    if (dir) mkdirSync(dir, { recursive: true });
  }

  private fileOf(artifactId: string): string | undefined {
    return this.dir && /^[A-Za-z0-9_-]+$/.test(artifactId) ? join(this.dir, `${artifactId}.msgpack`) : undefined;
  }

  /** Forgets an artifact's locals, in memory and on disk (the artifact was deleted). */
  delete(artifactId: string): void {
    this.cache.delete(artifactId);
    const file = this.fileOf(artifactId);
    if (file) rmSync(file, { force: true });
  }

  for(artifactId: string): Locals {
    const file = this.fileOf(artifactId);
    const vars = (): Map<string, unknown> => {
      let m = this.cache.get(artifactId);
      if (m) return m;
      m = new Map();
      if (file) {
        try {
          const loaded = decodeValue(readFileSync(file)) as Record<string, unknown>;
          for (const [k, v] of Object.entries(loaded)) m.set(k, v);
        } catch {
          // no file yet
        }
      }
      this.cache.set(artifactId, m);
      return m;
    };
    return {
      get: (key) => vars().get(key),
      set: (key, value) => {
        const m = vars();
        m.set(key, value);
        if (file) {
          const tmp = `${file}.tmp`;
          writeFileSync(tmp, encodeValue(Object.fromEntries(m)));
          renameSync(tmp, file);
        }
      },
    };
  }
}
