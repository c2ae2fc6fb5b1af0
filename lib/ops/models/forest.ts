import { mixSeed, randomInt, seededRandom, yieldToLoop } from './random.ts';
import type { ForestTraining } from './spec.ts';
import type { ForestModel, Matrix } from './model.ts';

/**
 * A random forest classifier over typed arrays: bootstrap samples, CART trees with Gini
 * impurity, a fresh random subset of features at every split (as scikit-learn, which the
 * original used), and split candidates taken from quantile bins of each feature
 * (histogram splits, as LightGBM): a node costs O(rows × features tried), not a sort.
 *
 * ml-random-forest was measured first (bench/models-forest.ts): its CART tries every
 * distinct value with a full pass each (quadratic in the rows of a node) and draws features
 * once per tree, not per split.
 */

/** Per feature, the candidate thresholds (ascending) and each row's bin: the number of thresholds below its value. */
interface Binned {
  thresholds: Float64Array[];
  bins: Uint8Array[];
}

/** Bins the columns of x: a row is in bin b when thresholds[b-1] < x <= thresholds[b]. */
export function binColumns(x: Matrix, maxBins: number): Binned {
  const thresholds: Float64Array[] = [];
  const bins: Uint8Array[] = [];
  const col = new Float64Array(x.rows);
  for (let j = 0; j < x.cols; j++) {
    for (let r = 0; r < x.rows; r++) col[r] = x.data[r * x.cols + j] as number;
    const sorted = Float64Array.from(col).sort();
    const distinct: number[] = [];
    for (let i = 0; i < sorted.length; i++) if (i === 0 || sorted[i] !== sorted[i - 1]) distinct.push(sorted[i] as number);
    let t: number[];
    if (distinct.length <= maxBins) {
      // Few values: cut halfway between neighbours, as CART does.
      t = [];
      for (let i = 0; i + 1 < distinct.length; i++) t.push(((distinct[i] as number) + (distinct[i + 1] as number)) / 2);
    } else {
      // Many values: cut at quantiles of the rows (duplicates collapse).
      const set: number[] = [];
      for (let q = 1; q < maxBins; q++) {
        const v = sorted[Math.floor((q * sorted.length) / maxBins) - 1] as number;
        if (set.length === 0 || v > (set[set.length - 1] as number)) set.push(v);
      }
      if (set[set.length - 1] === sorted[sorted.length - 1]) set.pop();
      t = set;
    }
    const th = Float64Array.from(t);
    const b = new Uint8Array(x.rows);
    for (let r = 0; r < x.rows; r++) {
      const v = col[r] as number;
      let lo = 0;
      let hi = th.length; // first threshold >= v
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if ((th[mid] as number) < v) lo = mid + 1;
        else hi = mid;
      }
      b[r] = lo;
    }
    thresholds.push(th);
    bins.push(b);
  }
  return { thresholds, bins };
}

/** Growable node arrays of one forest. */
class Nodes {
  feature: number[] = [];
  threshold: number[] = [];
  left: number[] = [];
  right: number[] = [];
  value: number[] = [];

  constructor(private readonly k: number) {}

  add(counts: Float64Array, n: number): number {
    const i = this.feature.length;
    this.feature.push(-1);
    this.threshold.push(0);
    this.left.push(0);
    this.right.push(0);
    for (let c = 0; c < this.k; c++) this.value.push(n > 0 ? (counts[c] as number) / n : 0);
    return i;
  }
}

/**
 * Trains `nEstimators` trees on (x, y), y holding indices into `classes`. Yields to the event
 * loop between trees (and stops there when `signal` aborts). Deterministic for a given seed and data.
 */
