// Why: two schedulers on one PostgreSQL store, one active and one standby (docs/DEPLOY.md). When
// the active one is SIGKILLed mid-artifact, the standby must take over (it holds the lease once
// the dead one's lapses), resume the artifact from the store as a restarted scheduler does, and
// give the result an undisturbed run gives, while workers and the workbench, configured with both
// URLs, follow it. And a leader frozen past its lease (SIGSTOP) must not write once thawed: the
// lease fences its commits, and it exits (fail-stop) instead of going on. A clean stop gives the
// lease up, so the standby takes over at once.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import t, { type Test } from 'tap';
import { FAIL_STOP_EXIT_CODE } from '../../lib/node.ts';
import type { ArtifactHandle, CountProduct } from '../../lib/workbench.ts';
import { loadModel, models } from '../../lib/workbench.ts';
import { readCsv } from '../helpers/central.ts';
import { countLog, PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster, waitFor, waitForLog, within } from '../helpers/cluster.ts';
import { testDatabase } from '../helpers/postgres.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const WORKERS = ['worker-1', 'worker-2'];
const LABEL = 'MedHouseValDiscrete';
const features = readCsv(SHARDS[0] as string).columns.filter((c) => c !== LABEL);
// FedAvg: many rounds, each a Train on both workers and an Aggregation on the initiator, so a
// kill lands mid-way; the same seed gives the same weights, bit for bit.
const fedAvg = () => models.logisticRegression({ features, label: LABEL, rounds: 20, epochs: 1, learningRate: 0.1, batchSize: 32, seed: 11 });
const weightsOf = (result: unknown) => {
  const m = loadModel(result).model;
  return m.type === 'logisticRegression' ? Array.from(m.weights) : [];
};
// Generous: what a scheduler gives its workers to come back, and a submit to wait for holders.
const GRACE_MS = 120_000;

const storeUrl = await testDatabase(t, 'failover');
const { cluster, wb, token, dir } = await testCluster(t, 'failover', {
  ha: { storeUrl },
  workers: SHARDS.map((f, i) => ({ name: WORKERS[i] as string, files: [f] })),
  scheduler: { retry: { initial_interval_ms: 100, max_interval_ms: 1000, worker_grace_ms: GRACE_MS }, plan: { holder_wait_ms: GRACE_MS } },
});
const project = await wb.project(token);
const logOf = (name: string) => join(dir, `${name}.log`);
/** The time (pino's epoch ms) of the last line of a node's log matching `pattern`. */
const lastTime = (name: string, pattern: RegExp) => {
  const line = readFileSync(logOf(name), 'utf8').split('\n').filter((l) => pattern.test(l)).at(-1);
  return line ? (JSON.parse(line) as { time: number }).time : Number.NaN;
};
const ACTIVE = /active: this scheduler holds the lease/;

const undisturbed = weightsOf(await (await project.submit(fedAvg())).result());

/** Waits until a third of the artifact's jobs are done, and says it is not finished yet. */
async function midway(t: Test, handle: ArtifactHandle): Promise<void> {
  await waitFor(() => handle.status.progress.completed * 3 >= handle.status.progress.total, { what: `a third of ${handle.id} done` });
  t.not(handle.status.state, 'COMPLETED', `mid-way: ${handle.status.progress.completed}/${handle.status.progress.total} jobs done`);
}

t.test('SIGKILL the active scheduler mid-artifact: the standby takes over, the result equals an undisturbed run', async (t) => {
  const handle = await project.submit(fedAvg());
  await midway(t, handle);
  const activeBefore = countLog(logOf('scheduler-b'), ACTIVE);
  const killedAt = Date.now();
  cluster.kill('scheduler-a', 'SIGKILL');
  t.equal(await cluster.exited('scheduler-a'), null, 'scheduler-a was killed');
  await waitForLog(logOf('scheduler-b'), ACTIVE, { count: activeBefore + 1, what: 'scheduler-b to take the lease' });
  const takeover = lastTime('scheduler-b', ACTIVE) - killedAt;
  const result = await within(handle.result(), { what: `the result of ${handle.id} under scheduler-b` });
  const done = Date.now() - killedAt;
  t.comment(`failover (lease 4 s): kill -> standby active ${(takeover / 1000).toFixed(2)} s, kill -> artifact done ${(done / 1000).toFixed(2)} s`);
  t.same(weightsOf(result), undisturbed, 'the same weights as the undisturbed run, bit for bit');
  t.equal((await wb.status(handle.id)).state, 'COMPLETED');
  // The operator's supervisor starts the killed one again: it comes back as the standby.
  const standbyBefore = countLog(logOf('scheduler-a'), /standby: another scheduler is active/);
  void cluster.startScheduler('scheduler-a').catch(() => {});
  await waitForLog(logOf('scheduler-a'), /standby: another scheduler is active/, { count: standbyBefore + 1, what: 'scheduler-a back as a standby' });
});

