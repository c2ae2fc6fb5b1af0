// Why: on PostgreSQL the store keeps SQLite's promises through other means, and these are what
// the failover rests on: one open transaction per group commit (nothing written is seen by
// anyone, nor survives a kill, before its barrier), a failed statement that costs only itself,
// a fenced barrier (beforeCommit throws) that lands nothing and stops the store, timestamps and
// bytes that come back as the Store's types, versioned migrations that refuse a newer schema,
// and a URL whose password never shows.
import pg from 'pg';
import t from 'tap';
import { ConfigError, parseConfig } from '../lib/config.ts';
import { SCHEMA_VERSION, StoreCheckError } from '../lib/store/db.ts';
import { PostgresEngine } from '../lib/store/postgres.ts';
import { Store } from '../lib/store/store.ts';
import { testDatabase } from './helpers/postgres.ts';
import { PROCESS_FILE_TIMEOUT_MS } from './helpers/cluster.ts';

// Each PostgreSQL store makes a database and starts its bridge's thread (which transpiles its
// entry under tsx: ~1-3 s of CPU): the longer timeout of files that start processes, for npm run test:slow.
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

/** Another session on the same database: what other replicas (and a restarted scheduler) see. */
async function otherSession<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

const projectsSeen = (url: string) => otherSession(url, async (c) => (await c.query('SELECT name FROM projects ORDER BY name')).rows.map((r) => r.name));

t.test('writes gather in one open transaction: invisible to other sessions until the barrier commits them', async (t) => {
  const url = await testDatabase(t);
  const engine = new PostgresEngine(url);
  t.teardown(() => engine.close());
  const insert = engine.prepare('INSERT INTO projects (id, name, token_hash) VALUES (?, ?, ?)');
  const before = engine.changes();
  insert.run('p-1', 'one', 'h1');
  insert.run('p-2', 'two', 'h2');
  t.ok(engine.changes() > before, 'changes() moved with the writes');
  t.same(engine.prepare('SELECT name FROM projects ORDER BY name').all(), [{ name: 'one' }, { name: 'two' }], 'its own reads see them');
  t.same(await projectsSeen(url), [], 'another session sees nothing yet');
  engine.barrier();
  t.same(await projectsSeen(url), ['one', 'two'], 'after the barrier, both');
});

t.test("a failed statement costs only itself (PostgreSQL's SQLSTATE as its code); a failed transaction(fn) only its own writes", async (t) => {
  const url = await testDatabase(t);
  const engine = new PostgresEngine(url);
  t.teardown(() => engine.close());
  const insert = engine.prepare('INSERT INTO projects (id, name, token_hash) VALUES (?, ?, ?)');
  insert.run('p-1', 'one', 'h1');
  t.throws(() => insert.run('p-1', 'again', 'h9'), { code: '23505' }, 'a unique violation, with its SQLSTATE');
  t.throws(
    () =>
      engine.transaction(() => {
        insert.run('p-2', 'two', 'h2');
        throw new Error('changed my mind');
      }),
    /changed my mind/,
  );
  insert.run('p-3', 'three', 'h3');
  engine.barrier();
  t.same(await projectsSeen(url), ['one', 'three'], 'the earlier and later writes land; the failed ones do not');
  t.throws(() => engine.prepare('SELECT nope FROM projects').get(), { code: '42703' }, 'a failed read outside the transaction is only itself');
  t.equal(engine.prepare('SELECT count(*) FROM projects').value(), 2);
});

t.test('a read that fails inside the open transaction gives it up and stops the store (reads are not guarded)', async (t) => {
  const url = await testDatabase(t);
  const engine = new PostgresEngine(url);
  t.teardown(() => engine.close());
  engine.prepare('INSERT INTO projects (id, name, token_hash) VALUES (?, ?, ?)').run('p-1', 'one', 'h1');
  t.throws(() => engine.prepare('SELECT nope FROM projects').get(), { code: '42703' });
  t.throws(() => engine.prepare('SELECT 1').get(), /gave up its uncommitted changes/, 'every later call is refused');
  t.same(await projectsSeen(url), [], 'nothing of that transaction landed');
});

