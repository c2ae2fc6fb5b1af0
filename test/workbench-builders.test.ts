// Why: researchers run their scripts with `npx tsx`, which does not type-check. A filter passed
// where the query goes (`estimators.count(where('HouseAge', '>', 30))`) used to count all 20,640
// rows instead of 8,636, and a misspelled model option was dropped in silence. Every builder
// now refuses an unknown key or a wrong shape at run time, naming the builder, the argument and
// the key, before anything is submitted.
import t from 'tap';
import type { ProjectInfo } from '../protocols/entities.ts';
import { estimators, extract, Project, steps, transformers, where, type Workbench } from '../lib/workbench.ts';
import { models } from '../lib/workbench/models.ts';

const houseAge = where('HouseAge', '>', 30);
const LINEAR = { features: ['MedInc'], label: 'y', rounds: 2 };

t.test('a filter given as the query is refused with a hint, not read as every row', async (t) => {
  t.throws(() => estimators.count(houseAge as never), {
    code: 'INVALID_ARTIFACT',
    message: "count(query): unknown key 'feature' — did you mean { where: where(...) }?",
    path: 'query.feature',
  });
  t.throws(() => estimators.mean(['MedInc'], houseAge as never), { message: /^mean\(query\): unknown key 'feature' — did you mean \{ where: where\(\.\.\.\) \}\?$/ });
  t.match(estimators.count({ where: houseAge }), { operation: { kind: 'Count', query: { where: houseAge } } }, 'the right form still builds');
  t.match(estimators.count(extract().where(houseAge)), { operation: { query: { where: houseAge } } }, 'so does a query builder');
  t.match(estimators.count(), { operation: { kind: 'Count' } });
});

t.test('estimators refuse misspelled and misplaced options, naming the key', async (t) => {
  t.throws(() => estimators.count({ wehre: houseAge } as never), { code: 'INVALID_ARTIFACT', message: "count(query): unknown key 'wehre'", path: 'query.wehre' });
  t.throws(() => estimators.count(undefined, houseAge as never), {
    message: "count(options): unknown key 'feature' — a filter goes in the query argument, as { where: where(...) }",
    path: 'options.feature',
  });
  t.throws(() => estimators.mean(['MedInc'], undefined, { dp: { epsilon: 1 }, ddof: 1 } as never), {
    message: "mean(options): unknown key 'ddof'",
    path: 'options.ddof',
  });
  t.throws(() => estimators.mean(['MedInc'], undefined, { dp: { epsilon: 0 } }), { message: /^mean\(options\): dp\.epsilon: /, path: 'options.dp.epsilon' });
  t.throws(() => estimators.groupCount(['ocean'], [['NEAR BAY']], undefined, { noise: 1 } as never), { message: "groupCount(options): unknown key 'noise'" });
  t.throws(() => estimators.variance(['MedInc'], undefined, { dofd: 1 } as never), { message: "variance(options): unknown key 'dofd'" });
  t.throws(() => estimators.variance(['MedInc'], undefined, { ddof: 2 as never }), { message: /^variance\(options\): ddof: /, path: 'options.ddof' });
  t.throws(() => estimators.mean(houseAge as never), { message: /^mean\(features\): /, path: 'features' });
  t.throws(() => estimators.groupCount(['ocean', 3] as never, [['NEAR BAY']]), { message: /^groupCount\(by\): \[1\]: /, path: 'by[1]' });
  t.throws(() => estimators.count({ where: where('HouseAge', '>>' as never, 30) }), { message: /^count\(query\): where: /, path: 'query.where' });
  t.match(estimators.variance(['MedInc'], undefined, { ddof: 0, shift: [3] }), { operation: { shift: [3] }, final: { ddof: 0 } });
});

