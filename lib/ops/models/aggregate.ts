import type { AggregationStrategy } from '../../../protocols/operations/models.ts';
import { type EvalStats, mergeStats, summarize } from '../metrics.ts';
import type { ForestModel, LinearModel, Model, ModelUpdate, RoundRecord } from './model.ts';

/**
 * Merging local models into one global model, on the initiator.
 * Linear models: their parameter vectors [w..., b] by a strategy (FedAvg's weighted mean, or a
 * robust coordinate-wise median / trimmed mean). Forests: their trees, concatenated.
 */

/** Combines parameter vectors of equal length, coordinate by coordinate. */
export function combineVectors(vectors: Float64Array[], weights: number[], strategy: AggregationStrategy): Float64Array {
  const m = vectors.length;
  const first = vectors[0];
  if (first === undefined) throw new RangeError('nothing to aggregate');
  const d = first.length;
  for (const v of vectors) if (v.length !== d) throw new RangeError('parameter vectors differ in length');
  const out = new Float64Array(d);
  if (strategy.strategy === 'weightedMean') {
    const total = weights.reduce((s, w) => s + w, 0);
    if (!(total > 0)) throw new RangeError('the sample counts sum to 0');
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let i = 0; i < m; i++) s += (weights[i] as number) * ((vectors[i] as Float64Array)[j] as number);
      out[j] = s / total;
    }
    return out;
  }
  // Robust strategies ignore the (self-reported) sample counts: a bad worker could inflate its own.
  const trimEach = strategy.strategy === 'trimmedMean' ? Math.floor(strategy.trim * m) : 0;
  const column = new Float64Array(m);
  for (let j = 0; j < d; j++) {
    for (let i = 0; i < m; i++) {
      const v = (vectors[i] as Float64Array)[j] as number;
      column[i] = Number.isNaN(v) ? Number.POSITIVE_INFINITY : v; // NaN sorts as an outlier
    }
    column.sort();
    if (strategy.strategy === 'median') {
      out[j] = m % 2 === 1 ? (column[(m - 1) / 2] as number) : ((column[m / 2 - 1] as number) + (column[m / 2] as number)) / 2;
    } else {
      let s = 0;
      for (let i = trimEach; i < m - trimEach; i++) s += column[i] as number;
      out[j] = s / (m - 2 * trimEach);
    }
  }
  return out;
}

function sameVector(a: Float64Array, b: Float64Array): boolean {
  return a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
}

function roundRecord(updates: ModelUpdate[], round: number): RoundRecord {
  const rec: RoundRecord = { round, samples: updates.reduce((s, u) => s + u.samples, 0), workers: updates.length };
  const tests = updates.map((u) => u.test).filter((s): s is EvalStats => s !== undefined);
  if (tests.length > 0) rec.metrics = summarize(mergeStats(tests));
  return rec;
}

/**
 * Where an aggregation sits in the artifact, for its model's history: an Iterate's round after the
 * first (`iteration` > 0) keeps only its own record, and its last round puts the whole history
 * together from the products of the earlier rounds (`earlier`, linked to it by lib/plan/bind.ts).
 */
export interface RoundsSoFar {
  iteration: number;
  earlier: Model[];
}

/** Records of several histories, one per round (the first seen of a round), in round order. */
function byRound(histories: RoundRecord[][]): RoundRecord[] {
  const seen = new Map<number, RoundRecord>();
  for (const h of histories) for (const r of h) if (!seen.has(r.round)) seen.set(r.round, r);
  return [...seen.values()].sort((a, b) => a.round - b.round);
}

/**
 * The history of a new aggregate. The local models echo the history of the model they started from;
 * in an Iterate that is the previous round's record alone, so that the model each round sends to the
 * workers and gets back from them does not grow with the round (issue 9). The last round gathers.
 * Outside an Iterate (or in its first round) the history goes on from the local models' own, as
 * before; an artifact bound before the last round was linked to the earlier ones gets, in its
 * rounds after the first, only the last record.
 */
function historyOf(base: RoundRecord[], rec: RoundRecord, at: RoundsSoFar): RoundRecord[] {
  if (at.earlier.length > 0) return byRound([base, ...at.earlier.map((m) => m.history), [rec]]);
  if (at.iteration > 0) return [rec];
  return [...base, rec];
}

