/**
 * Federated logistic regression (FedAvg over rounds) on the California shards, scored here on
 * the validation file that never leaves this machine.
 *
 *   npx tsx examples/logistic-regression.ts
 *
 * With FDL_URL, FDL_TOKEN (a workbench token) and PROJECT_TOKEN set it uses that scheduler and project; otherwise it starts a
 * local cluster (a scheduler and two workers, one shard each) and stops it at the end.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXAMPLE_DATA } from '../lib/sim/cluster.ts';
import { openExampleProject } from '../lib/sim/example-project.ts';
import { type ClassificationMetrics, loadModel, models } from '../lib/workbench.ts';

const LABEL = 'MedHouseValDiscrete';

const { project, close } = await openExampleProject();
try {
  const features = project.numericFeatures().filter((f) => f !== LABEL);
  console.log(`project: ${project.info.rows} rows on ${project.info.workers} workers; features ${features.join(', ')}`);

  // Standardization from a secure sum, then 10 FedAvg rounds of one local epoch each;
  // 20% of each worker's rows held out to report test metrics every round.
  const steps = models.logisticRegression({ features, label: LABEL, rounds: 10, epochs: 1, learningRate: 0.1, batchSize: 32, seed: 7, testFraction: 0.2 });
  const handle = await project.submit({ name: 'logistic-regression', steps });
  handle.on('event', (e) => {
    if (e.event.kind === 'jobState' && e.event.state === 'COMPLETED') process.stdout.write(`\rjobs ${e.progress.completed}/${e.progress.total}`);
  });
  const model = loadModel(await handle.result());
  process.stdout.write('\n');
  for (const r of model.history) {
    const m = r.metrics as ClassificationMetrics;
    console.log(`round ${r.round}: trained on ${r.samples} rows; test accuracy ${m.accuracy.toFixed(4)}, ROC AUC ${m.rocAuc?.toFixed(4)}`);
  }

  // The model is ours now: predict on local rows.
  const [header, ...lines] = readFileSync(join(EXAMPLE_DATA, 'california_housing.validation.csv'), 'utf8').trim().split('\n');
  const columns = (header ?? '').split(',');
  const records = lines.map((l) => Object.fromEntries(l.split(',').map((v, i) => [columns[i] as string, Number(v)])));
  const labels = records.map((r) => r[LABEL] as number);
  const m = model.evaluate(records, labels) as ClassificationMetrics;
  console.log(
    `validation (${m.n} rows): accuracy ${m.accuracy.toFixed(4)}, precision ${m.precision.toFixed(4)}, recall ${m.recall.toFixed(4)}, F1 ${m.f1.toFixed(4)}, ROC AUC ${m.rocAuc?.toFixed(4)}`,
  );
  console.log(`confusion matrix (rows: true ${m.confusionMatrix.labels.join('/')}, columns: predicted): ${JSON.stringify(m.confusionMatrix.matrix)}`);
  console.log(`first rows: predicted ${model.predict(records.slice(0, 5)).join(', ')}; probability of 1: ${model.predictProba(records.slice(0, 5)).map((p) => (p[1] as number).toFixed(3)).join(', ')}`);
} finally {
  await close();
}
