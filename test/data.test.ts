// The data engine is the only code that touches a worker's private data: its metadata must be right, every filter must filter (the original's never did), remote text must never become SQL, and once open it must not read any other file.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import t from 'tap';
import { DataEngine, dtypeOf, forAttempt, toScalar } from '../lib/data/engine.ts';
import { compileQuery, MAX_FILTER_DEPTH, quoteIdent, schemaMap } from '../lib/data/sql.ts';
import { FdlError, isFdlError } from '../lib/errors.ts';
import type { Filter, Query } from '../protocols/entities.ts';

const DATA = new URL('../examples/data/', import.meta.url).pathname;
const SHARD1 = join(DATA, 'california_housing.MedInc1.csv');
const SHARD2 = join(DATA, 'california_housing.MedInc2.csv');

/** The CSV has a header, no quotes and only numbers. */
function readCsv(path: string): { header: string[]; rows: number[][] } {
  const lines = readFileSync(path, 'utf8').trim().split('\n');
  const header = (lines[0] ?? '').split(',');
  return { header, rows: lines.slice(1).map((l) => l.split(',').map(Number)) };
}

const s1 = readCsv(SHARD1);
const s2 = readCsv(SHARD2);
const header = s1.header;
const all = [...s1.rows, ...s2.rows];
const col = (name: string): number => header.indexOf(name);

/** A subtest's `t` (the last overload of t.test takes just the callback). */
type Asserts = Parameters<Parameters<typeof t.test>[0]>[0];

async function rejectsWith(t: Asserts, p: Promise<unknown> | (() => unknown), code: string, re?: RegExp) {
  try {
    await (typeof p === 'function' ? p() : p);
    t.fail(`expected ${code}`);
  } catch (e) {
    t.ok(isFdlError(e), 'an FdlError');
    t.equal((e as { code?: string }).code, code, (e as Error).message);
    if (re) t.match((e as Error).message, re);
    return e as { code: string; message: string; path?: string; retryable: boolean };
  }
  return undefined;
}

t.test('California shards: metadata, union, sums, groups', async (t) => {
  const e = await DataEngine.open([
    { name: 'shard1', path: SHARD1, projects: ['p-all', 'p-one'] },
    { name: 'shard2', path: SHARD2, projects: ['p-all'] },
  ]);
  t.teardown(() => e.close());

  const meta = await e.metadata();
  t.same(
    meta.map((p) => [p.token, p.datasources.map((d) => d.name)]),
    [
      ['p-all', ['shard1', 'shard2']],
      ['p-one', ['shard1']],
    ],
  );
  const ds = meta[0]?.datasources ?? [];
  for (const [i, d] of ds.entries()) {
    const rows = i === 0 ? s1.rows : s2.rows;
    t.equal(d.rows, 9288);
    t.equal(d.features.length, 9);
    t.same(
      d.features.map((f) => f.name),
      header,
    );
    for (const f of d.features) {
      t.equal(f.dtype, 'numeric', `${f.name} numeric`);
      t.equal(f.missing, 0);
      const xs = rows.map((r) => r[col(f.name)] as number);
      const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
      const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1));
      t.ok(Math.abs((f.mean as number) - mean) <= 1e-9 * Math.abs(mean), `${f.name} mean`);
      t.ok(Math.abs((f.std as number) - sd) <= 1e-9 * sd, `${f.name} std`);
      t.equal(f.min, Math.min(...xs));
      t.equal(f.max, Math.max(...xs));
    }
    const disc = d.features.find((f) => f.name === 'MedHouseValDiscrete');
    t.equal(disc?.sqlType, 'BIGINT');
    t.same(disc?.categories, [0, 1]);
    t.equal(typeof disc?.categories?.[0], 'number', 'a BIGINT category is a JS number');
    t.equal(d.features.find((f) => f.name === 'MedInc')?.categories, undefined, 'no categories for many values');
  }
  t.equal(meta[1]?.datasources[0]?.rows, 9288);

  t.same(
    e.features('p-all').map((f) => [f.name, f.dtype, f.missing]),
    header.map((h) => [h, 'numeric', 0]),
  );
  t.equal(await e.count('p-all'), 18576);
  t.equal(await e.count('p-one'), 9288);

  const { sums, counts } = await e.sums('p-all', ['MedInc', 'MedHouseValDiscrete', 'MedInc']);
  t.same(Object.keys(sums), ['MedInc', 'MedHouseValDiscrete'], 'duplicates dropped');
  t.equal(counts.MedInc, 18576);
  t.equal(sums.MedHouseValDiscrete, all.filter((r) => r[col('MedHouseValDiscrete')] === 1).length);
  t.equal(typeof sums.MedHouseValDiscrete, 'number', 'HUGEINT sum is a JS number');
  const medInc = all.reduce((a, r) => a + (r[col('MedInc')] as number), 0);
  t.ok(Math.abs((sums.MedInc as number) - medInc) < 1e-9 * medInc);

  const groups = await e.groupCounts('p-all', ['MedHouseValDiscrete']);
  const ones = all.filter((r) => r[col('MedHouseValDiscrete')] === 1).length;
  t.same(groups, [
    { key: [0], count: all.length - ones },
    { key: [1], count: ones },
  ]);

  await rejectsWith(t, e.sums('p-all', ['nope']), 'BAD_QUERY', /unknown feature "nope"/);
  await rejectsWith(t, e.groupCounts('p-all', ['nope']), 'BAD_QUERY');
  await rejectsWith(t, e.count('no-such-token'), 'DATA_UNAVAILABLE');
  await rejectsWith(t, () => e.features('no-such-token'), 'DATA_UNAVAILABLE');
});

