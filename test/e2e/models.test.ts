// Why: a federated model is only worth training if it does about as well as the same model
// trained on all the data in one place. This runs FedAvg, the random forests, TrainTest and
// cross-validation the way a researcher does (a scheduler and two workers as real processes,
// the California shards), downloads the models, and scores them on the validation file here.
import t from 'tap';
import { columnStats, initialLinear, trainLinear } from '../../lib/ops/models/linear.ts';
import { modelToWire } from '../../lib/ops/models/model.ts';
import { type ClassificationMetrics, loadModel, type MergedMetricsProduct, models } from '../../lib/workbench.ts';
import { column, readCsv, union } from '../helpers/central.ts';
import { PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster, VALIDATION } from '../helpers/cluster.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const all = union(...SHARDS.map(readCsv));
const validation = readCsv(VALIDATION);
const LABEL = 'MedHouseValDiscrete';
const features = all.columns.filter((c) => c !== LABEL);
const rowsOf = (table: typeof all) => table.rows.map((r) => features.map((f) => r[table.columns.indexOf(f)] as number));
const validationRows = rowsOf(validation);
const validationLabels = column(validation, LABEL);

const { wb, token } = await testCluster(t, 'models', { workers: SHARDS.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })) });
const project = await wb.project(token);

const ROUNDS = 10;
const logistic = { features, label: LABEL, rounds: ROUNDS, epochs: 1, learningRate: 0.1, batchSize: 32, seed: 7 };

t.test('federated logistic regression is within 1 point of the same code trained centrally', async (t) => {
  const handle = await project.submit({ name: 'logreg', steps: models.logisticRegression(logistic) });
  const model = loadModel(await handle.result());
  t.equal(model.type, 'logisticRegression');
  t.equal(model.history.length, ROUNDS, 'one record per round');
  t.same(
    model.history.map((r) => r.round),
    Array.from({ length: ROUNDS }, (_, i) => i + 1),
    'every round, in order (the last round gathers the records of the earlier ones)',
  );
  t.equal(model.history.at(-1)?.samples, all.rows.length, 'every row trained in the last round');
  const federated = (model.evaluate(validationRows, validationLabels) as ClassificationMetrics).accuracy;

  // Central: the union, its own standardization, the same trainer for rounds × epochs epochs.
  const x = { rows: all.rows.length, cols: features.length, data: Float64Array.from(rowsOf(all).flat()) };
  const { mean, std } = columnStats(x);
  t.ok(
    model.model.type === 'logisticRegression' && model.model.mean.every((m, j) => Math.abs(m - (mean[j] as number)) < 1e-6 * Math.max(1, Math.abs(m))),
    'the federated standardization (secure sum) equals the central mean',
  );
  const central = await trainLinear(
    initialLinear('logisticRegression', features, LABEL, mean, std),
    x,
    Float64Array.from(column(all, LABEL)),
    { epochs: ROUNDS, learningRate: 0.1, batchSize: 32, mu: 0, l2: 0, seed: 7 },
  );
  const centralAcc = (loadModel(modelToWire(central)).evaluate(validationRows, validationLabels) as ClassificationMetrics).accuracy;
  t.comment(`logistic regression validation accuracy: federated ${federated.toFixed(4)}, central ${centralAcc.toFixed(4)}`);
  t.ok(Math.abs(federated - centralAcc) <= 0.01, `federated ${federated} within 1 point of central ${centralAcc}`);
  t.ok(federated > 0.8, 'and it learned something');

  const again = loadModel(await (await project.submit({ steps: models.logisticRegression(logistic) })).result());
  t.same(Array.from(again.model.type === 'logisticRegression' ? again.model.weights : []), Array.from(model.model.type === 'logisticRegression' ? model.model.weights : []), 'the same seed gives the same weights, bit for bit');
});

