import { fileURLToPath } from 'node:url';
import { SCALE_ARTIFACT, startScaleCluster } from './scale.ts';
import { Cleanup, costsTable, processCost } from './util.ts';

/**
 * What one artifact of bench/scale.ts costs each process, counted rather than timed (issue 10):
 * `[Parallel(Noop, Collect), Finalize(Noop)]` over N connected workers, run `A` times one after
 * the other, with each process's CPU (user + system) and read/write syscalls per artifact and per
 * job from /proc. At 10 workers an artifact has 11 jobs, so the fixed costs of an artifact
 * (submit, planning, the Finalize on the initiator, the result's delivery) weigh most; this is the
 * tool to see them move between two trees (run it on both, alternating).
 *
 *   node --import tsx bench/scale-costs.ts                 (N=10 workers, A=200 artifacts)
 *   N=100 A=50 node --import tsx bench/scale-costs.ts
 *   PROFILE=/tmp/prof node --import tsx bench/scale-costs.ts   (a CPU profile of the scheduler, bench/cpu-profile-preload.cjs)
 *
 * Linux only (/proc). Not part of `npm run bench`.
 */

const N = Number(process.env.N ?? 10);
const A = Number(process.env.A ?? 200);
const PROFILE = process.env.PROFILE;
const PRELOAD = fileURLToPath(new URL('./cpu-profile-preload.cjs', import.meta.url));

const cleanup = new Cleanup();
try {
  const dir = cleanup.tempDir(`fdl-bench-scale-costs-${N}-`);
  const { cluster, token } = await startScaleCluster(dir, N, {
    ...(PROFILE ? { env: { NODE_OPTIONS: `--require ${PRELOAD}`, FDL_CPU_PROFILE_DIR: PROFILE } } : {}),
    // The workers' processes run without the profiler the scheduler may get through the environment.
    workerEnv: { NODE_OPTIONS: '' },
  });
  cleanup.add('cluster', () => cluster.stop());
  const wb = await cluster.connect('bench-scale-costs');
  cleanup.add('workbench', () => wb.close());
  const project = await wb.project(token);
  const run = async () => (await (await project.submit(SCALE_ARTIFACT)).result()) as unknown;
  for (let i = 0; i < 20; i++) await run(); // warm-up (JIT)

  const processes = cluster.processes().filter((p): p is { name: string; pid: number } => p.pid !== undefined);
  const before = new Map(processes.map((p) => [p.name, processCost(p.pid)]));
  const t0 = performance.now();
  for (let i = 0; i < A; i++) await run();
  const wall = (performance.now() - t0) / A;
  process.stdout.write(`Parallel(Noop)+Finalize, ${N} workers, ${A} artifacts: wall ${wall.toFixed(2)} ms per artifact, ${(wall / (N + 1)).toFixed(3)} ms per job\n`);
  const scheduler = processes.filter((p) => p.name === 'scheduler');
  process.stdout.write(costsTable(scheduler, before, A, 'artifact'));
  process.stdout.write(costsTable(scheduler, before, A * (N + 1), 'job'));
  process.stdout.write(costsTable(processes.filter((p) => p.name !== 'scheduler'), before, A, 'artifact'));
} finally {
  await cleanup.run();
}