t.test('every filter op compiles and filters like a direct computation', async (t) => {
  const e = await DataEngine.open([
    { name: 'shard1', path: SHARD1, projects: ['p'] },
    { name: 'shard2', path: SHARD2, projects: ['p'] },
  ]);
  t.teardown(() => e.close());
  const v = (r: number[], f: string) => r[col(f)] as number;
  const cases: Array<[string, Filter, (r: number[]) => boolean]> = [
    ['<', { feature: 'MedInc', op: '<', value: 3.5 }, (r) => v(r, 'MedInc') < 3.5],
    ['<=', { feature: 'HouseAge', op: '<=', value: 20 }, (r) => v(r, 'HouseAge') <= 20],
    ['>', { feature: 'Latitude', op: '>', value: 37.5 }, (r) => v(r, 'Latitude') > 37.5],
    ['>=', { feature: 'HouseAge', op: '>=', value: 52 }, (r) => v(r, 'HouseAge') >= 52],
    ['==', { feature: 'HouseAge', op: '==', value: 25 }, (r) => v(r, 'HouseAge') === 25],
    ['!=', { feature: 'MedHouseValDiscrete', op: '!=', value: 1 }, (r) => v(r, 'MedHouseValDiscrete') !== 1],
    ['in', { feature: 'HouseAge', op: 'in', value: [10, 20, 30] }, (r) => [10, 20, 30].includes(v(r, 'HouseAge'))],
    [
      'not in',
      { feature: 'HouseAge', op: 'not in', value: [10, 20, 30] },
      (r) => ![10, 20, 30].includes(v(r, 'HouseAge')),
    ],
    ['in []', { feature: 'HouseAge', op: 'in', value: [] }, () => false],
    ['not in []', { feature: 'HouseAge', op: 'not in', value: [] }, () => true],
    ['is null', { feature: 'MedInc', op: 'is null' }, () => false],
    ['not null', { feature: 'MedInc', op: 'not null' }, () => true],
    [
      'between',
      { feature: 'Population', op: 'between', value: [500, 1500] },
      (r) => v(r, 'Population') >= 500 && v(r, 'Population') <= 1500,
    ],
    [
      'and/or',
      {
        and: [
          { feature: 'MedInc', op: '>', value: 2 },
          {
            or: [
              { feature: 'MedHouseValDiscrete', op: '==', value: 1 },
              { feature: 'Longitude', op: '<', value: -121 },
            ],
          },
        ],
      },
      (r) => v(r, 'MedInc') > 2 && (v(r, 'MedHouseValDiscrete') === 1 || v(r, 'Longitude') < -121),
    ],
    ['BIGINT column vs fraction', { feature: 'MedHouseValDiscrete', op: '<', value: 0.5 }, (r) => v(r, 'MedHouseValDiscrete') < 0.5],
  ];
  for (const [name, where, pred] of cases) {
    const expected = all.filter(pred).length;
    t.equal(await e.count('p', { where }), expected, `${name}: ${expected}`);
  }
  t.ok(cases.filter(([, , p]) => all.some(p) && !all.every(p)).length >= 10, 'the cases do discriminate');

  const q: Query = { where: { feature: 'HouseAge', op: '>', value: 30 } };
  t.same(
    await e.groupCounts('p', ['MedHouseValDiscrete'], q),
    [0, 1].map((k) => ({
      key: [k],
      count: all.filter((r) => v(r, 'HouseAge') > 30 && v(r, 'MedHouseValDiscrete') === k).length,
    })),
  );
  const s = await e.sums('p', ['AveRooms'], q);
  t.equal(s.counts.AveRooms, all.filter((r) => v(r, 'HouseAge') > 30).length);
});

