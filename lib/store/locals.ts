import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeValue, encodeValue } from '../../protocols/codec.ts';
import type { Locals } from '../ops/context.ts';

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

  for(artifactId: string): Locals {
    const file = this.dir && /^[A-Za-z0-9_-]+$/.test(artifactId) ? join(this.dir, `${artifactId}.msgpack`) : undefined;
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