export async function trainForest(
  x: Matrix,
  y: Uint8Array | Uint16Array,
  classes: number[],
  t: ForestTraining,
  meta: { strategy: ForestModel['strategy']; features: string[]; label: string; salt: number },
  signal?: AbortSignal,
): Promise<ForestModel> {
  const n = x.rows;
  const d = x.cols;
  const k = classes.length;
  const { thresholds, bins } = binColumns(x, t.maxBins);
  const nodes = new Nodes(k);
  const roots: number[] = [];
  const idx = new Uint32Array(n);
  const hist = new Float64Array(256 * k);
  const counts = new Float64Array(k);
  const leftCounts = new Float64Array(k);
  const featureOrder = new Uint32Array(d);
  const bestLeft = new Float64Array(k);
  const bestRight = new Float64Array(k);

  for (let tree = 0; tree < t.nEstimators; tree++) {
    const random = seededRandom(mixSeed(t.seed, meta.salt, tree));
    if (t.bootstrap) for (let i = 0; i < n; i++) idx[i] = randomInt(random, n);
    else for (let i = 0; i < n; i++) idx[i] = i;

    // Explicit stack of [start, end, depth, node]; children are always added after their parent.
    const rootCounts = new Float64Array(k);
    for (let i = 0; i < n; i++) {
      const c = y[idx[i] as number] as number;
      rootCounts[c] = (rootCounts[c] as number) + 1;
    }
    roots.push(nodes.add(rootCounts, n));
    const stack: Array<[number, number, number, number, Float64Array]> = [[0, n, 0, roots[roots.length - 1] as number, rootCounts]];
    while (stack.length > 0) {
      const [start, end, depth, node, nodeCounts] = stack.pop() as [number, number, number, number, Float64Array];
      const size = end - start;
      counts.set(nodeCounts);
      let sq = 0;
      let classesPresent = 0;
      for (let c = 0; c < k; c++) {
        sq += (counts[c] as number) ** 2;
        if ((counts[c] as number) > 0) classesPresent++;
      }
      if (depth >= t.maxDepth || size < t.minSamplesSplit || size < 2 * t.minSamplesLeaf || classesPresent < 2) continue;
      // Impurity sum: size·gini = size - Σc²/size. A split's score is Σ cL²/nL + Σ cR²/nR (higher is better).
      const parentScore = sq / size;
      let bestScore = parentScore + 1e-9 * size;
      let bestFeature = -1;
      let bestBin = -1;
      for (let j = 0; j < d; j++) featureOrder[j] = j;
      for (let tried = 0; tried < t.maxFeatures; tried++) {
        const pick = tried + randomInt(random, d - tried);
        const f = featureOrder[pick] as number;
        featureOrder[pick] = featureOrder[tried] as number;
        featureOrder[tried] = f;
        const nb = (thresholds[f] as Float64Array).length + 1;
        if (nb < 2) continue;
        const fb = bins[f] as Uint8Array;
        hist.fill(0, 0, nb * k);
        let lo = 255;
        let hi = 0;
        for (let i = start; i < end; i++) {
          const r = idx[i] as number;
          const b = fb[r] as number;
          const h = b * k + (y[r] as number);
          hist[h] = (hist[h] as number) + 1;
          if (b < lo) lo = b;
          if (b > hi) hi = b;
        }
        if (lo === hi) continue;
        leftCounts.fill(0);
        let nLeft = 0;
        for (let b = lo; b < hi; b++) {
          for (let c = 0; c < k; c++) {
            const v = hist[b * k + c] as number;
            leftCounts[c] = (leftCounts[c] as number) + v;
            nLeft += v;
          }
          const nRight = size - nLeft;
          if (nLeft < t.minSamplesLeaf || nRight < t.minSamplesLeaf) continue;
          let sl = 0;
          let sr = 0;
          for (let c = 0; c < k; c++) {
            const l = leftCounts[c] as number;
            const rr = (counts[c] as number) - l;
            sl += l * l;
            sr += rr * rr;
          }
          const score = sl / nLeft + sr / nRight;
          if (score > bestScore) {
            bestScore = score;
            bestFeature = f;
            bestBin = b;
            bestLeft.set(leftCounts);
          }
        }
      }
      if (bestFeature < 0) continue;
      // Partition idx[start, end) in place: bins <= bestBin first.
      const fb = bins[bestFeature] as Uint8Array;
      let i = start;
      let j = end - 1;
      while (i <= j) {
        if ((fb[idx[i] as number] as number) <= bestBin) i++;
        else {
          const tmp = idx[i] as number;
          idx[i] = idx[j] as number;
          idx[j] = tmp;
          j--;
        }
      }
      const mid = i;
      for (let c = 0; c < k; c++) bestRight[c] = (counts[c] as number) - (bestLeft[c] as number);
      const lc = Float64Array.from(bestLeft);
      const rc = Float64Array.from(bestRight);
      const l = nodes.add(lc, mid - start);
      const r = nodes.add(rc, end - mid);
      nodes.feature[node] = bestFeature;
      nodes.threshold[node] = (thresholds[bestFeature] as Float64Array)[bestBin] as number;
      nodes.left[node] = l;
      nodes.right[node] = r;
      stack.push([mid, end, depth + 1, r, rc], [start, mid, depth + 1, l, lc]);
    }
    if (tree + 1 < t.nEstimators) await yieldToLoop(signal);
  }
  return {
    type: 'randomForest',
    strategy: meta.strategy,
    features: meta.features,
    label: meta.label,
    classes,
    feature: Int32Array.from(nodes.feature),
    threshold: Float64Array.from(nodes.threshold),
    left: Int32Array.from(nodes.left),
    right: Int32Array.from(nodes.right),
    value: Float64Array.from(nodes.value),
    roots: Int32Array.from(roots),
    forest: new Int32Array(roots.length),
    forests: 1,
    samples: n,
    history: [],
  };
}
