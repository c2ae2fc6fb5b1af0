// Why: the product's promise is that a federated statistic equals the central one. This test runs
// it the way a user does: a scheduler and two workers as real processes on loopback, with the
// California shards, driven by the workbench library over WebSockets.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Cluster, EXAMPLE_DATA } from '../../lib/sim/cluster.ts';
import type { CountProduct, GroupCountProduct, MeanProduct } from '../../lib/workbench.ts';
import { steps, where, } from '../../lib/workbench.ts';
import { column, mean, readCsv, relErr, union } from '../helpers/central.ts';
import { LONG_SLEEP_MS, PROCESS_FILE_TIMEOUT_MS, waitForJob, waitForLog } from '../helpers/cluster.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const shards = ['california_housing.MedInc1.csv', 'california_housing.MedInc2.csv'].map((f) => join(EXAMPLE_DATA, f));
const all = union(...shards.map(readCsv));
const token = randomBytes(16).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'fdl-e2e-'));

const cluster = await Cluster.start({
  dir,
  projectName: 'california',
  projectToken: token,
  workers: shards.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })),
  scheduler: { retry: { initial_interval_ms: 50 } },
  // The cancel test waits for the workers' info lines (CI runs with FDL_LOG_LEVEL=warn).
  env: { FDL_LOG_LEVEL: 'info' },
});
const wb = await cluster.connect();
t.teardown(async () => {
  wb.close();
  const codes = await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
  void codes;
});

t.test('the project shows aggregated metadata of both workers, no rows', async (t) => {
  const project = await wb.project(token);
  t.equal(project.info.workers, 2);
  t.equal(project.info.rows, all.rows.length);
  t.same(project.numericFeatures(), all.columns);
  const medInc = project.info.features.find((f) => f.name === 'MedInc');
  t.ok(medInc && relErr(medInc.mean as number, mean(column(all, 'MedInc'))) < 1e-9, 'row-weighted mean of MedInc');
  t.same(project.info.features.find((f) => f.name === 'MedHouseValDiscrete')?.categories, [0, 1]);
});

t.test('federated count equals the central count', async (t) => {
  const project = await wb.project(token);
  const handle = await project.count();
  const events: string[] = [];
  handle.on('event', (e) => events.push(e.event.kind === 'jobState' ? `${e.event.worker}:${e.event.state}` : e.event.state));
  const result = await handle.result<CountProduct>();
  t.equal(result.count, all.rows.length);
  t.ok(events.includes('COMPLETED'), 'the artifact state was pushed');
  t.ok(events.some((e) => e === 'worker-1:COMPLETED') && events.some((e) => e === 'worker-2:COMPLETED'), 'job states were pushed');
  t.equal(handle.status.state, 'COMPLETED');
  t.equal(handle.status.jobs.length, 4, 'Sequential with 2 workers: init, 2 workers, final');
});

t.test('federated count with a filter', async (t) => {
  const project = await wb.project(token);
  const age = column(all, 'HouseAge');
  const inc = column(all, 'MedInc');
  const expected = age.filter((a, i) => a > 30 && (inc[i] as number) <= 5).length;
  const handle = await project.count({ where: { and: [where('HouseAge', '>', 30), where('MedInc', '<=', 5)] } });
  t.equal((await handle.result<CountProduct>()).count, expected);
});

t.test('federated mean of every feature equals the central mean (1e-12 relative: one exact masked sum, docs/OPERATIONS.md)', async (t) => {
  const project = await wb.project(token);
  const result = await (await project.mean()).result<MeanProduct>();
  for (const f of all.columns) {
    const central = mean(column(all, f));
    t.ok(relErr(result.mean[f] as number, central) <= 1e-12, `${f}: ${result.mean[f]} vs ${central} (rel ${relErr(result.mean[f] as number, central).toExponential(1)})`);
    t.equal(result.count[f], all.rows.length, `${f} count`);
  }
});

t.test('federated group count equals the central group count', async (t) => {
  const project = await wb.project(token);
  const result = await (await project.groupCount(['MedHouseValDiscrete'])).result<GroupCountProduct>();
  const label = column(all, 'MedHouseValDiscrete');
  t.same(result.groups, [
    { key: [0], count: label.filter((v) => v === 0).length },
    { key: [1], count: label.filter((v) => v === 1).length },
  ]);
});

t.test('a failing operation is retried, and the status shows the attempts', async (t) => {
  const project = await wb.project(token);
  const handle = await project.submit([steps.parallel({ kind: 'TestFail', failAttempts: 1 }), steps.finalize({ kind: 'Noop' })]);
  const status = await handle.done();
  t.equal(status.state, 'COMPLETED');
  const parallel = status.jobs.filter((j) => j.operation === 'TestFail');
  t.equal(parallel.length, 2);
  for (const j of parallel) {
    t.equal(j.attempt, 2, `${j.worker} needed 2 attempts`);
    t.equal(j.lastError?.code, 'OPERATION_FAILED');
  }
});

