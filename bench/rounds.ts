import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, fdatasyncSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { WebSocketServer } from 'ws';
import type { Step } from '../protocols/entities.ts';
import { aggregateLinear } from '../lib/ops/models/aggregate.ts';
import { initialLinear, trainLinear } from '../lib/ops/models/linear.ts';
import type { LinearModel, Matrix } from '../lib/ops/models/model.ts';
import { seededRandom } from '../lib/ops/models/random.ts';
import { Cluster } from '../lib/sim/cluster.ts';
import { distributions, steps } from '../lib/workbench/builders.ts';
import type { Project, Workbench } from '../lib/workbench/client.ts';
import { models } from '../lib/workbench/models.ts';
import { type Cleanup, median, ms, now, type Row, ratio } from './util.ts';

/**
 * Rounds: the system's own cost per round of an Iterate, the figure a researcher tuning a model
 * pays hundreds of times (issue 9).
 *
 * - tiny round: `Iterate(R, [Parallel(Noop, Collect), Finalize(Noop)])` on a real cluster (a
 *   scheduler and N worker processes). Per round = (wall(R_hi) - wall(R_lo)) / (R_hi - R_lo), so
 *   submit, planning and the final download cancel out, and growth with R stays in; timed after
 *   BENCH_ROUNDS_WARM (3,000) rounds of warm-up, the cold figure printed beside.
 *   Baseline, same run: a bare `ws` server in this process and N `ws` clients, each in its own
 *   process, exchanging the same shape per round (a few bytes to every client, a few bytes back
 *   from each, then the next round). No actors, no store, no codec.
 * - FedAvg round: logistic regression, d = 10, 2,500 rows per worker (generated here with a fixed
 *   seed), batch 64, 1 epoch per round, weighted mean. Per round from the R difference as above.
 *   Baseline: the round's pure compute in this process (each worker's `trainLinear` over its
 *   rows already in memory, the slower of the parallel ones, plus `aggregateLinear`). Beside it,
 *   the N trainings run at once, a thread each (bench/training-thread.mjs): on fewer cores than
 *   workers they share the cores, and that wall time is the floor of any round here.
 * - FedAvg late vs early: one Iterate(BENCH_ROUNDS_LONG = 300; 0 skips it), per round of its last
 *   50 rounds against its rounds 2-51, timed by the scheduler's finish stamps of the Finalizes
 *   (flat in R is the goal; spans of 20 moved by ±40% with the machine's load here). Baseline:
 *   the early rounds of the same artifact.
 */

export const FEATURES = Array.from({ length: 10 }, (_, j) => `x${j}`);
export const ROWS_PER_WORKER = 2500;
/** The peers' training per round: batch 64, one epoch (issue 9). */
const TRAINING = { epochs: 1, learningRate: 0.1, batchSize: 64, mu: 0, l2: 0, seed: 0 };
/**
 * Rounds run before the timed ones (BENCH_ROUNDS_WARM). A scheduler's and a worker's hot path is
 * hundreds of functions, each called a few times per job: V8 compiles them with its optimizing
 * tier only after thousands of jobs (a tiny round at 2 workers cost ~1.4 ms over the first 1,000
 * rounds of a fresh cluster and ~0.95 ms after 3,000: bench/round-costs.ts, WARM). A scheduler runs
 * for days, so the figure is the warm one; the first pair of artifacts is printed as the cold one.
 */
const WARM_ROUNDS = Number(process.env.BENCH_ROUNDS_WARM ?? 3000);

