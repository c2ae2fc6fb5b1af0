import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Step } from '../protocols/entities.ts';
import { Cluster } from '../lib/sim/cluster.ts';
import { DEFAULT_WORKERS_PER_PROCESS, syntheticShard } from '../lib/sim/simulate.ts';
import { distributions, steps } from '../lib/workbench/builders.ts';
import { type Cleanup, median, ms, now, type Row, ratio } from './util.ts';

/**
 * Scale (issue 10): the scheduler's system time per job of `[Parallel(Noop, Collect),
 * Finalize(Noop)]` with N connected workers (real workers, packed several per process as
 * `fdl simulate` does), and the scheduler's resident memory. Per job = wall / (N + 1): the
 * operations are Noops, so the wall time is the system's own. Baseline, same run: the same
 * artifact at the smallest N, so a ratio near 1 says the cost per job does not grow with N.
 */

/** The scale benches' artifact: a Noop on every worker, collected, then a Noop Finalize. */
export const SCALE_ARTIFACT: Step[] = [steps.parallel({ kind: 'Noop' }, distributions.collect()), steps.finalize({ kind: 'Noop' })];

/**
 * A scheduler and `n` workers with a synthetic shard each (10 rows), packed several per process
 * as `fdl simulate` does. `env` goes to every process, `workerEnv` to the workers' only.
 */
export async function startScaleCluster(
  dir: string,
  n: number,
  opts: { env?: Record<string, string>; workerEnv?: Record<string, string> } = {},
): Promise<{ cluster: Cluster; token: string }> {
  const token = randomBytes(16).toString('hex');
  const workers = Array.from({ length: n }, (_, i) => {
    const file = join(dir, `shard-${i}.csv`);
    writeFileSync(file, syntheticShard(i, 10));
    return { name: `w-${String(i).padStart(4, '0')}`, files: [file], ...(opts.workerEnv ? { env: opts.workerEnv } : {}) };
  });
  const cluster = await Cluster.start({
    dir,
    projectName: 'scale',
    projectToken: token,
    workers,
    workersPerProcess: Math.min(DEFAULT_WORKERS_PER_PROCESS, Math.ceil(n / 4)),
    // Every worker dials 127.0.0.1 at once: the per-address cap before a hello must admit them.
    scheduler: { connection_limits: { max_unauthenticated_per_address: 64 } },
    env: { FDL_LOG_LEVEL: 'warn', ...opts.env },
    startTimeoutMs: 600_000,
  });
  return { cluster, token };
}

/** Resident memory of a process, from /proc (Linux), in MiB. */
function rssMiB(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(line?.replace(/\D+/g, '') ?? Number.NaN) / 1024;
}

/** Jobs run before the timed ones, at any N (BENCH_SCALE_WARM_JOBS): 20 artifacts at 10 workers, 1 at 1,000. */
const WARM_JOBS = Number(process.env.BENCH_SCALE_WARM_JOBS ?? 220);
/** Jobs timed, at least (BENCH_SCALE_TIMED_JOBS), and never fewer artifacts than BENCH_REPEATS: 100 artifacts at 10 workers. */
const TIMED_JOBS = Number(process.env.BENCH_SCALE_TIMED_JOBS ?? 1100);

export async function benchScale(opts: { cleanup: Cleanup; sizes: number[]; repeats: number }): Promise<Row[]> {
  const rows: Row[] = [];
  let smallest: number | undefined;
  for (const n of opts.sizes) {
    const dir = opts.cleanup.tempDir(`fdl-bench-scale-${n}-`);
    const t0 = now();
    const { cluster, token } = await startScaleCluster(dir, n);
    opts.cleanup.add(`cluster (${n})`, () => cluster.stop());
    process.stdout.write(`[scale] ${n} workers up in ${ms(now() - t0)}\n`);
    const wb = await cluster.connect('bench-scale');
    opts.cleanup.add(`workbench (${n})`, () => wb.close());
    const project = await wb.project(token);
    const run = async () => {
      const t1 = now();
      await (await project.submit(SCALE_ARTIFACT)).result();
      return (now() - t1) / (n + 1);
    };
    // Steady state, as a scheduler serving many artifacts runs: warm-up and timed runs are counted
    // in jobs, not artifacts, so 10 workers get as many as 1,000 do (one warm-up artifact of 11 jobs
    // measured V8 compiling the hot path as much as the path: 1.1-1.3 ms per job, against
    // 0.85-0.95 after 20). The first artifact's figure is printed beside, cold.
    const cold = await run();
    const warm = Math.max(0, Math.ceil(WARM_JOBS / (n + 1)) - 1);
    for (let r = 0; r < warm; r++) await run();
    const timed = Math.max(opts.repeats, Math.ceil(TIMED_JOBS / (n + 1)));
    const perJob: number[] = [];
    for (let r = 0; r < timed; r++) perJob.push(await run());
    const rss = rssMiB(cluster.pid('scheduler'));
    const value = median(perJob);
    const mean = perJob.reduce((a, b) => a + b, 0) / perJob.length;
    smallest ??= value;
    process.stdout.write(
      `[scale] ${n} workers: ${ms(value)} per job (median of ${timed} artifacts after ${warm + 1} to warm up, mean ${ms(mean)}; the first, cold: ${ms(cold)}), scheduler RSS ${rss.toFixed(0)} MiB\n`,
    );
    rows.push({
      figure: `system time per job, Parallel(Noop)+Finalize, ${n} workers`,
      value: ms(value),
      baseline: `${opts.sizes[0]} workers ${ms(smallest)}`,
      ratio: ratio(value / smallest),
      note: `goal < 1 ms; median of ${timed} warm artifacts (mean ${ms(mean)}; cold, the first: ${ms(cold)}); scheduler RSS ${rss.toFixed(0)} MiB (goal < 200 MiB at 1,000)`,
    });
    wb.close();
    await cluster.stop();
  }
  return rows;
}
