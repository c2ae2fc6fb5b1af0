import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { DataEngine } from '../lib/data/engine.ts';
import type { VarianceProduct } from '../lib/ops/index.ts';
import { Cluster } from '../lib/sim/cluster.ts';
import { estimators } from '../lib/workbench/builders.ts';
import { type Cleanup, median, ms, now, processCpuMs, type Row, ratio, spread } from './util.ts';

/**
 * Big data on a worker (issue 10, point 5): a federated mean and variance of ROWS generated rows
 * (3 numeric columns, seeded) split over 4 workers as 4 Parquet files, against DuckDB computing
 * the same avg and var_samp centrally, in this process, over the same 4 files, in the same run.
 *
 * What each side includes:
 *  - federated: submit -> decoded result of one `estimators.variance` artifact (mean, variance
 *    and std in one Sequential step: VarianceInit on the initiator, Variance on each of the 4
 *    workers in turn, VarianceFinal): planning, the store, the sockets, masking, and on each
 *    worker DuckDB over its shard, which it loaded into an in-memory table at start (not timed).
 *  - central, files: `read_parquet` of the 4 files in each query (the page cache holds them).
 *  - central, in memory: the same query over a table loaded from the files beforehand (not
 *    timed): like for like with the workers' tables.
 *  - ops (profile): the workers' own query (`DataEngine.spread` as a Variance job calls it)
 *    on each shard, here, one after the other: the Sequential chain's compute without the system.
 */

const SEED = 20_261_207;
export const BIGDATA_FEATURES = ['x1', 'x2', 'x3'];
const FEATURES = BIGDATA_FEATURES;
export const BIGDATA_GOAL = 1.2;

const sqlString = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** Rows [lo, hi) of the generated table: x1 uniform on [-1000, 1000], x2 a triangle on [0, 20], x3 near 1e4 (far from 0). */
export function bigdataGenerator(lo: number, hi: number): string {
  const h = (k: number) => `hash(i * 4 + ${k + SEED})`;
  return `SELECT
      (${h(0)} % 2000001)::DOUBLE / 1000.0 - 1000.0 AS x1,
      ((${h(1)} % 1001) + (${h(2)} % 1001))::DOUBLE / 100.0 AS x2,
      10000.0 + (${h(3)} % 1000000)::DOUBLE / 10000.0 AS x3
    FROM range(${lo}, ${hi}) t(i)`;
}

interface Figures {
  count: number;
  mean: Record<string, number>;
  variance: Record<string, number>;
}

/** avg and var_samp of each feature over `from`; the figures and the time. */
async function centralQuery(run: (sql: string) => Promise<unknown[][]>, from: string, cpu?: number[]): Promise<[Figures, number]> {
  const select = FEATURES.map((f) => `avg(${f}), var_samp(${f})`).join(', ');
  const c0 = process.cpuUsage();
  const t0 = now();
  const row = (await run(`SELECT count(*), ${select} FROM ${from}`))[0] ?? [];
  const t = now() - t0;
  const c = process.cpuUsage(c0);
  cpu?.push((c.user + c.system) / 1000);
  return [
    {
      count: Number(row[0]),
      mean: Object.fromEntries(FEATURES.map((f, i) => [f, Number(row[1 + 2 * i])])),
      variance: Object.fromEntries(FEATURES.map((f, i) => [f, Number(row[2 + 2 * i])])),
    },
    t,
  ];
}

const stats = (xs: number[]) => `median ${ms(median(xs))} (min ${ms(Math.min(...xs))}, spread ${(spread(xs) * 100).toFixed(0)}%)`;

