// Why: the pieces of federated training must each be right on their own before a cluster runs
// them: robust aggregations must shrug off a bad worker, models must cross the wire as raw
// bytes and be refused when malformed, training must be deterministic for a seed, and the
// model operations must run whole chains (stats -> init -> train -> aggregate) in-process.
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { decodeValue, encodeValue } from '../protocols/codec.ts';
import { OperationSchema } from '../protocols/entities.ts';
import { DataEngine, forAttempt } from '../lib/data/engine.ts';
import { type Dataset, datasetCache, readDataset, subset } from '../lib/ops/models/data.ts';
import type { Locals, OpContext } from '../lib/ops/context.ts';
import { runOperation } from '../lib/ops/index.ts';
import { accuracy } from '../lib/ops/metrics.ts';
import { aggregateLinear, combineVectors, mergeForests } from '../lib/ops/models/aggregate.ts';
import { binColumns, trainForest } from '../lib/ops/models/forest.ts';
import { computeTrain, computeTrainTest, foldOf, type MergedMetricsProduct, type MetricsProduct } from '../lib/ops/models/index.ts';
import { columnStats, initialLinear, trainLinear } from '../lib/ops/models/linear.ts';
import {
  type ForestModel,
  type LinearModel,
  type Matrix,
  type ModelUpdate,
  modelToWire,
  parseModel,
  parseUpdate,
  predictMatrix,
} from '../lib/ops/models/model.ts';
import { fromFixed, toFixed } from '../lib/ops/estimators/masked.ts';
import { isTestRow } from '../lib/ops/split.ts';
import { loadModel, models } from '../lib/workbench.ts';
import type { Operation } from '../protocols/entities.ts';
import { readCsv, union } from './helpers/central.ts';

const DATA = new URL('../examples/data/', import.meta.url).pathname;
const SHARDS = ['california_housing.MedInc1.csv', 'california_housing.MedInc2.csv'].map((f) => join(DATA, f));
const LABEL = 'MedHouseValDiscrete';
const TOKEN = 'project-token';
const all = union(...SHARDS.map(readCsv));
const features = all.columns.filter((c) => c !== LABEL);

const training = { epochs: 2, learningRate: 0.1, batchSize: 16, mu: 0, l2: 0, seed: 1 };

/** A synthetic problem: y = 1 when x0 + 2·x1 > 0.5. */
function synthetic(n: number, seed: number): { x: Matrix; y: Float64Array } {
  let s = seed >>> 0;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const data = new Float64Array(n * 3);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const a = rnd();
    const b = rnd();
    data[3 * i] = a;
    data[3 * i + 1] = b;
    data[3 * i + 2] = rnd() * 100; // noise on another scale
    y[i] = a + 2 * b > 1.5 ? 1 : 0;
  }
  return { x: { rows: n, cols: 3, data }, y };
}

/**
 * The ArrayBuffers' total once every earlier garbage is collected and its memory freed (V8 frees
 * array buffers' memory after a collection, off the main thread: collect until the total stops
 * falling). Measured right after a call, its growth is what the call kept or left unreclaimed.
 */
async function settledArrayBuffers(): Promise<number> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  let last = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 20; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 5));
    const now = process.memoryUsage().arrayBuffers;
    if (now >= last) return now;
    last = now;
  }
  return last;
}

function linear(weights: number[], bias: number, samples = 100): ModelUpdate {
  const d = weights.length;
  const m = initialLinear('logisticRegression', weights.map((_, i) => `f${i}`), 'y', new Float64Array(d), new Float64Array(d).fill(1));
  return { model: { ...m, weights: Float64Array.from(weights), bias }, samples };
}

t.test('aggregation strategies, by hand', async (t) => {
  const v = [Float64Array.of(1, 2), Float64Array.of(3, 4)];
  t.same(Array.from(combineVectors(v, [1, 3], { strategy: 'weightedMean' })), [2.5, 3.5], 'weighted by sample count');
  const five = [1, 2, 3, 4, 1000].map((x) => Float64Array.of(x, -x));
  t.same(Array.from(combineVectors(five, [1, 1, 1, 1, 1], { strategy: 'median' })), [3, -3]);
  t.same(Array.from(combineVectors(five, [1, 1, 1, 1, 1], { strategy: 'trimmedMean', trim: 0.2 })), [3, -3], 'drops 1 at each end');
  t.same(Array.from(combineVectors(v, [1, 1], { strategy: 'median' })), [2, 3], 'median of an even count');
  t.same(Array.from(combineVectors([...five.slice(0, 4), Float64Array.of(Number.NaN, Number.NaN)], [1, 1, 1, 1, 1], { strategy: 'median' })), [3, -2], 'NaN sorts as an outlier');
  t.throws(() => combineVectors([Float64Array.of(1), Float64Array.of(1, 2)], [1, 1], { strategy: 'median' }), RangeError);
  t.throws(() => combineVectors(v, [0, 0], { strategy: 'weightedMean' }), RangeError);
});

