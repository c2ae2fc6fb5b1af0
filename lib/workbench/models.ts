/**
 * Federated models for the researcher: builders that return an artifact's steps, and
 * `loadModel` to use a downloaded model locally. See docs/MODELS.md.
 *
 *   const steps = models.logisticRegression({ features, label: 'y', rounds: 10 });
 *   const model = loadModel(await (await project.submit(steps)).result());
 *   model.predict(rows);
 */
import type { Operation, Query, Step } from '../../protocols/entities.ts';
import type { AggregationStrategy, ModelSpec } from '../../protocols/operations/models.ts';
import { classificationStats, type Metrics, regressionStats, summarize } from '../ops/metrics.ts';
import { type Matrix, type Model, parseModel, predictMatrix, type RoundRecord } from '../ops/models/model.ts';
import { distributions, steps } from './builders.ts';

export type { ClassificationMetrics, EvalStats, Metrics, RegressionMetrics } from '../ops/metrics.ts';
export { accuracy, confusionMatrix, f1, mae, precision, r2, recall, rmse, rocAuc } from '../ops/metrics.ts';
export type { MergedMetricsProduct, MetricsProduct } from '../ops/models/index.ts';
export type { AggregationStrategy, ModelSpec, RoundRecord };

export interface LinearOptions {
  features: string[];
  label: string;
  /** FedAvg rounds (an Iterate of Train + Aggregation). */
  rounds: number;
  epochs?: number;
  learningRate?: number;
  batchSize?: number;
  /** FedProx proximal weight; 0 (default) is plain FedAvg. */
  mu?: number;
  l2?: number;
  seed?: number;
  /** 'weightedMean' (default), 'median', or { trimmedMean: fraction cut at each end }. */
  aggregation?: 'weightedMean' | 'median' | { trimmedMean: number };
  /**
   * 'federated' (default): a first Sequential step computes the global mean and std of the
   * features by a masked secure sum. 'none': raw features. Or the values themselves.
   */
  standardize?: 'federated' | 'none' | { mean: number[]; std: number[] };
  query?: Query;
  /** When set, workers train with TrainTest and each round records test metrics over all workers. */
  testFraction?: number;
  splitSeed?: number;
}

export interface ForestOptions {
  features: string[];
  label: string;
  strategy?: 'merge' | 'majority';
  nEstimators?: number;
  maxDepth?: number;
  minSamplesSplit?: number;
  minSamplesLeaf?: number;
  maxFeatures?: 'sqrt' | 'log2' | 'all' | number;
  bootstrap?: boolean;
  maxBins?: number;
  seed?: number;
  classes?: number[];
  query?: Query;
  testFraction?: number;
  splitSeed?: number;
}

function strategyOf(a: LinearOptions['aggregation']): AggregationStrategy {
  if (a === undefined || a === 'weightedMean') return { strategy: 'weightedMean' };
  if (a === 'median') return { strategy: 'median' };
  return { strategy: 'trimmedMean', trim: a.trimmedMean };
}

/** Copies the defined optional fields only (undefined fields would fail the strict schemas). */
function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

export function linearSpec(type: 'logisticRegression' | 'linearRegression', o: LinearOptions): ModelSpec {
  return defined({
    type,
    features: o.features,
    label: o.label,
    epochs: o.epochs,
    learningRate: o.learningRate,
    batchSize: o.batchSize,
    mu: o.mu,
    l2: o.l2,
    seed: o.seed,
    aggregation: strategyOf(o.aggregation),
  });
}

export function forestSpec(o: ForestOptions): ModelSpec {
  return defined({
    type: 'randomForest' as const,
    features: o.features,
    label: o.label,
    strategy: o.strategy ?? 'merge',
    nEstimators: o.nEstimators,
    maxDepth: o.maxDepth,
    minSamplesSplit: o.minSamplesSplit,
    minSamplesLeaf: o.minSamplesLeaf,
    maxFeatures: o.maxFeatures,
    bootstrap: o.bootstrap,
    maxBins: o.maxBins,
    seed: o.seed,
    classes: o.classes,
  });
}

/** Train or TrainTest, as the options ask. */
function trainOp(model: ModelSpec, o: { query?: Query; testFraction?: number; splitSeed?: number }): Operation {
  const query = o.query?.where ? { query: o.query } : {};
  if (o.testFraction === undefined) return { kind: 'Train', model, ...query };
  return defined({ kind: 'TrainTest' as const, model, ...query, testFraction: o.testFraction, splitSeed: o.splitSeed });
}

/**
 * FedAvg: [init, Iterate(rounds, [Parallel(Train, Collect), Finalize(Aggregation, Distribute)])].
 * The init is a Sequential secure sum of the features' moments ending in InitModel, or an
 * Initialize(InitModel) with given (or no) standardization; it distributes the initial model.
 */
