import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Cluster, EXAMPLE_DATA } from '../lib/sim/cluster.ts';
import { Cleanup, costsTable, processCost } from './util.ts';

/**
 * What one warm `project.mean` of the 9 California features over 2 workers costs each process,
 * counted rather than timed (issue 9's warm mean; see round-costs.ts for why counting): a
 * scheduler and two workers holding the two shards, 20 means to warm up, then RUNS means one after
 * the other, with each process's CPU and read/write syscalls per mean (this process is the
 * workbench). The wall percentiles are printed too, for what a loaded machine lets them say.
 *
 *   node --import tsx bench/mean-costs.ts          (RUNS=200)
 *
 * Linux only (/proc). Not part of `npm run bench`: run it on two trees, alternating. fsyncs are
 * not in /proc/<pid>/io: `strace -f -c -e trace=fsync,fdatasync -p <scheduler pid>` counts them.
 */

const RUNS = Number(process.env.RUNS ?? 200);
const SHARDS = ['california_housing.MedInc1.csv', 'california_housing.MedInc2.csv'].map((f) => join(EXAMPLE_DATA, f));

const cleanup = new Cleanup();
try {
  const token = randomBytes(16).toString('hex');
  const cluster = await Cluster.start({
    dir: cleanup.tempDir('fdl-bench-mean-costs-'),
    projectName: 'california',
    projectToken: token,
    workers: SHARDS.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })),
  });
  cleanup.add('cluster', () => cluster.stop());
  const wb = await cluster.connect('bench');
  cleanup.add('workbench', () => wb.close());
  const project = await wb.project(token);
  const features = project.numericFeatures();
  for (let i = 0; i < 20; i++) await (await project.mean(features)).result(); // warm-up: JIT, caches

  const processes = cluster.processes().filter((p): p is { name: string; pid: number } => p.pid !== undefined);
  const before = new Map(processes.map((p) => [p.name, processCost(p.pid)]));
  const self = process.cpuUsage();
  const walls: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    await (await project.mean(features)).result();
    walls.push(performance.now() - t0);
  }
  const mine = process.cpuUsage(self);
  walls.sort((a, b) => a - b);
  const pct = (p: number) => (walls[Math.min(walls.length - 1, Math.floor((p / 100) * walls.length))] as number).toFixed(1);
  process.stdout.write(`warm mean of ${features.length} features, 2 workers, ${RUNS} runs: wall p50 ${pct(50)} ms, p99 ${pct(99)} ms\n`);
  process.stdout.write(costsTable(processes, before, RUNS, 'mean'));
  process.stdout.write(`${'workbench'.padEnd(12)}  ${((mine.user + mine.system) / 1000 / RUNS).toFixed(3).padStart(12)}   (this process: CPU only)\n`);
} finally {
  await cleanup.run();
}
