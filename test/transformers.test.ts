// Query stages (select, drop, rename, derived columns, filters) and transformers compile to SQL on the worker: each is checked row by row against the same transformation computed in plain TypeScript, locally fitted and with given (federated) parameters; the seeded split in SQL must be lib/ops/split.ts bit for bit; hostile names and values must stay data.
import { join } from 'node:path';
import t from 'tap';
import { DataEngine } from '../lib/data/engine.ts';
import { MAX_EXPR_NODES, ROW_ID } from '../lib/data/stages.ts';
import { isTestRow } from '../lib/ops/split.ts';
import type { Query, QueryStage } from '../protocols/entities.ts';
import { QuerySchema } from '../protocols/entities.ts';
import { column, readCsv } from './helpers/central.ts';
import { meanOf, varianceOf } from './helpers/stats.ts';

const DATA = new URL('../examples/data/', import.meta.url).pathname;
const SHARD = join(DATA, 'california_housing.MedInc1.csv');
const table = readCsv(SHARD);
const P = 'p';

const e = await DataEngine.open([{ name: 'shard1', path: SHARD, projects: [P] }]);
t.teardown(() => e.close());

const q = (...stages: QueryStage[]): Query => QuerySchema.parse({ stages });
const col = async (name: string, query: Query) => (await e.numericColumns(P, [name], query)).columns[name] as Float64Array;
const close = (a: number, b: number, rel = 1e-12) => Math.abs(a - b) <= rel * Math.max(1, Math.abs(b));

async function rejects(t: Tap, p: Promise<unknown>, code: string, re?: RegExp, path?: string) {
  try {
    await p;
    t.fail(`expected ${code}`);
  } catch (err) {
    const x = err as { code?: string; message: string; path?: string };
    t.equal(x.code, code, x.message);
    if (re) t.match(x.message, re);
    if (path !== undefined) t.equal(x.path, path);
  }
}
type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

t.test('the seeded split in SQL is lib/ops/split.ts, bit for bit', async (t) => {
  for (const [seed, fraction] of [
    [42, 0.2],
    [-7, 0.5],
    [4294967295, 0.1],
  ] as const) {
    const test = await e.numericColumns(P, ['MedInc'], q({ kind: 'TrainTestSplit', seed, test_fraction: fraction, side: 'test' }));
    const train = await e.numericColumns(P, ['MedInc'], q({ kind: 'TrainTestSplit', seed, test_fraction: fraction, side: 'train' }));
    const expected = Array.from({ length: table.rows.length }, (_, i) => i).filter((i) => isTestRow(seed, i, fraction));
    t.same([...test.rowIds], expected, `seed ${seed}: the test rows are isTestRow's`);
    t.equal(test.rows + train.rows, table.rows.length, 'train and test partition the rows');
    t.ok(Math.abs(test.rows / table.rows.length - fraction) < 0.03, `about ${fraction} in test`);
  }
  // The split does not depend on the filters before it: a row keeps its side.
  const filtered = await e.numericColumns(P, ['HouseAge'], {
    where: { feature: 'HouseAge', op: '>', value: 30 },
    stages: [{ kind: 'TrainTestSplit', seed: 42, test_fraction: 0.2, side: 'test' }],
  });
  t.ok([...filtered.rowIds].every((r) => isTestRow(42, r, 0.2)));
  t.ok([...(filtered.columns.HouseAge as Float64Array)].every((v) => v > 30));
  t.equal((await e.numericColumns(P, ['MedInc'], q({ kind: 'TrainTestSplit', seed: 1, test_fraction: 0, side: 'test' }))).rows, 0);
});