t.test('nulls, strings, booleans, dates; tsv and parquet', async (t) => {
  const dir = t.testdir({
    'mixed.csv': ['id,name,flag,day,score', '1,alpha,true,2024-01-01,1.5', '2,beta,false,2024-02-01,', '3,,true,2024-03-01,2.5', '4,alpha,,,-1'].join('\n'),
    'extra.tsv': ['id\tname\tbonus', '5\tgamma\t7', '6\tbeta\t8'].join('\n'),
    'data.txt': 'x\n1\n',
  });
  const parquet = join(dir, 'more.parquet');
  const writer = await DuckDBInstance.create(':memory:');
  const wc = await writer.connect();
  await wc.run(`COPY (SELECT 7::BIGINT AS id, 'delta' AS name) TO '${parquet}' (FORMAT parquet)`);
  wc.closeSync();
  writer.closeSync();

  const e = await DataEngine.open([
    { name: 'mixed', path: join(dir, 'mixed.csv'), projects: ['p'] },
    { name: 'extra', path: join(dir, 'extra.tsv'), projects: ['p'] },
    { name: 'pq', path: parquet, projects: ['p'] },
    { name: 'txt-as-csv', path: join(dir, 'data.txt'), format: 'csv', projects: ['q'] },
  ]);
  t.teardown(() => e.close());

  const types = Object.fromEntries(e.features('p').map((f) => [f.name, [f.dtype, f.missing]]));
  t.same(types, {
    id: ['numeric', 0],
    name: ['string', 1],
    flag: ['boolean', 4],
    day: ['datetime', 4],
    score: ['numeric', 4],
    bonus: ['numeric', 5],
  });
  t.equal(await e.count('p'), 7, 'union by name of csv + tsv + parquet');
  t.equal(await e.count('q'), 1, 'explicit format');

  const mixed = (await e.metadata())[0]?.datasources[0];
  const byName = Object.fromEntries((mixed?.features ?? []).map((f) => [f.name, f]));
  t.same(byName.name?.categories, ['alpha', 'beta', null]);
  t.same(byName.flag?.categories, [false, true, null]);
  t.same(byName.day?.categories, ['2024-01-01', '2024-02-01', '2024-03-01', null]);
  t.same(byName.score?.categories, [-1, 1.5, 2.5, null]);
  t.equal(byName.name?.mean, null);
  t.equal(byName.score?.missing, 1);
  t.equal(byName.score?.mean, 1);

  const count = (where: Filter) => e.count('p', { where });
  t.equal(await count({ feature: 'name', op: '==', value: 'alpha' }), 2);
  t.equal(await count({ feature: 'name', op: '!=', value: 'alpha' }), 5, '!= keeps nulls: complement of ==');
  t.equal(await count({ feature: 'name', op: '==', value: null }), 1, '== null');
  t.equal(await count({ feature: 'name', op: 'in', value: ['beta', null] }), 3);
  t.equal(await count({ feature: 'name', op: 'not in', value: ['beta', null] }), 4);
  t.equal(await count({ feature: 'name', op: 'not in', value: ['beta'] }), 5, 'not in keeps nulls: complement of in');
  t.equal(await count({ feature: 'score', op: '<', value: 2 }), 2, 'comparisons never match null');
  t.equal(await count({ feature: 'score', op: 'is null' }), 4);
  t.equal(await count({ feature: 'flag', op: '==', value: true }), 2);
  t.equal(await count({ feature: 'day', op: '>=', value: '2024-02-01' }), 2);
  t.equal(await count({ feature: 'day', op: 'between', value: ['2024-01-15', '2024-02-15'] }), 1);
  await rejectsWith(t, count({ feature: 'day', op: '>', value: 'not a date' }), 'BAD_QUERY');

  t.same(await e.groupCounts('p', ['name']), [
    { key: ['alpha'], count: 2 },
    { key: ['beta'], count: 2 },
    { key: ['delta'], count: 1 },
    { key: ['gamma'], count: 1 },
    { key: [null], count: 1 },
  ]);
  t.same(await e.groupCounts('p', ['flag', 'day'], { where: { feature: 'id', op: '<=', value: 2 } }), [
    { key: [false, '2024-02-01'], count: 1 },
    { key: [true, '2024-01-01'], count: 1 },
  ]);
  const sums = await e.sums('p', ['score', 'bonus']);
  t.same(sums, { sums: { score: 3, bonus: 15 }, counts: { score: 3, bonus: 2 } });
  await rejectsWith(t, e.sums('p', ['name']), 'BAD_QUERY', /not numeric/);
});

