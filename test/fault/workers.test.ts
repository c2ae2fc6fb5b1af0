// Why: workers fail in every way a network of hospitals and labs can make them fail. Each fault
// here is injected below the layer under test (an op that throws, a product corrupted in transit,
// a truncated frame, a process SIGKILLed or frozen, bytes rotting on the scheduler's disk, a
// worker that never returns), and each test checks that nothing is lost or counted twice.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSqlite } from '../../lib/store/sqlite.ts';
import t from 'tap';
import type { CountProduct } from '../../lib/workbench.ts';
import { estimators, steps } from '../../lib/workbench.ts';
import {
  countLog,
  LONG_SLEEP_MS,
  PROCESS_FILE_TIMEOUT_MS,
  SHARDS,
  testCluster,
  until,
  VALIDATION,
  waitFor,
  waitForJob,
  waitForLog,
} from '../helpers/cluster.ts';
import { rotStoredBytes } from '../helpers/resources.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const ROWS = 9288 + 9288 + 2064;
const WORKERS = ['worker-1', 'worker-2', 'worker-3'];
// Generous, so that no attempt fails by timing on a loaded machine: a worker that only missed
// heartbeats is back long before its grace ends, and no healthy attempt reaches its timeout.
// The tests that need a timeout or a loss to happen pay it deliberately (a shorter policy on
// one artifact, or a worker that never returns).
const GRACE_MS = 10_000;

const { cluster, wb, token, dir } = await testCluster(t, 'fault-workers', {
  workers: [
    { name: 'worker-1', files: [SHARDS[0] as string], env: { FDL_FAULTS: 'corrupt-product-once' } },
    { name: 'worker-2', files: [SHARDS[1] as string], env: { FDL_FAULTS: 'truncate-report-once' } },
    { name: 'worker-3', files: [VALIDATION] },
  ],
  scheduler: {
    retry: { initial_interval_ms: 100, max_interval_ms: 500, worker_grace_ms: GRACE_MS, attempt_timeout_ms: 300_000 },
  },
});
const project = await wb.project(token);

// Each test starts from a clean cluster: every worker running (none frozen), without injected
// faults (the first test restarts the two faulty workers clean), and connected.
t.beforeEach(async () => {
  for (const w of WORKERS) cluster.kill(w, 'SIGCONT');
  await cluster.waitForWorkers(WORKERS);
});

t.test('a product corrupted in transit and a truncated report frame are refused, retried, COMPLETED', async (t) => {
  t.teardown(async () => {
    // Restart both faulty workers without their faults, whatever happened here.
    for (const w of ['worker-1', 'worker-2']) {
      await cluster.signal(w, 'SIGTERM');
      cluster.startWorker(w, { env: {} });
    }
    await cluster.waitForWorkers(WORKERS);
  });
  // The truncated report is only noticed by the attempt timeout: short for this artifact, yet
  // far above what a healthy Count attempt takes even on a quarter of a core.
  const handle = await project.submit({ name: 'count', steps: [estimators.count()], policy: { attemptTimeoutMs: 15_000 } });
  t.equal((await handle.result<CountProduct>()).count, ROWS, 'the count is right: nothing lost, nothing twice');
  const jobs = (await wb.status(handle.id)).jobs;
  const w1 = jobs.find((j) => j.worker === 'worker-1');
  const w2 = jobs.find((j) => j.worker === 'worker-2');
  t.equal(w1?.attempt, 2);
  t.equal(w1?.lastError?.code, 'CHECKSUM_MISMATCH', 'the corrupted product was refused');
  t.equal(w2?.attempt, 2);
  t.equal(w2?.lastError?.code, 'ATTEMPT_TIMEOUT', 'the truncated report was refused, the attempt timed out');
  t.equal(countLog(join(dir, 'worker-1.log'), /fault injection: corrupting a product/), 1, 'the corruption was injected once');
  t.equal(countLog(join(dir, 'worker-2.log'), /fault injection: truncating a report frame/), 1, 'the truncation was injected once');
});

t.test('an operation that throws on its first attempt: COMPLETED, 2 attempts', async (t) => {
  const handle = await project.submit([steps.parallel({ kind: 'TestFail', failAttempts: 1 }), steps.finalize({ kind: 'Noop' })]);
  const status = await handle.done();
  for (const j of status.jobs.filter((x) => x.operation === 'TestFail')) t.equal(j.attempt, 2, `${j.worker}: 2 attempts`);
  t.same(await wb.result(handle.id), { products: 3 });
});

t.test('SIGKILL a worker in the middle of a job, start it again: same result', async (t) => {
  const handle = await project.submit([steps.parallel({ kind: 'TestSleep', ms: 2500 }), estimators.count()]);
  await waitForJob(handle, { worker: 'worker-1', state: 'RUNNING', operation: 'TestSleep' });
  cluster.kill('worker-1', 'SIGKILL');
  t.equal(await cluster.exited('worker-1'), null, 'killed');
  cluster.startWorker('worker-1');
  t.equal((await handle.result<CountProduct>()).count, ROWS, 'the same count as an undisturbed run');
  t.equal(countLog(join(dir, 'worker-1.log'), /fault injection/), 1, 'no fault came back with the restarted worker');
});