t.test('median and trimmed mean are robust to a bad worker; the weighted mean is not', async (t) => {
  const good = [0.9, 1.0, 1.1, 1.05].map((w) => linear([w, -w], 0.5 * w));
  const bad = linear([1e6, 1e6], -1e6, 1_000_000); // and it lies about its sample count
  const updates = [...good, bad];
  const median = aggregateLinear(updates, { strategy: 'median' });
  const trimmed = aggregateLinear(updates, { strategy: 'trimmedMean', trim: 0.2 });
  const mean = aggregateLinear(updates, { strategy: 'weightedMean' });
  t.ok(Math.abs((median.weights[0] as number) - 1.025) < 0.05 && Math.abs((median.weights[1] as number) + 1.0) < 0.06, `median ${median.weights}`);
  t.ok(Math.abs((trimmed.weights[0] as number) - 1.05) < 0.06 && Math.abs(trimmed.bias - 0.5) < 0.05, `trimmed ${trimmed.weights}`);
  t.ok((mean.weights[0] as number) > 1e5, 'the weighted mean is dragged away');
  t.equal(median.round, 1);
  t.same(median.history, [{ round: 1, samples: 1_000_400, workers: 5 }]);

  const other = linear([1, 2], 0);
  const model = other.model as LinearModel;
  other.model = { ...model, mean: Float64Array.of(1, 1) };
  t.throws(() => aggregateLinear([good[0] as ModelUpdate, other], { strategy: 'median' }), /standardized differently/);
});

t.test('linear models: deterministic, learn, FedProx holds them near the global model', async (t) => {
  const { x, y } = synthetic(2_000, 5);
  const { mean, std } = columnStats(x);
  const start = initialLinear('logisticRegression', ['a', 'b', 'noise'], 'y', mean, std);
  const m1 = await trainLinear(start, x, y, { ...training, epochs: 20 });
  const m2 = await trainLinear(start, x, y, { ...training, epochs: 20 });
  t.same(Array.from(m1.weights), Array.from(m2.weights), 'same seed, same bits');
  const m3 = await trainLinear(start, x, y, { ...training, epochs: 20, seed: 2 });
  t.not(Array.from(m3.weights).join(), Array.from(m1.weights).join(), 'another seed, another shuffle');
  t.ok(accuracy(y, predictMatrix(m1, x).predicted) > 0.95, 'separable data is learned');
  t.ok(Math.abs(m1.weights[2] as number) < 0.5 * Math.abs(m1.weights[1] as number), 'the noise feature gets a small weight');

  const prox = await trainLinear(start, x, y, { ...training, epochs: 20, mu: 5 });
  const norm = (w: Float64Array) => Math.hypot(...w);
  t.ok(norm(prox.weights) < 0.5 * norm(m1.weights), 'mu pulls the local model towards the global one (zero here)');

  const reg = initialLinear('linearRegression', ['a', 'b', 'noise'], 'y', mean, std);
  const target = Float64Array.from({ length: x.rows }, (_, i) => 3 * (x.data[3 * i] as number) - (x.data[3 * i + 1] as number) + 2);
  const lr = await trainLinear(reg, x, target, { ...training, epochs: 50, learningRate: 0.05 });
  const pred = predictMatrix(lr, x).predicted;
  t.ok(pred.every((p, i) => Math.abs(p - (target[i] as number)) < 0.05), 'a noiseless linear target is fitted');
  await t.rejects(trainLinear(reg, x, target.map((v) => v * 1e200), { ...training, learningRate: 50 }), /diverged/);
});