t.test('MinMaxScaler, StandardScaler: fitted locally, and with given parameters', async (t) => {
  const x = column(table, 'MedInc');
  const lo = Math.min(...x);
  const hi = Math.max(...x);
  const local = await col('MedInc', q({ kind: 'MinMaxScaler', features: ['MedInc'] }));
  t.ok(local.every((v, i) => close(v, ((x[i] as number) - lo) / (hi - lo))), 'local fit maps [min, max] onto [0, 1]');
  const given = await col('s', q({ kind: 'MinMaxScaler', features: ['MedInc'], outputs: ['s'], range: [-1, 1], fitted: [{ min: 0, max: 20 }] }));
  t.ok(given.every((v, i) => close(v, ((x[i] as number) / 20) * 2 - 1)), 'given min/max and range');
  t.same((await e.queryFeatures(P, q({ kind: 'MinMaxScaler', features: ['MedInc'], outputs: ['s'] }))).map((f) => f.name).slice(-2), ['MedHouseValDiscrete', 's'], 'a named output is added');

  const mean = meanOf(x);
  const std = Math.sqrt(varianceOf(x, 0));
  const z = await col('MedInc', q({ kind: 'StandardScaler', features: ['MedInc'] }));
  t.ok(z.every((v, i) => close(v, ((x[i] as number) - mean) / std, 1e-9)), 'local fit: (x - mean) / population std');
  const z2 = await col('MedInc', q({ kind: 'StandardScaler', features: ['MedInc'], fitted: [{ mean: 1, std: 0 }], with_std: true }));
  t.ok(z2.every((v, i) => close(v, (x[i] as number) - 1)), 'a zero std scales by 1 (as scikit-learn)');
  const z3 = await col('MedInc', q({ kind: 'StandardScaler', features: ['MedInc'], fitted: [{ mean: 3, std: 2 }], with_mean: false }));
  t.ok(z3.every((v, i) => close(v, (x[i] as number) / 2)), 'with_mean false');
  await rejects(t, e.count(P, q({ kind: 'MinMaxScaler', features: ['MedInc'], fitted: [{ min: 1, max: 2 }, { min: 1, max: 2 }] })), 'BAD_QUERY', /2 fitted entries for 1 features/, 'query.stages[0].fitted');
});

t.test('KBinsDiscretizer, Binarizer, Clamp', async (t) => {
  const x = column(table, 'HouseAge');
  const lo = Math.min(...x);
  const hi = Math.max(...x);
  const uniform = await col('HouseAge', q({ kind: 'KBinsDiscretizer', features: ['HouseAge'], n_bins: 4, strategy: 'uniform' }));
  const edges = [lo + (hi - lo) / 4, lo + (2 * (hi - lo)) / 4, lo + (3 * (hi - lo)) / 4];
  t.ok(uniform.every((v, i) => v === edges.filter((e) => (x[i] as number) >= e).length), 'uniform: searchsorted(inner edges, x, right)');
  const quant = await col('HouseAge', q({ kind: 'KBinsDiscretizer', features: ['HouseAge'], n_bins: 4, strategy: 'quantile' }));
  const counts = [0, 1, 2, 3].map((b) => quant.filter((v) => v === b).length);
  t.ok(counts.every((c) => Math.abs(c - x.length / 4) < x.length * 0.06), `quantile bins hold about a quarter each: ${counts}`);
  const given = await col('HouseAge', q({ kind: 'KBinsDiscretizer', features: ['HouseAge'], n_bins: 2, strategy: 'uniform', fitted: [{ edges: [0, 20, 60] }] }));
  t.ok(given.every((v, i) => v === ((x[i] as number) >= 20 ? 1 : 0)), 'given edges');

  const b = await col('HouseAge', q({ kind: 'Binarizer', features: ['HouseAge'], threshold: 30 }));
  t.ok(b.every((v, i) => v === ((x[i] as number) > 30 ? 1 : 0)), 'x > threshold -> 1');
  const b0 = await col('Longitude', q({ kind: 'Binarizer', features: ['Longitude'] }));
  t.ok(b0.every((v) => v === 0), 'threshold 0 by default (never "the mean", as the original did)');

  const c = await col('HouseAge', q({ kind: 'Clamp', features: ['HouseAge'], min: 10, max: 40 }));
  t.ok(c.every((v, i) => v === Math.min(40, Math.max(10, x[i] as number))), 'clipped to [10, 40]');
  await rejects(t, e.count(P, q({ kind: 'Clamp', features: ['HouseAge'], min: 5, max: 1 })), 'BAD_QUERY', /min is above max/);
});

