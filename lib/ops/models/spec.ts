import type { AggregationStrategy, ModelSpec } from '../../../protocols/operations/models.ts';

/** Defaults of the optional fields of a model spec (docs/MODELS.md lists them). */
export const DEFAULT_EPOCHS = 1;
export const DEFAULT_LEARNING_RATE = 0.1;
export const DEFAULT_BATCH_SIZE = 32;
export const DEFAULT_SEED = 0;
export const DEFAULT_AGGREGATION: AggregationStrategy = { strategy: 'weightedMean' };

export const DEFAULT_N_ESTIMATORS = 100;
export const DEFAULT_MAX_DEPTH = 32;
export const DEFAULT_MIN_SAMPLES_SPLIT = 2;
export const DEFAULT_MIN_SAMPLES_LEAF = 1;
export const DEFAULT_MAX_BINS = 256;

export type LinearSpec = Extract<ModelSpec, { type: 'logisticRegression' | 'linearRegression' }>;
export type ForestSpec = Extract<ModelSpec, { type: 'randomForest' }>;

export interface LinearTraining {
  epochs: number;
  learningRate: number;
  batchSize: number;
  mu: number;
  l2: number;
  seed: number;
}

export function linearTraining(spec: LinearSpec): LinearTraining {
  return {
    epochs: spec.epochs ?? DEFAULT_EPOCHS,
    learningRate: spec.learningRate ?? DEFAULT_LEARNING_RATE,
    batchSize: spec.batchSize ?? DEFAULT_BATCH_SIZE,
    mu: spec.mu ?? 0,
    l2: spec.l2 ?? 0,
    seed: spec.seed ?? DEFAULT_SEED,
  };
}

export interface ForestTraining {
  nEstimators: number;
  maxDepth: number;
  minSamplesSplit: number;
  minSamplesLeaf: number;
  /** Features tried per split, resolved against the feature count. */
  maxFeatures: number;
  bootstrap: boolean;
  maxBins: number;
  seed: number;
}

export function forestTraining(spec: ForestSpec): ForestTraining {
  const d = spec.features.length;
  const mf = spec.maxFeatures ?? 'sqrt';
  const maxFeatures =
    mf === 'all' ? d : mf === 'sqrt' ? Math.floor(Math.sqrt(d)) : mf === 'log2' ? Math.floor(Math.log2(d)) : mf;
  return {
    nEstimators: spec.nEstimators ?? DEFAULT_N_ESTIMATORS,
    maxDepth: spec.maxDepth ?? DEFAULT_MAX_DEPTH,
    minSamplesSplit: spec.minSamplesSplit ?? DEFAULT_MIN_SAMPLES_SPLIT,
    minSamplesLeaf: spec.minSamplesLeaf ?? DEFAULT_MIN_SAMPLES_LEAF,
    maxFeatures: Math.max(1, Math.min(d, maxFeatures)),
    bootstrap: spec.bootstrap ?? true,
    maxBins: spec.maxBins ?? DEFAULT_MAX_BINS,
    seed: spec.seed ?? DEFAULT_SEED,
  };
}
