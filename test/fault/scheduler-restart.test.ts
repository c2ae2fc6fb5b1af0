// Why: the scheduler writes every state change to its store before acting on it, so a scheduler
// killed with SIGKILL in the middle of an artifact and started again on the same work directory
// must finish it with the same result, while workers and the submitting workbench reconnect.
// And every node kind stops cleanly on SIGTERM (exit 0) and starts again where it left off.
import { join } from 'node:path';
import { openSqlite } from '../../lib/store/sqlite.ts';
import t from 'tap';
import type { CountProduct, MeanProduct } from '../../lib/workbench.ts';
import { estimators, steps } from '../../lib/workbench.ts';
import { column, mean, readCsv, relErr, union } from '../helpers/central.ts';
import { countLog, PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster, waitForJob, waitForLog, within } from '../helpers/cluster.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const all = union(...SHARDS.map(readCsv));
const WORKERS = ['worker-1', 'worker-2'];
// The grace is what a restarted scheduler gives the workers it knew to come back to their jobs;
// the holder wait, how long a submit waits for a holder of the project's data that is away.
// Generous, so that a slow restart (a node process transpiles at start) does not decide the outcome.
const GRACE_MS = 120_000;
const { cluster, wb, token, dir } = await testCluster(t, 'fault-scheduler', {
  workers: SHARDS.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })),
  scheduler: { retry: { initial_interval_ms: 100, max_interval_ms: 1000, worker_grace_ms: GRACE_MS }, plan: { holder_wait_ms: GRACE_MS } },
});

// Each test starts with every worker running and connected.
t.beforeEach(async () => {
  for (const w of WORKERS) cluster.kill(w, 'SIGCONT');
  await cluster.waitForWorkers(WORKERS);
});

t.test('SIGKILL the scheduler mid-artifact, start it again: COMPLETED, same result, the workbench gets it', async (t) => {
  const project = await wb.project(token);
  const features = ['MedInc', 'HouseAge', 'Population'];
  const handle = await project.submit([steps.parallel({ kind: 'TestSleep', ms: 1500 }), estimators.mean(features)]);
  await waitForJob(handle, { state: 'RUNNING' });
  cluster.kill('scheduler', 'SIGKILL');
  t.equal(await cluster.exited('scheduler'), null, 'the scheduler was killed');
  await cluster.startScheduler();
  const result = await handle.result<MeanProduct>();
  for (const f of features) t.ok(relErr(result.mean[f] as number, mean(column(all, f))) <= 1e-9, `${f} mean as undisturbed`);
  const status = await wb.status(handle.id);
  t.equal(status.state, 'COMPLETED');
  t.equal(status.progress.completed, status.progress.total);
});

t.test('right after a restart, a holder not back yet is waited for: the count covers both holders, never half', async (t) => {
  // worker-2 is frozen across the restart, so it cannot reconnect before the submit.
  cluster.kill('worker-2', 'SIGSTOP');
  try {
    cluster.kill('scheduler', 'SIGKILL');
    await cluster.exited('scheduler');
    // Its last sighting far in the past (older than any grace time): what keeps worker-2 in the
    // plan is that it is a known holder of the project's data, not when it was last seen.
    const db = openSqlite(join(dir, 'scheduler', 'scheduler.sqlite'), { fileMustExist: true });
    const moved = db.prepare('UPDATE nodes SET last_seen = ? WHERE id = ?').run(Date.now() - 10 * GRACE_MS, 'worker-2').changes;
    db.close();
    t.equal(moved, 1, "worker-2's last sighting is older than the grace time");
    await cluster.startScheduler();
    await cluster.waitForWorkers(['worker-1']);
    t.notOk((await wb.nodes()).find((n) => n.id === 'worker-2')?.connected, 'worker-2 is not back when the artifact is submitted');
    const log = join(dir, 'scheduler.log');
    const before = countLog(log, /submit waits for holders/);
    const submitted = (await wb.project(token)).count();
    // The submit waits for the missing holder (before, the plan left it out and halved the count).
    await waitForLog(log, /submit waits for holders/, { count: before + 1, what: 'the submit to wait for worker-2' });
    cluster.kill('worker-2', 'SIGCONT');
    const count = await within(submitted, { what: 'the submit to be accepted once worker-2 is back' });
    t.same(
      count.status.jobs.map((j) => j.worker),
      ['scheduler', 'worker-1', 'worker-2', 'scheduler'],
      'the plan includes the holder that was away at the submit',
    );
    const result = await count.result<CountProduct>();
    t.equal(result.count, all.rows.length, 'counted over both workers, not part of the data');
    t.ok(result.provenance?.complete, 'and its provenance says so');
    t.same(result.provenance?.included, WORKERS);
  } finally {
    cluster.kill('worker-2', 'SIGCONT');
  }
});

t.test('SIGTERM each node kind: exit 0, and a restart continues cleanly', async (t) => {
  t.equal(await cluster.signal('worker-2', 'SIGTERM'), 0, 'worker exits 0');
  t.equal(await cluster.signal('scheduler', 'SIGTERM'), 0, 'scheduler exits 0');
  t.equal(await cluster.signal('worker-1', 'SIGTERM'), 0, 'worker exits 0');
  await cluster.startScheduler();
  cluster.startWorker('worker-1');
  cluster.startWorker('worker-2');
  await cluster.waitForWorkers(['worker-1', 'worker-2']);
  const project = await wb.project(token);
  t.equal((await (await project.count()).result<CountProduct>()).count, all.rows.length);
  t.equal((await wb.projects()).length, 1, 'the project survived in the store');
});