t.test('a barrier whose beforeCommit throws lands nothing, and the store refuses every later call', async (t) => {
  const url = await testDatabase(t);
  const engine = new PostgresEngine(url);
  t.teardown(() => engine.close());
  engine.prepare('INSERT INTO projects (id, name, token_hash) VALUES (?, ?, ?)').run('p-1', 'one', 'h1');
  engine.barrier();
  engine.prepare('INSERT INTO projects (id, name, token_hash) VALUES (?, ?, ?)').run('p-2', 'two', 'h2');
  engine.beforeCommit = () => {
    throw new Error('lease lost: epoch 7 is not ours');
  };
  t.throws(() => engine.barrier(), /lease lost/, 'the barrier fails with the hook\'s error');
  t.same(await projectsSeen(url), ['one'], 'what that barrier would have committed never lands');
  t.throws(() => engine.prepare('SELECT 1').get(), /gave up its uncommitted changes \(lease lost/, 'a read after it is refused');
  t.throws(() => engine.barrier(), /must stop/, 'and so is the next barrier');
  t.match(engine.lost?.message, /lease lost/, 'the reason is kept for whoever stops the scheduler');
});

t.test("epoch-ms timestamps come back as numbers, bytes as Buffers; the session's idle-in-transaction bound is set", async (t) => {
  const url = await testDatabase(t);
  const store = new Store(undefined, { url, idleInTransactionMs: 4_000 });
  t.teardown(() => store.close());
  const now = 1_796_000_000_123;
  const { id } = store.createToken('join', { label: 'x' }, now);
  t.equal(store.listTokens().find((k) => k.id === id)?.createdAt, now, 'a BIGINT timestamp is a JS number');
  const engine = store.db as PostgresEngine;
  engine.prepare('INSERT INTO resource_bytes (id, bytes) VALUES (?, ?)').run('r-1', Buffer.from([0, 1, 255]));
  const bytes = engine.prepare('SELECT bytes FROM resource_bytes WHERE id = ?').value<Buffer>('r-1');
  t.ok(Buffer.isBuffer(bytes), 'a BYTEA is a Buffer');
  t.same([...(bytes ?? [])], [0, 1, 255]);
  t.equal(engine.prepare('SHOW idle_in_transaction_session_timeout').value(), '4s');
});

t.test('migrations: a fresh database gets every step and its version; a newer one is refused with one line', async (t) => {
  const url = await testDatabase(t);
  new PostgresEngine(url).close();
  t.same(await otherSession(url, async (c) => (await c.query('SELECT version FROM schema_version')).rows), [{ version: SCHEMA_VERSION }]);
  new PostgresEngine(url).close(); // a second start finds it done
  await otherSession(url, (c) => c.query(`UPDATE schema_version SET version = ${SCHEMA_VERSION + 1}`));
  const refused = (() => {
    try {
      new PostgresEngine(url).close();
    } catch (e) {
      return e;
    }
  })();
  t.type(refused, StoreCheckError);
  t.match((refused as Error).message, new RegExp(`has schema version ${SCHEMA_VERSION + 1}, newer than this fdl knows \\(${SCHEMA_VERSION}\\): run a newer fdl`));
  t.notMatch((refused as Error).message, /fdl_test:fdl_test@/, 'the password is not in it');
});

t.test('a server that refuses us is one line, without the password', async (t) => {
  const url = new URL(await testDatabase(t));
  url.password = 'wrong-secret';
  const refused = (() => {
    try {
      new PostgresEngine(url.toString()).close();
    } catch (e) {
      return e as Error;
    }
  })();
  t.type(refused, StoreCheckError);
  t.match(refused?.message, /^the PostgreSQL store at postgres:\/\/fdl_test:\*\*\*@127\.0\.0\.1:5432\/\S+ cannot be reached: /);
  t.notMatch(refused?.message, /wrong-secret/);
  t.notMatch(refused?.message, /\n/, 'one line');
});

t.test('store.url in the config: postgres:// or postgresql://; anything else is one problem, never showing the password', async (t) => {
  const base = 'mode: scheduler\nname: s\nprojects: [{name: p, token: abcdefgh12}]\n';
  const problems = (url: string): string[] => {
    try {
      parseConfig(`${base}store: { url: '${url}' }\n`, 's.yaml', '/base', {});
    } catch (e) {
      if (e instanceof ConfigError) return e.problems;
      throw e;
    }
    return [];
  };
  t.same(problems('postgres://u:secret@db:5432/fdl'), []);
  t.same(problems('postgresql://u:secret@db/fdl'), []);
  t.equal(parseConfig(base, 's.yaml', '/base', {}).store.url, undefined, 'unset: SQLite');
  for (const bad of ['mysql://u:secret@db/fdl', 'postgres://u:secret@db', 'not a url with secret']) {
    const p = problems(bad);
    t.equal(p.length, 1, `${bad.replace('secret', '***')}: one problem`);
    t.match(p[0], /^store\.url: /);
    t.notMatch(p[0], /secret/, 'without the password');
  }
});

t.test('a resource that cannot be written fails with STORE_WRITE_FAILED, leaves no row, and the store goes on', async (t) => {
  const url = await testDatabase(t);
  const store = new Store(undefined, { url });
  t.teardown(() => store.close());
  const meta = { artifactId: 'a-1', jobId: 'a-1.0', producer: 'w1', size: 5, sha256: 'x'.repeat(64) };
  t.throws(() => store.putResourceFile(meta, '/nonexistent/spooled.bin', 'move', 1), { code: 'STORE_WRITE_FAILED', message: /ENOENT/ });
  t.equal(store.db.prepare('SELECT count(*) AS n FROM resources').value(), 0, 'no row');
  t.equal(store.db.prepare('SELECT count(*) AS n FROM resource_chunks').value(), 0, 'no chunk');
  store.ensureProject('p', 'token-123456');
  store.barrier();
  t.same(
    store.listProjects().map((p) => p.name),
    ['p'],
    'the open transaction was not aborted by the failure',
  );
});

t.test('a lost connection: outside a transaction the store connects again; inside one it gives the transaction up', async (t) => {
  const url = await testDatabase(t);
  const engine = new PostgresEngine(url);
  t.teardown(() => engine.close());
  const terminate = async () => {
    const pid = engine.prepare('SELECT pg_backend_pid() AS pid').value<number>();
    await otherSession(url, (c) => c.query('SELECT pg_terminate_backend($1)', [pid]));
    return pid;
  };
  const insert = engine.prepare('INSERT INTO projects (id, name, token_hash) VALUES (?, ?, ?)');
  insert.run('p-1', 'one', 'h1');
  engine.barrier();
  const before = await terminate();
  t.equal(engine.prepare('SELECT count(*) FROM projects').value(), 1, 'a read after the server ended the session: on a new connection');
  t.not(engine.prepare('SELECT pg_backend_pid() AS pid').value(), before, 'a new session');
  insert.run('p-2', 'two', 'h2'); // a write begins a transaction on it
  await terminate();
  t.throws(() => insert.run('p-3', 'three', 'h3'), { code: 'FDL_CONNECTION_LOST' }, 'a write in the lost transaction fails');
  t.match(engine.lost?.message, /connection to PostgreSQL was lost/, 'and the store gave up');
  t.throws(() => engine.barrier(), /must stop/);
  t.same(await projectsSeen(url), ['one'], 'nothing of the lost transaction landed');
});

t.test('a guarded write carries any value as it is (its parameters are written in as literals)', async (t) => {
  const url = await testDatabase(t);
  const engine = new PostgresEngine(url);
  t.teardown(() => engine.close());
  const insert = engine.prepare('INSERT INTO meta (key, value) VALUES (?, ?)');
  insert.run('first', 'x'); // begins the open transaction: the next writes are guarded
  const tricky = ["it's", "'); DROP TABLE meta; --", 'back\\slash \\x00 $1 ? $2', 'ünïcødé ✓', '', `${'long '.repeat(20_000)}end`];
  tricky.forEach((v, i) => insert.run(`k${i}`, v));
  engine.prepare('INSERT INTO resource_bytes (id, bytes) VALUES (?, ?)').run('r-1', Buffer.from([0, 39, 92, 255]));
  engine.prepare('UPDATE meta SET value = ? WHERE key = ?').run(String(Number.MAX_SAFE_INTEGER), 'first');
  engine.barrier();
  t.same(
    tricky.map((_, i) => engine.prepare('SELECT value FROM meta WHERE key = ?').value(`k${i}`)),
    tricky,
    'strings with quotes, backslashes and placeholders come back equal',
  );
  t.same([...(engine.prepare('SELECT bytes FROM resource_bytes').value<Buffer>() ?? [])], [0, 39, 92, 255], 'bytes too');
  t.equal(engine.prepare(`SELECT value FROM meta WHERE key = 'first'`).value(), String(Number.MAX_SAFE_INTEGER));
});