t.test('linear training standardizes each row as it reads it: the very bits of training on standardized rows', async (t) => {
  // trainLinear no longer builds a standardized copy of the matrix per call (a round's garbage of
  // rows × features doubles): the model must not change by a bit for it.
  const { x, y } = synthetic(1_000, 9);
  const { mean, std } = columnStats(x);
  const data = x.data.map((v, i) => (v - (mean[i % x.cols] as number)) / (std[i % x.cols] as number));
  const features = ['a', 'b', 'noise'];
  for (const type of ['logisticRegression', 'linearRegression'] as const) {
    const raw = await trainLinear(initialLinear(type, features, 'y', mean, std), x, y, { ...training, epochs: 3 });
    const identity = initialLinear(type, features, 'y', new Float64Array(3), new Float64Array(3).fill(1));
    const pre = await trainLinear(identity, { ...x, data }, y, { ...training, epochs: 3 });
    t.same([...raw.weights, raw.bias], [...pre.weights, pre.bias], `${type}: the same weights and bias, bit for bit`);
  }
});

t.test('linear training keeps no copy of the rows: a round costs its worker no memory the size of its data', async (t) => {
  // The standardized copy it made before was garbage every round (200 KB at 2,500 x 10; 4.8 MB for
  // the 200,000 x 3 here) and kept a worker's collector busy. Still unreclaimed when the call
  // returns, such a copy shows in the ArrayBuffers' total (5.6 MB grown then); what the training
  // needs is O(rows + features): the row order, 800 KB here.
  const { x, y } = synthetic(200_000, 11);
  const { mean, std } = columnStats(x);
  const start = initialLinear('logisticRegression', ['a', 'b', 'noise'], 'y', mean, std);
  await trainLinear(start, x, y, { ...training, epochs: 1 }); // warm: the first call's own allocations aside
  // Collected first, so that no earlier garbage freed during the call hides what the call makes.
  const before = await settledArrayBuffers();
  await trainLinear(start, x, y, { ...training, epochs: 1 });
  const grown = process.memoryUsage().arrayBuffers - before;
  t.ok(grown < x.data.byteLength / 2, `ArrayBuffers grew by ${grown} bytes over a training on ${x.data.byteLength} bytes of rows`);
});

t.test("TrainTest trains on its rows in place: Train's very model on the rows copied out, and no copy per round", async (t) => {
  // TrainTest copied its training rows out of the dataset every round (a round's garbage as large
  // as the data). It now reads them in place, and splits a cached dataset once.
  const dataset = (n: number, seed: number): Dataset => {
    const { x, y } = synthetic(n, seed);
    return { x, y, rowIndex: Uint32Array.from({ length: n }, (_, i) => i), queried: n };
  };
  const model = { type: 'logisticRegression' as const, features: ['a', 'b', 'noise'], label: 'y', epochs: 2, seed: 7 };
  const trainTest = { kind: 'TrainTest' as const, model, testFraction: 0.3 };
  const ds = dataset(3_000, 12);
  const trainRows = [...ds.rowIndex.keys()].filter((i) => !isTestRow(7, ds.rowIndex[i] as number, 0.3));
  const first = parseUpdate(await computeTrainTest({ operation: trainTest, inputs: [], iteration: 0, ds }));
  for (const [label, inputs] of [
    ['from local standardization', []],
    ['from a global model', [modelToWire(first.model)]],
  ] as const) {
    const inPlace = parseUpdate(await computeTrainTest({ operation: trainTest, inputs: [...inputs], iteration: 3, ds }));
    const copied = parseUpdate(await computeTrain({ operation: { kind: 'Train', model }, inputs: [...inputs], iteration: 3, ds: subset(ds, trainRows) }));
    const bits = (u: typeof inPlace) => {
      const m = u.model as LinearModel;
      return [...m.weights, m.bias, ...m.mean, ...m.std];
    };
    t.same(bits(inPlace), bits(copied), `${label}: the same weights, bias and standardization, bit for bit`);
    t.equal(inPlace.samples, trainRows.length, `${label}: trained on the training rows`);
    t.equal(inPlace.testSamples, ds.x.rows - trainRows.length, `${label}: tested on the others`);
  }

  // A round's own buffers are its row order and the evaluation's (a tenth of the rows held out).
  const big = dataset(200_000, 13);
  const round = { ...trainTest, testFraction: 0.1 };
  await computeTrainTest({ operation: round, inputs: [], iteration: 0, ds: big }); // splits it, once
  const before = await settledArrayBuffers();
  await computeTrainTest({ operation: round, inputs: [], iteration: 1, ds: big });
  const grown = process.memoryUsage().arrayBuffers - before;
  t.ok(grown < big.x.data.byteLength / 2, `ArrayBuffers grew by ${grown} bytes over a round on ${big.x.data.byteLength} bytes of rows`);
});

