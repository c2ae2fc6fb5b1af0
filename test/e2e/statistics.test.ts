// Why: the catalog's promise is that a federated figure equals the central one over the union. Here every estimator and every transformer runs the way a researcher runs it (workbench -> scheduler -> two worker processes with the California shards), and its result is checked against the same computation done centrally in plain TypeScript: exact counts, 1e-9 relative for sums, means, variances and covariances, within the stated error for quantiles. The workers run with the default privacy rule (minimum group size 5), so the histogram check applies it too.
import t from 'tap';
import { uniformEdges } from '../../lib/data/stages.ts';
import { quantileRank } from '../../lib/ops/estimators/histogram.ts';
import { isTestRow } from '../../lib/ops/split.ts';
import {
  binsFromMetadata,
  type CountProduct,
  type CovarianceProduct,
  estimators,
  expr,
  extract,
  fitQuery,
  type GroupCountProduct,
  type GroupMeanProduct,
  type HistogramProduct,
  type MeanProduct,
  type MinMaxProduct,
  type Query,
  type QuantilesProduct,
  type Step,
  type SumProduct,
  transformers,
  type VarianceProduct,
  where,
} from '../../lib/workbench.ts';
import { column, readCsv, type Table, union } from '../helpers/central.ts';
import { PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster } from '../helpers/cluster.ts';
import { covarianceOf, fsum, meanOf, quantileDisc, relErr, varianceOf } from '../helpers/stats.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const K = 5;
const shards = SHARDS.map(readCsv);
const all = union(...shards);
const features = all.columns;
const { wb, token } = await testCluster(t, 'statistics', {
  workers: SHARDS.map((f, i) => ({
    name: `worker-${i + 1}`,
    files: [f],
    extra: { privacy: { min_group_size: K, dp: { budget_per_project: 1 } } },
  })),
});
const project = await wb.project(token);
const run = async <T>(step: Step | Step[], name = 'statistics'): Promise<T> =>
  (await project.submit({ name, steps: Array.isArray(step) ? step : [step] })).result<T>();
const rows = (table: Table, keep: (r: number[]) => boolean): Table => ({ columns: table.columns, rows: table.rows.filter(keep) });
const at = (f: string) => features.indexOf(f);
const near = (t: Tap, got: number | null | undefined, want: number, what: string, rel = 1e-9) =>
  t.ok(got !== null && got !== undefined && relErr(got, want) <= rel, `${what}: ${got} vs ${want} (rel ${got == null ? '-' : relErr(got, want).toExponential(1)})`);
type Tap = Parameters<Parameters<typeof t.test>[0]>[0];
/** The `fitted` parameters fitQuery put in stage i. */
function fittedOf<T>(q: Query, i: number): T[] {
  const s = q.stages?.[i] as { fitted?: T[] } | undefined;
  if (!s?.fitted) throw new Error(`stage ${i} has no fitted parameters`);
  return s.fitted;
}

