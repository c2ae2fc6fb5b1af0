/**
 * A query pipeline before the estimators: filter, derive a column, impute, clip, scale and
 * discretize with parameters fitted federatedly (global statistics first, then the same
 * parameters applied on every worker), and a seeded train/test split.
 *
 *   npx tsx examples/pipeline.ts
 *
 * With FDL_URL, FDL_TOKEN (a workbench token) and PROJECT_TOKEN set it uses that scheduler and project; otherwise it starts a
 * local cluster (a scheduler and two workers, one shard each) and stops it at the end.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, EXAMPLE_DATA } from '../lib/sim/cluster.ts';
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
  Workbench,
  where,
} from '../lib/workbench.ts';

let url = process.env.FDL_URL;
let token = process.env.PROJECT_TOKEN;
let wbToken = process.env.FDL_TOKEN;
let cluster: Cluster | undefined;
let dir: string | undefined;
if (!url || !token || !wbToken) {
  token = randomBytes(16).toString('hex');
  dir = mkdtempSync(join(tmpdir(), 'fdl-example-'));
  const shards = ['california_housing.MedInc1.csv', 'california_housing.MedInc2.csv'];
  cluster = await Cluster.start({
    dir,
    projectName: 'california',
    projectToken: token,
    workers: shards.map((f, i) => ({ name: `worker-${i + 1}`, files: [join(EXAMPLE_DATA, f)] })),
  });
  url = cluster.url;
  wbToken = cluster.workbenchToken;
  console.log(`started a local cluster at ${url}`);
}

const fmt = (v: number | null | undefined, digits = 4) => (v === null || v === undefined ? '-' : v.toFixed(digits));

const wb = await Workbench.connect(url, { token: wbToken });
try {
  const project = await wb.project(token);
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
  wb.close();
  if (cluster) await cluster.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}
