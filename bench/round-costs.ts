import { roundsCluster, tinyRound } from './rounds.ts';
import { Cleanup, costsTable, processCost } from './util.ts';

/**
 * What one tiny round costs each process, counted rather than timed (issue 9): on a shared,
 * loaded machine the wall time of a round moves by 2-3x from run to run, while the CPU a process
 * spends and the syscalls it makes per round hardly do. Runs `Iterate(R, [Parallel(Noop, Collect),
 * Finalize(Noop)])` on a cluster (a scheduler and N worker processes), once to warm up and then
 * `REPEATS` times, and reads each process's /proc/<pid>/stat (user + system CPU) and /proc/<pid>/io
 * (read and write syscalls: socket frames, SQLite's WAL writes, fsyncs are not counted) around them.
 *
 *   node --import tsx bench/round-costs.ts          (N=2 workers, R=200 rounds, REPEATS=3)
 *   N=4 R=300 node --import tsx bench/round-costs.ts
 *
 * Linux only (/proc). Not part of `npm run bench`: it prints no ratio, it is the tool to see
 * where a round's cost moved between two trees (run it on both, alternating).
 */

const N = Number(process.env.N ?? 2);
const R = Number(process.env.R ?? 200);
const REPEATS = Number(process.env.REPEATS ?? 3);

const cleanup = new Cleanup();
try {
  const { cluster, project } = await roundsCluster(cleanup, N, 100);
  await (await project.submit(tinyRound(R))).result(); // warm-up (JIT)

  const processes = cluster.processes().filter((p): p is { name: string; pid: number } => p.pid !== undefined);
  const before = new Map(processes.map((p) => [p.name, processCost(p.pid)]));
  const t0 = performance.now();
  for (let i = 0; i < REPEATS; i++) await (await project.submit(tinyRound(R))).result();
  const wall = (performance.now() - t0) / (REPEATS * R);
  const rounds = REPEATS * R;
  process.stdout.write(`tiny round, ${N} workers, ${REPEATS} x Iterate(${R}): wall ${wall.toFixed(2)} ms per round (submit and download included)\n`);
  process.stdout.write(costsTable(processes, before, rounds, 'round'));
} finally {
  await cleanup.run();
}
