import type { EvalStats, Metrics } from '../metrics.ts';
import { bytesOf, f64, i32 } from './bytes.ts';

/**
 * Trained models, in memory (typed arrays) and on the wire (the same fields, each typed array
 * as its raw bytes). A model is a resource like any other: the workbench downloads it and
 * predicts with it locally (lib/workbench/models.ts).
 */

/** One round of federated training, as the aggregation saw it. */
export interface RoundRecord {
  round: number;
  /** Training rows over all workers in this round. */
  samples: number;
  workers: number;
  /** Test metrics over the union of the workers' test splits (TrainTest rounds only). */
  metrics?: Metrics;
}

export interface LinearModel {
  type: 'logisticRegression' | 'linearRegression';
  features: string[];
  label: string;
  /** Standardization applied before the weights: x' = (x - mean) / std. */
  mean: Float64Array;
  std: Float64Array;
  weights: Float64Array;
  bias: number;
  /** Aggregation rounds done (0: the initial model). */
  round: number;
  samples: number;
  history: RoundRecord[];
}

/**
 * Trees of one or more forests, flattened: node i tests `x[feature[i]] <= threshold[i]` and
 * goes to left[i] or right[i] (both > i, so a walk always ends); a leaf has feature -1 and the
 * class probabilities value[i*k .. i*k+k) over `classes`.
 */
export interface ForestModel {
  type: 'randomForest';
  strategy: 'merge' | 'majority';
  features: string[];
  label: string;
  classes: number[];
  feature: Int32Array;
  threshold: Float64Array;
  left: Int32Array;
  right: Int32Array;
  value: Float64Array;
  /** Root node of each tree. */
  roots: Int32Array;
  /** Per tree, the local forest (worker) it comes from: majority votes by forest. */
  forest: Int32Array;
  forests: number;
  samples: number;
  history: RoundRecord[];
}

export type Model = LinearModel | ForestModel;

/** What Train/TrainTest send: the local model, its training row count and (TrainTest) test stats. */
export interface ModelUpdate {
  model: Model;
  samples: number;
  test?: EvalStats;
  testSamples?: number;
}

// ---------------------------------------------------------------- wire form

export function modelToWire(m: Model): Record<string, unknown> {
  if (m.type === 'randomForest') {
    return {
      ...m,
      feature: bytesOf(m.feature),
      threshold: bytesOf(m.threshold),
      left: bytesOf(m.left),
      right: bytesOf(m.right),
      value: bytesOf(m.value),
      roots: bytesOf(m.roots),
      forest: bytesOf(m.forest),
    };
  }
  return { ...m, mean: bytesOf(m.mean), std: bytesOf(m.std), weights: bytesOf(m.weights) };
}

export function updateToWire(u: ModelUpdate): Record<string, unknown> {
  return { ...u, model: modelToWire(u.model) };
}

/** Thrown for a product that is not a well-formed model; the caller turns it into an FdlError. */
export class BadModel extends Error {}

function fail(what: string): never {
  throw new BadModel(what);
}

function record(x: unknown, what: string): Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x) || x instanceof Uint8Array) fail(`${what} is not a map`);
  return x as Record<string, unknown>;
}

function strings(x: unknown, what: string): string[] {
  if (!Array.isArray(x) || x.length === 0 || !x.every((s) => typeof s === 'string')) fail(`${what} is not a list of names`);
  return x as string[];
}

function finite(x: unknown, what: string): number {
  if (typeof x !== 'number' || !Number.isFinite(x)) fail(`${what} is not a finite number`);
  return x;
}

function count(x: unknown, what: string): number {
  const n = finite(x, what);
  if (!Number.isInteger(n) || n < 0) fail(`${what} is not a count`);
  return n;
}

function bytes<T>(decode: (x: unknown, w: string) => T, x: unknown, what: string): T {
  try {
    return decode(x, what);
  } catch (e) {
    return fail((e as Error).message);
  }
}

function history(x: unknown): RoundRecord[] {
  if (x === undefined) return [];
  if (!Array.isArray(x)) fail('history is not a list');
  return x as RoundRecord[];
}

