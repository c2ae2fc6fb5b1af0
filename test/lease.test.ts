// Why: two schedulers on one PostgreSQL store must never both write. The lease decides which one
// is active, with PostgreSQL's clock as the only clock, and every commit of the active one is
// fenced by it: a scheduler that lost the lease while it was frozen finds out at its next commit
// (or renewal), and what that commit carried never lands. These tests drive the lease and the
// real PostgreSQL engine directly; test/fault/failover.test.ts does it with scheduler processes.
import pg from 'pg';
import t from 'tap';
import { createLogger } from '../lib/log.ts';
import { FENCE_SQL, type FencedError, Lease, type LeaseOptions } from '../lib/store/lease.ts';
import { numberPlaceholders, PostgresEngine } from '../lib/store/postgres.ts';
import { waitFor, within } from './helpers/cluster.ts';
import { testDatabase } from './helpers/postgres.ts';

const log = createLogger('lease-test', 'silent');

async function sql<T extends pg.QueryResultRow>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(text, params)).rows;
  } finally {
    await c.end();
  }
}

/** A lease's options in a test: its losses recorded. */
function leaseOptions(url: string, holder: string, extra: Partial<LeaseOptions> = {}) {
  const lost: FencedError[] = [];
  const opts: LeaseOptions = { url, holder, leaseMs: 60_000, log, onLost: (e) => lost.push(e), ...extra };
  return { opts, lost };
}

/** As if the holder had been frozen past its lease: the row lapses (on PostgreSQL's clock) without the holder knowing. */
const lapse = (url: string) => sql(url, "UPDATE scheduler_lease SET expires_at = clock_timestamp() - interval '1 second'");

t.test('the first scheduler takes the lease at once; a second one waits as a standby until it lapses', async (t) => {
  const url = await testDatabase(t, 'lease');
  const a = leaseOptions(url, 'a');
  const leaseA = await Lease.acquire(a.opts);
  t.teardown(() => leaseA.release());
  t.equal(leaseA.epoch, 1, 'epoch 1');
  const lines: Array<Record<string, unknown>> = [];
  const standbyLog = createLogger('b', 'info');
  standbyLog.info = ((obj: Record<string, unknown>, msg: string) => lines.push({ ...obj, msg })) as never;
  const b = leaseOptions(url, 'b', { log: standbyLog, pollMs: 20 });
  let leaseB: Lease | undefined;
  const taken = Lease.acquire(b.opts).then((l) => (leaseB = l));
  t.teardown(async () => (await taken).release());
  await waitFor(() => lines.length > 0, { what: 'the standby to say who is active' });
  t.match(lines[0], { msg: /^standby: another scheduler is active/, active: 'a', epoch: 1 });
  t.equal(leaseB, undefined, 'b waits while a holds an unexpired lease');
  await lapse(url);
  await within(taken, { what: 'b to take the lapsed lease' });
  t.equal(leaseB?.epoch, 2, 'the takeover moved the epoch on');
  t.same(await sql(url, 'SELECT holder, epoch FROM scheduler_lease'), [{ holder: 'b', epoch: '2' }]);
});

t.test('a clean release lets the standby take over at its next look', async (t) => {
  const url = await testDatabase(t, 'lease');
  const leaseA = await Lease.acquire(leaseOptions(url, 'a').opts);
  const taken = Lease.acquire(leaseOptions(url, 'b', { pollMs: 20 }).opts);
  t.teardown(async () => (await taken).release());
  await leaseA.release();
  t.equal((await within(taken, { what: 'b to take the released lease' })).epoch, 2);
});

t.test("the fence: commits land while the lease is held; after a takeover the old holder's commit lands nothing", async (t) => {
  const url = await testDatabase(t, 'lease');
  const a = leaseOptions(url, 'a');
  const leaseA = await Lease.acquire(a.opts);
  t.teardown(() => leaseA.release());
  const engine = new PostgresEngine(url);
  t.teardown(() => engine.close());
  engine.beforeCommit = () => leaseA.fence(engine);
  const insert = engine.prepare('INSERT INTO projects (id, name, token_hash) VALUES (?, ?, ?)');
  insert.run('p-1', 'before', 'h1');
  engine.barrier();
  const names = async () => (await sql<{ name: string }>(url, 'SELECT name FROM projects ORDER BY name')).map((r) => r.name);
  t.same(await names(), ['before'], 'a fenced commit of the holder lands');

  // a is frozen past its lease; b takes over and commits.
  await lapse(url);
  const leaseB = await Lease.acquire(leaseOptions(url, 'b').opts);
  t.teardown(() => leaseB.release());
  // a thaws with a write in its open transaction: its barrier is refused, and nothing of it lands.
  insert.run('p-2', 'after the takeover', 'h2');
  t.throws(() => engine.barrier(), { name: 'FencedError', message: /a commit found the lease taken over: this scheduler \(a, epoch 1\) must not write again/ });
  t.equal(a.lost.length, 1, 'onLost was told, once');
  t.same(await names(), ['before'], 'the fenced commit landed nothing');
  t.same(await sql(url, 'SELECT holder, epoch FROM scheduler_lease'), [{ holder: 'b', epoch: '2' }], 'and the lease is still b\'s');
});

