// Why: a long CPU-bound operation must not hold up a worker. Its JavaScript runs on the worker's
// compute pool (lib/ops/pool.ts), so heartbeats (here every second) and other jobs' work go on
// meanwhile: no worker is declared lost and a count completes. And a cancel must stop the work,
// not only the report: the worker logs that the cancelled job stopped, and the next count runs.
import { join } from 'node:path';
import t from 'tap';
import type { CountProduct } from '../../lib/workbench.ts';
import { steps } from '../../lib/workbench.ts';
import { countLog, LONG_SLEEP_MS, PROCESS_FILE_TIMEOUT_MS, SHARDS, sleep, testCluster, waitForJob, waitForLog } from '../helpers/cluster.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

/** Several heartbeats long: a loop held this long would miss its pongs and lose the link. */
const SPIN_MS = 8_000;
const HEARTBEAT_MS = 1_000;
const WORKERS = ['worker-1', 'worker-2'];

t.test('a long CPU-bound job keeps heartbeats and other jobs flowing, and cancel stops it', async (t) => {
  const { wb, token, dir } = await testCluster(t, 'pool', {
    workers: SHARDS.map((f, i) => ({ name: `worker-${i + 1}`, files: [f], extra: { heartbeat_ms: HEARTBEAT_MS, compute: { threads: 1 } } })),
    scheduler: { heartbeat_ms: HEARTBEAT_MS, retry: { initial_interval_ms: 50 } },
  });
  const project = await wb.project(token);
  const rows = (await (await project.count()).result<CountProduct>()).count;
  const log = (w: string) => join(dir, `${w}.log`);
  const lost = () => WORKERS.reduce((n, w) => n + countLog(log(w), /lost the scheduler/), 0);
  const allConnected = async () => {
    const nodes = await wb.nodes();
    return WORKERS.every((w) => nodes.find((n) => n.id === w)?.connected === true);
  };

  // 1. A spin of several heartbeats, to its end; a count submitted while it spins completes.
  const spin = await project.submit([steps.parallel({ kind: 'TestSpin', ms: SPIN_MS }), steps.finalize({ kind: 'Noop' })]);
  await Promise.all(WORKERS.map((worker) => waitForJob(spin, { worker, state: 'RUNNING' })));
  const watching = { connectedEveryTime: true, checks: 0 };
  const watch = (async () => {
    do {
      watching.connectedEveryTime &&= await allConnected();
      watching.checks++;
      await sleep(100); // pacing only: the loop ends on the spin's completion
    } while (spin.status.state !== 'COMPLETED' && spin.status.state !== 'ERROR');
  })();
  t.equal((await (await project.count()).result<CountProduct>()).count, rows, 'a count completes while both workers spin');
  t.same(await spin.result(), { products: 2 }, 'the spin completed: two products, finalized');
  await watch;
  t.ok(watching.connectedEveryTime, `every listing of the nodes during the spin showed both connected (${watching.checks} listings)`);
  t.equal(lost(), 0, 'no worker lost its link to the scheduler');
  t.notOk(spin.status.jobs.some((j) => (j.attempt ?? 1) > 1), 'no job needed a second attempt');

  // 2. A spin that would outlast the test, cancelled: the work stops, and the next count runs.
  const long = await project.submit([steps.parallel({ kind: 'TestSpin', ms: LONG_SLEEP_MS }), steps.finalize({ kind: 'Noop' })]);
  await Promise.all(WORKERS.map((worker) => waitForJob(long, { worker, state: 'RUNNING' })));
  t.equal((await (await project.count()).result<CountProduct>()).count, rows, 'a count completes beside the long spin');
  t.equal(long.status.state, 'RUNNING', 'while the long spin still runs on both workers');
  const status = await long.cancel();
  t.equal(status.state, 'CANCELLED');
  for (const worker of WORKERS) {
    const job = status.jobs.find((j) => j.worker === worker && j.operation === 'TestSpin');
    const id = (job?.id ?? 'none').replace(/[.]/g, '\\.');
    await waitForLog(log(worker), new RegExp(`"jobId":"${id}".*"msg":"job cancelled"`), { what: `${worker} to be told to cancel ${job?.id}` });
    await waitForLog(log(worker), new RegExp(`"jobId":"${id}".*"msg":"cancelled job stopped"`), { what: `${worker} to stop the cancelled spin` });
  }
  t.equal((await (await project.count()).result<CountProduct>()).count, rows, 'the next count completes');
  const after = await wb.status(long.id);
  t.notOk(after.jobs.some((j) => j.state === 'COMPLETED'), 'the cancelled attempts were never reported as completed');
  t.equal(lost(), 0, 'no worker lost its link to the scheduler');
  t.ok(await allConnected(), 'both workers still connected');
});
