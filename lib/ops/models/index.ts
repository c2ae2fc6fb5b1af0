import type { Operation } from '../../../protocols/entities.ts';
import type { ModelSpec } from '../../../protocols/operations/models.ts';
import { FdlError } from '../../errors.ts';
import { isTestRow } from '../split.ts';
import { type Ctx, type HandlerMap, type OpContext, type OpOf, offload } from '../context.ts';
import { classificationStats, type EvalStats, type Metrics, mergeStats, regressionStats, summarize } from '../metrics.ts';
import { aggregateLinear, mergeForests } from './aggregate.ts';
import { type Dataset, readDataset, subset } from './data.ts';
import { trainForest } from './forest.ts';
import { columnStats, initialLinear, safeStd, trainLinear } from './linear.ts';
import {
  BadModel,
  type LinearModel,
  type Model,
  type ModelUpdate,
  modelToWire,
  parseModel,
  parseUpdate,
  predictMatrix,
  updateToWire,
} from './model.ts';
import { mixSeed } from './random.ts';
import { addContribution, maskedFinal, maskedInit, type MaskedRunning, readRunning } from '../estimators/masked.ts';
import { DEFAULT_AGGREGATION, DEFAULT_SEED, type ForestSpec, forestTraining, type LinearSpec, linearTraining } from './spec.ts';

export type { ForestModel, LinearModel, Model, ModelUpdate, RoundRecord } from './model.ts';

/** Product of EvaluateModel and LocalCrossValidation; MergeMetrics merges a list of them. */
export interface MetricsProduct {
  samples: number;
  stats: EvalStats;
  metrics: Metrics;
  /** LocalCrossValidation: the metrics of each fold's held-out rows. */
  folds?: Metrics[];
}

export interface MergedMetricsProduct {
  workers: number;
  metrics: Metrics;
  stats: EvalStats;
}

/**
 * What the compute half of a model operation sees (lib/ops/compute.ts runs it, in a pool thread
 * or inline): the operation and its inputs, never the data engine or the locals, which stay on
 * the node's main thread. The datasets it trains on are read before, and cross as typed arrays.
 */
export interface ModelCompute<K extends Operation['kind']> {
  operation: OpOf<K>;
  inputs: unknown[];
  iteration: number;
}

type OpRef = Pick<OpContext, 'operation'>;

function opError(ctx: OpRef, message: string, cause?: unknown): FdlError {
  return new FdlError('OPERATION_FAILED', `${ctx.operation.kind}: ${message}`, { retryable: false, cause });
}

/** Decoded inputs come from other nodes: a malformed one is a non-retryable failure. */
function checked<T>(ctx: OpRef, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    if (e instanceof BadModel || e instanceof TypeError || e instanceof RangeError) throw opError(ctx, e.message, e);
    throw e;
  }
}

/**
 * ModelStats is a Sequential masked sum in the estimators' one ring (lib/ops/estimators/masked.ts):
 * n = [complete rows], x = [Σx_f..., Σx_f²...].
 */
const STATS_FAMILY = 'model-stats';
const statsLayout = (features: number) => ({ ints: 1, reals: 2 * features });

function modelStatsInit(ctx: Ctx<'ModelStatsInit'>): MaskedRunning {
  return maskedInit(ctx, STATS_FAMILY, statsLayout(ctx.operation.features.length));
}

async function modelStats(ctx: Ctx<'ModelStats'>): Promise<MaskedRunning> {
  const { features, label, query } = ctx.operation;
  const d = features.length;
  const running = readRunning(ctx, STATS_FAMILY, statsLayout(d));
  const ds = await readDataset(ctx, features, label, query);
  const x = new Array<number>(2 * d).fill(0);
  for (let r = 0; r < ds.x.rows; r++) {
    for (let j = 0; j < d; j++) {
      const v = ds.x.data[r * d + j] as number;
      x[j] = (x[j] as number) + v;
      x[d + j] = (x[d + j] as number) + v * v;
    }
  }
  return addContribution(running, { n: [ds.x.rows], x });
}

/** The global mean and std from unmasked sums. */
function statsToStandardize(ctx: OpContext, sums: Float64Array, d: number): { mean: Float64Array; std: Float64Array } {
  const n = sums[0] as number;
  if (!(n > 0)) throw opError(ctx, 'the workers hold no complete row to standardize with');
  const mean = new Float64Array(d);
  const std = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    const m = (sums[1 + j] as number) / n;
    mean[j] = m;
    std[j] = safeStd(Math.sqrt(Math.max(0, (sums[1 + d + j] as number) / n - m * m)));
  }
  return { mean, std };
}

