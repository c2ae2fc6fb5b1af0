/**
 * Federated models for the researcher: builders that return an artifact's steps, and
 * `loadModel` to use a downloaded model locally. See docs/MODELS.md.
 *
 *   const steps = models.logisticRegression({ features, label: 'y', rounds: 10 });
 *   const model = loadModel(await (await project.submit(steps)).result());
 *   model.predict(rows);
 */
import { z } from 'zod';
import { IterateStepSchema, type Operation, type Query, QuerySchema, type Step } from '../../protocols/entities.ts';
import {
  type AggregationStrategy,
  LogisticRegressionSpecSchema,
  type ModelSpec,
  ModelSpecSchema,
  RandomForestSpecSchema,
  StandardizeSchema,
} from '../../protocols/operations/models.ts';
import { classificationStats, type Metrics, regressionStats, summarize } from '../ops/metrics.ts';
import { type Matrix, type Model, parseModel, predictMatrix, type RoundRecord } from '../ops/models/model.ts';
import { checkArg, FILTER_HINTS } from './args.ts';
import { distributions, steps } from './builders.ts';

export type { ClassificationMetrics, EvalStats, Metrics, RegressionMetrics } from '../ops/metrics.ts';
export { accuracy, confusionMatrix, f1, mae, precision, r2, recall, rmse, rocAuc } from '../ops/metrics.ts';
export type { MergedMetricsProduct, MetricsProduct } from '../ops/models/index.ts';
export type { AggregationStrategy, ModelSpec, RoundRecord };

const linear = LogisticRegressionSpecSchema.shape;
const forest = RandomForestSpecSchema.shape;
/** A split for test metrics: the fraction of each worker's rows held out, and the split's seed. */
const testSplit = {
  /** When set, workers train with TrainTest and each round records test metrics over all workers. */
  testFraction: z.number().gt(0).lt(1).optional(),
  splitSeed: linear.seed,
};

/**
 * The options of `models.logisticRegression` and `models.linearRegression`, checked at run time
 * (a misspelled or misplaced option is refused, named). Model fields keep the wire bounds.
 */
export const LinearOptionsSchema = z
  .object({
    features: linear.features,
    label: linear.label,
    /** FedAvg rounds (an Iterate of Train + Aggregation). */
    rounds: IterateStepSchema.shape.iterations,
    epochs: linear.epochs,
    learningRate: linear.learningRate,
    batchSize: linear.batchSize,
    /** FedProx proximal weight; 0 (default) is plain FedAvg. */
    mu: linear.mu,
    l2: linear.l2,
    seed: linear.seed,
    /** 'weightedMean' (default), 'median', or { trimmedMean: fraction cut at each end }. */
    aggregation: z
      .union([z.literal('weightedMean'), z.literal('median'), z.object({ trimmedMean: z.number().min(0).lt(0.5) }).strict()])
      .optional(),
    /**
     * 'federated' (default): a first Sequential step computes the global mean and std of the
     * features by a masked secure sum. 'none': raw features. Or the values themselves.
     */
    standardize: z.union([z.literal('federated'), z.literal('none'), StandardizeSchema]).optional(),
    query: QuerySchema.optional(),
    ...testSplit,
  })
  .strict();
/** An options type from its schema, with the query typed as the wire Query (zod types a lazy filter's input as unknown). */
type Options<S extends z.ZodType> = Omit<z.input<S>, 'query'> & { query?: Query };
export type LinearOptions = Options<typeof LinearOptionsSchema>;

/** The options of `models.randomForest`, checked at run time like LinearOptions. */
export const ForestOptionsSchema = z
  .object({
    features: forest.features,
    label: forest.label,
    strategy: forest.strategy.optional(),
    nEstimators: forest.nEstimators,
    maxDepth: forest.maxDepth,
    minSamplesSplit: forest.minSamplesSplit,
    minSamplesLeaf: forest.minSamplesLeaf,
    maxFeatures: forest.maxFeatures,
    bootstrap: forest.bootstrap,
    maxBins: forest.maxBins,
    seed: forest.seed,
    classes: forest.classes,
    query: QuerySchema.optional(),
    ...testSplit,
  })
  .strict();
export type ForestOptions = Options<typeof ForestOptionsSchema>;

/** The options of `models.crossValidation`. */
export const CrossValidationOptionsSchema = z.object({ query: QuerySchema.optional(), splitSeed: linear.seed }).strict();
export type CrossValidationOptions = Options<typeof CrossValidationOptionsSchema>;

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
  logisticRegression: (o: LinearOptions): Step[] => {
    checkArg('logisticRegression', 'options', LinearOptionsSchema, o, FILTER_HINTS.modelOptions);
    return fedAvg('logisticRegression', o);
  },
  /** Federated linear regression (squared error) by FedAvg; the result is the global model. */
  linearRegression: (o: LinearOptions): Step[] => {
    checkArg('linearRegression', 'options', LinearOptionsSchema, o, FILTER_HINTS.modelOptions);
    return fedAvg('linearRegression', o);
  },
  /**
   * Federated random forest: every worker grows its forest, the initiator merges them
   * (strategy merge: one forest of all trees; majority: a vote of the workers' forests).
   */
  randomForest: (o: ForestOptions): Step[] => {
    checkArg('randomForest', 'options', ForestOptionsSchema, o, FILTER_HINTS.modelOptions);
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
  crossValidation: (model: ModelSpec, folds: number, o: CrossValidationOptions = {}): Step[] => {
    checkArg('crossValidation', 'model', ModelSpecSchema, model);
    checkArg('crossValidation', 'options', CrossValidationOptionsSchema, o, FILTER_HINTS.modelOptions);
    return [
      steps.parallel(
        defined({ kind: 'LocalCrossValidation' as const, model, folds, query: o.query?.where ? o.query : undefined, splitSeed: o.splitSeed }),
        distributions.collect(),
      ),
      steps.finalize({ kind: 'MergeMetrics' }),
    ];
  },
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