export async function benchBigData(opts: { cleanup: Cleanup; rows: number; repeats: number }): Promise<Row[]> {
  const { cleanup, repeats } = opts;
  const workers = 4;
  const dir = cleanup.tempDir('fdl-bench-bigdata-');
  const files = Array.from({ length: workers }, (_, i) => join(dir, `shard-${i + 1}.parquet`));

  // ---- generate the shards (DuckDB writes Parquet fast)
  const db = await DuckDBInstance.create(':memory:');
  cleanup.add('bigdata duckdb', () => db.closeSync());
  const conn = await db.connect();
  cleanup.add('bigdata duckdb connection', () => conn.closeSync());
  const run = async (sql: string) => (await conn.runAndReadAll(sql)).getRows();
  let t0 = now();
  const per = Math.ceil(opts.rows / workers);
  for (const [i, f] of files.entries()) {
    await conn.run(`COPY (${bigdataGenerator(i * per, Math.min(opts.rows, (i + 1) * per))}) TO ${sqlString(f)} (FORMAT parquet)`);
  }
  process.stdout.write(`[bigdata] ${opts.rows.toLocaleString('en')} rows, ${FEATURES.length} DOUBLE columns, as ${workers} Parquet files in ${ms(now() - t0)}\n`);

  // ---- federated: a scheduler and 4 workers, each holding one file
  t0 = now();
  const token = randomBytes(16).toString('hex');
  const cluster = await Cluster.start({
    dir,
    projectName: 'bigdata',
    projectToken: token,
    workers: files.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })),
    env: { FDL_LOG_LEVEL: 'warn' },
    startTimeoutMs: 600_000,
  });
  cleanup.add('bigdata cluster', () => cluster.stop());
  process.stdout.write(`[bigdata] scheduler and ${workers} workers up (shards loaded) in ${ms(now() - t0)}\n`);
  const wb = await cluster.connect('bench-bigdata');
  cleanup.add('bigdata workbench', () => wb.close());
  const project = await wb.project(token);
  // The shift (a value near each mean, from the project's metadata) keeps the merge of the
  // workers' moments exact for data far from 0 (lib/ops/estimators/variance.ts).
  const shift = FEATURES.map((f) => project.info.features.find((m) => m.name === f)?.mean ?? 0);
  const step = estimators.variance(FEATURES, undefined, { shift });
  const jobTimes: number[][] = [];
  // CPU counted rather than timed (user + system, every process of the cluster; the bench process
  // for central): on a loaded machine the wall times move by 2x, the CPU hardly does.
  const pids = cluster.processes().flatMap((p) => (p.pid === undefined ? [] : [p.pid]));
  const clusterCpu = () => pids.reduce((a, pid) => a + processCpuMs(pid), 0);
  const fedCpu: number[] = [];
  const federatedRun = async (): Promise<[VarianceProduct, number]> => {
    const c1 = clusterCpu();
    const t1 = now();
    const handle = await project.submit([step]);
    const product = (await handle.result()) as VarianceProduct;
    const wall = now() - t1;
    fedCpu.push(clusterCpu() - c1);
    // Per-job times from the status (startedAt -> finishedAt, as the scheduler saw them: they hold the RUNNING and report messages), in chain order.
    jobTimes.push(
      [...handle.status.jobs]
        .sort((a, b) => a.index - b.index)
        .map((j) => (j.startedAt !== undefined && j.finishedAt !== undefined ? j.finishedAt - j.startedAt : Number.NaN)),
    );
    return [product, wall];
  };
  // ---- central: the same figures in this process; and the profile's engines (the workers' query on each shard, here)
  const parquet = `read_parquet([${files.map(sqlString).join(', ')}])`;
  t0 = now();
  await conn.run(`CREATE TABLE t AS SELECT * FROM ${parquet}`);
  const loadMs = now() - t0;
  const engines: DataEngine[] = [];
  cleanup.add('bigdata engines', () => Promise.all(engines.map((e) => e.close())));
  for (const [i, f] of files.entries()) engines.push(await DataEngine.open([{ name: `shard-${i + 1}`, path: f, projects: [token] }]));
  const chain = async () => {
    const t1 = now();
    for (const e of engines) await e.spread(token, FEATURES, undefined, shift);
    return now() - t1;
  };

  // The first run of each, then the repeats interleaved (federated, central over the files, central
  // in memory, the ops chain), so a change of the machine's load falls on every side alike. The
  // cluster idles while the central queries run (heartbeats only).
  const [federated, first] = await federatedRun();
  const [central, firstFiles] = await centralQuery(run, parquet);
  await centralQuery(run, 't');
  await chain();
  const warm: number[] = [];
  const filesRuns: number[] = [];
  const filesCpu: number[] = [];
  const memRuns: number[] = [];
  const opsRuns: number[] = [];
  for (let r = 0; r < repeats; r++) {
    warm.push((await federatedRun())[1]);
    filesRuns.push((await centralQuery(run, parquet, filesCpu))[1]);
    memRuns.push((await centralQuery(run, 't'))[1]);
    opsRuns.push(await chain());
  }
  const fedCpuWarm = median(fedCpu.slice(1));
  const filesCpuMed = median(filesCpu);
  const jobsFirst = jobTimes[0] as number[];
  const jobsWarm = (jobTimes[0] as number[]).map((_, k) => median(jobTimes.slice(1).map((js) => js[k] as number)));
  wb.close();
  await cluster.stop();
  await Promise.all(engines.map((e) => e.close()));
  engines.length = 0;
  await conn.run('DROP TABLE t');

  // ---- agreement
  const errors: string[] = [];
  let worst = 0;
  for (const f of FEATURES) {
    for (const [what, fed, cen] of [
      ['mean', federated.mean[f], central.mean[f]],
      ['variance', federated.variance[f], central.variance[f]],
    ] as const) {
      // A mean is judged against its feature's spread (a mean near 0 has no useful relative error), as `fdl simulate` does.
      const scale = Math.max(Math.abs(cen as number), what === 'mean' ? Math.sqrt(central.variance[f] as number) : 0);
      const rel = Math.abs((fed ?? Number.NaN) - (cen as number)) / scale;
      worst = Math.max(worst, Number.isNaN(rel) ? Number.POSITIVE_INFINITY : rel);
      if (!(rel <= 1e-9)) errors.push(`${what} ${f}: federated ${fed}, central ${cen} (relative ${rel.toExponential(2)})`);
    }
  }
  if (federated.count[FEATURES[0] as string] !== central.count) errors.push(`count: federated ${federated.count[FEATURES[0] as string]}, central ${central.count}`);
  if (errors.length > 0) throw new Error(`[bigdata] federated and central figures differ:\n  ${errors.join('\n  ')}`);

  const fed = median(warm);
  const files_ = median(filesRuns);
  const mem = median(memRuns);
  const ops = median(opsRuns);
  // The status's times are whole milliseconds.
  const whole = (t: number) => `${t.toFixed(0)} ms`;
  const workerJobs = (js: number[]) => js.slice(1, -1).map(whole).join(' + ');
  process.stdout.write(
    `[bigdata] figures agree: count ${central.count}, worst relative error ${worst.toExponential(2)} (mean and var_samp of ${FEATURES.join(', ')})\n` +
      `[bigdata] federated variance (mean, var, std), submit -> result: first ${ms(first)}; warm ${stats(warm)}, ${repeats} runs\n` +
      `[bigdata]   per job (status startedAt -> finishedAt), chain order: first ${whole(jobsFirst[0] as number)} | ${workerJobs(jobsFirst)} | ${whole(jobsFirst.at(-1) as number)}; ` +
      `warm ${whole(jobsWarm[0] as number)} | ${workerJobs(jobsWarm)} | ${whole(jobsWarm.at(-1) as number)}\n` +
      `[bigdata]   ops: the workers' query (DataEngine.spread) on each shard here, in turn: ${stats(opsRuns)}; system = wall - ops = ${(fed - ops).toFixed(0)} ms (noisy: two medians)\n` +
      `[bigdata] central DuckDB, this process, avg + var_samp: over the files (read_parquet each query) first ${ms(firstFiles)}, ${stats(filesRuns)}; ` +
      `over an in-memory table (loaded in ${ms(loadMs)}, not timed) ${stats(memRuns)}\n` +
      `[bigdata] CPU (user + system, counted): federated, every process of the cluster, median ${ms(fedCpuWarm)}; central over the files ${ms(filesCpuMed)} (${ratio(fedCpuWarm / filesCpuMed)})\n` +
      `[bigdata] ratio federated / central: ${ratio(fed / files_)} against the files, ${ratio(fed / mem)} against the in-memory table (goal <= ${BIGDATA_GOAL}x)\n`,
  );
  const rowsLabel = `${(opts.rows / 1e6).toLocaleString('en')}M rows`;
  return [
    {
      figure: `federated mean+variance, ${rowsLabel}, 4 workers (warm)`,
      value: ms(fed),
      baseline: `central files ${ms(files_)}`,
      ratio: ratio(fed / files_),
      note: `goal <= ${BIGDATA_GOAL}x; first run ${ms(first)} (${ratio(first / files_)})`,
    },
    {
      figure: `federated mean+variance, ${rowsLabel}, vs in-memory`,
      value: ms(fed),
      baseline: `central in-memory ${ms(mem)}`,
      ratio: ratio(fed / mem),
      note: `workers hold in-memory tables; ops (workers' query in turn) ${ms(ops)}; CPU federated ${ms(fedCpuWarm)} vs central files ${ms(filesCpuMed)}`,
    },
  ];
}