t.test('models refuse misspelled and misplaced options, naming the key', async (t) => {
  t.throws(() => models.logisticRegression({ ...LINEAR, learningrate: 0.1 } as never), {
    code: 'INVALID_ARTIFACT',
    message: "logisticRegression(options): unknown key 'learningrate' — did you mean 'learningRate'?",
    path: 'options.learningrate',
  });
  t.throws(() => models.logisticRegression({ ...LINEAR, where: houseAge } as never), { message: "logisticRegression(options): unknown key 'where'" });
  t.throws(() => models.logisticRegression(houseAge as never), {
    message: /^logisticRegression\(options\): unknown key 'feature' — did you mean \{ query: \{ where: where\(\.\.\.\) \} \}\?$/,
  });
  t.throws(() => models.logisticRegression({ ...LINEAR, query: houseAge } as never), {
    message: "logisticRegression(options): query: unknown key 'feature'",
    path: 'options.query.feature',
  });
  t.throws(() => models.logisticRegression({ ...LINEAR, aggregation: { trimmed: 0.1 } } as never), { message: /^logisticRegression\(options\): aggregation/, path: /^options\.aggregation/ });
  t.throws(() => models.linearRegression({ ...LINEAR, rounds: 0 }), { message: /^linearRegression\(options\): rounds: /, path: 'options.rounds' });
  t.throws(() => models.randomForest({ features: ['MedInc'], label: 'y', n_estimators: 5 } as never), {
    message: "randomForest(options): unknown key 'n_estimators' — did you mean 'nEstimators'?",
  });
  t.throws(() => models.crossValidation({ type: 'linearRegression', features: ['MedInc'], label: 'y' }, 3, { seed: 1 } as never), {
    message: "crossValidation(options): unknown key 'seed'",
  });
  const ok = models.logisticRegression({ ...LINEAR, learningRate: 0.1, testFraction: 0.2, aggregation: { trimmedMean: 0.1 }, query: { where: houseAge } });
  t.equal(ok.length, 2, 'every option spelled right still builds');
  t.equal(models.randomForest({ features: ['MedInc'], label: 'y', nEstimators: 5 }).length, 2);
});

t.test('transformers refuse an unknown option, naming it', async (t) => {
  t.throws(() => transformers.minMaxScaler(['MedInc'], { feature_range: [0, 1] } as never), {
    code: 'INVALID_ARTIFACT',
    message: "minMaxScaler(options): unknown key 'feature_range'",
    path: 'options.feature_range',
  });
  t.throws(() => transformers.standardScaler([7] as never), { message: /^standardScaler\(features\): \[0\]: /, path: 'features[0]' });
  t.match(transformers.kBinsDiscretizer(['MedInc'], 4), { kind: 'KBinsDiscretizer', n_bins: 4, strategy: 'quantile' });
});

t.test('Project shortcuts reject a misplaced filter before submitting anything', async (t) => {
  const submitted: unknown[] = [];
  const wb = { submit: async (_token: string, spec: unknown) => submitted.push(spec) } as unknown as Workbench;
  const info = {
    features: [
      { name: 'HouseAge', dtype: 'numeric' },
      { name: 'ocean', dtype: 'string', categories: ['NEAR BAY', 'INLAND'] },
    ],
  } as unknown as ProjectInfo;
  const project = new Project(wb, 'token-123456', info);
  await t.rejects(project.count(houseAge as never), { code: 'INVALID_ARTIFACT', message: "count(query): unknown key 'feature' — did you mean { where: where(...) }?" });
  await t.rejects(project.mean(['HouseAge'], houseAge as never), { code: 'INVALID_ARTIFACT', path: 'query.feature' });
  await t.rejects(project.mean(houseAge as never), { code: 'INVALID_ARTIFACT', path: 'features' });
  await t.rejects(project.groupCount(houseAge as never), { code: 'INVALID_ARTIFACT', message: /^groupCount\(by\): / });
  await t.rejects(project.groupCount(['ocean'], houseAge as never), { code: 'INVALID_ARTIFACT', path: 'query.feature' });
  t.same(submitted, [], 'nothing was submitted');
  await project.count({ where: houseAge });
  await project.groupCount(['ocean'], { where: houseAge });
  t.equal(submitted.length, 2, 'the right forms are submitted');
  t.match(steps.parallel({ kind: 'Noop' }), { kind: 'Parallel' });
});