/** A logistic workload: y = 1 with probability sigmoid(w·x + b), w and x seeded. */
export function syntheticShard(seed: number, rows: number): { csv: string; x: Matrix; y: Float64Array } {
  const random = seededRandom(seed);
  const truth = seededRandom(7); // the same true model on every shard
  const w = FEATURES.map(() => truth() * 2 - 1);
  const data = new Float64Array(rows * FEATURES.length);
  const y = new Float64Array(rows);
  const lines = [`${FEATURES.join(',')},y`];
  for (let r = 0; r < rows; r++) {
    let z = 0.1;
    const row: number[] = [];
    for (let j = 0; j < FEATURES.length; j++) {
      const v = random() * 4 - 2;
      data[r * FEATURES.length + j] = v;
      row.push(v);
      z += (w[j] as number) * v;
    }
    y[r] = random() < 1 / (1 + Math.exp(-z)) ? 1 : 0;
    lines.push(`${row.map((v) => v.toFixed(6)).join(',')},${y[r]}`);
  }
  // The CSV holds the values rounded as written: the in-memory baseline reads them back the same way.
  for (let r = 0; r < rows; r++) for (let j = 0; j < FEATURES.length; j++) data[r * FEATURES.length + j] = Number((data[r * FEATURES.length + j] as number).toFixed(6));
  return { csv: `${lines.join('\n')}\n`, x: { rows, cols: FEATURES.length, data }, y };
}

/** The bare baseline's client: echoes every frame it gets. Runs as its own process, like a worker. */
const ECHO_CLIENT = `
const WebSocket = require(${JSON.stringify(createRequire(import.meta.url).resolve('ws'))});
const ws = new WebSocket(process.argv[1], { perMessageDeflate: false });
ws.on('message', (data) => ws.send(data, { binary: true }));
ws.on('close', () => process.exit(0));
ws.on('error', () => process.exit(1));
`;

/**
 * Bare ws: per-round time of N clients each answering a few bytes, R rounds. With `journal` (a
 * file path), the durable floor: before each round's sends the server writes the round's record to
 * that file and fdatasyncs it, as the least a scheduler must do before it hands out work that
 * follows completed work (the guarantee: a completed job whose successor was assigned
 * survives a power loss). Its clients then wait an fsync between frames, as a worker does.
 */
async function bareRounds(cleanup: Cleanup, workers: number, rounds: number, repeats: number, journal?: string): Promise<number> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  const children: ChildProcess[] = [];
  cleanup.add(`bare ws (${workers})`, async () => {
    for (const c of children) c.kill('SIGKILL');
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  });
  const sockets = await new Promise<import('ws').WebSocket[]>((resolve, reject) => {
    const list: import('ws').WebSocket[] = [];
    wss.on('connection', (ws) => {
      list.push(ws);
      if (list.length === workers) resolve(list);
    });
    for (let i = 0; i < workers; i++) {
      const child = spawn(process.execPath, ['-e', ECHO_CLIENT, url], { stdio: 'ignore' });
      child.once('exit', (code) => code !== 0 && code !== null && reject(new Error(`bare ws client exited with ${code}`)));
      children.push(child);
    }
  });
  const payload = randomBytes(16);
  const fd = journal === undefined ? undefined : openSync(journal, 'w');
  if (fd !== undefined) cleanup.add('bare ws journal', () => closeSync(fd));
  const record = Buffer.alloc(64, 1);
  const sendRound = () => {
    if (fd !== undefined) {
      writeSync(fd, record, 0, record.length, 0); // in place: the cheapest durable write (no size to sync)
      fdatasyncSync(fd);
    }
    for (const s of sockets) s.send(payload, { binary: true });
  };
  const runRounds = () =>
    new Promise<number>((resolve) => {
      const t0 = now();
      let round = 0;
      let answers = 0;
      const onAnswer = () => {
        if (++answers < workers) return;
        answers = 0;
        // "Finalize": the round's answers are in; the next round starts.
        if (++round === rounds) {
          for (const s of sockets) s.off('message', onAnswer);
          resolve((now() - t0) / rounds);
          return;
        }
        sendRound();
      };
      for (const s of sockets) s.on('message', onAnswer);
      sendRound();
    });
  for (let warmed = 0; warmed < WARM_ROUNDS; warmed += rounds) await runRounds(); // warm-up, as ours
  const out: number[] = [];
  for (let r = 0; r < repeats; r++) out.push(await runRounds());
  return median(out);
}

/**
 * The durability floor, same run: the median time of one fsync (write 4 KiB, fdatasync) in the
 * folder that holds the scheduler's store. A round that assigns work to remote workers waits for at
 * least one (group commit), so no durable round can beat bare ws + this.
 */
