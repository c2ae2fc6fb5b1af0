/**
 * Federated random forest on the California shards, with Ferdelance's two strategies: MERGE
 * (one forest of every worker's trees) and MAJORITY (the workers' forests vote), scored here on
 * the validation file. Then a 5-fold cross-validation on each worker, of which only metrics
 * come back.
 *
 *   npx tsx examples/random-forest.ts
 *
 * With FDL_URL, FDL_TOKEN (a workbench token) and PROJECT_TOKEN set it uses that scheduler and project; otherwise it starts a
 * local cluster (a scheduler and two workers, one shard each) and stops it at the end.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXAMPLE_DATA } from '../lib/sim/cluster.ts';
import { openExampleProject } from '../lib/sim/example-project.ts';
import { type ClassificationMetrics, type MergedMetricsProduct, loadModel, models } from '../lib/workbench.ts';

const LABEL = 'MedHouseValDiscrete';

const { project, close } = await openExampleProject();
try {
  const features = project.numericFeatures().filter((f) => f !== LABEL);

  const [header, ...lines] = readFileSync(join(EXAMPLE_DATA, 'california_housing.validation.csv'), 'utf8').trim().split('\n');
  const columns = (header ?? '').split(',');
  const records = lines.map((l) => Object.fromEntries(l.split(',').map((v, i) => [columns[i] as string, Number(v)])));
  const labels = records.map((r) => r[LABEL] as number);

  for (const strategy of ['merge', 'majority'] as const) {
    const steps = models.randomForest({ features, label: LABEL, strategy, nEstimators: 30, seed: 1, testFraction: 0.2 });
    const model = loadModel(await (await project.submit({ name: `random-forest-${strategy}`, steps })).result());
    const test = model.history[0]?.metrics as ClassificationMetrics;
    const m = model.evaluate(records, labels) as ClassificationMetrics;
    const trees = model.model.type === 'randomForest' ? model.model.roots.length : 0;
    console.log(
      `${strategy}: ${trees} trees; workers' test splits accuracy ${test.accuracy.toFixed(4)}; ` +
        `validation accuracy ${m.accuracy.toFixed(4)}, F1 ${m.f1.toFixed(4)}, ROC AUC ${m.rocAuc?.toFixed(4)}`,
    );
  }

  const spec = { type: 'randomForest' as const, features, label: LABEL, strategy: 'merge' as const, nEstimators: 10, seed: 1 };
  const cv = await (await project.submit({ name: 'cross-validation', steps: models.crossValidation(spec, 5) })).result<MergedMetricsProduct>();
  const m = cv.metrics as ClassificationMetrics;
  console.log(`5-fold cross-validation on ${cv.workers} workers, ${m.n} out-of-fold rows: accuracy ${m.accuracy.toFixed(4)}, ROC AUC ${m.rocAuc?.toFixed(4)}`);
} finally {
  await close();
}