// A scheduler that stalled past its lease with no standby there is not stopped for nothing: the
// epoch, not the expiry, is what fences (a takeover moves it on).
t.test('a fence extends the lease, even lapsed when nobody took it', async (t) => {
  const url = await testDatabase(t, 'lease');
  const a = leaseOptions(url, 'a', { leaseMs: 30_000 });
  const leaseA = await Lease.acquire(a.opts);
  t.teardown(() => leaseA.release());
  const engine = new PostgresEngine(url);
  t.teardown(() => engine.close());
  engine.beforeCommit = () => leaseA.fence(engine);
  const left = async () =>
    Number((await sql<{ left: number }>(url, 'SELECT EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) AS left FROM scheduler_lease'))[0]?.left);
  await lapse(url);
  engine.prepare('INSERT INTO projects (id, name, token_hash) VALUES (?, ?, ?)').run('p-1', 'one', 'h1');
  engine.barrier();
  const remaining = await left();
  t.ok(remaining > 20, `the commit extended the lapsed lease to a whole lease again (${remaining.toFixed(1)} s left)`);
  t.same(await sql(url, 'SELECT name FROM projects'), [{ name: 'one' }], 'and its writes landed');
  t.equal(a.lost.length, 0, 'nothing was lost');
});

t.test('a holder frozen past its lease learns it at its next renewal', async (t) => {
  const url = await testDatabase(t, 'lease');
  const a = leaseOptions(url, 'a', { leaseMs: 300 });
  const leaseA = await Lease.acquire(a.opts);
  t.teardown(() => leaseA.release());
  const leaseB = Lease.acquire(leaseOptions(url, 'b', { leaseMs: 300 }).opts);
  t.teardown(async () => (await leaseB).release());
  // What a frozen a would meet on thawing: a takeover by c (here one statement of the test's own).
  await sql(url, "UPDATE scheduler_lease SET holder = 'c', epoch = epoch + 1, expires_at = clock_timestamp() + interval '1 hour'");
  await waitFor(() => a.lost.length === 1, { what: "a's renewal to find the lease gone" });
  t.match(a.lost[0]?.message, /the renewal found the lease taken over: this scheduler \(a, epoch 1\)/);
  await sql(url, "UPDATE scheduler_lease SET expires_at = '-infinity'");
  t.equal((await within(leaseB, { what: 'b to take the lease c gave up' })).epoch, 3);
});

// The two writes of the lease row that race at a failover: PostgreSQL orders them by the row's
// lock, so a fence in flight (its transaction not yet committed) and a takeover never both win.
t.test('a takeover waits for a fence in flight and then finds the lease extended', async (t) => {
  const url = await testDatabase(t, 'lease');
  const leaseA = await Lease.acquire(leaseOptions(url, 'a', { leaseMs: 30_000 }).opts);
  t.teardown(() => leaseA.release());
  await lapse(url);
  const leader = new pg.Client({ connectionString: url });
  await leader.connect();
  t.teardown(() => leader.end());
  await leader.query('BEGIN');
  const fenced = await leader.query(numberPlaceholders(FENCE_SQL), [30_000, 'a', leaseA.epoch]);
  t.equal(fenced.rowCount, 1, 'the fence holds the row, uncommitted');
  let standby: Lease | undefined;
  const taking = Lease.acquire(leaseOptions(url, 'b', { leaseMs: 30_000, pollMs: 20 }).opts).then((l) => (standby = l));
  t.teardown(async () => (await taking).release());
  // b's look at the row waits on the fence's lock (the race is on, not merely scheduled).
  await waitFor(
    async () =>
      (await sql(url, "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'fdl-lease' AND wait_event_type = 'Lock'")).length > 0,
    { what: "b's statement to wait on the lease row's lock" },
  );
  await leader.query('COMMIT');
  const [row] = await sql<{ holder: string; epoch: string }>(url, 'SELECT holder, epoch FROM scheduler_lease');
  t.same(row, { holder: 'a', epoch: '1' }, 'after the commit the lease is still a\'s, extended');
  t.equal(standby, undefined, 'and b still waits');
  await leaseA.release();
  t.equal((await within(taking, { what: 'b to take the released lease' })).epoch, 2);
});

t.test('a wrong database or password is one line naming the store (password masked), not an endless wait', async (t) => {
  const url = new URL(await testDatabase(t, 'lease'));
  url.pathname = '/no_such_database_here';
  await t.rejects(Lease.acquire(leaseOptions(url.toString(), 'a').opts), {
    name: 'StoreCheckError',
    message: /^the PostgreSQL store at postgres:\/\/fdl_test:\*\*\*@.*\/no_such_database_here refuses this scheduler: database "no_such_database_here" does not exist$/,
  });
  url.pathname = '/postgres';
  url.password = 'wrong-password';
  await t.rejects(Lease.acquire(leaseOptions(url.toString(), 'a').opts), { name: 'StoreCheckError', message: /refuses this scheduler: password authentication failed/ });
});