function fsyncFloor(dir: string, samples = 200): number {
  const fd = openSync(join(dir, 'fsync-probe'), 'w');
  const block = Buffer.alloc(4096, 1);
  const times: number[] = [];
  try {
    for (let i = 0; i < samples; i++) {
      writeSync(fd, block, 0, block.length, 0);
      const t0 = now();
      fdatasyncSync(fd);
      times.push(now() - t0);
    }
  } finally {
    closeSync(fd);
  }
  return median(times);
}

/** Per round of an Iterate artifact, from the difference of two lengths (fixed costs cancel). */
export async function perRound(project: Project, make: (rounds: number) => Step[], lo: number, hi: number, repeats: number) {
  const wall = async (rounds: number) => {
    const t0 = now();
    const handle = await project.submit(make(rounds));
    await handle.result();
    return now() - t0;
  };
  const coldLo = await wall(lo);
  const cold = (await wall(hi)) - coldLo;
  for (let warmed = lo + hi; warmed < WARM_ROUNDS; warmed += hi) await wall(hi);
  const perRounds: number[] = [];
  const los: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const a = await wall(lo);
    const b = await wall(hi);
    los.push(a);
    perRounds.push((b - a) / (hi - lo));
  }
  return { perRound: median(perRounds), lo: median(los), cold: cold / (hi - lo) };
}

/**
 * Per round early and late in one long Iterate (issue 9: R = 300 as fast per round as R = 5), from
 * the scheduler's own clock: the `finishedAt` of each round's last job (the Finalize) in the final
 * status. Early is rounds 2..1+k, late the last k, each the span of their Finalizes over k (the
 * stamps are whole milliseconds: a span of k rounds reads to 1/k ms). The median artifact of
 * `repeats`. (The workbench's pushes cannot time them: progress pushes go out at most every
 * `progress_interval_ms`, a batch of rounds at a time.)
 */
export async function earlyLate(wb: Workbench, project: Project, make: (rounds: number) => Step[], rounds: number, k: number, repeats: number) {
  const run = async () => {
    const handle = await project.submit(make(rounds));
    await handle.result();
    const { jobs } = await wb.status(handle.id);
    const last = Math.max(...jobs.map((j) => j.stepIndex));
    const finals = new Map<number, { index: number; finishedAt: number }>(); // iteration -> its round's last job
    for (const j of jobs) {
      const cur = finals.get(j.iteration);
      if (j.stepIndex !== last || (cur !== undefined && j.index < cur.index)) continue;
      if (j.finishedAt === undefined) throw new Error(`job ${j.id} of a completed artifact has no finishedAt`);
      finals.set(j.iteration, { index: j.index, finishedAt: j.finishedAt });
    }
    const times = [...finals].sort(([a], [b]) => a - b).map(([, j]) => j.finishedAt);
    if (times.length < 2 * k + 1) throw new Error(`${times.length} rounds: too few for two spans of ${k}`);
    const span = (from: number) => ((times[from + k] as number) - (times[from] as number)) / k;
    // Round i (from 2) lasts from the Finalize of round i - 1 to its own.
    return { early: span(0), late: span(times.length - 1 - k) };
  };
  const runs: Array<{ early: number; late: number }> = [];
  for (let r = 0; r < repeats; r++) runs.push(await run());
  runs.sort((a, b) => a.early + a.late - (b.early + b.late));
  return runs[runs.length >> 1] as { early: number; late: number };
}

/** The pure compute of one FedAvg round: each shard's local training (the slower one) plus aggregation. */
async function fedAvgCompute(shards: Array<{ x: Matrix; y: Float64Array }>, repeats: number): Promise<number> {
  const mean = new Float64Array(FEATURES.length);
  const std = new Float64Array(FEATURES.length).fill(1);
  let model: LinearModel = initialLinear('logisticRegression', FEATURES, 'y', mean, std);
  const round = async () => {
    let slowest = 0;
    const updates = [];
    for (const s of shards) {
      const t0 = now();
      const local = await trainLinear(model, s.x, s.y, TRAINING);
      slowest = Math.max(slowest, now() - t0);
      updates.push({ model: local, samples: s.x.rows });
    }
    const t1 = now();
    model = aggregateLinear(updates, { strategy: 'weightedMean' });
    return slowest + (now() - t1);
  };
  for (let i = 0; i < 200; i++) await round(); // warm-up: V8's optimizing tier, as the workers' long runs have it
  const out: number[] = [];
  for (let r = 0; r < repeats * 4; r++) out.push(await round());
  return median(out);
}

