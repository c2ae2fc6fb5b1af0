import { mixSeed, seededRandom, shuffle, yieldToLoop } from './random.ts';
import type { LinearTraining } from './spec.ts';
import type { LinearModel, Matrix } from './model.ts';

/**
 * Local training of a linear or logistic regression: mini-batch SGD over standardized
 * features, starting from the global model (FedAvg's local update). With `mu > 0` the
 * gradient gets FedProx's proximal term mu·(w - w_global), which keeps a worker with skewed
 * data from drifting far from the global model in one round.
 */

/** Standardization that leaves a constant feature alone (std 0 -> 1). */
export function safeStd(std: number): number {
  return std > 1e-12 && Number.isFinite(std) ? std : 1;
}

/**
 * Column means and (population) standard deviations of a matrix, or of its rows `rows` (in that
 * order: the very sums of the same rows copied out, so the same bits).
 */
export function columnStats(x: Matrix, rows?: ArrayLike<number>): { mean: Float64Array; std: Float64Array } {
  const mean = new Float64Array(x.cols);
  const std = new Float64Array(x.cols);
  const n = rows === undefined ? x.rows : rows.length;
  const at = (i: number) => (rows === undefined ? i : (rows[i] as number)) * x.cols;
  for (let j = 0; j < x.cols; j++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += x.data[at(i) + j] as number;
    const m = n > 0 ? s / n : 0;
    let v = 0;
    for (let i = 0; i < n; i++) v += ((x.data[at(i) + j] as number) - m) ** 2;
    mean[j] = m;
    std[j] = safeStd(n > 0 ? Math.sqrt(v / n) : 1);
  }
  return { mean, std };
}

/**
 * Returns a copy of `start` trained on (x, y), or on its rows `rows` only (a view: the same bits as
 * training on those rows copied out, in that order); `start` is also the anchor of FedProx. The row
 * order of each epoch is a seeded shuffle of (seed, round, epoch, rows): the same inputs give the
 * same model, bit for bit.
 */
export async function trainLinear(
  start: LinearModel,
  x: Matrix,
  y: Float64Array,
  t: LinearTraining,
  signal?: AbortSignal,
  rows?: ArrayLike<number>,
): Promise<LinearModel> {
  const d = x.cols;
  const n = rows === undefined ? x.rows : rows.length;
  const { data } = x;
  const { mean, std } = start;
  // Each row standardized as it is visited, into `row`, rather than a standardized copy of the
  // whole matrix per call: that copy (rows × features doubles, 200 KB for 2,500 × 10) was made
  // every round, and its garbage kept the worker's collector busy; the values are the same.
  const row = new Float64Array(d);
  const w = Float64Array.from(start.weights);
  let b = start.bias;
  const w0 = start.weights;
  const b0 = start.bias;
  const grad = new Float64Array(d);
  const order = new Uint32Array(n);
  const logistic = start.type === 'logisticRegression';
  for (let epoch = 0; epoch < t.epochs; epoch++) {
    for (let i = 0; i < n; i++) order[i] = i;
    shuffle(order, seededRandom(mixSeed(t.seed, start.round, epoch, n)));
    for (let from = 0; from < n; from += t.batchSize) {
      const to = Math.min(n, from + t.batchSize);
      grad.fill(0);
      let gb = 0;
      for (let k = from; k < to; k++) {
        const i = order[k] as number;
        const r = rows === undefined ? i : (rows[i] as number);
        const base = r * d;
        let z = b;
        for (let j = 0; j < d; j++) {
          const v = ((data[base + j] as number) - (mean[j] as number)) / (std[j] as number);
          row[j] = v;
          z += (w[j] as number) * v;
        }
        const p = logistic ? (z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z))) : z;
        const e = p - (y[r] as number);
        for (let j = 0; j < d; j++) grad[j] = (grad[j] as number) + e * (row[j] as number);
        gb += e;
      }
      const m = to - from;
      for (let j = 0; j < d; j++) {
        const g = (grad[j] as number) / m + t.l2 * (w[j] as number) + t.mu * ((w[j] as number) - (w0[j] as number));
        w[j] = (w[j] as number) - t.learningRate * g;
      }
      b -= t.learningRate * (gb / m + t.mu * (b - b0));
    }
    if (epoch + 1 < t.epochs) await yieldToLoop(signal);
  }
  if (!Number.isFinite(b) || !w.every(Number.isFinite)) {
    throw new RangeError('training diverged (a weight is not finite): lower the learning rate');
  }
  return { ...start, weights: w, bias: b, samples: n };
}

/** A zero model with the given standardization. */
export function initialLinear(
  type: LinearModel['type'],
  features: string[],
  label: string,
  mean: Float64Array,
  std: Float64Array,
): LinearModel {
  return {
    type,
    features,
    label,
    mean,
    std: std.map(safeStd),
    weights: new Float64Array(features.length),
    bias: 0,
    round: 0,
    samples: 0,
    history: [],
  };
}
