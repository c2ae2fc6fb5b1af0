import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { progressBar } from '../cli/output.ts';
import type { CountProduct, MeanProduct } from '../ops/index.ts';
import { columnStats, initialLinear, trainLinear } from '../ops/models/linear.ts';
import { modelToWire } from '../ops/models/model.ts';
import { mixSeed, seededRandom } from '../ops/models/random.ts';
import { type ClassificationMetrics, loadModel, models, type Project } from '../workbench.ts';
import { centralMeans, type ComparisonRow, compare, printComparison, quoteIdent, withUnion } from './central.ts';
import { follow, onLoopback } from './loopback.ts';

/**
 * `fdl simulate`: a scheduler and N workers on this machine over the real protocol, packed
 * several per process. Each worker is a real one (own config, work directory, keys, join,
 * socket, DuckDB and data shard); only the process is shared. Runs a federated mean of every
 * numeric feature (and optionally FedAvg rounds) and prints each figure beside the central one.
 */

export interface SimulateOptions {
  workers: number;
  /** Processes hosting the workers (default: `defaultProcesses(workers)`). */
  processes?: number;
  /** A folder of CSV files split across the workers. */
  data?: string;
  /** Rows generated per worker (when no `data`). */
  synthetic?: number;
  /** FedAvg logistic regression rounds (0: none). */
  rounds: number;
  /** The 0/1 label of FedAvg (synthetic data: `y`). */
  label?: string;
  json: boolean;
  keep: boolean;
}

export const DEFAULT_SYNTHETIC_ROWS = 100;
/** Workers per process the default packing aims at (measured: see README "Simulation"). */
export const DEFAULT_WORKERS_PER_PROCESS = 50;
const SYNTHETIC_SEED = 20_261_201;
export const SYNTHETIC_LABEL = 'y';
/** FedAvg against the same trainer run centrally: accuracies on the union within this relative error. */
const FEDAVG_TOLERANCE = 0.02;
const TRAINING = { epochs: 1, learningRate: 0.1, batchSize: 32, seed: 7 };

/** Enough processes to use every core, and at most DEFAULT_WORKERS_PER_PROCESS workers in each. */
export function defaultProcesses(workers: number, cores = availableParallelism()): number {
  return Math.min(workers, Math.max(2 * cores, Math.ceil(workers / DEFAULT_WORKERS_PER_PROCESS)));
}

const workerName = (i: number, n: number) => `worker-${String(i + 1).padStart(String(n).length, '0')}`;

/**
 * A worker's synthetic shard: three numeric features (each worker's x1 shifted a little, so the
 * shards differ) and a 0/1 label drawn from a logistic model of them. Seeded by worker index.
 */
