// Why: a metric that is slightly wrong is worse than none (the original swapped TP and TN in
// its confusion matrix). Each figure here is checked against values worked out by hand, and the
// mergeable stats of split data against the figures of the whole.
import t from 'tap';
import {
  accuracy,
  AUC_BINS,
  binaryCounts,
  type ClassificationMetrics,
  classificationStats,
  confusionMatrix,
  f1,
  mae,
  mergeStats,
  precision,
  r2,
  recall,
  type RegressionMetrics,
  regressionStats,
  rmse,
  rocAuc,
  summarize,
} from '../lib/ops/metrics.ts';

// By hand: rows 0,3,6 are true positives, row 2 a false negative, rows 4,5 false positives, rows 1,7 true negatives.
const yTrue = [1, 0, 1, 1, 0, 0, 1, 0];
const yPred = [1, 0, 0, 1, 1, 1, 1, 0];

t.test('binary classification metrics, by hand', async (t) => {
  t.same(binaryCounts(yTrue, yPred), { tp: 3, fp: 2, tn: 2, fn: 1 });
  t.equal(accuracy(yTrue, yPred), 5 / 8);
  t.equal(precision(yTrue, yPred), 3 / 5);
  t.equal(recall(yTrue, yPred), 3 / 4);
  t.equal(f1(yTrue, yPred), 6 / 9);
  t.equal(precision([0, 0], [0, 0]), 0, 'no positive prediction: precision 0, not NaN');
  t.throws(() => accuracy([1], [1, 0]), RangeError);
});

t.test('the confusion matrix is labelled the right way round', async (t) => {
  // rows: true label, columns: predicted label
  t.same(confusionMatrix(yTrue, yPred), { labels: [0, 1], matrix: [[2, 2], [1, 3]] });
  const m = summarize(classificationStats([0, 1], yTrue, yPred)) as ClassificationMetrics;
  t.match(m, { tp: 3, fp: 2, tn: 2, fn: 1, n: 8, accuracy: 5 / 8, precision: 3 / 5, recall: 3 / 4 });
  t.ok(Math.abs(m.f1 - 6 / 9) < 1e-15);
  t.equal(m.rocAuc, null, 'no scores, no AUC');
  t.same(confusionMatrix([2, 0, 1], [2, 1, 1], [0, 1, 2]).matrix, [
    [0, 1, 0],
    [0, 1, 0],
    [0, 0, 1],
  ]);
});

t.test('ROC AUC, by hand', async (t) => {
  // positives score 0.9 and 0.4, negatives 0.8 and 0.3: 3 of 4 pairs ordered right.
  t.equal(rocAuc([1, 0, 1, 0], [0.9, 0.8, 0.4, 0.3]), 0.75);
  // a tie counts one half: (0.5 + 1 + 0 + 1) / 4
  t.equal(rocAuc([1, 0, 1, 0], [0.8, 0.8, 0.4, 0.3]), 0.625);
  t.equal(rocAuc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]), 1);
  t.ok(Number.isNaN(rocAuc([1, 1], [0.2, 0.3])), 'one class only: undefined');
  const stats = classificationStats([0, 1], [1, 0, 1, 0], [1, 1, 0, 0], [0.9, 0.8, 0.4, 0.3]);
  t.equal(summarize(stats).task === 'classification' && (summarize(stats) as ClassificationMetrics).rocAuc, 0.75, 'from the histograms');
});

t.test('regression metrics, by hand', async (t) => {
  // errors 0, -1, 1, -2: SSE 6, SAE 4; mean of y 2.5, SST 5
  const y = [1, 2, 3, 4];
  const p = [1, 3, 2, 6];
  t.equal(rmse(y, p), Math.sqrt(1.5));
  t.equal(mae(y, p), 1);
  t.ok(Math.abs(r2(y, p) - -0.2) < 1e-15);
  const m = summarize(regressionStats(y, p)) as RegressionMetrics;
  t.equal(m.rmse, Math.sqrt(1.5));
  t.equal(m.mae, 1);
  t.ok(Math.abs(m.r2 - -0.2) < 1e-12);
});

t.test('stats of parts merge into the metrics of the whole', async (t) => {
  const n = 2_000;
  let s = 42;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const truth = Array.from({ length: n }, () => (rnd() < 0.3 ? 1 : 0));
  const score = truth.map((y) => Math.min(1, Math.max(0, 0.35 * y + 0.65 * rnd())));
  const pred = score.map((p) => (p >= 0.5 ? 1 : 0));
  const whole = summarize(classificationStats([0, 1], truth, pred, score)) as ClassificationMetrics;
  const parts = [0, 700, 1500, n].slice(1).map((end, i, ends) => {
    const start = i === 0 ? 0 : (ends[i - 1] as number);
    return classificationStats([0, 1], truth.slice(start, end), pred.slice(start, end), score.slice(start, end));
  });
  const merged = summarize(mergeStats(parts)) as ClassificationMetrics;
  t.same(merged, whole, 'classification: identical');
  t.equal(merged.accuracy, accuracy(truth, pred));
  t.equal(merged.f1, f1(truth, pred));
  const exact = rocAuc(truth, score);
  t.ok(Math.abs((merged.rocAuc as number) - exact) < 1 / AUC_BINS, `histogram AUC ${merged.rocAuc} vs exact ${exact}`);

  const y = score.map((v) => v * 10);
  const yp = y.map((v, i) => v + (i % 7) - 3);
  const rWhole = summarize(regressionStats(y, yp)) as RegressionMetrics;
  const rMerged = summarize(mergeStats([regressionStats(y.slice(0, 900), yp.slice(0, 900)), regressionStats(y.slice(900), yp.slice(900))])) as RegressionMetrics;
  t.ok(Math.abs(rMerged.rmse - rmse(y, yp)) < 1e-12 && Math.abs(rMerged.mae - mae(y, yp)) < 1e-12);
  t.ok(Math.abs(rMerged.r2 - r2(y, yp)) < 1e-9 && Math.abs(rMerged.r2 - rWhole.r2) < 1e-9);

  // Workers that saw different labels merge by label value.
  const a = classificationStats([0, 1], [0, 1], [0, 1]);
  const b = classificationStats([1, 2], [2, 2], [2, 1]);
  t.same((summarize(mergeStats([a, b])) as ClassificationMetrics).confusionMatrix, {
    labels: [0, 1, 2],
    matrix: [
      [1, 0, 0],
      [0, 1, 0],
      [0, 1, 1],
    ],
  });
  t.throws(() => mergeStats([a, regressionStats([1], [1])]), TypeError);
  t.throws(() => mergeStats([]), RangeError);
});

t.test('more than two classes: macro averages', async (t) => {
  const m = summarize(classificationStats([0, 1, 2], [0, 1, 2, 2], [0, 2, 2, 1])) as ClassificationMetrics;
  // per class precision: 1, 0, 1/2; recall: 1, 0, 1/2
  t.equal(m.accuracy, 0.5);
  t.equal(m.precision, 0.5);
  t.equal(m.recall, 0.5);
  t.equal(m.tp, undefined);
});
