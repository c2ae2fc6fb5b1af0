// Why: workers, workbenches and the fdl command are given an active scheduler and its standby
// (docs/DEPLOY.md). Whichever of the two is not active refuses the dial (a standby does not
// listen), so each client must move on to the next URL and work as with one. Here the first URL
// is one nothing listens on: each kind of client, as a real process or over a real socket, gets
// through to the live scheduler behind it.
import t from 'tap';
import { freePort } from '../../lib/sim/cluster.ts';
import { Workbench } from '../../lib/workbench.ts';
import { PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster, waitForLog } from '../helpers/cluster.ts';
import { runFdl } from '../helpers/fdl.ts';
import { join } from 'node:path';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

t.test('a worker, a workbench and fdl with a dead URL first reach the scheduler behind it', async (t) => {
  const { cluster, dir } = await testCluster(t, 'urls', { workers: [] });
  const dead = `ws://127.0.0.1:${await freePort()}`;
  cluster.opts.workers.push({
    name: 'w1',
    files: [SHARDS[0] as string],
    extra: { scheduler: { urls: [dead, cluster.url], join_token: cluster.joinToken } },
  });
  cluster.startWorker('w1');
  await cluster.waitForWorkers(['w1']);
  await waitForLog(join(dir, 'w1.log'), new RegExp(`^(?=.*cannot reach the scheduler; retrying)(?=.*"url":"${dead}")`), { what: 'w1 to log its refused dial of the dead URL' });

  const wb = await Workbench.connect([dead, cluster.url], { token: cluster.workbenchToken, reconnect: false });
  t.teardown(() => wb.close());
  t.equal(wb.url, cluster.url, 'the workbench is on the live URL');
  const project = await wb.project(cluster.opts.projectToken);
  const handle = await project.count();
  const count = (await handle.result()) as { count: number };
  t.ok(count.count > 0, `the worker ran the job: count ${count.count}`);

  const status = await runFdl(['status', handle.id, '--url', `${dead},${cluster.url}`, '--token', cluster.workbenchToken]);
  t.equal(status.code, 0, status.stderr);
  t.match(status.stdout, new RegExp(`artifact ${handle.id}.*COMPLETED`));
  const env = await runFdl(['status', handle.id, '--token', cluster.workbenchToken], { FDL_URL: `${dead}, ${cluster.url}` });
  t.equal(env.code, 0, `FDL_URL with a comma: ${env.stderr}`);

  const none = await runFdl(['status', handle.id, '--url', `${dead},${dead}`, '--token', cluster.workbenchToken]);
  t.equal(none.code, 1);
  t.match(none.stderr, `cannot reach the scheduler at ${dead}, ${dead}`, 'none reachable: one line naming both');
  const bad = await runFdl(['status', handle.id, '--url', `${dead},http://x`, '--token', cluster.workbenchToken]);
  t.match(bad.stderr, /--url: "http:\/\/x" is not a ws:\/\/ or wss:\/\/ URL/);
});
