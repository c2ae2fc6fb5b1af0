/**
 * Metrics of a model on labelled rows. Two layers:
 * - plain functions over arrays (accuracy, precision, ..., rmse) for central use and tests;
 * - *stats*: small sufficient statistics a worker sends instead of rows (a confusion matrix,
 *   score histograms, sums of errors). Stats of several workers merge by addition, and
 *   `summarize` turns them into the metrics of the union, exactly (ROC AUC: to within the
 *   histogram's resolution, see AUC_BINS).
 *
 * Unlike the original, the confusion matrix is labelled the right way round: rows are the true
 * class, columns the predicted class, and tp/fp/tn/fn are what their names say.
 */

type Nums = ArrayLike<number>;

function checkSameLength(a: Nums, b: Nums): void {
  if (a.length !== b.length) throw new RangeError(`length mismatch: ${a.length} vs ${b.length}`);
}

export function accuracy(yTrue: Nums, yPred: Nums): number {
  checkSameLength(yTrue, yPred);
  let ok = 0;
  for (let i = 0; i < yTrue.length; i++) if (yTrue[i] === yPred[i]) ok++;
  return yTrue.length === 0 ? Number.NaN : ok / yTrue.length;
}

export interface BinaryCounts {
  tp: number;
  fp: number;
  tn: number;
  fn: number;
}

/** Counts against one positive label (every other label is negative). */
export function binaryCounts(yTrue: Nums, yPred: Nums, positive = 1): BinaryCounts {
  checkSameLength(yTrue, yPred);
  const c = { tp: 0, fp: 0, tn: 0, fn: 0 };
  for (let i = 0; i < yTrue.length; i++) {
    const t = yTrue[i] === positive;
    const p = yPred[i] === positive;
    if (t && p) c.tp++;
    else if (p) c.fp++;
    else if (t) c.fn++;
    else c.tn++;
  }
  return c;
}

/** tp / (tp + fp); 0 when nothing is predicted positive (as scikit-learn's zero_division=0). */
export function precision(yTrue: Nums, yPred: Nums, positive = 1): number {
  const { tp, fp } = binaryCounts(yTrue, yPred, positive);
  return ratio(tp, tp + fp);
}

/** tp / (tp + fn); 0 when there is no positive row. */
export function recall(yTrue: Nums, yPred: Nums, positive = 1): number {
  const { tp, fn } = binaryCounts(yTrue, yPred, positive);
  return ratio(tp, tp + fn);
}

export function f1(yTrue: Nums, yPred: Nums, positive = 1): number {
  const { tp, fp, fn } = binaryCounts(yTrue, yPred, positive);
  return ratio(2 * tp, 2 * tp + fp + fn);
}

function ratio(a: number, b: number): number {
  return b === 0 ? 0 : a / b;
}

/**
 * ROC AUC: the probability that a random positive row scores above a random negative one
 * (ties count one half), by ranks. NaN when one class is absent.
 */
export function rocAuc(yTrue: Nums, score: Nums, positive = 1): number {
  checkSameLength(yTrue, score);
  const n = yTrue.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => (score[a] as number) - (score[b] as number));
  let pos = 0;
  let rankSum = 0;
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && score[order[j + 1] as number] === score[order[i] as number]) j++;
    const rank = (i + j) / 2 + 1; // average rank of the tie group, 1-based
    for (let k = i; k <= j; k++) {
      if (yTrue[order[k] as number] === positive) {
        pos++;
        rankSum += rank;
      }
    }
    i = j + 1;
  }
  const neg = n - pos;
  if (pos === 0 || neg === 0) return Number.NaN;
  return (rankSum - (pos * (pos + 1)) / 2) / (pos * neg);
}

/** matrix[i][j]: rows whose true label is labels[i] and predicted label labels[j]. */
export function confusionMatrix(yTrue: Nums, yPred: Nums, labels?: number[]): { labels: number[]; matrix: number[][] } {
  checkSameLength(yTrue, yPred);
  const ls = labels ?? [...new Set([...Array.from(yTrue), ...Array.from(yPred)])].sort((a, b) => a - b);
  const index = new Map(ls.map((l, i) => [l, i]));
  const matrix = ls.map(() => ls.map(() => 0));
  for (let i = 0; i < yTrue.length; i++) {
    const t = index.get(yTrue[i] as number);
    const p = index.get(yPred[i] as number);
    if (t !== undefined && p !== undefined) {
      const row = matrix[t] as number[];
      row[p] = (row[p] as number) + 1;
    }
  }
  return { labels: ls, matrix };
}