t.test('models cross the wire as raw bytes, and malformed ones are refused', async (t) => {
  const { x, y } = synthetic(500, 9);
  const { mean, std } = columnStats(x);
  const lin = await trainLinear(initialLinear('logisticRegression', ['a', 'b', 'c'], 'y', mean, std), x, y, training);
  const wire = decodeValue(encodeValue(modelToWire(lin))) as Record<string, Uint8Array>;
  t.ok(wire.weights instanceof Uint8Array && wire.weights.byteLength === 24, 'weights: 3 doubles as 24 bytes');
  const back = parseModel(wire) as LinearModel;
  t.same(Array.from(back.weights), Array.from(lin.weights));
  t.same(Array.from(back.std), Array.from(lin.std));

  const forest = await trainForest(x, Uint8Array.from(y), [0, 1], { nEstimators: 3, maxDepth: 6, minSamplesSplit: 2, minSamplesLeaf: 1, maxFeatures: 2, bootstrap: true, maxBins: 32, seed: 1 }, { strategy: 'merge', features: ['a', 'b', 'c'], label: 'y', salt: 0 });
  const encoded = encodeValue(modelToWire(forest));
  const nodes = forest.feature.length;
  t.ok(encoded.byteLength < nodes * (4 + 8 + 4 + 4 + 16) + 400, `a forest of ${nodes} nodes is ${encoded.byteLength} bytes`);
  const f2 = parseModel(decodeValue(encoded)) as ForestModel;
  t.same(Array.from(predictMatrix(f2, x).predicted), Array.from(predictMatrix(forest, x).predicted));

  const bad = (patch: Record<string, unknown>) => () => parseModel({ ...(decodeValue(encoded) as object), ...patch });
  const loop = Int32Array.from(forest.left);
  const inner = forest.feature.findIndex((f) => f >= 0);
  loop[inner] = inner; // a node pointing to itself
  t.throws(bad({ left: new Uint8Array(loop.buffer) }), /node .* is malformed/);
  const feat = Int32Array.from(forest.feature);
  feat[inner] = 7;
  t.throws(bad({ feature: new Uint8Array(feat.buffer) }), /malformed/);
  t.throws(bad({ value: new Uint8Array(8) }), /differ in length/);
  t.throws(bad({ roots: new Uint8Array(Int32Array.of(nodes, 0, 0).buffer) }), /tree 0/);
  t.throws(() => parseModel({ ...(wire as object), weights: [1, 2, 3] }), /not binary/);
  t.throws(() => parseModel({ ...(wire as object), type: 'svm' }), /unknown model type/);
  t.throws(() => parseUpdate({ model: wire, samples: -1 }), /count/);
});

t.test('random forest: bins, determinism, MERGE and MAJORITY', async (t) => {
  const binned = binColumns({ rows: 6, cols: 1, data: Float64Array.of(1, 1, 2, 3, 3, 5) }, 256);
  t.same(Array.from(binned.thresholds[0] as Float64Array), [1.5, 2.5, 4], 'midpoints between distinct values');
  t.same(Array.from(binned.bins[0] as Uint8Array), [0, 0, 1, 2, 2, 3]);
  const many = binColumns({ rows: 1000, cols: 1, data: Float64Array.from({ length: 1000 }, (_, i) => i) }, 10);
  t.equal((many.thresholds[0] as Float64Array).length, 9, 'quantile cuts');

  const { x, y } = synthetic(3_000, 11);
  const test = synthetic(1_000, 12);
  const opts = { nEstimators: 15, maxDepth: 12, minSamplesSplit: 2, minSamplesLeaf: 1, maxFeatures: 2, bootstrap: true, maxBins: 64, seed: 4 };
  const meta = { strategy: 'merge' as const, features: ['a', 'b', 'c'], label: 'y', salt: 0 };
  const a = await trainForest(x, Uint8Array.from(y), [0, 1], opts, meta);
  const b = await trainForest(x, Uint8Array.from(y), [0, 1], opts, meta);
  t.same(Array.from(a.threshold), Array.from(b.threshold), 'same seed, same trees');
  t.ok(accuracy(test.y, predictMatrix(a, test.x).predicted) > 0.93, 'it learns');

  // Two workers: one holds class 0/1, the other labels 1/2 (merged by value).
  const half = (lo: number, hi: number) => ({ rows: hi - lo, cols: 3, data: x.data.slice(lo * 3, hi * 3) });
  const f1 = await trainForest(half(0, 1500), Uint8Array.from(y.slice(0, 1500)), [0, 1], opts, meta);
  const f2 = await trainForest(half(1500, 3000), Uint8Array.from(y.slice(1500)), [0, 1], opts, { ...meta, salt: 1 });
  const upd = (model: ForestModel) => ({ model, samples: 1500 });
  const merged = mergeForests([upd(f1), upd(f2)], 'merge');
  const majority = mergeForests([upd(f1), upd(f2)], 'majority');
  t.equal(merged.roots.length, 30);
  t.equal(merged.forests, 2);
  t.ok(accuracy(test.y, predictMatrix(merged, test.x).predicted) > 0.93);
  t.ok(accuracy(test.y, predictMatrix(majority, test.x).predicted) > 0.93);
  // MERGE probabilities average all trees; MAJORITY's soft score averages the forests (equal sizes: same).
  const pm = predictMatrix(merged, test.x).score as Float64Array;
  const pj = predictMatrix(majority, test.x).score as Float64Array;
  t.ok(pm.every((p, i) => Math.abs(p - (pj[i] as number)) < 1e-12));

  const shifted = { ...f2, classes: [1, 2] };
  const three = mergeForests([upd(f1), upd(shifted)], 'merge');
  t.same(three.classes, [0, 1, 2], 'class lists merge by value');
  t.equal(three.value.length, three.feature.length * 3);
});

