import type { Test } from 'tap';
import type { PostgresOptions } from '../../lib/store/postgres.ts';
import { Store } from '../../lib/store/store.ts';
import { testDatabase } from './postgres.ts';

/** Opens a store on this test's engine; every call within one test opens the same database (SQLite: the same work dir's). */
export type OpenStore = (workdir?: string, opts?: PostgresOptions) => Store;

export const ENGINES = ['SQLite', 'PostgreSQL'] as const;
export type EngineName = (typeof ENGINES)[number];

/**
 * The store's test matrix: `body` runs once on SQLite and once on a fresh PostgreSQL database
 * (a database of its own, dropped after; no server fails the test, never skips it). A body that
 * reopens a store (`open(dir)` twice) gets the same database again.
 */
export function forEachEngine(t: Test, name: string, body: (t: Test, open: OpenStore, engine: EngineName) => unknown): void {
  t.test(`${name} [SQLite]`, async (t) => body(t, (workdir) => new Store(workdir), 'SQLite'));
  t.test(`${name} [PostgreSQL]`, async (t) => {
    const url = await testDatabase(t, 'store');
    return body(t, (workdir, opts = {}) => new Store(workdir, { url, ...opts }), 'PostgreSQL');
  });
}
