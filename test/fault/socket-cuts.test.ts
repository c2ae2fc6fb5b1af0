// Why: a worker on a flaky network loses its socket again and again. Twenty artifacts submitted over three seconds, at
// once while one worker's connection is cut every 0.7 s must all complete with the central figures:
// re-sent assignments run once (a duplicate run would be counted twice and show in the sums).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { CountProduct, GroupCountProduct, MeanProduct } from '../../lib/workbench.ts';
import { where } from '../../lib/workbench.ts';
import { column, mean, readCsv, relErr, union } from '../helpers/central.ts';
import { countLog, PROCESS_FILE_TIMEOUT_MS, SHARDS, sleep, testCluster } from '../helpers/cluster.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const all = union(...SHARDS.map(readCsv));
const { wb, token, dir } = await testCluster(t, 'fault-cuts', {
  workers: [
    { name: 'worker-1', files: [SHARDS[0] as string], env: { FDL_FAULTS: 'cut-socket-every=700' } },
    { name: 'worker-2', files: [SHARDS[1] as string] },
  ],
  scheduler: { retry: { initial_interval_ms: 100, max_interval_ms: 1000, worker_grace_ms: 10_000, attempt_timeout_ms: 20_000 } },
});

t.test('twenty artifacts at once while a socket is cut every 0.7 s: all COMPLETED, all right', async (t) => {
  const project = await wb.project(token);
  const age = column(all, 'HouseAge');
  const label = column(all, 'MedHouseValDiscrete');
  const checks: Array<Promise<void>> = [];
  const cutsBefore = countLog(join(dir, 'worker-1.log'), /cutting the connection/);
  for (let i = 0; i < 20; i++) {
    const kind = i % 4;
    // Pacing, not synchronization: spread in time a little, so submissions meet cuts at
    // different moments.
    await sleep(150);
    if (kind === 0) {
      const h = await project.count();
      checks.push(h.result<CountProduct>().then((r) => void t.equal(r.count, all.rows.length, `count #${i}`)));
    } else if (kind === 1) {
      const limit = 10 + i;
      const h = await project.count({ where: where('HouseAge', '>', limit) });
      checks.push(h.result<CountProduct>().then((r) => void t.equal(r.count, age.filter((a) => a > limit).length, `filtered count #${i}`)));
    } else if (kind === 2) {
      const h = await project.mean(['MedInc', 'AveRooms']);
      checks.push(
        h.result<MeanProduct>().then((r) => {
          t.ok(relErr(r.mean.MedInc as number, mean(column(all, 'MedInc'))) <= 1e-9, `mean MedInc #${i}`);
          t.ok(relErr(r.mean.AveRooms as number, mean(column(all, 'AveRooms'))) <= 1e-9, `mean AveRooms #${i}`);
        }),
      );
    } else {
      const h = await project.groupCount(['MedHouseValDiscrete']);
      checks.push(
        h.result<GroupCountProduct>().then((r) => {
          t.same(
            r.groups,
            [
              { key: [0], count: label.filter((v) => v === 0).length },
              { key: [1], count: label.filter((v) => v === 1).length },
            ],
            `group count #${i}`,
          );
        }),
      );
    }
  }
  await Promise.all(checks);
  const cuts = countLog(join(dir, 'worker-1.log'), /cutting the connection/) - cutsBefore;
  t.ok(cuts >= 2, `the socket was cut while they ran (${cuts} cuts)`);
  t.match(readFileSync(join(dir, 'scheduler.log'), 'utf8'), /worker left/, 'the scheduler saw the worker go');
});