function fedAvg(type: 'logisticRegression' | 'linearRegression', o: LinearOptions): Step[] {
  const model = linearSpec(type, o);
  const std = o.standardize ?? 'federated';
  let init: Step;
  if (std === 'federated') {
    const query = o.query?.where ? { query: o.query } : {};
    init = steps.sequential(
      { kind: 'ModelStatsInit', features: o.features },
      { kind: 'ModelStats', features: o.features, label: o.label, ...query },
      { kind: 'InitModel', model },
      distributions.distribute(),
    );
  } else {
    const op: Operation = std === 'none' ? { kind: 'InitModel', model } : { kind: 'InitModel', model, standardize: std };
    init = steps.initialize(op, distributions.distribute());
  }
  return [
    init,
    steps.iterate(o.rounds, [
      { kind: 'Parallel', operation: trainOp(model, o), distribution: distributions.collect() },
      { kind: 'Finalize', operation: { kind: 'Aggregation', model }, distribution: distributions.distribute() },
    ]),
  ];
}

export const models = {
  /** Federated logistic regression (0/1 label) by FedAvg; the result is the global model. */
  logisticRegression: (o: LinearOptions): Step[] => fedAvg('logisticRegression', o),
  /** Federated linear regression (squared error) by FedAvg; the result is the global model. */
  linearRegression: (o: LinearOptions): Step[] => fedAvg('linearRegression', o),
  /**
   * Federated random forest: every worker grows its forest, the initiator merges them
   * (strategy merge: one forest of all trees; majority: a vote of the workers' forests).
   */
  randomForest: (o: ForestOptions): Step[] => {
    const model = forestSpec(o);
    return [
      steps.parallel(trainOp(model, o), distributions.collect()),
      steps.finalize({ kind: 'Aggregation', model }),
    ];
  },
  /**
   * k-fold cross-validation on each worker's own rows, merged into the metrics of the pooled
   * out-of-fold predictions (only metrics leave the workers).
   */
  crossValidation: (model: ModelSpec, folds: number, o: { query?: Query; splitSeed?: number } = {}): Step[] => [
    steps.parallel(
      defined({ kind: 'LocalCrossValidation' as const, model, folds, query: o.query?.where ? o.query : undefined, splitSeed: o.splitSeed }),
      distributions.collect(),
    ),
    steps.finalize({ kind: 'MergeMetrics' }),
  ],
};

/** Rows to predict: objects keyed by feature name, or arrays in the model's feature order. */
export type Rows = ReadonlyArray<Readonly<Record<string, number>> | ReadonlyArray<number>>;

export interface LoadedModel {
  readonly model: Model;
  readonly type: Model['type'];
  readonly features: string[];
  readonly label: string;
  /** Federated rounds as the aggregation recorded them (test metrics when trained with testFraction). */
  readonly history: RoundRecord[];
  /** Class labels (classifiers) or values (regression), one per row. */
  predict(rows: Rows): number[];
  /** Classifiers: the probability of each class per row (in `classes` order). */
  predictProba(rows: Rows): number[][];
  readonly classes: number[] | undefined;
  /** Metrics of the model on labelled rows held here (e.g. a validation file). */
  evaluate(rows: Rows, labels: ArrayLike<number>): Metrics;
}

function toMatrix(features: string[], rows: Rows): Matrix {
  const d = features.length;
  const data = new Float64Array(rows.length * d);
  rows.forEach((row, r) => {
    if (Array.isArray(row)) {
      if (row.length !== d) throw new RangeError(`row ${r} has ${row.length} values, the model ${d} features`);
      for (let j = 0; j < d; j++) data[r * d + j] = row[j] as number;
    } else {
      const o = row as Readonly<Record<string, number>>;
      for (let j = 0; j < d; j++) {
        const v = o[features[j] as string];
        data[r * d + j] = typeof v === 'number' ? v : Number.NaN;
      }
    }
  });
  return { rows: rows.length, cols: d, data };
}

/** A downloaded model product (the result of models.* artifacts), checked and ready to predict. */
export function loadModel(product: unknown): LoadedModel {
  const model = parseModel(product);
  const classes = model.type === 'randomForest' ? [...model.classes] : model.type === 'logisticRegression' ? [0, 1] : undefined;
  const predictions = (rows: Rows) => predictMatrix(model, toMatrix(model.features, rows));
  return {
    model,
    type: model.type,
    features: [...model.features],
    label: model.label,
    history: model.history,
    classes,
    predict: (rows) => Array.from(predictions(rows).predicted),
    predictProba: (rows) => {
      const p = predictions(rows);
      if (!p.proba || !p.classes) throw new TypeError(`a ${model.type} gives values, not class probabilities`);
      const k = p.classes.length;
      return Array.from({ length: rows.length }, (_, r) => Array.from(p.proba?.subarray(r * k, r * k + k) ?? []));
    },
    evaluate: (rows, labels) => {
      const p = predictions(rows);
      if (model.type === 'linearRegression') return summarize(regressionStats(labels, p.predicted));
      return summarize(classificationStats(classes ?? [], labels, p.predicted, p.score));
    },
  };
}