t.test('secure sum (the estimators\' ring, lib/ops/estimators/masked.ts): exact, whatever the masks', async (t) => {
  const values = [[3, -1.25, 1e12], [4, 2.5, -7e11]];
  const ring = 1n << 256n;
  const run = (mask: bigint) => {
    const totals = [0, 1, 2].map((i) => values.reduce((acc, v) => (acc + toFixed(v[i] as number)) % ring, mask));
    return totals.map((v) => fromFixed((v - mask + ring) % ring));
  };
  t.same(run(12345n), [7, 1.25, 3e11]);
  t.same(run(ring - 7n), run(ring / 3n), 'the same bits whatever the masks');
  t.throws(() => toFixed(Number.NaN));
});

t.test('folds: every row in one fold, folds about equal', async (t) => {
  const counts = new Array(5).fill(0);
  for (let i = 0; i < 10_000; i++) counts[foldOf(3, i, 5)]++;
  t.ok(counts.every((c) => c > 1_800 && c < 2_200), `fold sizes ${counts}`);
});

// ---------------------------------------------------------------- the operations in-process

class MapLocals implements Locals {
  readonly map = new Map<string, unknown>();
  get(key: string): unknown {
    return this.map.get(key);
  }
  set(key: string, value: unknown): void {
    this.map.set(key, value);
  }
}

const engines = await Promise.all(SHARDS.map((path, i) => DataEngine.open([{ name: `s${i}`, path, projects: [TOKEN] }])));
t.teardown(() => Promise.all(engines.map((e) => e.close())));
const initiator = { data: undefined, locals: new MapLocals() };
const workers = engines.map((data) => ({ data, locals: new MapLocals() }));

/** Runs an operation the way a node does: parsed as on the wire, inputs through the codec. */
async function run(node: { data: DataEngine | undefined; locals: Locals }, operation: Operation, inputs: unknown[], extra: Partial<OpContext> = {}): Promise<unknown> {
  const ctx: OpContext = {
    operation: OperationSchema.parse(operation),
    attempt: 1,
    artifactId: 'a1',
    stepIndex: 0,
    iteration: 0,
    projectToken: TOKEN,
    inputs: inputs.map((i) => decodeValue(encodeValue(i))),
    data: node.data,
    locals: node.locals,
    random: Math.random,
    ...extra,
  };
  return decodeValue(encodeValue(await runOperation(ctx)));
}

