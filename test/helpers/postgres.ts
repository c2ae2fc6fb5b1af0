import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * A PostgreSQL database of a test's own: created at the call, dropped at the test's end.
 *
 * The server is the one `scripts/test-postgres.sh` starts (`.ci/run` runs it and exports
 * FDL_TEST_PG_URL); without FDL_TEST_PG_URL, that script's default URL is tried. A server that
 * cannot be reached fails the test with one line saying how to get one: the PostgreSQL half of
 * the store's tests is never skipped in silence.
 */
export const ADMIN_URL = process.env.FDL_TEST_PG_URL ?? 'postgres://fdl_test:fdl_test@127.0.0.1:5432/postgres';

export class NoPostgresError extends Error {}

interface Teardown {
  teardown(fn: () => unknown): void;
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
  } catch (e) {
    throw new NoPostgresError(
      `no PostgreSQL server at ${ADMIN_URL.replace(/:[^:@/]*@/, ':***@')} (${(e as Error).message}): ` +
        'run scripts/test-postgres.sh as root (it installs and starts Debian\'s postgresql), or set FDL_TEST_PG_URL',
    );
  }
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** The URL of a new, empty database, dropped (with any session still on it) when `t` ends. */
export async function testDatabase(t: Teardown, label = 'fdl'): Promise<string> {
  const name = `${label.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${randomBytes(6).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  t.teardown(() => admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)));
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}
