// Why: workers fail in every way a network of hospitals and labs can make them fail. Each fault
// here is injected below the layer under test (an op that throws, a product corrupted in transit,
// a truncated frame, a process SIGKILLed or frozen, bytes rotting on the scheduler's disk, a
// worker that never returns), and each test checks that nothing is lost or counted twice.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import type { CountProduct } from '../../lib/workbench.ts';
import { estimators, steps } from '../../lib/workbench.ts';
import type { ArtifactHandle } from '../../lib/workbench.ts';
import { SHARDS, testCluster, until, VALIDATION } from '../helpers/cluster.ts';

const ROWS = 9288 + 9288 + 2064;

const { cluster, wb, token, dir } = await testCluster(t, 'fault-workers', {
  workers: [
    { name: 'worker-1', files: [SHARDS[0] as string], env: { FDL_FAULTS: 'corrupt-product-once' } },
    { name: 'worker-2', files: [SHARDS[1] as string], env: { FDL_FAULTS: 'truncate-report-once' } },
    { name: 'worker-3', files: [VALIDATION] },
  ],
  scheduler: {
    heartbeat_ms: 1000,
    retry: { initial_interval_ms: 100, max_interval_ms: 500, worker_grace_ms: 3000, attempt_timeout_ms: 4000 },
  },
});
const project = await wb.project(token);

/** Resolves when the job of `worker` in the artifact reaches `state` (from pushed events). */
const jobReaches = (handle: ArtifactHandle, worker: string, state: string, operation?: string) =>
  new Promise<void>((resolve) => {
    const check = () =>
      handle.status.jobs.some((j) => j.worker === worker && j.state === state && (!operation || j.operation === operation));
    handle.on('event', (e) => {
      if (e.event.kind === 'jobState' && e.event.worker === worker && e.event.state === state) {
        if (!operation || handle.status.jobs.find((j) => j.id === (e.event as { jobId: string }).jobId)?.operation === operation) resolve();
      }
    });
    if (check()) resolve();
  });

t.test('a product corrupted in transit and a truncated report frame are refused, retried, COMPLETED', async (t) => {
  const handle = await project.count();
  t.equal((await handle.result<CountProduct>()).count, ROWS, 'the count is right: nothing lost, nothing twice');
  const jobs = (await wb.status(handle.id)).jobs;
  const w1 = jobs.find((j) => j.worker === 'worker-1');
  const w2 = jobs.find((j) => j.worker === 'worker-2');
  t.equal(w1?.attempt, 2);
  t.equal(w1?.lastError?.code, 'CHECKSUM_MISMATCH', 'the corrupted product was refused');
  t.equal(w2?.attempt, 2);
  t.equal(w2?.lastError?.code, 'ATTEMPT_TIMEOUT', 'the truncated report was refused, the attempt timed out');
});

t.test('an operation that throws on its first attempt: COMPLETED, 2 attempts', async (t) => {
  const handle = await project.submit([steps.parallel({ kind: 'TestFail', failAttempts: 1 }), steps.finalize({ kind: 'Noop' })]);
  const status = await handle.done();
  for (const j of status.jobs.filter((x) => x.operation === 'TestFail')) t.equal(j.attempt, 2, `${j.worker}: 2 attempts`);
  t.same(await wb.result(handle.id), { products: 3 });
});

t.test('SIGKILL a worker in the middle of a job, start it again: same result', async (t) => {
  const handle = await project.submit([steps.parallel({ kind: 'TestSleep', ms: 2500 }), estimators.count()]);
  await jobReaches(handle, 'worker-1', 'RUNNING', 'TestSleep');
  cluster.kill('worker-1', 'SIGKILL');
  t.equal(await cluster.exited('worker-1'), null, 'killed');
  cluster.startWorker('worker-1');
  t.equal((await handle.result<CountProduct>()).count, ROWS, 'the same count as an undisturbed run');
});

t.test('bytes rotting on the scheduler disk are refused and produced again', async (t) => {
  cluster.kill('worker-2', 'SIGSTOP');
  const handle = await project.submit([steps.parallel({ kind: 'Noop' }), steps.finalize({ kind: 'Noop' })]);
  try {
    await jobReaches(handle, 'worker-1', 'COMPLETED');
    const job = handle.status.jobs.find((j) => j.worker === 'worker-1') ?? t.fail('no job');
    const db = new Database(join(dir, 'scheduler', 'scheduler.sqlite'), { readonly: true, fileMustExist: true });
    const row = db.prepare('SELECT id FROM resources WHERE job_id = ?').get((job as { id: string }).id) as { id: string };
    db.close();
    writeFileSync(join(dir, 'scheduler', 'resources', `${row.id}.bin`), 'rotten bytes');
  } finally {
    cluster.kill('worker-2', 'SIGCONT');
  }
  const status = await handle.done();
  t.equal(status.state, 'COMPLETED');
  t.same(await wb.result(handle.id), { products: 3 }, 'the final job got all three products');
  t.ok((status.jobs.find((j) => j.worker === 'worker-1')?.attempt ?? 0) >= 2, "worker-1's product was made again");
  t.match(readFileSync(join(dir, 'scheduler.log'), 'utf8'), /resource failed its checksum/, 'the scheduler saw the rot');
});

t.test('a worker that never comes back', async (t) => {
  await cluster.waitForWorkers(['worker-1', 'worker-2', 'worker-3']);
  const strict = await project.submit([steps.parallel({ kind: 'TestSleep', ms: 1500 }), steps.finalize({ kind: 'Noop' })]);
  const tolerant = await project.submit({
    steps: [{ kind: 'Parallel', operation: { kind: 'TestSleep', ms: 1500 }, quorum: '60%' }, steps.finalize({ kind: 'Noop' })],
    policy: { maxAttempts: 2 },
  });
  const leftOutEvents: string[] = [];
  tolerant.on('event', (e) => {
    if (e.event.kind === 'jobState' && e.event.leftOut) leftOutEvents.push(e.event.worker);
  });
  await Promise.all([jobReaches(strict, 'worker-3', 'RUNNING'), jobReaches(tolerant, 'worker-3', 'RUNNING')]);
  const killedAt = Date.now();
  cluster.kill('worker-3', 'SIGKILL');

  await t.rejects(strict.done(), { code: 'WORKER_LOST' });
  const elapsed = Date.now() - killedAt;
  const s = await wb.status(strict.id);
  t.equal(s.state, 'ERROR');
  t.equal(s.error?.worker, 'worker-3', 'the error names the worker');
  t.equal(s.error?.error.code, 'WORKER_LOST');
  t.ok(elapsed < 3 * 3000 + 2000, `ERROR within grace + retries (${elapsed} ms)`);

  const done = await tolerant.done();
  t.equal(done.state, 'COMPLETED', 'the quorum let it finish');
  t.same(
    done.jobs.filter((j) => j.leftOut).map((j) => j.worker),
    ['worker-3'],
    'the status says which worker was left out',
  );
  t.same(await wb.result(tolerant.id), { products: 2 }, 'finished with the products it had');
  t.same(leftOutEvents, ['worker-3'], 'the pushed events said so, once');
  await until(async () => !(await wb.nodes()).find((n) => n.id === 'worker-3')?.connected, 5000, 'worker-3 shown as gone');
});