/** A decoded product -> a checked model (every index in bounds, every walk finite). */
export function parseModel(x: unknown): Model {
  const o = record(x, 'model');
  if (o.type !== 'logisticRegression' && o.type !== 'linearRegression' && o.type !== 'randomForest') {
    fail(`unknown model type ${JSON.stringify(o.type)}`);
  }
  const features = strings(o.features, 'model.features');
  const d = features.length;
  if (typeof o.label !== 'string') fail('model.label is not a name');
  const label = o.label;
  if (o.type === 'logisticRegression' || o.type === 'linearRegression') {
    const mean = bytes(f64, o.mean, 'model.mean');
    const std = bytes(f64, o.std, 'model.std');
    const weights = bytes(f64, o.weights, 'model.weights');
    if (mean.length !== d || std.length !== d || weights.length !== d) fail(`model parameters do not match its ${d} features`);
    return {
      type: o.type,
      features,
      label,
      mean,
      std,
      weights,
      bias: finite(o.bias, 'model.bias'),
      round: count(o.round, 'model.round'),
      samples: count(o.samples, 'model.samples'),
      history: history(o.history),
    };
  }
  if (o.strategy !== 'merge' && o.strategy !== 'majority') fail('model.strategy is not merge or majority');
  const classes = o.classes;
  if (!Array.isArray(classes) || classes.length < 1 || !classes.every((c) => typeof c === 'number' && Number.isFinite(c))) {
    fail('model.classes is not a list of numbers');
  }
  const k = classes.length;
  const feature = bytes(i32, o.feature, 'model.feature');
  const threshold = bytes(f64, o.threshold, 'model.threshold');
  const left = bytes(i32, o.left, 'model.left');
  const right = bytes(i32, o.right, 'model.right');
  const value = bytes(f64, o.value, 'model.value');
  const roots = bytes(i32, o.roots, 'model.roots');
  const forest = bytes(i32, o.forest, 'model.forest');
  const nodes = feature.length;
  if (threshold.length !== nodes || left.length !== nodes || right.length !== nodes || value.length !== nodes * k) {
    fail('model node arrays differ in length');
  }
  for (let i = 0; i < nodes; i++) {
    const f = feature[i] as number;
    if (f === -1) continue;
    const l = left[i] as number;
    const r = right[i] as number;
    if (f < 0 || f >= d || !(l > i && l < nodes && r > i && r < nodes)) fail(`model node ${i} is malformed`);
  }
  const forests = count(o.forests, 'model.forests');
  if (roots.length === 0 || forest.length !== roots.length) fail('model has no tree, or trees without a forest');
  for (let t = 0; t < roots.length; t++) {
    const r = roots[t] as number;
    const g = forest[t] as number;
    if (r < 0 || r >= nodes || g < 0 || g >= forests) fail(`model tree ${t} is malformed`);
  }
  return {
    type: 'randomForest',
    strategy: o.strategy,
    features,
    label,
    classes: classes as number[],
    feature,
    threshold,
    left,
    right,
    value,
    roots,
    forest,
    forests,
    samples: count(o.samples, 'model.samples'),
    history: history(o.history),
  };
}

export function parseUpdate(x: unknown): ModelUpdate {
  const o = record(x, 'update');
  const u: ModelUpdate = { model: parseModel(o.model), samples: count(o.samples, 'update.samples') };
  if (o.test !== undefined) u.test = record(o.test, 'update.test') as unknown as EvalStats;
  if (o.testSamples !== undefined) u.testSamples = count(o.testSamples, 'update.testSamples');
  return u;
}

// ---------------------------------------------------------------- prediction

/** Rows as a row-major matrix n × features.length of raw (unscaled) values. */
export interface Matrix {
  rows: number;
  cols: number;
  data: Float64Array;
}

function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

/** The linear score w·x' + b of each row. */
export function linearScores(m: LinearModel, x: Matrix): Float64Array {
  const d = m.weights.length;
  const out = new Float64Array(x.rows);
  for (let r = 0; r < x.rows; r++) {
    let z = m.bias;
    const base = r * d;
    for (let j = 0; j < d; j++) {
      z += (m.weights[j] as number) * (((x.data[base + j] as number) - (m.mean[j] as number)) / (m.std[j] as number));
    }
    out[r] = z;
  }
  return out;
}