t.test('estimators equal the central figures over the union', async (t) => {
  t.test('Sum', async (t) => {
    const r = await run<SumProduct>(estimators.sum(features));
    for (const f of features) {
      near(t, r.sum[f], fsum(column(all, f)), f, 1e-12);
      t.equal(r.count[f], all.rows.length);
    }
    t.equal(r.suppressed, 0);
  });

  t.test('Variance and standard deviation, filtered', async (t) => {
    const q = { where: where('HouseAge', '<=', 20) };
    const sub = rows(all, (r) => (r[at('HouseAge')] as number) <= 20);
    const r = await run<VarianceProduct>(estimators.variance(features, q));
    for (const f of features) {
      const xs = column(sub, f);
      near(t, r.variance[f], varianceOf(xs), `${f} variance`);
      near(t, r.std[f], Math.sqrt(varianceOf(xs)), `${f} std`);
      near(t, r.mean[f], meanOf(xs), `${f} mean`);
      t.equal(r.count[f], xs.length);
    }
  });

  t.test('GroupMean', async (t) => {
    const r = await run<GroupMeanProduct>(estimators.groupMean(['MedHouseValDiscrete'], [[0, 1]], ['MedInc', 'AveRooms']));
    for (const g of r.groups) {
      const sub = rows(all, (row) => row[at('MedHouseValDiscrete')] === g.key[0]);
      t.equal(g.count, sub.rows.length, `group ${g.key} count`);
      for (const f of ['MedInc', 'AveRooms']) near(t, g.mean[f], meanOf(column(sub, f)), `group ${g.key} ${f}`);
    }
    t.equal(r.groups.length, 2);
  });

  t.test('MinMax', async (t) => {
    const r = await run<MinMaxProduct>(estimators.minMax(features));
    for (const f of features) {
      t.equal(r.min[f], Math.min(...column(all, f)), `${f} min`);
      t.equal(r.max[f], Math.max(...column(all, f)), `${f} max`);
    }
  });

  t.test('Histogram, with the minimum group size applied by each worker', async (t) => {
    const bins = [
      { lo: 1, hi: 52, count: 51 },
      { lo: 0, hi: 10, count: 40 },
    ];
    const fs = ['HouseAge', 'AveOccup'];
    const r = await run<HistogramProduct>(estimators.histogram(fs, bins));
    for (const [i, f] of fs.entries()) {
      const b = bins[i] as { lo: number; hi: number; count: number };
      const w = (b.hi - b.lo) / b.count;
      const expected = new Array<number>(b.count).fill(0);
      let above = 0;
      let suppressed = 0;
      for (const shard of shards) {
        const local = new Array<number>(b.count).fill(0);
        let localAbove = 0;
        for (const x of column(shard, f)) {
          if (x > b.hi) localAbove++;
          else if (x >= b.lo) {
            const k = Math.min(b.count - 1, Math.floor((x - b.lo) / w));
            local[k] = (local[k] ?? 0) + 1;
          }
        }
        for (const [k, c] of local.entries()) {
          if (c >= K) expected[k] = (expected[k] ?? 0) + c;
          else if (c > 0) suppressed++;
        }
        if (localAbove >= K) above += localAbove;
        else if (localAbove > 0) suppressed++;
      }
      const h = r.histograms[i];
      t.same(h?.counts, expected, `${f}: per-worker bins under ${K} rows held back`);
      t.equal(h?.above, above, `${f} above`);
      t.ok(suppressed > 0 || f === 'HouseAge', `${f}: ${suppressed} held back`);
    }
    t.ok(r.suppressed > 0, 'the product counts what was held back');
  });

  t.test('Quantiles within the stated bound', async (t) => {
    const fs = ['MedInc', 'AveOccup', 'Population'];
    const levels = [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1];
    const bins = binsFromMetadata(project.info, fs, 2000);
    const r = await run<QuantilesProduct>(estimators.quantiles(fs, bins, levels));
    for (const f of fs) {
      const sorted = column(all, f).sort((a, b) => a - b);
      const bound = r.errorBound[f] as number;
      for (const e of r.quantiles[f] ?? []) {
        const exact = quantileDisc(sorted, quantileRank(e.q, sorted.length));
        t.ok(Math.abs((e.value as number) - exact) <= bound * (1 + 1e-9), `${f} q=${e.q}: ${e.value} vs ${exact}, bound ${bound}`);
      }
    }
  });

  t.test('Covariance and Pearson correlation', async (t) => {
    const r = await run<CovarianceProduct>(estimators.covariance(features));
    t.equal(r.count, all.rows.length);
    for (const [j, a] of features.entries()) {
      for (const [k, b] of features.entries()) {
        const cov = covarianceOf(column(all, a), column(all, b));
        const scale = Math.sqrt(varianceOf(column(all, a)) * varianceOf(column(all, b)));
        const got = r.covariance[j]?.[k] as number;
        t.ok(Math.abs(got - cov) <= 1e-9 * Math.max(Math.abs(cov), 1e-3 * scale), `cov(${a}, ${b})`);
        t.ok(Math.abs((r.correlation[j]?.[k] as number) - cov / scale) <= 1e-9, `corr(${a}, ${b})`);
      }
    }
  });

  t.test('a noisy count (differential privacy) is an integer near the exact one', async (t) => {
    const r = await run<CountProduct>(estimators.count(undefined, { dp: { epsilon: 0.5 } }));
    t.ok(Number.isInteger(r.count));
    t.ok(Math.abs(r.count - all.rows.length) < 200, `noisy ${r.count} vs ${all.rows.length}`);
  });

  t.test('each worker refuses a noisy query past the project budget', async (t) => {
    // 0.5 was spent above; 0.5 more fits the budget of 1, the next does not.
    await run<CountProduct>(estimators.count(undefined, { dp: { epsilon: 0.5 } }));
    const handle = await project.submit({ steps: [estimators.count(undefined, { dp: { epsilon: 0.5 } })] });
    await t.rejects(handle.done(), { code: 'PRIVACY_REFUSED', message: /privacy budget exhausted/ });
    const status = await wb.status(handle.id);
    t.equal(status.jobs.find((j) => j.state === 'ERROR')?.attempt, 1, 'a refusal is not retried');
  });
});

