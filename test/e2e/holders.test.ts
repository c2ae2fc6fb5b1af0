// Why: a federated figure is only worth publishing if it covers all the data or says it does not.
// A plan needs every known holder of the project's data (a worker that ever announced a data
// source for it), not only those connected now: a submit while a holder is away waits for it
// (plan.holder_wait_ms) and then fails naming it; a holder back within the wait is waited for and
// counted. Only an explicit quorum lets an artifact go on without it, and then the result's
// provenance names who and how many rows it covers and what it left out. Real processes.
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { CountProduct, Provenance } from '../../lib/workbench.ts';
import type { Step } from '../../protocols/entities.ts';
import { readCsv } from '../helpers/central.ts';
import { PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster, WAIT_MS, waitFor, waitForLog, within } from '../helpers/cluster.ts';
import { runFdl } from '../helpers/fdl.ts';

t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const rowsOf = SHARDS.map((f) => readCsv(f).rows.length);
const ALL = (rowsOf[0] ?? 0) + (rowsOf[1] ?? 0);
// Short for the refusal (nothing comes back: the test waits for the refusal itself), then generous.
const SHORT_WAIT_MS = 1500;

const { cluster, wb, token, dir } = await testCluster(t, 'holders', {
  workers: SHARDS.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })),
  scheduler: { plan: { holder_wait_ms: SHORT_WAIT_MS } },
});
const schedulerLog = join(dir, 'scheduler.log');
const connected = async (id: string) => (await wb.nodes()).find((n) => n.id === id)?.connected === true;
const stopWorker2 = async (t: Test) => {
  t.equal(await cluster.signal('worker-2', 'SIGTERM'), 0, 'worker-2 stopped');
  await waitFor(async () => !(await connected('worker-2')), { what: 'the scheduler to see worker-2 gone' });
};

t.test('a submit while a holder is away waits, then fails with HOLDERS_MISSING naming it', async (t) => {
  // A listing counts the connected holders; the second is answered by the Connection from the
  // listing the Scheduler published, which a leave makes stale.
  t.match(await wb.projects(), [{ workers: 2 }], 'listed over both holders');
  t.match(await wb.projects(), [{ workers: 2 }], 'and again');
  await stopWorker2(t);
  t.match(await wb.projects(), [{ workers: 1 }], 'worker-2 left: the listing counts one holder');
  const project = await wb.project(token);
  t.equal(project.info.workers, 2, "the project's data is still both holders' (the away one as it announced itself)");
  await t.rejects(project.count(), { code: 'HOLDERS_MISSING', message: /worker-2/ }, 'refused, naming the missing holder');
  t.equal((await wb.artifacts()).length, 0, 'nothing was stored or run');
  await waitForLog(schedulerLog, /submit waits for holders/, { what: 'the scheduler to have waited' });
  await waitForLog(schedulerLog, /submit refused: holders of the project stayed away/);
});

t.test('the holder comes back within the wait: the submit goes on over all the data', async (t) => {
  // A generous wait from now on: a worker process must start and join within it.
  (cluster.opts.scheduler as Record<string, unknown>).plan = { holder_wait_ms: WAIT_MS };
  t.equal(await cluster.signal('scheduler', 'SIGTERM'), 0);
  await cluster.startScheduler();
  await cluster.waitForWorkers(['worker-1']);
  const project = await wb.project(token);
  const submitted = project.count();
  await waitForLog(schedulerLog, /submit waits for holders/, { count: 2, what: 'the submit to wait for worker-2' });
  cluster.startWorker('worker-2');
  const handle = await within(submitted, { what: 'the submit to be accepted once worker-2 is back' });
  t.same(
    handle.status.jobs.map((j) => j.worker),
    ['scheduler', 'worker-1', 'worker-2', 'scheduler'],
    'the plan binds both holders',
  );
  const result = await handle.result<CountProduct>();
  t.equal(result.count, ALL, 'counted over both holders');
  const p = result.provenance as Provenance;
  t.ok(p?.complete, 'the provenance says it is complete');
  t.same(p.included, ['worker-1', 'worker-2']);
  t.same(
    p.workers.map((w) => ({ nodeId: w.nodeId, rows: w.rows })),
    [
      { nodeId: 'worker-1', rows: rowsOf[0] },
      { nodeId: 'worker-2', rows: rowsOf[1] },
    ],
    'the rows each holder read, as its job reported them',
  );
  t.equal(p.rows, ALL);
  t.same(Object.keys(result), ['count'], 'the provenance does not change the value');
});