t.test('value shapes and query structure are checked', async (t) => {
  const schema = schemaMap([
    { name: 'n', dtype: 'numeric', sqlType: 'DOUBLE', missing: 0 },
    { name: 's', dtype: 'string', sqlType: 'VARCHAR', missing: 0 },
    { name: 'b', dtype: 'boolean', sqlType: 'BOOLEAN', missing: 0 },
    { name: 'l', dtype: 'other', sqlType: 'INTEGER[]', missing: 0 },
  ]);
  const bad = (where: unknown, re: RegExp, path?: string) => {
    try {
      compileQuery({ where } as Query, schema);
      t.fail(`accepted ${JSON.stringify(where)}`);
    } catch (e) {
      t.equal((e as { code?: string }).code, 'BAD_QUERY');
      t.match((e as Error).message, re);
      if (path !== undefined) t.equal((e as { path?: string }).path, path);
    }
  };
  bad({ feature: 'x', op: '==', value: 1 }, /^unknown feature "x"$/, 'query.where.feature');
  bad({ and: [{ feature: 'n', op: '<', value: 1 }, { feature: 'N', op: '<', value: 1 }] }, /unknown feature "N"/, 'query.where.and[1].feature');
  bad({ feature: 'n', op: 'in', value: 1 }, /list/);
  bad({ feature: 'n', op: 'not in' }, /list/);
  bad({ feature: 'n', op: 'between', value: [1, 2, 3] }, /two values/);
  bad({ feature: 'n', op: 'between', value: 1 }, /two values/);
  bad({ feature: 'n', op: 'between', value: [null, 2] }, /null/);
  bad({ feature: 'n', op: 'is null', value: 1 }, /no value/);
  bad({ feature: 'n', op: 'not null', value: null }, /no value/);
  bad({ feature: 'n', op: '<', value: null }, /non-null/);
  bad({ feature: 'n', op: '<' }, /non-null/);
  bad({ feature: 'n', op: '==' }, /single value/);
  bad({ feature: 'n', op: '==', value: [1] }, /single value/);
  bad({ feature: 'n', op: '==', value: '1' }, /must be a number/, 'query.where.value');
  bad({ feature: 'n', op: 'in', value: [1, 'x'] }, /must be a number/, 'query.where.value[1]');
  bad({ feature: 'n', op: '==', value: Number.NaN }, /finite/);
  bad({ feature: 's', op: '==', value: 1 }, /must be a string/);
  bad({ feature: 'b', op: '==', value: 'true' }, /must be a boolean/);
  bad({ feature: 'b', op: '<', value: true }, /boolean/);
  bad({ feature: 'l', op: '==', value: 1 }, /only be tested for null/);
  bad({ feature: 'n', op: 'like', value: 1 }, /unknown filter op/);
  bad({ feature: 'n', op: '==', value: 1, extra: 1 }, /no field "extra"/);
  bad({ and: [] }, /non-empty/);
  bad({ or: 'x' }, /non-empty/);
  bad({ and: [{ feature: 'n', op: 'is null' }], feature: 'n' }, /no other field/);
  bad(null, /object/);
  let deep: Filter = { feature: 'n', op: 'is null' };
  for (let i = 0; i <= MAX_FILTER_DEPTH; i++) deep = { and: [deep] };
  bad(deep, /deeper/);

  t.same(compileQuery(undefined, schema), { sql: 'TRUE', params: [] });
  t.same(compileQuery({}, schema), { sql: 'TRUE', params: [] });
  t.same(compileQuery({ where: { feature: 'l', op: 'not null' } }, schema), { sql: '("l" IS NOT NULL)', params: [] });
  const c = compileQuery(
    { where: { or: [{ feature: 'n', op: 'between', value: [1, 2] }, { feature: 's', op: 'in', value: ['a', null] }] } },
    schema,
  );
  t.same(c.params, [1, 2, 'a']);
  t.equal(c.sql, '(("n" BETWEEN $1 AND $2) OR (COALESCE("s" IN ($3), FALSE) OR "s" IS NULL))');
  t.equal(quoteIdent('a"b'), '"a""b"');
  t.throws(() => quoteIdent('a\u0000b'));
  t.equal(dtypeOf('DECIMAL(10,2)'), 'numeric');
  t.equal(dtypeOf('TIMESTAMP WITH TIME ZONE'), 'datetime');
  t.equal(dtypeOf('STRUCT(a INTEGER)'), 'other');
  t.equal(toScalar(12n), 12);
  t.equal(toScalar(-0), 0);
  t.equal(toScalar(Number.NaN), null);
});