t.test('derived columns: a safe expression tree, compiled with bound parameters', async (t) => {
  const rooms = column(table, 'AveRooms');
  const beds = column(table, 'AveBedrms');
  const ratio = await col('ratio', q({ kind: 'Derive', name: 'ratio', expr: { fn: '/', args: [{ feature: 'AveBedrms' }, { feature: 'AveRooms' }] } }));
  t.ok(ratio.every((v, i) => close(v, (beds[i] as number) / (rooms[i] as number))));
  const poly = await col('p', q({ kind: 'Derive', name: 'p', expr: { fn: '+', args: [{ fn: '*', args: [2, { feature: 'AveRooms' }] }, { fn: 'pow', args: [{ feature: 'AveBedrms' }, 2] }, -1] } }));
  t.ok(poly.every((v, i) => close(v, 2 * (rooms[i] as number) + (beds[i] as number) ** 2 - 1)));
  // Undefined values are null (NaN in numericColumns), never an error or an infinity.
  const zero = await col('z', q({ kind: 'Derive', name: 'z', expr: { fn: '/', args: [1, { fn: '-', args: [{ feature: 'AveRooms' }, { feature: 'AveRooms' }] }] } }));
  t.ok(zero.every((v) => Number.isNaN(v)), 'division by zero is null');
  const logs = await col('l', q({ kind: 'Derive', name: 'l', expr: { fn: 'log', args: [{ fn: 'neg', args: [{ feature: 'AveRooms' }] }] } }));
  t.ok(logs.every((v) => Number.isNaN(v)), 'log of a negative is null');
  const sq = await col('s', q({ kind: 'Derive', name: 's', expr: { fn: 'sqrt', args: [{ feature: 'AveRooms' }] } }));
  t.ok(sq.every((v, i) => close(v, Math.sqrt(rooms[i] as number))));
  const big = await col('b', q({ kind: 'Derive', name: 'b', expr: { fn: 'exp', args: [{ fn: '*', args: [1000, { feature: 'AveRooms' }] }] } }));
  t.ok(big.every((v) => Number.isNaN(v)), 'an overflow is null');
  const replaced = await col('AveRooms', q({ kind: 'Derive', name: 'AveRooms', expr: { fn: 'round', args: [{ feature: 'AveRooms' }] } }));
  t.ok(replaced.every((v, i) => v === Math.round(rooms[i] as number) || Math.abs(v - Math.round(rooms[i] as number)) === 1), 'an existing name is replaced');

  await rejects(t, e.count(P, q({ kind: 'Derive', name: 'x', expr: { fn: '/', args: [1] } })), 'BAD_QUERY', /takes 2 arguments, not 1/, 'query.stages[0].expr.args');
  await rejects(t, e.count(P, q({ kind: 'Derive', name: 'x', expr: { feature: 'nope' } })), 'BAD_QUERY', /unknown feature "nope"/, 'query.stages[0].expr.feature');
  let deep: unknown = { feature: 'AveRooms' };
  for (let i = 0; i < 40; i++) deep = { fn: 'abs', args: [deep] };
  await rejects(t, e.count(P, { stages: [{ kind: 'Derive', name: 'x', expr: deep as number }] }), 'BAD_QUERY', /deeper than/);
  const wide = { fn: '+', args: Array.from({ length: 16 }, () => ({ fn: '+', args: Array.from({ length: 16 }, () => 1) })) };
  await rejects(t, e.count(P, q({ kind: 'Derive', name: 'x', expr: wide as never })), 'BAD_QUERY', new RegExp(`more than ${MAX_EXPR_NODES} nodes`));
  await rejects(t, e.count(P, q({ kind: 'Derive', name: ROW_ID, expr: 1 })), 'BAD_QUERY', /reserved/);
});

