// Why: with `store: { url: postgres://… }` the scheduler keeps everything it needs in PostgreSQL,
// so it behaves as on SQLite (a federated mean equals the central one) and a scheduler killed
// mid-artifact and started again on the same database, even from a fresh work directory, resumes
// the artifact to the same result: nothing it needs lives on its own disk.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { MeanProduct } from '../../lib/workbench.ts';
import { estimators, steps } from '../../lib/workbench.ts';
import { column, mean, readCsv, relErr, union } from '../helpers/central.ts';
import { PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster, waitForJob } from '../helpers/cluster.ts';
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
});