t.test('injection attempts are refused or harmless', async (t) => {
  const hostile = 'x"; DROP TABLE t; --';
  const csvName = hostile.replaceAll('"', '""');
  const dir = t.testdir({
    'evil.csv': [`id,"${csvName}",label`, `1,"' OR 1=1 --",a`, '2,plain,b', '3,other,a'].join('\n'),
  });
  const e = await DataEngine.open([{ name: 'evil', path: join(dir, 'evil.csv'), projects: ['p'] }]);
  t.teardown(() => e.close());
  t.same(
    e.features('p').map((f) => f.name),
    ['id', hostile, 'label'],
    'a hostile column name is read as it is',
  );

  const payloads = ["' OR 1=1 --", "'; DROP TABLE src_0; --", '"; SELECT * FROM read_csv_auto(\'/etc/passwd\'); --', '\\', "x' UNION SELECT 1 --"];
  for (const value of payloads) {
    const n = await e.count('p', { where: { feature: 'label', op: '==', value } });
    t.equal(n, 0, `value ${JSON.stringify(value)} is data, not SQL`);
    t.equal(await e.count('p', { where: { feature: 'label', op: 'in', value: [value, 'a'] } }), 2);
  }
  t.equal(await e.count('p', { where: { feature: hostile, op: '==', value: "' OR 1=1 --" } }), 1, 'hostile name + hostile value');
  t.equal(await e.count('p', { where: { feature: hostile, op: '!=', value: "' OR 1=1 --" } }), 2);
  t.same(await e.groupCounts('p', [hostile], { where: { feature: 'id', op: '<', value: 3 } }), [
    { key: ["' OR 1=1 --"], count: 1 },
    { key: ['plain'], count: 1 },
  ]);

  const names = [
    'label" = label OR "1"="1',
    'label"); DROP TABLE src_0; --',
    `id" IN (SELECT 1 FROM read_csv_auto('/etc/passwd')) OR "`,
    'LABEL',
    'label ',
    '*',
  ];
  for (const feature of names) {
    const err = await rejectsWith(t, e.count('p', { where: { feature, op: 'is null' } }), 'BAD_QUERY', /unknown feature/);
    t.equal(err?.retryable, false);
    await rejectsWith(t, e.groupCounts('p', [feature]), 'BAD_QUERY');
    await rejectsWith(t, e.sums('p', [feature]), 'BAD_QUERY');
  }
  const compiled = compileQuery({ where: { feature: hostile, op: 'in', value: ["' OR 1=1 --", 'y'] } }, schemaMap(e.features('p')));
  t.equal(compiled.sql, '(COALESCE("x""; DROP TABLE t; --" IN ($1, $2), FALSE))');
  t.notMatch(compiled.sql, /OR 1=1/, 'no value text in the SQL');
  t.equal(await e.count('p'), 3, 'the table is still there');
});

t.test('a missing or unreadable file gives DATA_UNAVAILABLE naming it', async (t) => {
  const dir = t.testdir({ 'bad.parquet': 'this is not parquet', 'noext': 'a\n1\n', 'sub': {} });
  const cases: Array<[string, string, 'csv' | 'parquet' | undefined]> = [
    ['ghost', join(dir, 'does-not-exist.csv'), undefined],
    ['broken', join(dir, 'bad.parquet'), undefined],
    ['mystery', join(dir, 'noext'), undefined],
    ['a-dir', join(dir, 'sub'), 'csv'],
  ];
  for (const [name, path, format] of cases) {
    const err = await rejectsWith(
      t,
      DataEngine.open([
        { name: 'fine', path: SHARD1, projects: ['p'] },
        { name, path, projects: ['p'], ...(format ? { format } : {}) },
      ]),
      'DATA_UNAVAILABLE',
    );
    t.match(err?.message, name);
    t.match(err?.message, path);
  }
});

t.test('after open, a query can read no other file and cannot unlock', async (t) => {
  const e = await DataEngine.open([{ name: 'shard1', path: SHARD1, projects: ['p'] }]);
  t.teardown(() => e.close());
  t.same(await e.unsafeRawQuery(`SELECT current_setting('enable_external_access'), current_setting('lock_configuration')`), [
    [false, true],
  ]);
  for (const sql of [
    `SELECT * FROM read_csv_auto('/etc/passwd')`,
    `SELECT * FROM read_text('/etc/hostname')`,
    `SELECT count(*) FROM read_csv_auto('${SHARD2}')`,
    `SELECT count(*) FROM read_csv_auto('${SHARD1}')`,
    `COPY (SELECT 1) TO '${join(t.testdirName, 'out.csv')}'`,
    `ATTACH '${join(t.testdirName, 'x.db')}'`,
    'SET enable_external_access = true',
    'SET lock_configuration = false',
    'INSTALL httpfs',
  ]) {
    await rejectsWith(t, e.unsafeRawQuery(sql), 'INTERNAL');
  }
  t.equal(await e.count('p'), 9288, 'the data itself stays readable');
});

