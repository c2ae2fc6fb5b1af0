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
  t.teardown(() => dropDatabase(name));
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Insufficient privilege: DROP ... WITH (FORCE) met a backend it may not end. */
const NOT_OURS_TO_END = '42501';
const DROP_BOUND_MS = 60_000;

/**
 * Drops a test's database with any session still on it. FORCE ends our role's sessions, not an
 * autovacuum worker's (PostgreSQL refuses: "must be a member of the role whose process is being
 * terminated"), which a test that wrote many rows can start on it: that worker ends by itself
 * within seconds, so the drop is tried again until it goes, within a bound that fails saying why.
 */
async function dropDatabase(name: string): Promise<void> {
  const started = Date.now();
  for (;;) {
    try {
      await admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
      return;
    } catch (e) {
      if ((e as { code?: string }).code !== NOT_OURS_TO_END || Date.now() - started > DROP_BOUND_MS) {
        throw new Error(`could not drop the test database ${name} within ${DROP_BOUND_MS} ms: ${(e as Error).message}`);
      }
      // Another role's backend (autovacuum) is on it: it is not ours to end; try again when it may be gone.
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