t.test('with a quorum the artifact goes on without the away holder; status, result and fdl result say what it covers', async (t) => {
  await stopWorker2(t);
  const model = { type: 'logisticRegression' as const, features: ['MedInc', 'HouseAge'], label: 'MedHouseValDiscrete', epochs: 1, seed: 42 };
  const steps: Step[] = [
    { kind: 'Initialize', operation: { kind: 'InitModel', model }, distribution: { kind: 'Distribute', encryption: false } },
    { kind: 'Parallel', operation: { kind: 'Train', model }, quorum: 1, distribution: { kind: 'Collect', encryption: false } },
    { kind: 'Finalize', operation: { kind: 'Aggregation', model } },
  ];
  const handle = await (await wb.project(token)).submit(steps);
  const done = await handle.done();
  // Since protocol 7 the handle's final status is built from the pushes: it must be the store's.
  t.same(done, await wb.status(handle.id), 'the final status from the pushes is the one getStatus answers');
  const away = done.jobs.find((j) => j.worker === 'worker-2');
  t.ok(away?.leftOut, "worker-2's job is left out");
  t.equal(away?.attempt, 0, 'at once, without an attempt');
  t.equal(away?.lastError?.message, 'worker worker-2 was away when the artifact was submitted and has not come back');
  const p = done.provenance as Provenance;
  t.notOk(p.complete, 'the status says the result is not over all the data');
  t.same(p.included, ['worker-1']);
  t.same(p.leftOut, ['worker-2']);
  t.same(p.leftOutJobs, [away?.id]);
  t.equal(p.rows, rowsOf[0], "the included rows: worker-1's");
  t.same(p.seeds, { model: [42], split: [] });
  t.same((await handle.result<object>()).provenance, p, 'the result carries the same provenance');

  const env = { FDL_URL: cluster.url, FDL_TOKEN: cluster.workbenchToken };
  const json = await runFdl(['result', handle.id, '--json'], env);
  t.equal(json.code, 0, json.stderr);
  const printed = JSON.parse(json.stdout) as { id: string; provenance: Provenance };
  t.equal(printed.id, handle.id);
  t.same(printed.provenance, p, 'fdl result --json includes it');
  const plain = await runFdl(['result', handle.id], env);
  t.equal(plain.code, 0, plain.stderr);
  t.match(plain.stderr, new RegExp(`provenance: 1 of 2 holders \\(worker-1\\), ${rowsOf[0]} rows; LEFT OUT: worker-2 \\(1 jobs\\); seeds model 42`), 'fdl result prints a provenance line');
});

t.test('a holder that left for good is forgotten by the operator: plans stop waiting for it', async (t) => {
  t.notOk(await connected('worker-2'), 'worker-2 is still away');
  const forget = await runFdl(['nodes', 'forget', 'worker-2', '--config', join(dir, 'scheduler.yaml')]);
  t.equal(forget.code, 0, forget.stderr);
  t.match(forget.stdout, /forgot worker-2 as a holder of 1 project/);
  const handle = await (await wb.project(token)).count();
  t.same(handle.status.jobs.map((j) => j.worker), ['scheduler', 'worker-1', 'scheduler'], 'bound without waiting, over the holder left');
  const result = await handle.result<CountProduct>();
  t.equal(result.count, rowsOf[0]);
  t.ok(result.provenance?.complete, 'complete: it covers every known holder');
  t.equal(result.provenance?.rows, rowsOf[0]);
});