/**
 * The N workers' trainings of a FedAvg round run at once on this machine's cores, one thread per
 * shard, round after round: their wall time per round. No round can be shorter: with more
 * workers than cores the trainings share them (4 workers on 2 cores: about twice one training).
 */
async function trainingsAtOnce(shards: Array<{ x: Matrix; y: Float64Array }>, repeats: number): Promise<number> {
  const ROUNDS = 100;
  const threads = shards.map(
    (s) => new Worker(new URL('./training-thread.mjs', import.meta.url), { workerData: { x: s.x, y: s.y, features: FEATURES, training: TRAINING } }),
  );
  const next = (w: Worker, what: string) =>
    new Promise<void>((resolve, reject) => {
      const onMessage = (m: unknown) => {
        if (m !== what) return;
        w.off('message', onMessage);
        w.off('error', reject);
        resolve();
      };
      w.on('message', onMessage);
      w.once('error', reject);
    });
  try {
    await Promise.all(threads.map((w) => next(w, 'ready')));
    const perRound: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const done = Promise.all(threads.map((w) => next(w, 'done')));
      const t0 = now();
      for (const w of threads) w.postMessage(ROUNDS);
      await done;
      perRound.push((now() - t0) / ROUNDS);
    }
    return median(perRound);
  } finally {
    await Promise.all(threads.map((w) => w.terminate()));
  }
}

/** The tiny round's artifact: `Iterate(rounds, [Parallel(Noop, Collect), Finalize(Noop)])`. */
export const tinyRound = (rounds: number): Step[] => [
  steps.iterate(rounds, [
    { kind: 'Parallel', operation: { kind: 'Noop' }, distribution: distributions.collect() },
    { kind: 'Finalize', operation: { kind: 'Noop' } },
  ]),
];

/** The FedAvg round's artifact: logistic regression on the synthetic shards, batch 64, 1 epoch per round. */
export const fedAvgRound = (rounds: number): Step[] =>
  models.logisticRegression({ features: FEATURES, label: 'y', rounds, batchSize: 64, epochs: 1, standardize: 'none' });

/** A cluster of a scheduler and `n` worker processes, each with a synthetic shard of `rows` rows, and a workbench on it. */
/**
 * A scheduler and `n` worker processes with `rows` synthetic rows each. `env` goes to every
 * process, `workerEnv` to the workers' only (bench/round-costs.ts profiles the scheduler alone).
 */
export async function roundsCluster(
  cleanup: Cleanup,
  n: number,
  rows: number,
  opts: { env?: Record<string, string>; workerEnv?: Record<string, string> } = {},
) {
  const dir = cleanup.tempDir(`fdl-bench-rounds-${n}-`);
  const shards = Array.from({ length: n }, (_, i) => syntheticShard(1000 + i, rows));
  const files = shards.map((s, i) => {
    const file = join(dir, `shard-${i + 1}.csv`);
    writeFileSync(file, s.csv);
    return file;
  });
  const token = randomBytes(16).toString('hex');
  const cluster = await Cluster.start({
    dir,
    projectName: 'rounds',
    projectToken: token,
    workers: files.map((f, i) => ({ name: `worker-${i + 1}`, files: [f], ...(opts.workerEnv ? { env: opts.workerEnv } : {}) })),
    env: { FDL_LOG_LEVEL: 'warn', ...opts.env },
  });
  cleanup.add(`cluster (${n})`, () => cluster.stop());
  const wb = await cluster.connect('bench-rounds');
  cleanup.add(`workbench (${n})`, () => wb.close());
  const project = await wb.project(token);
  return { dir, shards, cluster, wb, project };
}