export function rmse(yTrue: Nums, yPred: Nums): number {
  checkSameLength(yTrue, yPred);
  let s = 0;
  for (let i = 0; i < yTrue.length; i++) s += ((yTrue[i] as number) - (yPred[i] as number)) ** 2;
  return Math.sqrt(s / yTrue.length);
}

export function mae(yTrue: Nums, yPred: Nums): number {
  checkSameLength(yTrue, yPred);
  let s = 0;
  for (let i = 0; i < yTrue.length; i++) s += Math.abs((yTrue[i] as number) - (yPred[i] as number));
  return s / yTrue.length;
}

/** Coefficient of determination: 1 - SSE / SST (SST around the mean of yTrue). */
export function r2(yTrue: Nums, yPred: Nums): number {
  checkSameLength(yTrue, yPred);
  let mean = 0;
  for (let i = 0; i < yTrue.length; i++) mean += yTrue[i] as number;
  mean /= yTrue.length;
  let sse = 0;
  let sst = 0;
  for (let i = 0; i < yTrue.length; i++) {
    sse += ((yTrue[i] as number) - (yPred[i] as number)) ** 2;
    sst += ((yTrue[i] as number) - mean) ** 2;
  }
  return sst === 0 ? Number.NaN : 1 - sse / sst;
}

// ---------------------------------------------------------------- mergeable stats

/** Score histogram resolution for a merged ROC AUC: scores in [0, 1] fall in this many bins. */
export const AUC_BINS = 1_000;

export interface ClassificationStats {
  task: 'classification';
  labels: number[];
  /** Row-major labels.length² counts: [true][predicted]. */
  confusion: number[];
  /** Binary only (labels [neg, pos]): histograms of the positive-class score of positive and of negative rows. */
  scores?: { positive: number[]; negative: number[] };
}

export interface RegressionStats {
  task: 'regression';
  n: number;
  /** Sum of squared errors, of absolute errors, of y and of y². */
  sse: number;
  sae: number;
  sumY: number;
  sumY2: number;
}

export type EvalStats = ClassificationStats | RegressionStats;

export interface ClassificationMetrics {
  task: 'classification';
  n: number;
  accuracy: number;
  /** Binary: of the positive (second) label. More classes: macro average over labels. */
  precision: number;
  recall: number;
  f1: number;
  /** Binary only, from the score histograms; null otherwise. */
  rocAuc: number | null;
  confusionMatrix: { labels: number[]; matrix: number[][] };
  /** Binary only. */
  tp?: number;
  fp?: number;
  tn?: number;
  fn?: number;
}

export interface RegressionMetrics {
  task: 'regression';
  n: number;
  rmse: number;
  mae: number;
  r2: number;
}

export type Metrics = ClassificationMetrics | RegressionMetrics;

/**
 * `labels` sorted; `score` (optional, binary only) is the predicted probability of labels[1].
 * Labels outside `labels` are not counted.
 */
export function classificationStats(labels: number[], yTrue: Nums, yPred: Nums, score?: Nums): ClassificationStats {
  const { matrix } = confusionMatrix(yTrue, yPred, labels);
  const stats: ClassificationStats = { task: 'classification', labels: [...labels], confusion: matrix.flat() };
  if (score && labels.length === 2) {
    checkSameLength(yTrue, score);
    const positive = new Array<number>(AUC_BINS).fill(0);
    const negative = new Array<number>(AUC_BINS).fill(0);
    for (let i = 0; i < yTrue.length; i++) {
      const bin = scoreBin(score[i] as number);
      if (yTrue[i] === labels[1]) positive[bin] = (positive[bin] as number) + 1;
      else if (yTrue[i] === labels[0]) negative[bin] = (negative[bin] as number) + 1;
    }
    stats.scores = { positive, negative };
  }
  return stats;
}

function scoreBin(s: number): number {
  if (!(s > 0)) return 0;
  if (s >= 1) return AUC_BINS - 1;
  return Math.min(AUC_BINS - 1, Math.floor(s * AUC_BINS));
}

export function regressionStats(yTrue: Nums, yPred: Nums): RegressionStats {
  checkSameLength(yTrue, yPred);
  const s: RegressionStats = { task: 'regression', n: yTrue.length, sse: 0, sae: 0, sumY: 0, sumY2: 0 };
  for (let i = 0; i < yTrue.length; i++) {
    const y = yTrue[i] as number;
    const e = y - (yPred[i] as number);
    s.sse += e * e;
    s.sae += Math.abs(e);
    s.sumY += y;
    s.sumY2 += y * y;
  }
  return s;
}

