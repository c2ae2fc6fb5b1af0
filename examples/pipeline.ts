
import { openExampleProject } from '../lib/sim/example-project.ts';
import {
  type CountProduct,
  type CovarianceProduct,
  estimators,
  expr,
  extract,
  fitQuery,
  type GroupMeanProduct,
  type Step,
  transformers,
  type VarianceProduct,
  where,
} from '../lib/workbench.ts';

const fmt = (v: number | null | undefined, digits = 4) => (v === null || v === undefined ? '-' : v.toFixed(digits));

const { project, close } = await openExampleProject();
try {
  const run = async <T>(name: string, step: Step): Promise<T> => (await project.submit({ name, steps: [step] })).result<T>();

  // The pipeline, as a researcher writes it. Nothing runs yet: it is a description of stages.
  const pipeline = extract()
    .where(where('Population', '>=', 100))
    // A derived column: log(rooms per person), null where it is not defined.
    .derive('log rooms pp', expr.log(expr.div(expr.col('AveRooms'), expr.col('AveOccup'))))
    .pipe(
      transformers.simpleImputer(['log rooms pp'], 'median'),
      transformers.clamp(['AveOccup'], 1, 6),
      transformers.standardScaler(['MedInc', 'log rooms pp', 'AveOccup']),
      transformers.kBinsDiscretizer(['HouseAge'], 4, 'quantile', { outputs: ['age quartile'] }),
    );

  // Federated fitting: each transformer's statistics are estimated over all workers (the
  // stages before it applied), then written into the query as its fitted parameters.
  const fitted = await fitQuery(project, pipeline);
  for (const s of fitted.stages ?? []) {
    if ('fitted' in s && s.fitted) console.log(`${s.kind}: fitted ${JSON.stringify(s.fitted, (_k, v) => (typeof v === 'number' ? Number(v.toFixed(4)) : v))}`);
  }

  // The same seed gives the same split on every run; each worker splits its own rows.
  const train = extract(fitted).split(2024, 0.2, 'train');
  const test = extract(fitted).split(2024, 0.2, 'test');
  const [nTrain, nTest] = await Promise.all([run<CountProduct>('train rows', estimators.count(train)), run<CountProduct>('test rows', estimators.count(test))]);
  console.log(`split: ${nTrain.count} train rows, ${nTest.count} test rows`);

  const scaled = ['MedInc', 'log rooms pp', 'AveOccup'];
  for (const [side, q] of [
    ['train', train],
    ['test', test],
  ] as const) {
    const v = await run<VarianceProduct>(`${side} moments`, estimators.variance(scaled, q));
    console.log(`${side}: ${scaled.map((f) => `${f} mean ${fmt(v.mean[f])} std ${fmt(v.std[f])}`).join('; ')}`);
  }

  const by = await run<GroupMeanProduct>('label by age quartile', estimators.groupMean(['age quartile'], [[0, 1, 2, 3]], ['MedHouseValDiscrete', 'MedInc'], train));
  for (const g of by.groups) {
    console.log(`age quartile ${g.key[0]}: ${g.count} rows, share of high-value ${fmt(g.mean.MedHouseValDiscrete, 3)}, standardized income ${fmt(g.mean.MedInc, 3)}`);
  }

  const cov = await run<CovarianceProduct>('correlation', estimators.covariance([...scaled, 'MedHouseValDiscrete'], train));
  const label = cov.features.length - 1;
  console.log(`correlation with MedHouseValDiscrete (train): ${scaled.map((f, j) => `${f} ${fmt(cov.correlation[j]?.[label], 3)}`).join(', ')}`);
} finally {
  await close();
}