export async function benchRounds(opts: { cleanup: Cleanup; repeats: number; workers: number[] }): Promise<Row[]> {
  const rows: Row[] = [];
  const LO = 5;
  // 120 rounds between the two lengths: with 40 (R 5..45) the difference of two walls moved by
  // ±10% from run to run here, more than a change of 10% in the round could be told from.
  const HI = Number(process.env.BENCH_ROUNDS_HI ?? 125);
  const LONG = Number(process.env.BENCH_ROUNDS_LONG ?? 300);
  const SPAN = Math.min(50, Math.floor((LONG - 1) / 2)); // rounds per span of early and late
  for (const n of opts.workers) {
    const { dir, shards, cluster, wb, project } = await roundsCluster(opts.cleanup, n, ROWS_PER_WORKER);
    const tinyRun = await perRound(project, tinyRound, LO, HI, opts.repeats);
    const fedRun = await perRound(project, fedAvgRound, LO, Math.min(HI, 65), opts.repeats);
    const long = LONG > 0 ? await earlyLate(wb, project, fedAvgRound, LONG, SPAN, Math.min(3, opts.repeats)) : undefined;
    wb.close();
    await cluster.stop();

    const bare = await bareRounds(opts.cleanup, n, HI, opts.repeats);
    const durableBare = await bareRounds(opts.cleanup, n, HI, opts.repeats, join(dir, 'bare-journal'));
    const compute = await fedAvgCompute(shards, opts.repeats);
    const atOnce = await trainingsAtOnce(shards, opts.repeats);
    const fsync = fsyncFloor(dir);
    process.stdout.write(
      `[rounds] ${n} workers: tiny round ${ms(tinyRun.perRound)} vs bare ws ${ms(bare)} (${ratio(tinyRun.perRound / bare)}); ` +
        `FedAvg round ${ms(fedRun.perRound)} vs compute ${ms(compute)} (${ratio(fedRun.perRound / compute)}); ` +
        `the ${n} trainings at once on ${availableParallelism()} cores ${ms(atOnce)} (${ratio(atOnce / compute)} compute: no FedAvg round is shorter here); ` +
        `tiny artifact of ${LO} rounds ${ms(tinyRun.lo)}; tiny round cold (the first artifacts of a fresh cluster, before ${WARM_ROUNDS} rounds of warm-up) ${ms(tinyRun.cold)}; ` +
        `one fsync here ${ms(fsync)} (a durable round waits for at least one); ` +
        `durable bare ws (an fdatasync before each round's sends) ${ms(durableBare)} = ${ratio(durableBare / bare)} bare ws, the floor of any durable round here\n`,
    );
    rows.push({
      figure: `tiny round, ${n} workers (R ${LO}..${HI})`,
      value: ms(tinyRun.perRound),
      baseline: `bare ws ${ms(bare)}`,
      ratio: ratio(tinyRun.perRound / bare),
      note: `goal <= 2x; vs durable bare ws (${ms(durableBare)}, itself ${ratio(durableBare / bare)}): ${ratio(tinyRun.perRound / durableBare)}`,
    });
    rows.push({
      figure: `FedAvg round, ${n} workers (d 10, ${ROWS_PER_WORKER} rows each)`,
      value: ms(fedRun.perRound),
      baseline: `compute ${ms(compute)}`,
      ratio: ratio(fedRun.perRound / compute),
      note: `goal <= 2x; the ${n} trainings at once on ${availableParallelism()} cores take ${ms(atOnce)} (${ratio(atOnce / compute)})`,
    });
    if (long) {
      process.stdout.write(
        `[rounds] ${n} workers: FedAvg per round in one Iterate(${LONG}), from the Finalizes' finish stamps: rounds 2-${SPAN + 1} ${ms(long.early)}, last ${SPAN} ${ms(long.late)}\n`,
      );
      rows.push({
        figure: `FedAvg round ${LONG - SPAN + 1}-${LONG} of ${LONG}, ${n} workers`,
        value: ms(long.late),
        baseline: `rounds 2-${SPAN + 1} ${ms(long.early)}`,
        ratio: ratio(long.late / long.early),
        note: 'goal: flat in R (1x)',
      });
    }
  }
  return rows;
}