t.test('the operations of a FedAvg artifact, chained in-process', async (t) => {
  const [init, round] = models.logisticRegression({ features, label: LABEL, rounds: 2, epochs: 1, seed: 3 }) as unknown as [
    Extract<ReturnType<typeof models.logisticRegression>[number], { kind: 'Sequential' }>,
    Extract<ReturnType<typeof models.logisticRegression>[number], { kind: 'Iterate' }>,
  ];
  let running = await run(initiator, init.init, []);
  for (const w of workers) running = await run(w, init.operation, [running]);
  const model0 = parseModel(await run(initiator, init.final, [running])) as LinearModel;
  const x = { rows: all.rows.length, cols: features.length, data: Float64Array.from(all.rows.flatMap((r) => r.slice(0, features.length))) };
  const central = columnStats(x);
  t.ok(model0.mean.every((m, j) => Math.abs(m - (central.mean[j] as number)) < 1e-6), 'secure-sum means equal the central means');
  t.ok(model0.std.every((s, j) => Math.abs(s - (central.std[j] as number)) < 1e-6 * (central.std[j] as number)), 'and the stds');

  const [parallel, finalize] = round.steps as unknown as [{ operation: Operation }, { operation: Operation }];
  let global: unknown = modelToWire(model0);
  // As the plan links them (lib/plan/bind.ts): the last round's Aggregation also receives the earlier rounds' aggregates, first.
  const earlier: unknown[] = [];
  for (let r = 0; r < 2; r++) {
    const updates = [];
    for (const w of workers) updates.push(await run(w, parallel.operation, [global], { iteration: r }));
    global = await run(initiator, finalize.operation, r === 1 ? [...earlier, ...updates] : updates, { iteration: r });
    earlier.push(global);
  }
  const model = loadModel(global);
  t.equal(model.history.length, 2);
  t.equal(model.history[1]?.samples, all.rows.length);

  const again = await run(workers[0] as (typeof workers)[0], parallel.operation, [global], { iteration: 2 });
  const again2 = await run(workers[0] as (typeof workers)[0], parallel.operation, [global], { iteration: 2 });
  t.same(again, again2, 'a retried Train gives the same bytes');

  const spec = (init.final as Extract<Operation, { kind: 'InitModel' }>).model;
  await t.rejects(run(initiator, { kind: 'InitModel', model: spec, standardize: { mean: [1], std: [1] } }, []), /standardize needs/);
  await t.rejects(run(initiator, finalize.operation, [{ model: { type: 'svm' }, samples: 1 }]), { code: 'OPERATION_FAILED', message: /unknown model type/ });
  await t.rejects(run(initiator, parallel.operation, [global]), { code: 'DATA_UNAVAILABLE' });
});

t.test("an Iterate's model: constant-size rounds, and the last round's history the same as when every product carried it", async (t) => {
  const model = { type: 'logisticRegression' as const, features, label: LABEL, epochs: 1, seed: 4 };
  const train: Operation = { kind: 'TrainTest', model, testFraction: 0.25 };
  const aggregate: Operation = { kind: 'Aggregation', model };
  const init = await run(initiator, { kind: 'InitModel', model }, []);
  const ROUNDS = 5;
  /** `gather`: as the plan now links the rounds; otherwise as before (every aggregate carried the history). */
  const chain = async (gather: boolean) => {
    let global = init;
    const earlier: unknown[] = [];
    const sizes: { aggregate: number; update: number }[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const updates = [];
      for (const w of workers) updates.push(await run(w, train, [global], { iteration: r }));
      const last = gather && r === ROUNDS - 1;
      // Before, an Aggregation did not look at its iteration: 0 stands for that.
      global = await run(initiator, aggregate, last ? [...earlier, ...updates] : updates, { iteration: gather ? r : 0 });
      earlier.push(global);
      sizes.push({ aggregate: parseModel(global).history.length, update: parseUpdate(updates[0]).model.history.length });
    }
    return { model: parseModel(global) as LinearModel, sizes };
  };
  const before = await chain(false);
  const after = await chain(true);
  t.same(
    before.sizes.map((s) => s.aggregate),
    [1, 2, 3, 4, 5],
    'before: every aggregate carried the whole history',
  );
  t.same(
    after.sizes.slice(0, -1).map((s) => [s.aggregate, s.update]),
    [
      [1, 0],
      [1, 1],
      [1, 1],
      [1, 1],
    ],
    'now a round sends and gets back one record at most',
  );
  t.equal(after.model.history.length, ROUNDS);
  t.same(encodeValue(after.model.history), encodeValue(before.model.history), 'the same records, bit for bit');
  t.ok(after.model.history.every((r) => r.metrics !== undefined), 'with the test metrics of each round');
  t.same(after.model.weights, before.model.weights, 'and the same weights');
  t.equal(after.model.round, ROUNDS);

  const outside = await run(initiator, aggregate, [await run(workers[0] as (typeof workers)[0], train, [modelToWire(after.model)])]);
  t.same(
    parseModel(outside).history.map((r) => r.round),
    [1, 2, 3, 4, 5, 6],
    'an Aggregation after the Iterate goes on from its whole history',
  );
});

