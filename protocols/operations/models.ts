import { z } from 'zod';
import { Features, Name } from './common.ts';
import { QuerySchema } from './query.ts';

/**
 * Models and model operations. A model spec travels inside every operation that needs it
 * (Ferdelance's way): InitModel, Train, TrainTest, Aggregation and LocalCrossValidation.
 * Optional fields take the defaults listed in docs/MODELS.md (lib/ops/models/spec.ts).
 */

const Seed = z.number().int().min(0).max(2 ** 32 - 1);

/** How the initiator merges the local linear models of one round. */
export const AggregationStrategySchema = z.discriminatedUnion('strategy', [
  /** FedAvg: the mean of the local parameters weighted by each worker's sample count. */
  z.object({ strategy: z.literal('weightedMean') }).strict(),
  /** Coordinate-wise median (unweighted): robust to a minority of bad workers. */
  z.object({ strategy: z.literal('median') }).strict(),
  /** Coordinate-wise mean after dropping the `trim` fraction of lowest and of highest values. */
  z.object({ strategy: z.literal('trimmedMean'), trim: z.number().min(0).lt(0.5) }).strict(),
]);
export type AggregationStrategy = z.infer<typeof AggregationStrategySchema>;

const linearSpec = <T extends 'logisticRegression' | 'linearRegression'>(type: T) =>
  z
    .object({
      type: z.literal(type),
      features: Features.max(1_024),
      label: Name,
      /** Local passes over the worker's rows per round. */
      epochs: z.number().int().min(1).max(1_000).optional(),
      learningRate: z.number().positive().max(100).optional(),
      batchSize: z.number().int().min(1).max(1_000_000).optional(),
      /** FedProx: weight of the proximal term (mu/2)·|w - w_global|²; 0 is plain FedAvg. */
      mu: z.number().min(0).max(1e6).optional(),
      /** L2 penalty on the weights (not the bias). */
      l2: z.number().min(0).max(1e6).optional(),
      seed: Seed.optional(),
      aggregation: AggregationStrategySchema.optional(),
    })
    .strict();

export const LogisticRegressionSpecSchema = linearSpec('logisticRegression');
export const LinearRegressionSpecSchema = linearSpec('linearRegression');

export const RandomForestSpecSchema = z
  .object({
    type: z.literal('randomForest'),
    features: Features.max(1_024),
    label: Name,
    /** merge: the union of every worker's trees; majority: each worker's forest votes. */
    strategy: z.enum(['merge', 'majority']),
    /** Trees per worker. */
    nEstimators: z.number().int().min(1).max(2_000).optional(),
    maxDepth: z.number().int().min(1).max(64).optional(),
    minSamplesSplit: z.number().int().min(2).max(1_000_000).optional(),
    minSamplesLeaf: z.number().int().min(1).max(1_000_000).optional(),
    /** Features tried at each split: a count, or sqrt/log2/all of the feature count. */
    maxFeatures: z.union([z.enum(['sqrt', 'log2', 'all']), z.number().int().min(1).max(1_024)]).optional(),
    bootstrap: z.boolean().optional(),
    /** Split candidates per feature: quantile bins of the worker's values. */
    maxBins: z.number().int().min(2).max(256).optional(),
    seed: Seed.optional(),
    /** The label values; by default those each worker sees (merged by value). */
    classes: z.array(z.number().finite()).min(2).max(256).optional(),
  })
  .strict();

export const ModelSpecSchema = z.discriminatedUnion('type', [
  LogisticRegressionSpecSchema,
  LinearRegressionSpecSchema,
  RandomForestSpecSchema,
]);
export type ModelSpec = z.infer<typeof ModelSpecSchema>;

/** Feature scaling of a linear model: x' = (x - mean) / std, per feature. */
export const StandardizeSchema = z
  .object({ mean: z.array(z.number().finite()).max(1_024), std: z.array(z.number().finite()).max(1_024) })
  .strict();

export const ModelOperationSchemas = [
  /** Sequential init (initiator): masks for a secure sum of row count, sums and sums of squares. */
  z.object({ kind: z.literal('ModelStatsInit'), features: Features.max(1_024) }).strict(),
  /** Sequential op (worker): adds its local count/sums/squares (complete rows only) to the masked running sums. */
  z
    .object({
      kind: z.literal('ModelStats'),
      features: Features.max(1_024),
      /** Rows with a missing label are left out, as in training. */
      label: Name.optional(),
      query: QuerySchema.optional(),
    })
    .strict(),
  /**
   * Initiator: the initial global model. Standardization from `standardize`, else from the
   * unmasked sums of a ModelStats chain (as the final of that Sequential step), else none.
   */
  z.object({ kind: z.literal('InitModel'), model: ModelSpecSchema, standardize: StandardizeSchema.optional() }).strict(),
  /** Worker: trains on its rows, starting from its input model if any (FedAvg's local update). */
  z.object({ kind: z.literal('Train'), model: ModelSpecSchema, query: QuerySchema.optional() }).strict(),
  /** Worker: Train on a seeded split of its rows, and the test metrics of the trained model on the rest. */
  z
    .object({
      kind: z.literal('TrainTest'),
      model: ModelSpecSchema,
      query: QuerySchema.optional(),
      testFraction: z.number().gt(0).lt(1),
      splitSeed: Seed.optional(),
    })
    .strict(),
  /** Initiator: merges the local models of its inputs into one global model. */
  z.object({ kind: z.literal('Aggregation'), model: ModelSpecSchema }).strict(),
  /** Worker: k-fold cross-validation on its own rows; only the per-fold metrics leave. */
  z
    .object({
      kind: z.literal('LocalCrossValidation'),
      model: ModelSpecSchema,
      query: QuerySchema.optional(),
      folds: z.number().int().min(2).max(100),
      splitSeed: Seed.optional(),
    })
    .strict(),
  /** Worker: metrics of its input model on its rows (mergeable sufficient statistics). */
  z.object({ kind: z.literal('EvaluateModel'), query: QuerySchema.optional() }).strict(),
  /** Initiator: merges the metrics of EvaluateModel/TrainTest/LocalCrossValidation inputs. */
  z.object({ kind: z.literal('MergeMetrics') }).strict(),
] as const;