export function aggregateLinear(
  updates: ModelUpdate[],
  strategy: AggregationStrategy,
  at: RoundsSoFar = { iteration: 0, earlier: [] },
): LinearModel {
  const models = updates.map((u) => u.model);
  const base = models[0];
  if (base === undefined || base.type === 'randomForest') throw new TypeError('aggregation of a linear model needs linear inputs');
  for (const m of models) {
    if (m.type !== base.type || m.features.join('\u0000') !== base.features.join('\u0000') || m.label !== base.label) {
      throw new TypeError('the local models differ in type, features or label');
    }
    if (!sameVector(m.mean, base.mean) || !sameVector(m.std, base.std)) {
      throw new TypeError('the local models were standardized differently: start them from one InitModel');
    }
  }
  const vectors = models.map((m) => {
    const lm = m as LinearModel;
    const v = new Float64Array(lm.weights.length + 1);
    v.set(lm.weights);
    v[lm.weights.length] = lm.bias;
    return v;
  });
  const merged = combineVectors(
    vectors,
    updates.map((u) => u.samples),
    strategy,
  );
  const d = base.weights.length;
  const round = Math.max(...models.map((m) => (m as LinearModel).round)) + 1;
  const rec = roundRecord(updates, round);
  return {
    ...base,
    weights: merged.slice(0, d),
    bias: merged[d] as number,
    round,
    samples: rec.samples,
    history: historyOf(base.history, rec, at),
  };
}

/**
 * Concatenates forests (their class lists merged by value, leaves re-indexed). MERGE and
 * MAJORITY keep the same trees; they differ in how they predict (lib/ops/models/model.ts).
 */
export function mergeForests(updates: ModelUpdate[], strategy: ForestModel['strategy']): ForestModel {
  const forests = updates.map((u) => u.model);
  const first = forests[0];
  if (first === undefined || first.type !== 'randomForest') throw new TypeError('aggregation of a forest needs forests');
  for (const f of forests) {
    if (f.type !== 'randomForest' || f.features.join('\u0000') !== first.features.join('\u0000') || f.label !== first.label) {
      throw new TypeError('the local forests differ in features or label');
    }
  }
  const fs = forests as ForestModel[];
  const classes = [...new Set(fs.flatMap((f) => f.classes))].sort((a, b) => a - b);
  const k = classes.length;
  const nodes = fs.reduce((s, f) => s + f.feature.length, 0);
  const trees = fs.reduce((s, f) => s + f.roots.length, 0);
  const out: ForestModel = {
    type: 'randomForest',
    strategy,
    features: first.features,
    label: first.label,
    classes,
    feature: new Int32Array(nodes),
    threshold: new Float64Array(nodes),
    left: new Int32Array(nodes),
    right: new Int32Array(nodes),
    value: new Float64Array(nodes * k),
    roots: new Int32Array(trees),
    forest: new Int32Array(trees),
    forests: fs.reduce((s, f) => s + f.forests, 0),
    samples: updates.reduce((s, u) => s + u.samples, 0),
    history: [...first.history, roundRecord(updates, first.history.length + 1)],
  };
  let nodeOff = 0;
  let treeOff = 0;
  let forestOff = 0;
  for (const f of fs) {
    const n = f.feature.length;
    const kf = f.classes.length;
    const map = f.classes.map((c) => classes.indexOf(c));
    out.feature.set(f.feature, nodeOff);
    out.threshold.set(f.threshold, nodeOff);
    for (let i = 0; i < n; i++) {
      const leaf = f.feature[i] === -1;
      out.left[nodeOff + i] = leaf ? 0 : (f.left[i] as number) + nodeOff;
      out.right[nodeOff + i] = leaf ? 0 : (f.right[i] as number) + nodeOff;
      for (let c = 0; c < kf; c++) out.value[(nodeOff + i) * k + (map[c] as number)] = f.value[i * kf + c] as number;
    }
    for (let t = 0; t < f.roots.length; t++) {
      out.roots[treeOff + t] = (f.roots[t] as number) + nodeOff;
      out.forest[treeOff + t] = (f.forest[t] as number) + forestOff;
    }
    nodeOff += n;
    treeOff += f.roots.length;
    forestOff += f.forests;
  }
  return out;
}