t.test('bytes rotting on the scheduler disk are refused and produced again', async (t) => {
  cluster.kill('worker-2', 'SIGSTOP');
  const handle = await project.submit([steps.parallel({ kind: 'Noop' }), steps.finalize({ kind: 'Noop' })]);
  try {
    await waitForJob(handle, { worker: 'worker-1', state: 'COMPLETED' });
    const job = handle.status.jobs.find((j) => j.worker === 'worker-1') ?? t.fail('no job');
    // The COMPLETED push goes before the barrier that commits the row (progress promises nothing):
    // another connection sees the row once that barrier ran, a few event-loop turns later.
    const db = openSqlite(join(dir, 'scheduler', 'scheduler.sqlite'), { readonly: true, fileMustExist: true });
    let row: { id: string } | undefined;
    try {
      await until(() => {
        row = db.prepare('SELECT id FROM resources WHERE job_id = ?').get((job as { id: string }).id) as { id: string } | undefined;
        return row !== undefined;
      }, 10_000, "worker-1's resource row, committed");
    } finally {
      db.close();
    }
    rotStoredBytes(join(dir, 'scheduler'), (row as { id: string }).id, 'rotten bytes');
  } finally {
    cluster.kill('worker-2', 'SIGCONT');
  }
  const status = await handle.done();
  t.equal(status.state, 'COMPLETED');
  t.same(await wb.result(handle.id), { products: 3 }, 'the final job got all three products');
  t.ok((status.jobs.find((j) => j.worker === 'worker-1')?.attempt ?? 0) >= 2, "worker-1's product was made again");
  t.match(readFileSync(join(dir, 'scheduler.log'), 'utf8'), /resource failed its checksum/, 'the scheduler saw the rot');
});

t.test('a cancel the worker missed while it was away reaches it when it comes back', async (t) => {
  const handle = await project.submit([steps.parallel({ kind: 'TestSleep', ms: LONG_SLEEP_MS }), steps.finalize({ kind: 'Noop' })]);
  await waitForJob(handle, { worker: 'worker-2', state: 'RUNNING' });
  const job = handle.status.jobs.find((j) => j.worker === 'worker-2' && j.operation === 'TestSleep');
  if (!job) return t.fail('no job of worker-2');
  // Frozen, worker-2 misses its heartbeats and the scheduler drops it: the cancel cannot reach it.
  const schedulerLog = join(dir, 'scheduler.log');
  const leftBefore = countLog(schedulerLog, /"nodeId":"worker-2".*"msg":"worker left"/);
  cluster.kill('worker-2', 'SIGSTOP');
  await waitForLog(schedulerLog, /"nodeId":"worker-2".*"msg":"worker left"/, { count: leftBefore + 1, what: 'the scheduler to drop the frozen worker-2' });
  t.equal((await handle.cancel()).state, 'CANCELLED');
  cluster.kill('worker-2', 'SIGCONT');
  // Back, it announces the attempt it still holds; the scheduler tells it the artifact is over.
  const id = job.id.replace(/[.]/g, '\\.');
  await waitForLog(join(dir, 'worker-2.log'), new RegExp(`"jobId":"${id}".*"msg":"job cancelled"`), { what: `worker-2 to be told to cancel ${job.id}` });
  t.pass('the missed cancel reached worker-2 when it came back');
});

t.test('a worker that never comes back', async (t) => {
  // Two attempts each: every attempt of worker-3 fails the same way (it is gone), so the counts
  // below are exact; the wait is grace x attempts, paid here on purpose.
  const strict = await project.submit({
    steps: [steps.parallel({ kind: 'TestSleep', ms: 1500 }), steps.finalize({ kind: 'Noop' })],
    policy: { maxAttempts: 2 },
  });
  const tolerant = await project.submit({
    steps: [{ kind: 'Parallel', operation: { kind: 'TestSleep', ms: 1500 }, quorum: '60%' }, steps.finalize({ kind: 'Noop' })],
    policy: { maxAttempts: 2 },
  });
  const leftOutEvents: string[] = [];
  tolerant.on('event', (e) => {
    if (e.event.kind === 'jobState' && e.event.leftOut) leftOutEvents.push(e.event.worker);
  });
  await Promise.all([waitForJob(strict, { worker: 'worker-3', state: 'RUNNING' }), waitForJob(tolerant, { worker: 'worker-3', state: 'RUNNING' })]);
  cluster.kill('worker-3', 'SIGKILL');

  await t.rejects(strict.done(), { code: 'WORKER_LOST' });
  const s = await wb.status(strict.id);
  t.equal(s.state, 'ERROR');
  t.equal(s.error?.worker, 'worker-3', 'the error names the worker');
  t.equal(s.error?.error.code, 'WORKER_LOST');
  const lost = s.jobs.find((j) => j.worker === 'worker-3');
  t.equal(lost?.attempt, 2, 'ERROR after grace on each of its attempts, no more');
  t.equal(lost?.lastError?.code, 'WORKER_LOST');
  t.ok(
    s.jobs.filter((j) => j.operation === 'TestSleep' && j.worker !== 'worker-3').every((j) => j.attempt === 1),
    'the workers that stayed were not retried',
  );

  const done = await tolerant.done();
  t.equal(done.state, 'COMPLETED', 'the quorum let it finish');
  t.same(
    done.jobs.filter((j) => j.leftOut).map((j) => j.worker),
    ['worker-3'],
    'the status says which worker was left out',
  );
  t.same(await wb.result(tolerant.id), { products: 2 }, 'finished with the products it had');
  t.same(leftOutEvents, ['worker-3'], 'the pushed events said so, once');
  await waitFor(async () => !(await wb.nodes()).find((n) => n.id === 'worker-3')?.connected, { what: 'worker-3 shown as gone' });
});