t.test('a closed engine refuses work', async (t) => {
  const e = await DataEngine.open([{ name: 'shard1', path: SHARD1, projects: ['p'] }]);
  const pending = e.count('p');
  await e.close();
  t.equal(await pending, 9288, 'a query queued before close completes');
  await rejectsWith(t, e.count('p'), 'DATA_UNAVAILABLE', /closed/);
  await rejectsWith(t, e.metadata(), 'DATA_UNAVAILABLE');
  await e.close();
  const empty = await DataEngine.open([]);
  t.same(await empty.metadata(), []);
  await rejectsWith(t, empty.count('p'), 'DATA_UNAVAILABLE');
  await empty.close();
});

t.test('row ids, reserved names, and the aggregates estimators read', async (t) => {
  const dir = t.testdir({
    'a.csv': 'k,x,y\nu,1,10\nu,2,\nv,,30\nu,4,40\n',
    'b.csv': 'k,x,y\nv,5,50\nw,6,60\n',
    'bad.csv': '__fdl_row,x\n1,2\n',
  });
  const e = await DataEngine.open([
    { name: 'a', path: join(dir, 'a.csv'), projects: ['p'] },
    { name: 'b', path: join(dir, 'b.csv'), projects: ['p', 'q'] },
  ]);
  t.teardown(() => e.close());

  // Row ids: each source's rows in file order, sources in config order, per project.
  const cols = await e.numericColumns('p', ['x']);
  t.same([...cols.rowIds], [0, 1, 2, 3, 4, 5]);
  t.same([...(cols.columns.x as Float64Array)].map((v) => (Number.isNaN(v) ? null : v)), [1, 2, null, 4, 5, 6]);
  t.same([...(await e.numericColumns('q', ['x'])).rowIds], [0, 1], 'a project of its own numbers its rows from 0');
  t.notOk(e.features('p').some((f) => f.name === '__fdl_row'), 'the row id is not a feature');
  await rejectsWith(t, DataEngine.open([{ name: 'bad', path: join(dir, 'bad.csv'), projects: ['p'] }]), 'DATA_UNAVAILABLE', /reserves/);

  const m = await e.spread('p', ['x', 'y'], undefined, [3, 0]);
  const { m2, from, ...rest } = m.x as { m2: number; from: string };
  t.same(rest, { n: 5, sum: 18, shifted: 3 });
  t.equal(from, 'squares', 'a shift near the mean: m2 from the one scan');
  t.ok(Math.abs(m2 - [1, 2, 4, 5, 6].reduce((a, x) => a + (x - 3.6) ** 2, 0)) < 1e-12, `m2 ${m2}`);
  t.equal(m.y?.n, 5);
  t.same(await e.extremes('p', ['x', 'y']), { x: { n: 5, min: 1, max: 6 }, y: { n: 5, min: 10, max: 60 } });
  t.same((await e.spread('p', ['x'], { where: { feature: 'x', op: '>', value: 100 } })).x, { n: 0, sum: 0, shifted: 0, m2: 0, from: 'squares' });
  t.same((await e.extremes('p', ['x'], { where: { feature: 'x', op: '>', value: 100 } })).x, { n: 0, min: null, max: null });

  const c = await e.comoments('p', ['x', 'y']);
  t.equal(c.n, 4, 'complete rows only');
  t.same(c.sums, [16, 160]);
  t.ok(Math.abs((c.comoments[0]?.[1] as number) - [1, 4, 5, 6].reduce((a, x, i) => a + (x - 4) * (([10, 40, 50, 60][i] as number) - 40), 0)) < 1e-9);

  const h = await e.histogram('p', 'x', { lo: 2, hi: 5, count: 3 });
  t.same(h, { counts: [1, 0, 2], below: 1, above: 1 }, 'the last bin includes hi; nulls are nowhere');
  await rejectsWith(t, e.histogram('p', 'x', { lo: 5, hi: 5, count: 3 }), 'BAD_QUERY');

  t.same(await e.groupStats('p', ['k'], ['x', 'y']), [
    { key: ['u'], count: 3, n: [3, 2], sums: [7, 50] },
    { key: ['v'], count: 2, n: [1, 2], sums: [5, 80] },
    { key: ['w'], count: 1, n: [1, 1], sums: [6, 60] },
  ]);
});