t.test("sealed rounds: the last round's Aggregation opens the earlier rounds' aggregates, sealed for it too", async (t) => {
  const plain = models.logisticRegression({ ...logistic, rounds: 3 });
  // The same FedAvg with every link of its rounds sealed for the receiving nodes (the initiator included).
  const sealed = plain.map((step) =>
    step.kind === 'Iterate' ? { ...step, steps: step.steps.map((s) => ({ ...s, distribution: { kind: s.distribution?.kind ?? 'Arrange', encryption: true } })) } : step,
  ) as typeof plain;
  const a = loadModel(await (await project.submit(sealed)).result());
  const b = loadModel(await (await project.submit(plain)).result());
  t.same(
    a.history.map((r) => r.round),
    [1, 2, 3],
  );
  t.same(a.history, b.history, 'the same history as without sealing');
  t.same(Array.from(a.model.type === 'logisticRegression' ? a.model.weights : []), Array.from(b.model.type === 'logisticRegression' ? b.model.weights : []), 'and the same weights');
});

t.test('FedProx and TrainTest: each round records test metrics over both workers', async (t) => {
  const steps = models.logisticRegression({ ...logistic, rounds: 3, mu: 0.1, testFraction: 0.2, aggregation: 'median' });
  const model = loadModel(await (await project.submit(steps)).result());
  t.equal(model.history.length, 3);
  for (const rec of model.history) {
    t.equal(rec.workers, 2);
    const m = rec.metrics as ClassificationMetrics;
    t.ok(m.accuracy > 0.75 && m.n > 0.15 * all.rows.length && m.n < 0.25 * all.rows.length, `round ${rec.round}: accuracy ${m.accuracy.toFixed(3)} on ${m.n} test rows`);
    t.equal((m.tp ?? 0) + (m.fp ?? 0) + (m.tn ?? 0) + (m.fn ?? 0), m.n);
  }
  t.ok((model.evaluate(validationRows, validationLabels) as ClassificationMetrics).accuracy > 0.8);
});

t.test('federated random forest, MERGE and MAJORITY', async (t) => {
  for (const strategy of ['merge', 'majority'] as const) {
    const handle = await project.submit(models.randomForest({ features, label: LABEL, strategy, nEstimators: 20, seed: 3 }));
    const model = loadModel(await handle.result());
    t.equal(model.type, 'randomForest');
    t.ok(model.model.type === 'randomForest' && model.model.roots.length === 40 && model.model.forests === 2, '20 trees from each worker');
    const m = model.evaluate(validationRows, validationLabels) as ClassificationMetrics;
    t.comment(`random forest (${strategy}, 2 × 20 trees) validation accuracy ${m.accuracy.toFixed(4)}, ROC AUC ${m.rocAuc?.toFixed(4)}`);
    t.ok(m.accuracy > 0.85, `${strategy}: accuracy ${m.accuracy}`);
  }
});

t.test('local cross-validation: only merged metrics come back', async (t) => {
  const spec = { type: 'randomForest' as const, features, label: LABEL, strategy: 'merge' as const, nEstimators: 5, seed: 1 };
  const result = await (await project.submit(models.crossValidation(spec, 3))).result<MergedMetricsProduct>();
  t.equal(result.workers, 2);
  t.equal(result.metrics.n, all.rows.length, 'every row is held out once');
  t.ok((result.metrics as ClassificationMetrics).accuracy > 0.8);
});

t.test('federated linear regression with a trimmed mean', async (t) => {
  const target = 'MedInc';
  const xs = features.filter((f) => f !== target);
  const steps = models.linearRegression({ features: xs, label: target, rounds: 5, learningRate: 0.01, aggregation: { trimmedMean: 0.25 } });
  const model = loadModel(await (await project.submit(steps)).result());
  const rows = validation.rows.map((r) => xs.map((f) => r[validation.columns.indexOf(f)] as number));
  const m = model.evaluate(rows, column(validation, target));
  t.equal(m.task, 'regression');
  t.ok(m.task === 'regression' && m.r2 > 0.3, `R² ${m.task === 'regression' ? m.r2 : ''}`);
});

t.test('a bad model spec fails without retries, naming the cause', async (t) => {
  const handle = await project.submit(models.logisticRegression({ features, label: 'MedInc', rounds: 1 }));
  await t.rejects(handle.done(), { code: 'OPERATION_FAILED', message: /0\/1 label/ });
  const failed = (await wb.status(handle.id)).jobs.find((j) => j.state === 'ERROR');
  t.equal(failed?.attempt, 1);
});