t.test('select, drop, rename; filters between stages; the row id stays hidden', async (t) => {
  const names = async (query: Query) => (await e.queryFeatures(P, query)).map((f) => f.name);
  t.same(await names(q({ kind: 'Select', features: ['HouseAge', 'MedInc'] })), ['HouseAge', 'MedInc']);
  t.same(await names(q({ kind: 'Drop', features: ['MedInc', 'Latitude', 'Longitude', 'Population', 'AveOccup', 'AveRooms', 'AveBedrms'] })), ['HouseAge', 'MedHouseValDiscrete']);
  t.same(
    await names(q({ kind: 'Select', features: ['MedInc', 'HouseAge'] }, { kind: 'Rename', renames: [{ from: 'MedInc', to: 'HouseAge' }, { from: 'HouseAge', to: 'MedInc' }] })),
    ['HouseAge', 'MedInc'],
    'renames are simultaneous (a swap works)',
  );
  t.notOk((await names({})).includes(ROW_ID), 'the row id is never a feature');
  await rejects(t, e.count(P, q({ kind: 'Rename', renames: [{ from: 'MedInc', to: 'HouseAge' }] })), 'BAD_QUERY', /two features would be named "HouseAge"/);
  await rejects(t, e.count(P, q({ kind: 'Select', features: ['MedInc'] }, { kind: 'Filter', where: { feature: 'HouseAge', op: '>', value: 1 } })), 'BAD_QUERY', /unknown feature "HouseAge"/, 'query.stages[1].where.feature');
  await rejects(t, e.count(P, q({ kind: 'Select', features: [ROW_ID] })), 'BAD_QUERY', /unknown feature/);
  // A filter on a derived column, after the stage that made it.
  const n = await e.count(P, q({ kind: 'Derive', name: 'rooms per bed', expr: { fn: '/', args: [{ feature: 'AveRooms' }, { feature: 'AveBedrms' }] } }, { kind: 'Filter', where: { feature: 'rooms per bed', op: '>', value: 6 } }));
  const rooms = column(table, 'AveRooms');
  const beds = column(table, 'AveBedrms');
  t.equal(n, rooms.filter((r, i) => r / (beds[i] as number) > 6).length);
});

