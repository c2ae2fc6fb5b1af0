// Why: with `store: { url: postgres://… }` the scheduler keeps everything it needs in PostgreSQL,
// so it behaves as on SQLite (a federated mean equals the central one) and a scheduler killed
// mid-artifact and started again on the same database, even from a fresh work directory, resumes
// the artifact to the same result, and serves a large result it never had on its disk: nothing it
// needs lives on its own disk.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import t from 'tap';
import type { MeanProduct } from '../../lib/workbench.ts';
import { estimators, steps } from '../../lib/workbench.ts';
import { column, mean, readCsv, relErr, union } from '../helpers/central.ts';
import { blobSha256 } from '../helpers/blob.ts';
import { PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster, waitForJob, within } from '../helpers/cluster.ts';
import { testDatabase } from '../helpers/postgres.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const all = union(...SHARDS.map(readCsv));
const features = ['MedInc', 'HouseAge', 'Population'];
const url = await testDatabase(t, 'e2e_store');
// Generous: a restarted scheduler (a process that transpiles at start) must not decide the outcome.
const GRACE_MS = 120_000;
const scheduler: Record<string, unknown> = {
  store: { url },
  retry: { initial_interval_ms: 100, max_interval_ms: 1000, worker_grace_ms: GRACE_MS },
  plan: { holder_wait_ms: GRACE_MS },
};
const { cluster, wb, token, dir } = await testCluster(t, 'pg-store', {
  workers: SHARDS.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })),
  scheduler,
});

t.test('a federated mean on a PostgreSQL store equals the central one', async (t) => {
  const project = await wb.project(token);
  const result = await (await project.submit([estimators.mean(features)])).result<MeanProduct>();
  for (const f of features) t.ok(relErr(result.mean[f] as number, mean(column(all, f))) <= 1e-9, `${f} mean as computed centrally`);
  t.notOk(existsSync(join(dir, 'scheduler', 'scheduler.sqlite')), 'no SQLite file in the work directory');
  t.notOk(existsSync(join(dir, 'scheduler', 'identity.json')), 'nor an identity file: the identity is in the store');
  const log = readFileSync(join(dir, 'scheduler.log'), 'utf8');
  t.match(log, /"store":"postgres:\/\/fdl_test:\*\*\*@/, 'the log names the database, its password masked');
  t.notOk(log.includes(new URL(url).password ? `:${new URL(url).password}@` : '\0'), 'and never shows the password');
});

const MiB = 1024 * 1024;
/** Over the streaming threshold and over several of the store's 1 MiB chunk rows. */
const BIG = 24 * MiB;
let bigResult: { id: string; sha256: string } | undefined;

t.test('a large product streams through the store (chunk rows in PostgreSQL) and comes back whole', async (t) => {
  const blob = { kind: 'TestBlob' as const, bytes: BIG, seed: 5 };
  const project = await wb.project(token);
  // init (initiator) -> worker-1 makes the blob -> final (initiator) passes it on: two streamed products.
  const handle = await project.submit({ name: 'big', steps: [{ kind: 'Sequential', init: { kind: 'Noop' }, operation: blob, final: blob }] });
  await within(handle.done(), { what: 'the large artifact to complete' });
  const got = await within(wb.resultToFile(handle.id, join(dir, 'big-1.bin')), { what: 'the large result to download' });
  t.equal(got.sha256, blobSha256(BIG, 5), 'the bytes worker-1 made (sha256)');
  t.equal(statSync(join(dir, 'big-1.bin')).size, BIG + 5, 'the whole resource');
  bigResult = { id: handle.id, sha256: got.sha256 };
});

t.test('SIGKILL the scheduler mid-artifact, start it on the same database from a new work dir: same result', async (t) => {
  const project = await wb.project(token);
  const handle = await project.submit([steps.parallel({ kind: 'TestSleep', ms: 1500 }), estimators.mean(features)]);
  await waitForJob(handle, { state: 'RUNNING' });
  cluster.kill('scheduler', 'SIGKILL');
  t.equal(await cluster.exited('scheduler'), null, 'the scheduler was killed');
  // A work directory of its own: identity, tokens, artifacts, jobs and resources come from PostgreSQL.
  scheduler.workdir = join(dir, 'scheduler-again');
  await cluster.startScheduler();
  const result = await handle.result<MeanProduct>();
  for (const f of features) t.ok(relErr(result.mean[f] as number, mean(column(all, f))) <= 1e-9, `${f} mean as undisturbed`);
  const status = await wb.status(handle.id);
  t.equal(status.state, 'COMPLETED');
  t.equal(status.progress.completed, status.progress.total);
  t.notOk(existsSync(join(dir, 'scheduler-again', 'identity.json')), 'the new work dir holds no identity');

  // The large result, read from the chunk rows by a scheduler whose disk never held it.
  if (!bigResult) throw new Error('the large artifact did not run');
  const got = await within(wb.resultToFile(bigResult.id, join(dir, 'big-2.bin')), { what: 'the large result to download again' });
  t.equal(got.sha256, bigResult.sha256, 'the large result, from the restarted scheduler, is the same bytes');
});

t.test("the initiator's masks come from the store: a Sequential mean resumes across a kill into yet another work dir", async (t) => {
  // worker-2 frozen: the chain init -> worker-1 -> worker-2 -> final stops after worker-1. The
  // initiator's masks (made at init, needed at final) are derived from the identity that is a
  // row of the store, so nothing of the chain is written, and a new process anywhere derives them.
  cluster.kill('worker-2', 'SIGSTOP');
  try {
    const handle = await (await wb.project(token)).submit({ name: 'masked', steps: [estimators.mean(features)] });
    await waitForJob(handle, { state: 'COMPLETED', worker: 'worker-1' });
    const masks = await otherSession(url, async (c) => Number((await c.query('SELECT count(*) AS n FROM locals')).rows[0]?.n));
    t.equal(masks, 0, 'no mask is written per chain');
    cluster.kill('scheduler', 'SIGKILL');
    await cluster.exited('scheduler');
    scheduler.workdir = join(dir, 'scheduler-third');
    await cluster.startScheduler();
    cluster.kill('worker-2', 'SIGCONT');
    const result = await handle.result<MeanProduct>();
    for (const f of features) t.ok(relErr(result.mean[f] as number, mean(column(all, f))) <= 1e-9, `${f} mean unmasked by the new process`);
  } finally {
    cluster.kill('worker-2', 'SIGCONT');
  }
});

/** A session of the test's own on the store's database. */
async function otherSession<T>(db: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: db });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}