export function syntheticShard(worker: number, rows: number): string {
  const random = seededRandom(mixSeed(SYNTHETIC_SEED, worker));
  const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const lines = [`x1,x2,x3,${SYNTHETIC_LABEL}`];
  for (let r = 0; r < rows; r++) {
    const x1 = normal() + (worker % 5) * 0.2;
    const x2 = normal();
    const x3 = random() * 10;
    const p = 1 / (1 + Math.exp(-(2 * x1 - 1.5 * x2 + 0.3 * (x3 - 5))));
    lines.push(`${x1.toFixed(4)},${x2.toFixed(4)},${x3.toFixed(4)},${random() < p ? 1 : 0}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The files of each worker: the CSV files of `dir` round robin when there are at least as many
 * as workers; otherwise their rows round robin into one shard file per worker (in `out`).
 */
export function splitData(dir: string, workers: number, out: string): string[][] {
  const files = readdirSync(dir)
    .filter((f) => f.toLowerCase().endsWith('.csv'))
    .sort()
    .map((f) => resolve(dir, f));
  if (files.length === 0) throw new Error(`no CSV files in ${dir}`);
  if (files.length >= workers) {
    const shards: string[][] = Array.from({ length: workers }, () => []);
    for (const [i, f] of files.entries()) shards[i % workers]?.push(f);
    return shards;
  }
  let header: string | undefined;
  const rows: string[][] = Array.from({ length: workers }, () => []);
  let next = 0;
  for (const f of files) {
    const [head, ...lines] = readFileSync(f, 'utf8').split(/\r?\n/).filter((l) => l.length > 0);
    if (header !== undefined && head !== header) throw new Error(`${f} has another header than the first CSV file of ${dir}: every file must have the same columns to be split by rows`);
    header = head;
    for (const l of lines) rows[next++ % workers]?.push(l);
  }
  if (next < workers) throw new Error(`${dir} has ${next} rows: fewer than the ${workers} workers`);
  mkdirSync(out, { recursive: true });
  return rows.map((r, i) => {
    const file = join(out, `${workerName(i, workers)}.csv`);
    writeFileSync(file, `${header}\n${r.join('\n')}\n`);
    return [file];
  });
}

/** Resident memory of a process in MiB (Linux /proc), undefined elsewhere or once it is gone. */
export function rssMiB(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? undefined : Math.round(Number(kb) / 1024);
  } catch {
    return undefined;
  }
}

async function fedAvgRows(project: Project, files: string[], features: string[], label: string, rounds: number, json: boolean): Promise<ComparisonRow[]> {
  const product = await follow<unknown>(`FedAvg ${rounds} rounds`, await project.submit({ name: 'simulate-fedavg', steps: models.logisticRegression({ features, label, rounds, ...TRAINING }) }), json);
  const federated = loadModel(product);
  const table = await withUnion(files, (one, union) => one(`SELECT ${[...features, label].map(quoteIdent).join(', ')} FROM ${union}`));
  const x = { rows: table.length, cols: features.length, data: Float64Array.from(table.flatMap((r) => r.slice(0, -1).map(Number))) };
  const y = Float64Array.from(table.map((r) => Number(r.at(-1))));
  const rows = table.map((r) => r.slice(0, -1).map(Number));
  const { mean, std } = columnStats(x);
  const central = await trainLinear(initialLinear('logisticRegression', features, label, mean, std), x, y, { ...TRAINING, epochs: rounds, mu: 0, l2: 0 });
  const accuracy = (m: ReturnType<typeof loadModel>) => (m.evaluate(rows, y) as ClassificationMetrics).accuracy;
  return [
    compare(`FedAvg samples in round ${rounds}`, federated.history.at(-1)?.samples ?? Number.NaN, x.rows, true),
    compare(`FedAvg accuracy on the union (${rounds} rounds)`, accuracy(federated), accuracy(loadModel(modelToWire(central))), false, FEDAVG_TOLERANCE),
  ];
}

export function runSimulate(opts: SimulateOptions): Promise<number> {
  const n = opts.workers;
  const processes = Math.min(n, opts.processes ?? defaultProcesses(n));
  const perProcess = Math.ceil(n / processes);
  return onLoopback('simulation', opts, async ({ dir, token, say, start, workbench }) => {
    let shards: string[][];
    if (opts.data) shards = splitData(opts.data, n, join(dir, 'shards'));
    else {
      const rows = opts.synthetic ?? DEFAULT_SYNTHETIC_ROWS;
      mkdirSync(join(dir, 'shards'), { recursive: true });
      shards = Array.from({ length: n }, (_, i) => {
        const file = join(dir, 'shards', `${workerName(i, n)}.csv`);
        writeFileSync(file, syntheticShard(i, rows));
        return [file];
      });
    }
    const label = opts.label ?? (opts.data ? undefined : SYNTHETIC_LABEL);
    if (opts.rounds > 0 && label === undefined) throw new Error('--rounds needs --label NAME (a 0/1 column of the data)');

    say(`starting a scheduler and ${n} workers in ${processes} processes (${perProcess} per process) in ${dir} ...`);
    const bar = progressBar(n, 'workers connected');
    const started = performance.now();
    const cluster = await start({
      projectName: 'simulation',
      workers: shards.map((files, i) => ({ name: workerName(i, n), files })),
      workersPerProcess: perProcess,
      // On loopback every worker dials from 127.0.0.1, so the per-address cap on connections
      // still in their handshake (16) would act as the global one: let it be the global cap (64).
      // Refused workers would retry anyway; this only spares them the churn.
      scheduler: { connection_limits: { max_unauthenticated_per_address: 64 } },
      onWorkersUp: (up, total) => bar.update(up, total),
    });
    bar.stop();
    const startMs = performance.now() - started;
    say(`scheduler at ${cluster.url}; ${n} workers connected in ${(startMs / 1000).toFixed(1)} s`);
    const wb = await workbench('simulate');
    const project = await wb.project(token);
    const features = project.numericFeatures();

    const meanStarted = performance.now();
    const mean = await follow<MeanProduct>('mean', await project.mean(features), opts.json);
    const meanMs = performance.now() - meanStarted;
    const count = await follow<CountProduct>('count', await project.count(), opts.json);
    const files = shards.flat();
    const central = await centralMeans(files, features);
    const rows: ComparisonRow[] = [
      compare('workers', project.info.workers, n, true),
      compare('count', count.count, central.count, true),
      // Judged against each feature's spread: a mean near zero has no useful relative error
      // (the central sum over the union has its own rounding, at the scale of the values).
      ...features.map((f) => compare(`mean ${f}`, mean.mean[f] ?? Number.NaN, central.means[f] ?? Number.NaN, false, 1e-9, central.stds[f])),
    ];
    let fedAvgMs: number | undefined;
    if (opts.rounds > 0 && label !== undefined) {
      const fedStarted = performance.now();
      rows.push(...(await fedAvgRows(project, files, features.filter((f) => f !== label), label, opts.rounds, opts.json)));
      fedAvgMs = performance.now() - fedStarted;
    }
    const memory = cluster.processes().map((p) => ({ process: p.name, rssMiB: rssMiB(p.pid) }));
    const ok = rows.every((r) => r.match);
    const timings = { startMs: Math.round(startMs), meanMs: Math.round(meanMs), ...(fedAvgMs === undefined ? {} : { fedAvgMs: Math.round(fedAvgMs) }) };
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ ok, workers: n, processes, workersPerProcess: perProcess, rows: central.count, results: rows, timings, memory }, null, 2)}\n`);
    } else {
      printComparison(rows, ok);
      const hosts = memory.filter((m) => m.process !== 'scheduler' && m.rssMiB !== undefined).map((m) => m.rssMiB as number);
      const scheduler = memory.find((m) => m.process === 'scheduler')?.rssMiB;
      process.stderr.write(
        `started in ${(startMs / 1000).toFixed(1)} s; mean in ${(meanMs / 1000).toFixed(1)} s${fedAvgMs === undefined ? '' : `; FedAvg in ${(fedAvgMs / 1000).toFixed(1)} s`}; RSS: scheduler ${scheduler ?? '?'} MiB, worker processes ${hosts.length > 0 ? `${Math.min(...hosts)}-${Math.max(...hosts)}` : '?'} MiB (${perProcess} workers each)\n`,
      );
    }
    return ok ? 0 : 1;
  });
}
