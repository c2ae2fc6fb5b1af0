import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { BIGDATA_FEATURES, bigdataGenerator } from './bigdata.ts';
import { Cleanup, median, ms, now, processCpuMs, ratio } from './util.ts';

/**
 * The big-data figure of two trees in the same run (issue 10, point 5): a cluster started from
 * tree A and one from tree B (each tree's own `lib/sim/cluster.ts`, so its own `bin/fdl.js` and
 * build) over the same 4 Parquet files, their artifacts alternating with central DuckDB over the
 * files, so a change of the machine's load falls on both. Per side: wall and CPU (every process of
 * the cluster, from /proc) per artifact; the figures must agree with central.
 *
 *   A=/work/main node --import tsx bench/bigdata-ab.ts          (B: this tree; ROWS=10000000 REPEATS=9)
 *
 * Both trees must be built (`node scripts/build.mjs --if-stale`) or their workers run from sources.
 * Linux only (/proc). Not part of `npm run bench`.
 */

const A = resolve(process.env.A ?? '/work/main');
const B = resolve(process.env.B ?? new URL('..', import.meta.url).pathname);
const ROWS = Number(process.env.ROWS ?? 10_000_000);
const REPEATS = Number(process.env.REPEATS ?? 9);
const WORKERS = 4;
const F = BIGDATA_FEATURES;

interface Side {
  label: string;
  run(): Promise<{ wall: number; cpu: number; product: { mean: Record<string, number>; variance: Record<string, number> } }>;
}

async function side(cleanup: Cleanup, root: string, label: string, dir: string, files: string[]): Promise<Side> {
  const { Cluster } = await import(join(root, 'lib/sim/cluster.ts'));
  const { estimators } = await import(join(root, 'lib/workbench/builders.ts'));
  const token = randomBytes(16).toString('hex');
  const cluster = await Cluster.start({
    dir: cleanup.tempDir(`fdl-bench-ab-${label}-`),
    projectName: 'bigdata',
    projectToken: token,
    workers: files.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })),
    env: { FDL_LOG_LEVEL: 'warn' },
    startTimeoutMs: 600_000,
  });
  cleanup.add(`${label} cluster`, () => cluster.stop());
  const wb = await cluster.connect(`bench-ab-${label}`);
  cleanup.add(`${label} workbench`, () => wb.close());
  const project = await wb.project(token);
  const shift = F.map((f) => project.info.features.find((m: { name: string; mean?: number }) => m.name === f)?.mean ?? 0);
  const step = estimators.variance(F, undefined, { shift });
  const pids: number[] = cluster.processes().flatMap((p: { pid?: number }) => (p.pid === undefined ? [] : [p.pid]));
  const cpu = () => pids.reduce((a, pid) => a + processCpuMs(pid), 0);
  process.stdout.write(`[bigdata-ab] ${label} (${root}): up, in ${dir}\n`);
  return {
    label,
    async run() {
      const c0 = cpu();
      const t0 = now();
      const handle = await project.submit([step]);
      const product = await handle.result();
      return { wall: now() - t0, cpu: cpu() - c0, product };
    },
  };
}

const cleanup = new Cleanup();
try {
  const dir = cleanup.tempDir('fdl-bench-ab-');
  const files = Array.from({ length: WORKERS }, (_, i) => join(dir, `shard-${i + 1}.parquet`));
  const db = await DuckDBInstance.create(':memory:');
  cleanup.add('duckdb', () => db.closeSync());
  const conn = await db.connect();
  cleanup.add('duckdb connection', () => conn.closeSync());
  const per = Math.ceil(ROWS / WORKERS);
  for (const [i, f] of files.entries()) {
    await conn.run(`COPY (${bigdataGenerator(i * per, Math.min(ROWS, (i + 1) * per))}) TO '${f.replace(/'/g, "''")}' (FORMAT parquet)`);
  }
  const parquet = `read_parquet([${files.map((f) => `'${f.replace(/'/g, "''")}'`).join(', ')}])`;
  const central = async () => {
    const c0 = process.cpuUsage();
    const t0 = now();
    const row = (await conn.runAndReadAll(`SELECT count(*), ${F.map((f) => `avg(${f}), var_samp(${f})`).join(', ')} FROM ${parquet}`)).getRows()[0] ?? [];
    const wall = now() - t0;
    const c = process.cpuUsage(c0);
    return { wall, cpu: (c.user + c.system) / 1000, row };
  };
  const sides = [await side(cleanup, A, 'A', dir, files), await side(cleanup, B, 'B', dir, files)];
  for (const s of sides) await s.run();
  await central();
  const figures: Record<string, { wall: number[]; cpu: number[] }> = { A: { wall: [], cpu: [] }, B: { wall: [], cpu: [] }, central: { wall: [], cpu: [] } };
  let worst = 0;
  for (let r = 0; r < REPEATS; r++) {
    for (const s of r % 2 === 0 ? sides : [...sides].reverse()) {
      const x = await s.run();
      const c = await central();
      for (const [k, v] of [
        [s.label, x],
        ['central', c],
      ] as const) {
        figures[k]?.wall.push(v.wall);
        figures[k]?.cpu.push(v.cpu);
      }
      for (const [i, f] of F.entries()) {
        const mean = Number(c.row[1 + 2 * i]);
        const variance = Number(c.row[2 + 2 * i]);
        const errs = [Math.abs((x.product.mean[f] as number) - mean) / Math.max(Math.abs(mean), Math.sqrt(variance)), Math.abs((x.product.variance[f] as number) - variance) / variance];
        for (const e of errs) worst = Math.max(worst, Number.isNaN(e) ? Number.POSITIVE_INFINITY : e);
      }
    }
  }
  if (!(worst <= 1e-9)) throw new Error(`[bigdata-ab] a federated figure differs from central: worst relative error ${worst}`);
  const line = (k: string) => {
    const v = figures[k] as { wall: number[]; cpu: number[] };
    return `wall median ${ms(median(v.wall))} (min ${ms(Math.min(...v.wall))}), CPU median ${ms(median(v.cpu))}`;
  };
  const wall = (k: string) => median(figures[k]?.wall ?? []);
  const cpu = (k: string) => median(figures[k]?.cpu ?? []);
  process.stdout.write(
    `[bigdata-ab] ${ROWS.toLocaleString('en')} rows, ${REPEATS} artifacts per side, alternating; figures agree with central (worst ${worst.toExponential(2)})\n` +
      `[bigdata-ab] A ${line('A')}\n[bigdata-ab] B ${line('B')}\n[bigdata-ab] central over the files ${line('central')}\n` +
      `[bigdata-ab] wall vs central: A ${ratio(wall('A') / wall('central'))}, B ${ratio(wall('B') / wall('central'))}; B / A: wall ${ratio(wall('B') / wall('A'))}, CPU ${ratio(cpu('B') / cpu('A'))}\n`,
  );
} finally {
  await cleanup.run();
}