/** Per row, the probability of each class (row-major n × classes.length). */
export function forestProba(m: ForestModel, x: Matrix): Float64Array {
  const k = m.classes.length;
  const out = new Float64Array(x.rows * k);
  const trees = m.roots.length;
  const votes = new Float64Array(m.forests * k);
  const perForest = new Float64Array(m.forests);
  for (let t = 0; t < trees; t++) {
    const g = m.forest[t] as number;
    perForest[g] = (perForest[g] as number) + 1;
  }
  for (let r = 0; r < x.rows; r++) {
    const base = r * x.cols;
    votes.fill(0);
    for (let t = 0; t < trees; t++) {
      let n = m.roots[t] as number;
      for (;;) {
        const f = m.feature[n] as number;
        if (f < 0) break;
        n = (x.data[base + f] as number) <= (m.threshold[n] as number) ? (m.left[n] as number) : (m.right[n] as number);
      }
      const g = (m.forest[t] as number) * k;
      for (let c = 0; c < k; c++) votes[g + c] = (votes[g + c] as number) + (m.value[n * k + c] as number);
    }
    const o = r * k;
    if (m.strategy === 'merge') {
      // Every tree counts the same, whichever worker grew it.
      for (let g = 0; g < m.forests; g++) for (let c = 0; c < k; c++) out[o + c] = (out[o + c] as number) + (votes[g * k + c] as number);
      for (let c = 0; c < k; c++) out[o + c] = (out[o + c] as number) / trees;
    } else {
      // Soft vote: the mean of each forest's own probabilities (a forest counts once).
      let present = 0;
      for (let g = 0; g < m.forests; g++) {
        const size = perForest[g] as number;
        if (size === 0) continue;
        present++;
        for (let c = 0; c < k; c++) out[o + c] = (out[o + c] as number) + (votes[g * k + c] as number) / size;
      }
      for (let c = 0; c < k; c++) out[o + c] = (out[o + c] as number) / present;
    }
  }
  return out;
}

/**
 * Majority strategy: each forest votes for its most probable class; the class with most
 * votes wins, ties broken by the mean probability.
 */
function majorityClass(m: ForestModel, x: Matrix, proba: Float64Array): Float64Array {
  const k = m.classes.length;
  const out = new Float64Array(x.rows);
  const single: ForestModel = { ...m, strategy: 'merge' };
  const trees = m.roots.length;
  const counts = new Float64Array(k);
  const forestVotes: Float64Array[] = [];
  for (let g = 0; g < m.forests; g++) {
    const idx: number[] = [];
    for (let t = 0; t < trees; t++) if (m.forest[t] === g) idx.push(t);
    if (idx.length === 0) continue;
    const sub: ForestModel = {
      ...single,
      roots: Int32Array.from(idx.map((t) => m.roots[t] as number)),
      forest: new Int32Array(idx.length),
      forests: 1,
    };
    forestVotes.push(forestProba(sub, x));
  }
  for (let r = 0; r < x.rows; r++) {
    counts.fill(0);
    for (const p of forestVotes) {
      const c = argmax(p, r * k, k);
      counts[c] = (counts[c] as number) + 1;
    }
    let best = 0;
    for (let c = 1; c < k; c++) {
      const better = (counts[c] as number) > (counts[best] as number);
      const tie = counts[c] === counts[best] && (proba[r * k + c] as number) > (proba[r * k + best] as number);
      if (better || tie) best = c;
    }
    out[r] = m.classes[best] as number;
  }
  return out;
}

function argmax(a: Float64Array, offset: number, k: number): number {
  let best = 0;
  for (let c = 1; c < k; c++) if ((a[offset + c] as number) > (a[offset + best] as number)) best = c;
  return best;
}

export interface Predictions {
  /** Class labels (classifiers) or values (linear regression). */
  predicted: Float64Array;
  /** Binary classifiers: the probability of the second class (classes[1], i.e. 1 for 0/1 labels). */
  score?: Float64Array;
  /** Classifiers: the probability of each class, row-major n × classes.length. */
  proba?: Float64Array;
  classes?: number[];
}

export function predictMatrix(m: Model, x: Matrix): Predictions {
  if (x.cols !== m.features.length) throw new RangeError(`rows have ${x.cols} values, the model ${m.features.length} features`);
  if (m.type !== 'randomForest') {
    if (m.type === 'linearRegression') return { predicted: linearScores(m, x) };
    const z = linearScores(m, x);
    const score = z.map(sigmoid);
    const proba = new Float64Array(x.rows * 2);
    for (let r = 0; r < x.rows; r++) {
      proba[2 * r] = 1 - (score[r] as number);
      proba[2 * r + 1] = score[r] as number;
    }
    return { predicted: score.map((p) => (p >= 0.5 ? 1 : 0)), score, proba, classes: [0, 1] };
  }
  const k = m.classes.length;
  const proba = forestProba(m, x);
  let predicted: Float64Array;
  if (m.strategy === 'majority') predicted = majorityClass(m, x, proba);
  else {
    predicted = new Float64Array(x.rows);
    for (let r = 0; r < x.rows; r++) predicted[r] = m.classes[argmax(proba, r * k, k)] as number;
  }
  const p: Predictions = { predicted, proba, classes: [...m.classes] };
  if (k === 2) p.score = Float64Array.from({ length: x.rows }, (_, r) => proba[2 * r + 1] as number);
  return p;
}