t.test('transformers: fitted federatedly (or per worker), then read by an estimator', async (t) => {
  const medInc = column(all, 'MedInc');
  const min = Math.min(...medInc);
  const max = Math.max(...medInc);

  t.test('MinMaxScaler, federated fit: every worker applies the global min/max', async (t) => {
    const q = await fitQuery(project, extract().pipe(transformers.minMaxScaler(['MedInc'])));
    t.same(q.stages?.[0], { kind: 'MinMaxScaler', features: ['MedInc'], fitted: [{ min, max }] }, 'fitted from the federated MinMax');
    const r = await run<VarianceProduct>(estimators.variance(['MedInc'], q));
    near(t, r.mean.MedInc, meanOf(medInc.map((x) => (x - min) / (max - min))), 'mean of scaled');
    near(t, r.variance.MedInc, varianceOf(medInc.map((x) => (x - min) / (max - min))), 'variance of scaled');
  });

  t.test('MinMaxScaler, fitted per worker (Ferdelance): each worker its own min/max', async (t) => {
    const r = await run<SumProduct>(estimators.sum(['MedInc'], extract().pipe(transformers.minMaxScaler(['MedInc']))));
    const expected = fsum(
      shards.flatMap((s) => {
        const xs = column(s, 'MedInc');
        const lo = Math.min(...xs);
        const hi = Math.max(...xs);
        return xs.map((x) => (x - lo) / (hi - lo));
      }),
    );
    near(t, r.sum.MedInc, expected, 'sum of per-worker scaled values');
  });

  t.test('StandardScaler, federated fit', async (t) => {
    const q = await fitQuery(project, extract().pipe(transformers.standardScaler(['MedInc', 'Population'])));
    const r = await run<VarianceProduct>(estimators.variance(['MedInc', 'Population'], q, { ddof: 0 }));
    for (const f of ['MedInc', 'Population']) {
      t.ok(Math.abs(r.mean[f] as number) <= 1e-9, `${f}: mean ${r.mean[f]} is 0`);
      near(t, r.variance[f], 1, `${f}: population variance is 1`);
    }
  });

  t.test('KBinsDiscretizer uniform and quantile, federated fit', async (t) => {
    const age = column(all, 'HouseAge');
    const uq = await fitQuery(project, extract().pipe(transformers.kBinsDiscretizer(['HouseAge'], 5, 'uniform')));
    const edges = uniformEdges(Math.min(...age), Math.max(...age), 5);
    t.same(uq.stages?.[0], { kind: 'KBinsDiscretizer', features: ['HouseAge'], n_bins: 5, strategy: 'uniform', fitted: [{ edges }] });
    const binOf = (x: number, e: number[]) => e.slice(1, -1).filter((v) => x >= v).length;
    const g = await run<GroupCountProduct>(estimators.groupCount(['HouseAge'], [[0, 1, 2, 3, 4]], uq));
    const central = [0, 1, 2, 3, 4].map((b) => age.filter((x) => binOf(x, edges) === b).length);
    t.same(
      g.groups.map((x) => x.count),
      central.filter((c) => c > 0),
    );

    const qq = await fitQuery(project, extract().pipe(transformers.kBinsDiscretizer(['MedInc'], 4, 'quantile')));
    const qEdges = fittedOf<{ edges: number[] }>(qq, 0)[0]?.edges as number[];
    t.equal(qEdges.length, 5);
    const sorted = [...medInc].sort((a, b) => a - b);
    const bound = (max - min) / 1000;
    for (const k of [1, 2, 3]) {
      const exact = quantileDisc(sorted, quantileRank(k / 4, sorted.length));
      t.ok(Math.abs((qEdges[k] as number) - exact) <= bound * (1 + 1e-9), `edge ${k} within ${bound} of the exact quartile`);
    }
    const gq = await run<GroupCountProduct>(estimators.groupCount(['MedInc'], [[0, 1, 2, 3]], qq));
    t.same(
      gq.groups.map((x) => x.count),
      [0, 1, 2, 3].map((b) => medInc.filter((x) => binOf(x, qEdges) === b).length),
      'each worker bins with the same federated edges',
    );
  });

  t.test('Binarizer, LabelBinarizer, OneHotEncoder, Clamp', async (t) => {
    const b = await run<MeanProduct>(estimators.mean(['MedInc'], extract().pipe(transformers.binarizer(['MedInc'], 3))));
    near(t, b.mean.MedInc, medInc.filter((x) => x > 3).length / medInc.length, 'share above 3');
    const label = column(all, 'MedHouseValDiscrete');
    const oh = await run<SumProduct>(
      estimators.sum(['MedHouseValDiscrete_0', 'MedHouseValDiscrete_1'], extract().pipe(transformers.oneHotEncoder(['MedHouseValDiscrete'], [[0, 1]]))),
    );
    t.same(oh.sum, { MedHouseValDiscrete_0: label.filter((v) => v === 0).length, MedHouseValDiscrete_1: label.filter((v) => v === 1).length });
    const lb = await run<SumProduct>(estimators.sum(['y'], extract().pipe(transformers.labelBinarizer('MedHouseValDiscrete', [0, 1], { outputs: ['y'], neg_label: -1 }))));
    t.equal(lb.sum.y, label.filter((v) => v === 1).length - label.filter((v) => v === 0).length);
    const occ = column(all, 'AveOccup');
    const c = await run<MeanProduct>(estimators.mean(['AveOccup'], extract().pipe(transformers.clamp(['AveOccup'], 1, 5))));
    near(t, c.mean.AveOccup, meanOf(occ.map((x) => Math.min(5, Math.max(1, x)))), 'mean of clamped');
  });

  t.test('SimpleImputer (mean, median, most frequent), federated fit', async (t) => {
    // A derived column with nulls: log(HouseAge - 20) is null where HouseAge <= 20.
    const base = extract().derive('la', expr.log(expr.sub(expr.col('HouseAge'), 20)));
    const la = column(all, 'HouseAge').map((a) => (a > 20 ? Math.log(a - 20) : null));
    const present = la.filter((v): v is number => v !== null);
    const nulls = la.length - present.length;

    const mq = await fitQuery(project, base.pipe(transformers.simpleImputer(['la'], 'mean')));
    const fill = fittedOf<number>(mq, 1)[0] as number;
    near(t, fill, meanOf(present), 'the fill value is the federated mean');
    const s = await run<SumProduct>(estimators.sum(['la'], mq));
    t.equal(s.count.la, la.length, 'no null left');
    near(t, s.sum.la, fsum(present) + nulls * fill, 'sum after imputing');

    const dq = await fitQuery(project, base.pipe(transformers.simpleImputer(['la'], 'median')));
    const median = fittedOf<number>(dq, 1)[0] as number;
    const sorted = [...present].sort((a, b) => a - b);
    t.ok(Math.abs(median - quantileDisc(sorted, quantileRank(0.5, sorted.length))) <= ((sorted.at(-1) as number) - (sorted[0] as number)) / 1000, `median ${median}`);

    const fq = await fitQuery(project, extract().pipe(transformers.simpleImputer(['MedHouseValDiscrete'], 'most_frequent')));
    t.same(fittedOf(fq, 0), [0], 'most frequent label');
  });

  t.test('TrainTestSplit: the same seed gives the same rows; sides partition them', async (t) => {
    const test = await run<CountProduct>(estimators.count(extract().split(7, 0.25, 'test')));
    const train = await run<CountProduct>(estimators.count(extract().split(7, 0.25, 'train')));
    const inTest = shards.map((s) => s.rows.map((_, i) => isTestRow(7, i, 0.25)));
    t.equal(test.count, inTest.flat().filter(Boolean).length, 'each worker hashes its own row ids');
    t.equal(test.count + train.count, all.rows.length);
    const m = await run<MeanProduct>(estimators.mean(['MedInc'], extract().split(7, 0.25, 'train')));
    const trainRows = shards.flatMap((s, j) => s.rows.filter((_, i) => !(inTest[j] as boolean[])[i]));
    near(t, m.mean.MedInc, meanOf(trainRows.map((r) => r[at('MedInc')] as number)), 'mean over the train side', 1e-12);
  });

  t.test('select, rename, derived columns and a fitted pipeline', async (t) => {
    const q = extract()
      .where(where('HouseAge', '>=', 10))
      .derive('rooms per person', expr.div(expr.col('AveRooms'), expr.col('AveOccup')))
      .select('rooms per person', 'MedInc')
      .rename({ MedInc: 'income' })
      .pipe(transformers.clamp(['rooms per person'], 0, 5), transformers.standardScaler(['income']));
    const fitted: Query = await fitQuery(project, q);
    const r = await run<CovarianceProduct>(estimators.covariance(['rooms per person', 'income'], fitted));
    const sub = rows(all, (row) => (row[at('HouseAge')] as number) >= 10);
    const rpp = sub.rows.map((row) => Math.min(5, Math.max(0, (row[at('AveRooms')] as number) / (row[at('AveOccup')] as number))));
    const inc = column(sub, 'MedInc');
    const mu = meanOf(inc);
    const sd = Math.sqrt(varianceOf(inc, 0));
    const z = inc.map((x) => (x - mu) / sd);
    t.equal(r.count, sub.rows.length);
    near(t, r.covariance[0]?.[1], covarianceOf(rpp, z), 'cov(rooms per person, standardized income)');
    near(t, r.covariance[1]?.[1], varianceOf(z), 'variance of standardized income');
    const gone = await project.submit({ steps: [estimators.mean(['MedInc'], fitted)] });
    await t.rejects(gone.done(), { code: 'BAD_QUERY', message: /unknown feature "MedInc"/ }, 'a renamed feature is gone');
  });
});
