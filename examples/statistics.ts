
import { openExampleProject } from '../lib/sim/example-project.ts';
import {
  binsFromMetadata,
  type CountProduct,
  type CovarianceProduct,
  estimators,
  type GroupMeanProduct,
  type HistogramProduct,
  type MinMaxProduct,
  type QuantilesProduct,
  type Step,
  type VarianceProduct,
  where,
} from '../lib/workbench.ts';

const fmt = (v: number | null | undefined, digits = 4) => (v === null || v === undefined ? '-' : v.toFixed(digits));

const { project, close } = await openExampleProject();
try {
  const run = async <T>(name: string, step: Step): Promise<T> => (await project.submit({ name, steps: [step] })).result<T>();
  const features = project.numericFeatures();
  console.log(`project: ${project.info.rows} rows on ${project.info.workers} workers`);

  const count = await run<CountProduct>('count', estimators.count({ where: where('HouseAge', '>', 30) }));
  console.log(`rows with HouseAge > 30: ${count.count}`);

  // Mean, variance and standard deviation in one masked pass, merged exactly.
  const v = await run<VarianceProduct>('variance', estimators.variance(features));
  console.log('feature               mean        std');
  for (const f of features) console.log(`${f.padEnd(20)} ${fmt(v.mean[f]).padStart(10)} ${fmt(v.std[f]).padStart(10)}`);

  const mm = await run<MinMaxProduct>('min/max', estimators.minMax(['MedInc', 'HouseAge']));
  console.log(`MedInc in [${mm.min.MedInc}, ${mm.max.MedInc}], HouseAge in [${mm.min.HouseAge}, ${mm.max.HouseAge}]`);

  const gm = await run<GroupMeanProduct>('group mean', estimators.groupMean(['MedHouseValDiscrete'], [[0, 1]], ['MedInc', 'AveRooms']));
  for (const g of gm.groups) {
    console.log(`MedHouseValDiscrete=${g.key[0]}: ${g.count} rows, mean MedInc ${fmt(g.mean.MedInc)}, mean AveRooms ${fmt(g.mean.AveRooms)}`);
  }

  // Quantiles from a federated histogram of 2000 bins over the metadata's range: each estimate
  // is within one bin width of the exact value.
  const qf = ['MedInc', 'Population'];
  const q = await run<QuantilesProduct>('quantiles', estimators.quantiles(qf, binsFromMetadata(project.info, qf, 2000), [0.1, 0.5, 0.9]));
  for (const f of qf) {
    const [p10, p50, p90] = q.quantiles[f] ?? [];
    console.log(`${f}: p10 ${fmt(p10?.value)}, median ${fmt(p50?.value)}, p90 ${fmt(p90?.value)} (each within ${fmt(q.errorBound[f], 5)})`);
  }

  // A histogram: each worker leaves out a bin where it has fewer than 5 rows (its minimum group size).
  const h = await run<HistogramProduct>('histogram', estimators.histogram(['HouseAge'], [{ lo: 0, hi: 55, count: 11 }]));
  const hist = h.histograms[0];
  const top = Math.max(...(hist?.counts ?? [1]));
  for (const [i, c] of (hist?.counts ?? []).entries()) {
    const lo = hist?.edges[i] ?? 0;
    console.log(`HouseAge ${String(lo).padStart(2)}-${String(hist?.edges[i + 1]).padEnd(2)} ${String(c).padStart(5)} ${'#'.repeat(Math.round((40 * c) / top))}`);
  }
  console.log(`bins held back by the minimum group size: ${h.suppressed}`);

  const cf = ['MedInc', 'HouseAge', 'AveRooms', 'MedHouseValDiscrete'];
  const cov = await run<CovarianceProduct>('correlation', estimators.covariance(cf));
  console.log(`correlation (${cov.count} rows):`);
  console.log(`${''.padEnd(20)}${cf.map((f) => f.slice(0, 9).padStart(10)).join('')}`);
  for (const [j, f] of cf.entries()) console.log(`${f.padEnd(20)}${(cov.correlation[j] ?? []).map((c) => fmt(c, 3).padStart(10)).join('')}`);

  // Differential privacy: each worker adds Laplace noise and charges epsilon to the project's budget.
  const noisy = await run<CountProduct>('noisy count', estimators.count(undefined, { dp: { epsilon: 1 } }));
  console.log(`count with differential privacy (epsilon 1 per worker): ${noisy.count} (exact: ${project.info.rows})`);
} finally {
  await close();
}