/** Stats of several workers -> the stats of the union of their rows. */
export function mergeStats(all: EvalStats[]): EvalStats {
  const first = all[0];
  if (first === undefined) throw new RangeError('no stats to merge');
  if (first.task === 'regression') {
    const out: RegressionStats = { task: 'regression', n: 0, sse: 0, sae: 0, sumY: 0, sumY2: 0 };
    for (const s of all) {
      if (s.task !== 'regression') throw new TypeError('cannot merge regression and classification stats');
      out.n += s.n;
      out.sse += s.sse;
      out.sae += s.sae;
      out.sumY += s.sumY;
      out.sumY2 += s.sumY2;
    }
    return out;
  }
  const labels = [...new Set(all.flatMap((s) => (s.task === 'classification' ? s.labels : [])))].sort((a, b) => a - b);
  const k = labels.length;
  const index = new Map(labels.map((l, i) => [l, i]));
  const confusion = new Array<number>(k * k).fill(0);
  const binary = k === 2 && all.every((s) => s.task === 'classification' && s.scores !== undefined && s.labels.length === 2);
  const positive = new Array<number>(AUC_BINS).fill(0);
  const negative = new Array<number>(AUC_BINS).fill(0);
  for (const s of all) {
    if (s.task !== 'classification') throw new TypeError('cannot merge regression and classification stats');
    const m = s.labels.length;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < m; j++) {
        const ti = index.get(s.labels[i] as number) as number;
        const pj = index.get(s.labels[j] as number) as number;
        confusion[ti * k + pj] = (confusion[ti * k + pj] as number) + (s.confusion[i * m + j] ?? 0);
      }
    }
    if (binary && s.scores) {
      for (let b = 0; b < AUC_BINS; b++) {
        positive[b] = (positive[b] as number) + (s.scores.positive[b] ?? 0);
        negative[b] = (negative[b] as number) + (s.scores.negative[b] ?? 0);
      }
    }
  }
  const out: ClassificationStats = { task: 'classification', labels, confusion };
  if (binary) out.scores = { positive, negative };
  return out;
}

/** AUC from score histograms: pairs in one bin count one half. */
function histogramAuc(positive: number[], negative: number[]): number {
  let pos = 0;
  let neg = 0;
  for (let b = 0; b < positive.length; b++) {
    pos += positive[b] ?? 0;
    neg += negative[b] ?? 0;
  }
  if (pos === 0 || neg === 0) return Number.NaN;
  let below = 0; // negatives in lower bins
  let wins = 0;
  for (let b = 0; b < positive.length; b++) {
    const p = positive[b] ?? 0;
    const n = negative[b] ?? 0;
    wins += p * (below + n / 2);
    below += n;
  }
  return wins / (pos * neg);
}

export function summarize(stats: EvalStats): Metrics {
  if (stats.task === 'regression') {
    const { n, sse, sae, sumY, sumY2 } = stats;
    const sst = sumY2 - (sumY * sumY) / n;
    return { task: 'regression', n, rmse: Math.sqrt(sse / n), mae: sae / n, r2: sst > 0 ? 1 - sse / sst : Number.NaN };
  }
  const { labels, confusion } = stats;
  const k = labels.length;
  const at = (i: number, j: number) => confusion[i * k + j] ?? 0;
  let n = 0;
  let correct = 0;
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) n += at(i, j);
    correct += at(i, i);
  }
  const perClass = labels.map((_, c) => {
    let predicted = 0;
    let actual = 0;
    for (let i = 0; i < k; i++) {
      predicted += at(i, c);
      actual += at(c, i);
    }
    const tp = at(c, c);
    return { precision: ratio(tp, predicted), recall: ratio(tp, actual), f1: ratio(2 * tp, predicted + actual) };
  });
  const pick = (key: 'precision' | 'recall' | 'f1'): number =>
    k === 2 ? (perClass[1]?.[key] ?? 0) : perClass.reduce((s, c) => s + c[key], 0) / Math.max(1, k);
  const matrix = labels.map((_, i) => labels.map((__, j) => at(i, j)));
  const m: ClassificationMetrics = {
    task: 'classification',
    n,
    accuracy: n === 0 ? Number.NaN : correct / n,
    precision: pick('precision'),
    recall: pick('recall'),
    f1: pick('f1'),
    rocAuc: stats.scores ? histogramAuc(stats.scores.positive, stats.scores.negative) : null,
    confusionMatrix: { labels: [...labels], matrix },
  };
  if (k === 2) {
    m.tn = at(0, 0);
    m.fp = at(0, 1);
    m.fn = at(1, 0);
    m.tp = at(1, 1);
  }
  return m;
}