t.test('close waits for a unit of work in flight, several statements long', async (t) => {
  const e = await DataEngine.open([{ name: 'shard1', path: SHARD1, projects: ['p'] }]);
  // A locally fitted scaler runs a fit query, then the statement itself.
  const pending = e.sums('p', ['MedInc'], { stages: [{ kind: 'MinMaxScaler', features: ['MedInc'] }] });
  await e.close();
  const s = await pending;
  t.equal(s.counts.MedInc, 9288);
  await rejectsWith(t, e.extremes('p', ['MedInc']), 'DATA_UNAVAILABLE', /closed/);
});

t.test('model inputs are read once and kept within a byte budget; callers get their own copies', async (t) => {
  const e = await DataEngine.open([{ name: 'shard1', path: SHARD1, projects: ['p'] }]);
  t.teardown(() => e.close());
  const where: Query = { where: { feature: 'HouseAge', op: '>', value: 30 } };
  const first = await e.numericColumns('p', ['MedInc', 'HouseAge'], where);
  t.equal(e.numericColumnsCacheHits, 0);
  const rowIds = [...first.rowIds];
  (first.columns.MedInc as Float64Array).fill(-1); // a caller writing into its arrays
  first.rowIds.fill(0);
  const second = await e.numericColumns('p', ['MedInc', 'HouseAge'], where);
  t.equal(e.numericColumnsCacheHits, 1, 'the same request is answered from memory');
  const expected = s1.rows.filter((r) => (r[col('HouseAge')] as number) > 30);
  t.equal(second.rows, expected.length);
  t.same([...(second.columns.MedInc as Float64Array)], expected.map((r) => r[col('MedInc')]), 'unchanged by the first caller');
  t.same([...second.rowIds], rowIds);
  await e.numericColumns('p', ['MedInc'], where);
  t.equal(e.numericColumnsCacheHits, 1, 'another request is read again');

  // Over budget, the least recently used answer goes.
  e.columnCacheBytes = second.rows * 8 * 2 + second.rowIds.byteLength; // room for the first answer only
  await e.numericColumns('p', ['Population']);
  await e.numericColumns('p', ['MedInc', 'HouseAge'], where);
  t.equal(e.numericColumnsCacheHits, 1, 'the evicted answer is read again');
});

t.test('model inputs read with keep: false are not kept by the engine (the dataset cache keeps them), unless they already were', async (t) => {
  const e = await DataEngine.open([{ name: 'shard1', path: SHARD1, projects: ['p'] }]);
  t.teardown(() => e.close());
  const once = await e.numericColumns('p', ['MedInc', 'HouseAge'], undefined, { keep: false });
  t.equal(once.rows, s1.rows.length);
  t.same([...(once.columns.MedInc as Float64Array)], s1.rows.map((r) => r[col('MedInc')]));
  await e.numericColumns('p', ['MedInc', 'HouseAge']);
  t.equal(e.numericColumnsCacheHits, 0, 'the read with keep: false left nothing kept');
  const kept = await e.numericColumns('p', ['MedInc', 'HouseAge'], undefined, { keep: false });
  t.equal(e.numericColumnsCacheHits, 1, 'what is kept already is used');
  (kept.columns.MedInc as Float64Array).fill(-1); // still a copy
  const again = await e.numericColumns('p', ['MedInc', 'HouseAge']);
  t.same([...(again.columns.MedInc as Float64Array)], s1.rows.map((r) => r[col('MedInc')]), 'unchanged by that caller');
});