t.test('a job out of attempts puts the artifact in ERROR, naming job, worker and cause', async (t) => {
  const project = await wb.project(token);
  const handle = await project.submit({
    steps: [steps.parallel({ kind: 'TestFail', failAttempts: 5 }), steps.finalize({ kind: 'Noop' })],
    policy: { maxAttempts: 2 },
  });
  await t.rejects(handle.done(), { code: 'OPERATION_FAILED' });
  const status = await wb.status(handle.id);
  t.equal(status.state, 'ERROR');
  t.match(status.error, { worker: /^worker-/, jobId: /\.\d+$/, error: { code: 'OPERATION_FAILED' } });
  t.equal(status.jobs.find((j) => j.id === status.error?.jobId)?.attempt, 2);
});

t.test('impossible plans are refused at submit time with a clear error', async (t) => {
  const project = await wb.project(token);
  await t.rejects(
    project.submit([steps.parallel({ kind: 'Noop' }, { kind: 'Collect', encryption: false }), steps.parallel({ kind: 'Noop' })]),
    { code: 'INVALID_ARTIFACT', message: /Collect/ },
  );
  await t.rejects(wb.submit('no-such-token-123', { steps: [steps.finalize({ kind: 'Noop' })] }), { code: 'UNKNOWN_PROJECT' });
  await t.rejects(project.submit({ steps: [] }), { code: 'INVALID_ARTIFACT' });
});

t.test('a feature the project lacks is refused at submit time, naming the step and field', async (t) => {
  const project = await wb.project(token);
  await t.rejects(project.count({ where: where('NoSuchFeature', '>', 1) }), {
    code: 'INVALID_ARTIFACT',
    path: 'steps[0].operation.query.where.feature',
    message: /step steps\[0\] \(Sequential\).*no feature "NoSuchFeature"/,
  });
  await t.rejects(project.mean(['MedInc', 'Nope']), { code: 'INVALID_ARTIFACT', path: 'steps[0].init.features[1]' });
});

t.test('a policy override that clashes with the scheduler defaults is refused with a reason', async (t) => {
  const project = await wb.project(token);
  await t.rejects(project.submit({ steps: [steps.finalize({ kind: 'Noop' })], policy: { initialIntervalMs: 40_000 } }), {
    code: 'INVALID_ARTIFACT',
    path: 'policy.initialIntervalMs',
    message: /policy\.initialIntervalMs: 40000 must not exceed maxIntervalMs \(30000\) \(with this scheduler's defaults\)/,
  });
});

t.test('a bad query value fails on the worker without retries, naming the field', async (t) => {
  const project = await wb.project(token);
  const handle = await project.count({ where: where('HouseAge', '>', 'old') });
  await t.rejects(handle.done(), { code: 'BAD_QUERY' });
  const status = await wb.status(handle.id);
  const failed = status.jobs.find((j) => j.state === 'ERROR');
  t.equal(failed?.attempt, 1, 'a non-retryable error is not retried');
  t.match(failed?.lastError?.path, /where/);
});

t.test('cancel stops the jobs on every worker; nothing of it runs afterwards', async (t) => {
  const project = await wb.project(token);
  // The sleeps outlast the test and the cancel waits for them to run: a cancel, never a finish.
  const handle = await project.submit([steps.parallel({ kind: 'TestSleep', ms: LONG_SLEEP_MS }), steps.finalize({ kind: 'Noop' })]);
  const workers = ['worker-1', 'worker-2'];
  await Promise.all(workers.map((worker) => waitForJob(handle, { worker, state: 'RUNNING' })));
  const status = await handle.cancel();
  t.equal(status.state, 'CANCELLED');
  await t.rejects(handle.done(), { code: 'CANCELLED' });
  for (const worker of workers) {
    const job = status.jobs.find((j) => j.worker === worker && j.operation === 'TestSleep');
    const id = (job?.id ?? 'none').replace(/[.]/g, '\\.');
    await waitForLog(join(dir, `${worker}.log`), new RegExp(`"jobId":"${id}".*"msg":"job cancelled"`), { what: `${worker} to be told to cancel ${job?.id}` });
  }
  const later = await wb.status(handle.id);
  t.equal(later.state, 'CANCELLED', 'still cancelled once every worker was told');
  t.equal(later.jobs.find((j) => j.operation === 'Noop')?.state, 'WAITING', 'the final job never ran');
  t.notOk(later.jobs.some((j) => j.state === 'COMPLETED'), 'no report was taken');
  t.equal((await wb.cancel(handle.id)).state, 'CANCELLED', 'cancelling again is harmless');
});