function initModel(ctx: Ctx<'InitModel'>): Record<string, unknown> {
  const { model: spec, standardize } = ctx.operation;
  if (spec.type === 'randomForest') throw opError(ctx, 'a random forest has no initial model (its Train needs no input)');
  const d = spec.features.length;
  let mean: Float64Array = new Float64Array(d);
  let std: Float64Array = new Float64Array(d).fill(1);
  if (standardize) {
    if (standardize.mean.length !== d || standardize.std.length !== d) {
      throw opError(ctx, `standardize needs ${d} means and ${d} stds, one per feature`);
    }
    mean = Float64Array.from(standardize.mean);
    std = Float64Array.from(standardize.std);
  } else if (ctx.inputs.length > 0) {
    // The final of a ModelStats chain: unmask the sums.
    const { plain } = maskedFinal(ctx, STATS_FAMILY, statsLayout(d));
    ({ mean, std } = statsToStandardize(ctx, Float64Array.from([...plain.n, ...plain.x]), d));
  }
  return modelToWire(initialLinear(spec.type, spec.features, spec.label, mean, std));
}

/** The model a linear Train starts from: its one input, or a zero model standardized on local rows. */
function startLinear(ctx: OpRef & Pick<OpContext, 'inputs'>, spec: LinearSpec, ds: Dataset, rows?: Uint32Array): LinearModel {
  if (ctx.inputs.length === 0) {
    const { mean, std } = columnStats(ds.x, rows);
    return initialLinear(spec.type, spec.features, spec.label, mean, std);
  }
  const input = ctx.inputs[0];
  const model = checked(ctx, () => parseModel(input));
  if (model.type !== spec.type) throw opError(ctx, `its input is a ${model.type}, the spec a ${spec.type}`);
  if (model.features.join('\u0000') !== spec.features.join('\u0000') || model.label !== spec.label) {
    throw opError(ctx, 'its input model has other features or another label than the spec');
  }
  return model;
}

/**
 * Labels found 0/1 already: a cached dataset (lib/ops/models/data.ts) is checked once, not every
 * round, and so are the rows of a cached split (`splitOf`).
 */
const binaryLabels = new WeakSet<Float64Array | Uint32Array>();

/** The labels of `y`, or of its rows `rows`, are 0/1 for a logistic regression. */
function labelCheck(ctx: OpRef, spec: ModelSpec, y: Float64Array, rows?: Uint32Array): void {
  if (spec.type !== 'logisticRegression' || binaryLabels.has(rows ?? y)) return;
  const n = rows === undefined ? y.length : rows.length;
  for (let i = 0; i < n; i++) {
    const v = y[rows === undefined ? i : (rows[i] as number)] as number;
    if (v !== 0 && v !== 1) throw opError(ctx, `logistic regression needs a 0/1 label; ${spec.label} has ${v}`);
  }
  binaryLabels.add(rows ?? y);
}

/** Class indices of y over `classes`; rows with a label outside them are an error. */
function classIndex(ctx: OpRef, spec: ForestSpec, y: Float64Array): { classes: number[]; yi: Uint8Array } {
  const classes = spec.classes ? [...spec.classes].sort((a, b) => a - b) : [...new Set(y)].sort((a, b) => a - b);
  if (classes.length > 256) throw opError(ctx, `${spec.label} has more than 256 classes`);
  const index = new Map(classes.map((c, i) => [c, i]));
  const yi = new Uint8Array(y.length);
  for (let i = 0; i < y.length; i++) {
    const c = index.get(y[i] as number);
    if (c === undefined) throw opError(ctx, `${spec.label} has the value ${y[i]}, not among the classes`);
    yi[i] = c;
  }
  return { classes, yi };
}

/** Trains the spec's model on a dataset (the input model, if any, is the start of a linear model). */
/** A model fitted on `ds`, or on its rows `rows` only (a linear model reads them in place). */
async function fit(
  ctx: OpRef & Pick<OpContext, 'inputs'>,
  spec: ModelSpec,
  ds: Dataset,
  salt: number,
  signal: AbortSignal | undefined,
  rows?: Uint32Array,
): Promise<Model> {
  if (rows !== undefined && spec.type === 'randomForest') return fit(ctx, spec, subset(ds, rows), salt, signal);
  if ((rows?.length ?? ds.x.rows) === 0) throw opError(ctx, 'no complete row to train on');
  labelCheck(ctx, spec, ds.y, rows);
  if (spec.type === 'randomForest') {
    const { classes, yi } = classIndex(ctx, spec, ds.y);
    const t = forestTraining(spec);
    const meta = { strategy: spec.strategy, features: spec.features, label: spec.label, salt: mixSeed(salt, ds.x.rows) };
    return trainForest(ds.x, yi, classes, t, meta, signal);
  }
  const start = startLinear(ctx, spec, ds, rows);
  try {
    const t = linearTraining(spec);
    return await trainLinear(start, ds.x, ds.y, { ...t, seed: mixSeed(t.seed, salt) }, signal, rows);
  } catch (e) {
    if (e instanceof RangeError) throw opError(ctx, e.message, e);
    throw e;
  }
}

