import { fileURLToPath } from 'node:url';
import { fedAvgRound, ROWS_PER_WORKER, roundsCluster, tinyRound } from './rounds.ts';
import { Cleanup, costsTable, processCost } from './util.ts';

/**
 * What one tiny round costs each process, counted rather than timed (issue 9): on a shared,
 * loaded machine the wall time of a round moves by 2-3x from run to run, while the CPU a process
 * spends and the syscalls it makes per round hardly do. Runs `Iterate(R, [Parallel(Noop, Collect),
 * Finalize(Noop)])` on a cluster (a scheduler and N worker processes), `WARM` times (10) to warm up
 * and then `REPEATS` times, and reads each process's /proc/<pid>/stat (user + system CPU) and /proc/<pid>/io
 * (read and write syscalls: socket frames, SQLite's WAL writes, fsyncs are not counted) around them.
 *
 *   node --import tsx bench/round-costs.ts          (N=2 workers, R=200 rounds, REPEATS=3)
 *   N=4 R=300 node --import tsx bench/round-costs.ts
 *   SHAPE=fedavg R=100 node --import tsx bench/round-costs.ts   (the FedAvg round of bench/rounds.ts)
 *   PROFILE=/tmp/prof node --import tsx bench/round-costs.ts   (a CPU profile of the scheduler, bench/cpu-profile-preload.cjs)
 *
 * Linux only (/proc). Not part of `npm run bench`: it prints no ratio, it is the tool to see
 * where a round's cost moved between two trees (run it on both, alternating).
 */

const N = Number(process.env.N ?? 2);
const R = Number(process.env.R ?? 200);
const REPEATS = Number(process.env.REPEATS ?? 3);
/** Artifacts run first, untimed (WARM=1: the first thousand rounds of a fresh cluster, mostly cold). */
const WARM = Number(process.env.WARM ?? 10);
/** `tiny` (the default) or `fedavg`: the FedAvg round of bench/rounds.ts (2,500 rows per worker). */
const SHAPE = process.env.SHAPE ?? 'tiny';
if (SHAPE !== 'tiny' && SHAPE !== 'fedavg') throw new Error(`SHAPE is tiny or fedavg, not ${SHAPE}`);
const artifact = SHAPE === 'tiny' ? tinyRound : fedAvgRound;
const PROFILE = process.env.PROFILE;
const PRELOAD = fileURLToPath(new URL('./cpu-profile-preload.cjs', import.meta.url));

const cleanup = new Cleanup();
try {
  const { cluster, project } = await roundsCluster(cleanup, N, SHAPE === 'tiny' ? 100 : ROWS_PER_WORKER, {
    ...(PROFILE ? { env: { NODE_OPTIONS: `--require ${PRELOAD}`, FDL_CPU_PROFILE_DIR: PROFILE } } : {}),
    // The workers' processes run without the profiler the scheduler may get through the environment.
    workerEnv: { NODE_OPTIONS: '' },
  });
  // Warm-up: V8 optimizes the hot path only after thousands of jobs (bench/rounds.ts, WARM_ROUNDS);
  // a tiny round's CPU falls by a third over the first ten Iterate(300)s of a fresh cluster.
  for (let w = 0; w < WARM; w++) await (await project.submit(artifact(R))).result();

  const processes = cluster.processes().filter((p): p is { name: string; pid: number } => p.pid !== undefined);
  const before = new Map(processes.map((p) => [p.name, processCost(p.pid)]));
  const t0 = performance.now();
  for (let i = 0; i < REPEATS; i++) await (await project.submit(artifact(R))).result();
  const wall = (performance.now() - t0) / (REPEATS * R);
  const rounds = REPEATS * R;
  process.stdout.write(`${SHAPE} round, ${N} workers, ${REPEATS} x Iterate(${R}): wall ${wall.toFixed(2)} ms per round (submit and download included)\n`);
  process.stdout.write(costsTable(processes, before, rounds, 'round'));
} finally {
  await cleanup.run();
}
