// Why: standalone mode is a scheduler that holds data itself (as in Ferdelance); its initiator
// then runs worker jobs in-process by local dispatch, beside remote workers over sockets.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Cluster, EXAMPLE_DATA } from '../../lib/sim/cluster.ts';
import type { CountProduct, MeanProduct, } from '../../lib/workbench.ts';
import { column, mean, readCsv, relErr, union } from '../helpers/central.ts';
import { PROCESS_FILE_TIMEOUT_MS } from '../helpers/cluster.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const [a, b] = ['california_housing.MedInc1.csv', 'california_housing.MedInc2.csv'].map((f) => join(EXAMPLE_DATA, f)) as [string, string];
const all = union(readCsv(a), readCsv(b));
const token = randomBytes(16).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'fdl-standalone-'));

const cluster = await Cluster.start({
  dir,
  projectName: 'california',
  projectToken: token,
  schedulerFiles: [a],
  workers: [{ name: 'worker-2', files: [b] }],
});
const wb = await cluster.connect();
t.teardown(async () => {
  wb.close();
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
});

t.test('a standalone scheduler and a worker give the central figures', async (t) => {
  const project = await wb.project(token);
  t.equal(project.info.workers, 2, 'the standalone node counts as a worker');
  const count = await project.count();
  t.equal((await count.result<CountProduct>()).count, all.rows.length);
  t.same(
    count.status.jobs.map((j) => j.worker),
    ['scheduler', 'scheduler', 'worker-2', 'scheduler'],
    'init on the initiator, then each holder in turn, then final',
  );
  const m = await (await project.mean(['MedInc', 'Population'])).result<MeanProduct>();
  t.ok(relErr(m.mean.MedInc as number, mean(column(all, 'MedInc'))) <= 1e-9);
  t.ok(relErr(m.mean.Population as number, mean(column(all, 'Population'))) <= 1e-9);
});

t.test('a standalone node stops cleanly on SIGTERM', async (t) => {
  t.equal(await cluster.signal('worker-2', 'SIGTERM'), 0);
  t.equal(await cluster.signal('scheduler', 'SIGTERM'), 0, 'standalone exits 0');
});