t.test("a worker reads a model's rows once: later rounds train on them from memory, and still count as reads", async (t) => {
  const engine = await DataEngine.open([{ name: 's0', path: SHARDS[0] as string, projects: [TOKEN, 'other-project'] }]);
  t.teardown(() => engine.close());
  const reads: string[] = [];
  const attempt = () => forAttempt(engine, { onRead: (token) => reads.push(token), signal: new AbortController().signal });
  const node = () => ({ data: attempt(), locals: new MapLocals() });
  const train: Operation = { kind: 'Train', model: { type: 'logisticRegression', features, label: LABEL, epochs: 1, seed: 5 } };
  const cache = datasetCache(engine);
  const first = await run(node(), train, []);
  t.equal(cache.hits, 0);
  t.same(reads, [TOKEN], 'the first round reads the data');
  const engineReads = engine.numericColumnsCacheHits;
  const second = await run(node(), train, []);
  t.equal(cache.hits, 1, 'the second round is answered from memory');
  t.equal(engine.numericColumnsCacheHits, engineReads, 'without asking the engine for its columns');
  t.same(reads, [TOKEN, TOKEN], "and still counts as a read of the project's data (the job's provenance)");
  t.same(second, first, 'the same model');

  const ctx = { operation: train, projectToken: TOKEN, data: attempt() } as unknown as OpContext;
  const a = await readDataset(ctx, features, LABEL);
  const b = await readDataset(ctx, features, LABEL);
  t.equal(a, b, 'one dataset, shared');
  t.ok(a.x.data.buffer instanceof SharedArrayBuffer && a.y.buffer instanceof SharedArrayBuffer, 'on shared memory: a compute thread gets it without a copy');
  const other = await readDataset({ ...ctx, projectToken: 'other-project' } as OpContext, features, LABEL);
  t.not(other, a, "another project's request is another entry");
  await t.rejects(readDataset({ ...ctx, projectToken: 'unbound' } as OpContext, features, LABEL), { code: 'DATA_UNAVAILABLE' });
  t.ok(cache.size >= 2);
  cache.budget = 0;
  t.equal(cache.size, 0, 'past its budget the cache lets go of its datasets');
  await readDataset(ctx, features, LABEL);
  t.equal(cache.size, 0, 'and keeps none larger than the budget');
});

t.test('TrainTest, LocalCrossValidation, EvaluateModel and MergeMetrics', async (t) => {
  const model = { type: 'randomForest' as const, features, label: LABEL, strategy: 'merge' as const, nEstimators: 5, maxDepth: 10, seed: 2 };
  const updates = [];
  for (const w of workers) updates.push(await run(w, { kind: 'TrainTest', model, testFraction: 0.25 }, []));
  const u = parseUpdate(updates[0]);
  t.ok(u.test && u.testSamples && u.testSamples > 0.2 * 9_288 && u.testSamples < 0.3 * 9_288, 'about a quarter held out');
  t.equal(u.samples + (u.testSamples ?? 0), 9_288);
  const forest = await run(initiator, { kind: 'Aggregation', model }, updates);
  const rec = loadModel(forest).history[0];
  t.ok(rec?.metrics?.task === 'classification' && rec.metrics.accuracy > 0.85, 'merged test metrics in the history');

  const evals = [];
  for (const w of workers) evals.push((await run(w, { kind: 'EvaluateModel' }, [forest])) as MetricsProduct);
  const merged = (await run(initiator, { kind: 'MergeMetrics' }, evals)) as MergedMetricsProduct;
  t.equal(merged.metrics.n, all.rows.length);
  t.equal(merged.workers, 2);

  const cv = (await run(workers[0] as (typeof workers)[0], { kind: 'LocalCrossValidation', model: { type: 'logisticRegression', features, label: LABEL, epochs: 3, seed: 2 }, folds: 4 }, [])) as MetricsProduct;
  t.equal(cv.folds?.length, 4);
  t.equal(cv.metrics.n, 9_288, 'pooled out-of-fold rows');
  t.ok(cv.metrics.task === 'classification' && cv.metrics.accuracy > 0.8);
});