/** Metrics stats of a model on a dataset. */
export function evaluate(model: Model, ds: Dataset): EvalStats {
  const p = predictMatrix(model, ds.x);
  if (model.type === 'linearRegression') return regressionStats(ds.y, p.predicted);
  return classificationStats(p.classes ?? [0, 1], ds.y, p.predicted, p.score);
}

/**
 * Values a training reads (`offload`'s work): a linear model's passes over its rows; undefined for a
 * forest, whose cost its settings multiply (it always goes to the pool when there is one).
 */
function trainingWork(spec: ModelSpec, rows: number, passes = 1): number | undefined {
  if (spec.type === 'randomForest') return undefined;
  return rows * spec.features.length * linearTraining(spec).epochs * passes;
}

async function train(ctx: Ctx<'Train'>): Promise<Record<string, unknown>> {
  const { model: spec, query } = ctx.operation;
  const ds = await readDataset(ctx, spec.features, spec.label, query);
  return offload(ctx, 'Train', computeTrain, { ...computeOf(ctx), ds }, trainingWork(spec, ds.x.rows));
}

/** The compute half of Train. */
export async function computeTrain(a: ModelCompute<'Train'> & { ds: Dataset }, signal?: AbortSignal): Promise<Record<string, unknown>> {
  const model = await fit(a, a.operation.model, a.ds, a.iteration, signal);
  return updateToWire({ model, samples: a.ds.x.rows });
}

async function trainTest(ctx: Ctx<'TrainTest'>): Promise<Record<string, unknown>> {
  const { model: spec, query } = ctx.operation;
  const ds = await readDataset(ctx, spec.features, spec.label, query);
  return offload(ctx, 'TrainTest', computeTrainTest, { ...computeOf(ctx), ds }, trainingWork(spec, ds.x.rows, 2));
}

/** The compute half of TrainTest: the split, the training, the test. */
export async function computeTrainTest(
  a: ModelCompute<'TrainTest'> & { ds: Dataset },
  signal?: AbortSignal,
): Promise<Record<string, unknown>> {
  const { model: spec, testFraction } = a.operation;
  const seed = a.operation.splitSeed ?? spec.seed ?? DEFAULT_SEED;
  const { ds } = a;
  const { train, testSet } = splitOf(ds, seed, testFraction);
  const model = await fit(a, spec, ds, a.iteration, signal, train);
  const update: ModelUpdate = { model, samples: train.length, testSamples: testSet.x.rows };
  if (testSet.x.rows > 0) update.test = evaluate(model, testSet);
  return updateToWire(update);
}

/**
 * The TrainTest split of a dataset: its training rows (indices, read in place) and its test rows
 * (copied out, for the evaluation). A cached dataset (data.ts) is the same object every round of an
 * Iterate and never changes, and the split is a function of its rows, the seed and the fraction:
 * so it is made once, not a copy of the whole dataset per round (whose garbage kept a worker's
 * collector busy). Kept as long as the dataset is.
 */
const splits = new WeakMap<Dataset, Map<string, { train: Uint32Array; testSet: Dataset }>>();

function splitOf(ds: Dataset, seed: number, testFraction: number): { train: Uint32Array; testSet: Dataset } {
  let bySplit = splits.get(ds);
  if (!bySplit) {
    bySplit = new Map();
    splits.set(ds, bySplit);
  }
  const key = `${seed}:${testFraction}`;
  let split = bySplit.get(key);
  if (!split) {
    const trainRows: number[] = [];
    const testRows: number[] = [];
    for (let i = 0; i < ds.x.rows; i++) (isTestRow(seed, ds.rowIndex[i] as number, testFraction) ? testRows : trainRows).push(i);
    split = { train: Uint32Array.from(trainRows), testSet: subset(ds, testRows) };
    bySplit.set(key, split);
  }
  return split;
}

/** The part of a context the compute half needs (structured-clonable). */
function computeOf<K extends Operation['kind']>(ctx: Ctx<K>): ModelCompute<K> {
  return { operation: ctx.operation, inputs: ctx.inputs, iteration: ctx.iteration };
}

/** An input of an Aggregation that is an earlier round's aggregate (a model), not a local update. */
function isModel(x: unknown): boolean {
  return typeof x === 'object' && x !== null && 'type' in x && !('model' in x);
}