t.test('encoders and the imputer over strings, nulls and hostile values', async (t) => {
  const hostile = `x"; DROP TABLE t; --`;
  const dir = t.testdir({
    'h.csv': `city,score,"${hostile.replaceAll('"', '""')}"\nrome,1,a\nparis,,b\n"o'slo",3,\nrome,,a\nrome,5,b\n,6,a\n`,
  });
  const h = await DataEngine.open([{ name: 'h', path: join(dir, 'h.csv'), projects: [P] }]);
  t.teardown(() => h.close());
  const nums = async (names: string[], query: Query) => (await h.numericColumns(P, names, query)).columns;

  const oh = await nums(['city_rome', 'city_paris', "city_o'slo", 'city_null'], q({ kind: 'OneHotEncoder', features: ['city'], categories: [['rome', 'paris', "o'slo", null]] }));
  t.same([...(oh.city_rome as Float64Array)], [1, 0, 0, 1, 1, 0]);
  t.same([...(oh["city_o'slo"] as Float64Array)], [0, 0, 1, 0, 0, 0]);
  t.same([...(oh.city_null as Float64Array)], [0, 0, 0, 0, 0, 1], 'null is a category when listed');
  t.notOk((await h.queryFeatures(P, q({ kind: 'OneHotEncoder', features: ['city'], categories: [['rome', 'paris', "o'slo", null]] }))).some((f) => f.name === 'city'), 'the input is replaced');
  await rejects(t, h.count(P, q({ kind: 'OneHotEncoder', features: ['city'], categories: [['rome', 'paris']] })), 'BAD_QUERY', /outside its declared categories/);
  const ignore = await nums(['city_rome'], q({ kind: 'OneHotEncoder', features: ['city'], categories: [['rome', 'paris']], handle_unknown: 'ignore' }));
  t.same([...(ignore.city_rome as Float64Array)], [1, 0, 0, 1, 1, 0], 'ignore: an unknown value is all zeros');
  const dropped = await h.queryFeatures(P, q({ kind: 'OneHotEncoder', features: ['city'], categories: [['rome', 'paris']], handle_unknown: 'ignore', drop: 'first' }));
  t.same(dropped.map((f) => f.name).filter((n) => n.startsWith('city')), ['city_paris'], 'drop first');
  await rejects(t, h.count(P, q({ kind: 'OneHotEncoder', features: ['score'], categories: [['1']] })), 'BAD_QUERY', /a value must be a number/);

  const lb = await nums(['city'], q({ kind: 'LabelBinarizer', feature: 'city', classes: ['paris', 'rome'] }));
  t.same([...(lb.city as Float64Array)].map((v) => (Number.isNaN(v) ? null : v)), [1, 0, 0, 1, 1, null], 'two classes: one column, 1 for the second class; a null stays null');
  const lb3 = await nums(['city_rome', 'city_paris'], q({ kind: 'LabelBinarizer', feature: 'city', classes: ['rome', 'paris', "o'slo"], neg_label: -1 }));
  t.same([...(lb3.city_paris as Float64Array)].map((v) => (Number.isNaN(v) ? null : v)), [-1, 1, -1, -1, -1, null]);

  const mean = await nums(['score'], q({ kind: 'SimpleImputer', features: ['score'], strategy: 'mean' }));
  t.same([...(mean.score as Float64Array)], [1, 15 / 4, 3, 15 / 4, 5, 6]);
  const median = await nums(['score'], q({ kind: 'SimpleImputer', features: ['score'], strategy: 'median' }));
  t.same([...(median.score as Float64Array)], [1, 4, 3, 4, 5, 6]);
  const constant = await nums(['score'], q({ kind: 'SimpleImputer', features: ['score'], strategy: 'constant', fill_value: -1 }));
  t.same([...(constant.score as Float64Array)], [1, -1, 3, -1, 5, 6]);
  const given = await nums(['score'], q({ kind: 'SimpleImputer', features: ['score'], strategy: 'mean', fitted: [100] }));
  t.same([...(given.score as Float64Array)], [1, 100, 3, 100, 5, 6], 'a federated fill value is applied as given');
  const frequent = await h.groupCounts(P, [hostile], q({ kind: 'SimpleImputer', features: [hostile], strategy: 'most_frequent' }));
  t.same(frequent, [
    { key: ['a'], count: 4 },
    { key: ['b'], count: 2 },
  ], 'most_frequent over a hostile column name; ties go to the smallest');
  const city = await h.groupCounts(P, ['city'], q({ kind: 'SimpleImputer', features: ['city'], strategy: 'constant', fill_value: "'; DROP TABLE x; --" }));
  t.same(city.find((g) => g.key[0] === "'; DROP TABLE x; --"), { key: ["'; DROP TABLE x; --"], count: 1 }, 'a hostile fill value is data');
  await rejects(t, h.count(P, q({ kind: 'SimpleImputer', features: ['city'], strategy: 'mean' })), 'BAD_QUERY', /mean of "city" \(string\) is not defined/);
  await rejects(t, h.count(P, q({ kind: 'SimpleImputer', features: ['score'], strategy: 'constant', fill_value: 'x' })), 'BAD_QUERY', /a value must be a number/);
});

t.test('a pipeline: impute, clamp, scale, then an estimator reads the result', async (t) => {
  const query = q(
    { kind: 'Filter', where: { feature: 'HouseAge', op: '>=', value: 10 } },
    { kind: 'Clamp', features: ['AveOccup'], max: 10 },
    { kind: 'MinMaxScaler', features: ['AveOccup'], outputs: ['occ'], fitted: [{ min: 0, max: 10 }] },
    { kind: 'Drop', features: ['AveOccup'] },
  );
  const sums = await e.sums(P, ['occ'], query);
  const age = column(table, 'HouseAge');
  const expected = column(table, 'AveOccup')
    .filter((_, i) => (age[i] as number) >= 10)
    .map((v) => Math.min(10, v) / 10);
  t.equal(sums.counts.occ, expected.length);
  t.ok(close(sums.sums.occ as number, expected.reduce((a, b) => a + b, 0), 1e-9));
});