t.test('a sums request asked again sums its columns kept in memory, each time; nulls, infinities and adversarial values are summed right', async (t) => {
  const e = await DataEngine.open([{ name: 'shard1', path: SHARD1, projects: ['p'] }]);
  const where: Query = { where: { feature: 'HouseAge', op: '>', value: 30 } };
  const rows = s1.rows.filter((r) => (r[col('HouseAge')] as number) > 30);
  const [duck] = await e.unsafeRawQuery(
    'SELECT fsum(CAST("MedInc" AS DOUBLE)), fsum(CAST("HouseAge" AS DOUBLE)) FROM project_0 WHERE "HouseAge" > 30',
  );
  const hits = e.numericColumnsCacheHits;
  const first = await e.sums('p', ['MedInc', 'HouseAge'], where);
  t.same([first.sums.MedInc, first.sums.HouseAge], [Number(duck?.[0]), Number(duck?.[1])], 'the first time: DuckDB');
  t.equal(first.counts.MedInc, rows.length);
  first.sums.MedInc = -1; // a caller writing into its answer
  const second = await e.sums('p', ['MedInc', 'HouseAge'], where);
  t.equal(e.numericColumnsCacheHits, hits, 'the second time the columns are read');
  const third = await e.sums('p', ['MedInc', 'HouseAge'], where);
  t.equal(e.numericColumnsCacheHits, hits + 1, 'then the kept columns are summed again');
  for (const answer of [second, third]) {
    t.ok(Math.abs((answer.sums.MedInc as number) - Number(duck?.[0])) <= 1e-12 * Math.abs(Number(duck?.[0])), 'as DuckDB sums it');
    t.equal(answer.sums.HouseAge, Number(duck?.[1]), 'integers sum exactly');
    t.equal(answer.counts.MedInc, rows.length);
  }
  const other = await e.sums('p', ['MedInc', 'HouseAge']);
  t.equal(other.counts.MedInc, s1.rows.length);
  await rejectsWith(t, e.sums('nope', ['MedInc']), 'DATA_UNAVAILABLE');
  await rejectsWith(t, e.sums('p', ['NoSuchFeature']), 'BAD_QUERY', /NoSuchFeature/);
  await rejectsWith(t, e.sums('p', []), 'BAD_QUERY');
  await e.close();
  await rejectsWith(t, e.sums('p', ['MedInc', 'HouseAge'], where), 'DATA_UNAVAILABLE', /closed/);

  const dir = t.testdir({
    // 1 + 1e100 + 1 - 1e100: a plain sum says 0, Kahan's too; a compensated sum that keeps the larger term's lost bits says 2.
    'hard.csv': 'x,y,z\n1,1,1\n1e100,,1e308\n1,3,1e308\n-1e100,4,1\n',
    'inf.csv': 'x\n1\ninf\n',
  });
  const h = await DataEngine.open([
    { name: 'hard', path: join(dir, 'hard.csv'), projects: ['h'] },
    { name: 'inf', path: join(dir, 'inf.csv'), projects: ['i'] },
  ]);
  t.teardown(() => h.close());
  const twice = async (token: string, features: string[]) => {
    await h.sums(token, features);
    return h.sums(token, features);
  };
  const x = await twice('h', ['x']);
  t.same([x.sums.x, x.counts.x], [2, 4], 'every digit kept');
  const y = await twice('h', ['y']);
  t.same([y.sums.y, y.counts.y], [8, 3], 'a null is not counted (DuckDB sums that column)');
  // Past the largest double, or with an infinity, the answer is DuckDB's, whatever it is.
  const duckSum = async (source: string, feature: string) =>
    Number((await h.unsafeRawQuery(`SELECT fsum(CAST("${feature}" AS DOUBLE)) FROM ${source}`))[0]?.[0]);
  const z = await twice('h', ['z']);
  t.same([z.sums.z, z.counts.z], [await duckSum('project_0', 'z'), 4], 'overflow: as DuckDB says');
  const inf = await twice('i', ['x']);
  t.same([inf.sums.x, inf.counts.x], [await duckSum('project_1', 'x'), 2], 'an infinity: as DuckDB says');
});

t.test("a cancelled attempt's statements stop: a running query is interrupted, a queued one never starts, and the engine goes on serving", async (t) => {
  const e = await DataEngine.open([{ name: 'a', path: SHARD1, projects: ['tok'] }]);
  t.teardown(() => e.close());
  const abort = new AbortController();
  const seen: string[] = [];
  const view = forAttempt(e, { onRead: (token) => seen.push(token), signal: abort.signal });
  // A statement that would run for minutes: a cross join of 10^12 rows.
  const long = view.unsafeRawQuery('SELECT count(*) FROM range(1000000) a, range(1000000) b WHERE a.range + b.range = -1');
  const queued = view.count('tok');
  let settled = false;
  long.then(
    () => {},
    () => {},
  ).finally(() => {
    settled = true;
  });
  t.equal(settled, false, 'the long query is running');
  abort.abort(new FdlError('CANCELLED', 'the job was cancelled', { retryable: false }));
  await t.rejects(long, { code: 'CANCELLED' }, 'the running query is interrupted');
  await t.rejects(queued, { code: 'CANCELLED' }, 'the queued one never runs');
  t.ok(seen.includes('tok'), 'reads of the project are still seen');
  t.equal(await e.count('tok'), s1.rows.length, 'the engine serves the next statement');
});