t.test('SIGSTOP the active past its lease: the standby takes over; thawed, the old one lands nothing and exits', async (t) => {
  // scheduler-b is active now, scheduler-a its standby.
  const handle = await project.submit(fedAvg());
  await midway(t, handle);
  const activeBefore = countLog(logOf('scheduler-a'), ACTIVE);
  cluster.kill('scheduler-b', 'SIGSTOP');
  await waitForLog(logOf('scheduler-a'), ACTIVE, { count: activeBefore + 1, what: 'scheduler-a to take the lease from the frozen scheduler-b' });
  const result = await within(handle.result(), { what: `the result of ${handle.id} under scheduler-a` });
  t.same(weightsOf(result), undisturbed, 'the run went on under scheduler-a: the same weights');

  // What the store holds now, with the artifact finished under scheduler-a.
  const snapshot = async () => {
    const c = new pg.Client({ connectionString: storeUrl });
    await c.connect();
    try {
      const jobs = await c.query('SELECT id, state, attempt FROM jobs WHERE artifact_id = $1 ORDER BY id', [handle.id]);
      const artifact = await c.query('SELECT state, result_resource_id FROM artifacts WHERE id = $1', [handle.id]);
      const lease = await c.query('SELECT holder, epoch FROM scheduler_lease');
      return { jobs: jobs.rows, artifact: artifact.rows, lease: lease.rows };
    } finally {
      await c.end();
    }
  };
  const before = await snapshot();
  t.match(before.lease[0]?.holder, /^scheduler-a@/, 'the lease is scheduler-a\'s');

  cluster.kill('scheduler-b', 'SIGCONT');
  const code = await within(cluster.exited('scheduler-b'), { what: 'the thawed scheduler-b to exit' });
  t.equal(code, FAIL_STOP_EXIT_CODE, `the thawed scheduler-b stopped itself (exit ${FAIL_STOP_EXIT_CODE})`);
  // One line says why, by whichever came first after the thaw: its lease renewal or its next
  // commit found the lease taken over (`fenced: …`), or PostgreSQL had ended its session, idle in
  // its open transaction while frozen, so the store gave that transaction up.
  const stops = readFileSync(logOf('scheduler-b'), 'utf8')
    .split('\n')
    .filter((l) => /"level":60/.test(l));
  t.equal(stops.length, 1, 'with one line');
  t.match(stops[0], /fenced: (a commit|the renewal) found the lease taken over: this scheduler \(scheduler-b@[^,]+, epoch 2\) must not write again|the store gave up its open transaction/);
  const how = /a commit found/.test(stops[0] ?? '') ? 'its next commit (the fence refused it)' : /the renewal/.test(stops[0] ?? '') ? 'its lease renewal' : 'its store (its session ended while frozen)';
  t.comment(`scheduler-b learnt it by ${how}`);
  t.same(await snapshot(), before, 'nothing of the old leader landed: the artifact, its jobs and the lease are as scheduler-a left them');
  t.equal((await wb.status(handle.id)).state, 'COMPLETED');
});

t.test('SIGTERM the active: it exits 0 and gives the lease up, and the standby takes over', async (t) => {
  // scheduler-a is active; the fenced scheduler-b is started again by its supervisor: a standby.
  const standbyBefore = countLog(logOf('scheduler-b'), /standby: another scheduler is active/);
  void cluster.startScheduler('scheduler-b').catch(() => {});
  await waitForLog(logOf('scheduler-b'), /standby: another scheduler is active/, { count: standbyBefore + 1, what: 'scheduler-b back as a standby' });
  const activeBefore = countLog(logOf('scheduler-b'), ACTIVE);
  const stoppedAt = Date.now();
  t.equal(await cluster.signal('scheduler-a', 'SIGTERM'), 0, 'scheduler-a stopped cleanly');
  await waitForLog(logOf('scheduler-b'), ACTIVE, { count: activeBefore + 1, what: 'scheduler-b to take the released lease' });
  t.comment(`SIGTERM of the active -> standby active ${((lastTime('scheduler-b', ACTIVE) - stoppedAt) / 1000).toFixed(2)} s (released, not lapsed)`);
  const handle = await project.count();
  const count = await within(handle.result<CountProduct>(), { what: 'a count under scheduler-b' });
  t.ok(count.count > 0, 'and it serves the workbench');
});