function aggregation(ctx: Ctx<'Aggregation'>): Record<string, unknown> {
  const spec = ctx.operation.model;
  // The last round of an Iterate also receives the earlier rounds' aggregates (lib/plan/bind.ts).
  const earlier = checked(ctx, () => ctx.inputs.filter(isModel).map(parseModel));
  const updates = checked(ctx, () => ctx.inputs.filter((x) => !isModel(x)).map(parseUpdate));
  if (updates.length === 0) throw opError(ctx, 'no local model to aggregate');
  const at = { iteration: ctx.iteration, earlier };
  const merged = checked(ctx, () =>
    spec.type === 'randomForest' ? mergeForests(updates, spec.strategy) : aggregateLinear(updates, spec.aggregation ?? DEFAULT_AGGREGATION, at),
  );
  return modelToWire(merged);
}

/** Fold of a row: the hash of (seed, row) cut into `folds` equal ranges (the split of lib/ops/split.ts). */
export function foldOf(seed: number, row: number, folds: number): number {
  for (let f = 1; f < folds; f++) if (isTestRow(seed, row, f / folds)) return f - 1;
  return folds - 1;
}

async function localCrossValidation(ctx: Ctx<'LocalCrossValidation'>): Promise<MetricsProduct> {
  const { model: spec, query } = ctx.operation;
  const ds = await readDataset(ctx, spec.features, spec.label, query);
  return offload(ctx, 'LocalCrossValidation', computeCrossValidation, { ...computeOf(ctx), ds }, trainingWork(spec, ds.x.rows, ctx.operation.folds));
}

/** The compute half of LocalCrossValidation: one training and one test per fold. */
export async function computeCrossValidation(
  a: ModelCompute<'LocalCrossValidation'> & { ds: Dataset },
  signal?: AbortSignal,
): Promise<MetricsProduct> {
  const { model: spec, folds } = a.operation;
  const seed = a.operation.splitSeed ?? spec.seed ?? DEFAULT_SEED;
  const { ds } = a;
  const fold = Uint32Array.from(ds.rowIndex, (r) => foldOf(seed, r, folds));
  const perFold: Metrics[] = [];
  const all: EvalStats[] = [];
  for (let f = 0; f < folds; f++) {
    const trainRows: number[] = [];
    const testRows: number[] = [];
    for (let i = 0; i < ds.x.rows; i++) (fold[i] === f ? testRows : trainRows).push(i);
    if (testRows.length === 0 || trainRows.length === 0) continue;
    const model = await fit(a, spec, subset(ds, trainRows), f, signal);
    const stats = evaluate(model, subset(ds, testRows));
    all.push(stats);
    perFold.push(summarize(stats));
  }
  if (all.length === 0) throw opError(a, `too few rows for ${folds} folds`);
  const stats = mergeStats(all);
  return { samples: ds.x.rows, stats, metrics: summarize(stats), folds: perFold };
}

async function evaluateModel(ctx: Ctx<'EvaluateModel'>): Promise<MetricsProduct> {
  const input = ctx.inputs[0];
  if (ctx.inputs.length !== 1) throw opError(ctx, `needs exactly 1 input (a model), got ${ctx.inputs.length}`);
  const model = checked(ctx, () => parseModel(input));
  const ds = await readDataset(ctx, model.features, model.label, ctx.operation.query);
  return offload(ctx, 'EvaluateModel', computeEvaluate, { model, ds }, model.type === 'randomForest' ? undefined : ds.x.rows * model.features.length);
}

/** The compute half of EvaluateModel: predictions and their metrics. */
export function computeEvaluate(a: { model: Model; ds: Dataset }): MetricsProduct {
  const stats = evaluate(a.model, a.ds);
  return { samples: a.ds.x.rows, stats, metrics: summarize(stats) };
}

function mergeMetrics(ctx: Ctx<'MergeMetrics'>): MergedMetricsProduct {
  const stats = ctx.inputs.map((x) => {
    const s = (x as { stats?: unknown; test?: unknown } | null)?.stats ?? (x as { test?: unknown } | null)?.test;
    if (typeof s !== 'object' || s === null) throw opError(ctx, 'an input has no metrics stats');
    return s as EvalStats;
  });
  if (stats.length === 0) throw opError(ctx, 'no metrics to merge');
  const merged = checked(ctx, () => mergeStats(stats));
  return { workers: stats.length, metrics: summarize(merged), stats: merged };
}

/** Model operations: Train, TrainTest, Aggregation, LocalCrossValidation, and their helpers. */
export const modelHandlers = {
  ModelStatsInit: modelStatsInit,
  ModelStats: modelStats,
  InitModel: initModel,
  Train: train,
  TrainTest: trainTest,
  Aggregation: aggregation,
  LocalCrossValidation: localCrossValidation,
  EvaluateModel: evaluateModel,
  MergeMetrics: mergeMetrics,
} satisfies Partial<HandlerMap>;
