// The newer estimators (Sum, Variance, GroupMean, MinMax, Histogram, Quantiles, Covariance) run as whole Sequential chains in-process over the two California shards, each hop through msgpack: the federated figure must equal the central one (exact counts, 1e-9 relative for sums, means, variances, covariances; within the stated bound for quantiles), every worker hop must be masked, and the chain must refuse what does not belong to it.
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { DataEngine } from '../lib/data/engine.ts';
import { INT_RING, fromFixed, toFixed } from '../lib/ops/estimators/masked.ts';
import { binEdges, quantileRank } from '../lib/ops/estimators/histogram.ts';
import type {
  CovarianceProduct,
  GroupMeanProduct,
  MeanProduct,
  HistogramProduct,
  MaskedRunning,
  MinMaxProduct,
  QuantilesProduct,
  SumProduct,
  VarianceProduct,
} from '../lib/ops/index.ts';
import { runOperation } from '../lib/ops/index.ts';
import { LocalsStore } from '../lib/store/locals.ts';
import type { Operation, Query } from '../protocols/entities.ts';
import { column, readCsv, union } from './helpers/central.ts';
import { type ChainNode, caught, ctxOf, MapLocals, sequential, TOKEN } from './helpers/chain.ts';
import { covarianceOf, fsum, meanOf, quantileDisc, relErr, varianceOf } from './helpers/stats.ts';

const DATA = new URL('../examples/data/', import.meta.url).pathname;
const SHARDS = ['california_housing.MedInc1.csv', 'california_housing.MedInc2.csv'].map((f) => join(DATA, f));
const tables = SHARDS.map(readCsv);
const all = union(...tables);
const features = all.columns;

const engines = await Promise.all(SHARDS.map((path, i) => DataEngine.open([{ name: `shard${i + 1}`, path, projects: [TOKEN] }])));
t.teardown(async () => {
  for (const e of engines) await e.close();
});
/** Minimum group size 1: the exactness checks compare with the central figure over every row. */
const open = { minGroupSize: 1 };
const initiator: ChainNode = { data: undefined, locals: new MapLocals() };
const workers: ChainNode[] = engines.map((data) => ({ data, locals: new MapLocals(), privacy: open }));
let step = 0;
/** A chain on a fresh step index (masks are kept per step). */
const chain = (init: Operation, op: Operation, final: Operation, ws: ChainNode[] = workers) =>
  sequential(initiator, ws, init, op, final, { stepIndex: step++ });

const HOUSE_AGE_30: Query = { where: { feature: 'HouseAge', op: '>', value: 30 } };
const keep30 = (r: number[]) => (r[features.indexOf('HouseAge')] as number) > 30;
const filtered = { columns: features, rows: all.rows.filter(keep30) };

t.test('Sum equals the central sum, with and without a filter', async (t) => {
  for (const [label, query, table] of [
    ['all rows', undefined, all],
    ['HouseAge > 30', HOUSE_AGE_30, filtered],
  ] as const) {
    const c = await chain(
      { kind: 'SumInit', features },
      query ? { kind: 'Sum', features, query } : { kind: 'Sum', features },
      { kind: 'SumFinal', features },
    );
    const r = c.result as SumProduct;
    for (const f of features) {
      const central = fsum(column(table, f));
      t.ok(relErr(r.sum[f] as number, central) <= 1e-12, `${label}, ${f}: ${r.sum[f]} vs ${central}`);
      t.equal(r.count[f], table.rows.length);
    }
    t.equal(r.suppressed, 0);
    // Every hop is masked: each slot of a worker's product is a uniform ring element, not its sum.
    const [h0, h1] = c.hops as MaskedRunning[];
    t.equal(h0?.family, 'sum');
    t.not(h1?.n[1], tables[0]?.rows.length, 'worker 1 count is masked');
    t.ok(
      (h1?.x ?? []).every((v, i) => Math.abs(fromFixed(BigInt(`0x${v}`)) - fsum(column(tables[0] ?? all, features[i] as string))) > 1),
      'worker 1 sums are masked',
    );
  }
});

t.test('Variance and standard deviation equal the central two-pass figures (1e-9 relative)', async (t) => {
  for (const ddof of [1, 0] as const) {
    const c = await chain(
      { kind: 'VarianceInit', features },
      { kind: 'Variance', features },
      { kind: 'VarianceFinal', features, ddof },
    );
    const r = c.result as VarianceProduct;
    t.equal(r.ddof, ddof);
    for (const f of features) {
      const xs = column(all, f);
      const v = varianceOf(xs, ddof);
      t.ok(relErr(r.variance[f] as number, v) <= 1e-9, `ddof ${ddof}, ${f}: ${r.variance[f]} vs ${v} (rel ${relErr(r.variance[f] as number, v).toExponential(1)})`);
      t.ok(relErr(r.std[f] as number, Math.sqrt(v)) <= 1e-9, `${f} std`);
      t.ok(relErr(r.mean[f] as number, meanOf(xs)) <= 1e-12, `${f} mean`);
      t.equal(r.count[f], xs.length);
    }
  }
});

t.test('Variance stays exact far from 0 with a shift; a hostile scale shows why', async (t) => {
  const dir = t.testdir({
    'a.csv': `x\n${Array.from({ length: 40 }, (_, i) => 1e6 + (i % 7) * 0.001).join('\n')}\n`,
    'b.csv': `x\n${Array.from({ length: 30 }, (_, i) => 1e6 + (i % 5) * 0.001 + 0.0005).join('\n')}\n`,
  });
  const es = await Promise.all(['a.csv', 'b.csv'].map((f) => DataEngine.open([{ name: f, path: join(dir, f), projects: [TOKEN] }])));
  t.teardown(async () => {
    for (const e of es) await e.close();
  });
  const ws = es.map((data) => ({ data, locals: new MapLocals(), privacy: open }));
  const xs = [...Array.from({ length: 40 }, (_, i) => 1e6 + (i % 7) * 0.001), ...Array.from({ length: 30 }, (_, i) => 1e6 + (i % 5) * 0.001 + 0.0005)];
  const central = varianceOf(xs);
  const shifted = await chain({ kind: 'VarianceInit', features: ['x'] }, { kind: 'Variance', features: ['x'], shift: [1e6] }, { kind: 'VarianceFinal', features: ['x'] }, ws);
  const v = (shifted.result as VarianceProduct).variance.x as number;
  t.ok(relErr(v, central) <= 1e-9, `shifted: ${v} vs ${central} (rel ${relErr(v, central).toExponential(1)})`);
  const bad = await caught(
    runOperation(ctxOf(ws[0] as ChainNode, { kind: 'Variance', features: ['x'], shift: [1, 2] }, [shifted.hops[0]], { stepIndex: step - 1 })),
  );
  t.equal(bad.code, 'BAD_QUERY');
  t.match(bad.message, /"shift" has 2 entries for 1 features/);
});

t.test('GroupMean equals the central per-group means', async (t) => {
  const by = ['MedHouseValDiscrete'];
  const c = await chain(
    { kind: 'GroupMeanInit', by, domain: [[0, 1]], features },
    { kind: 'GroupMean', by, features },
    { kind: 'GroupMeanFinal', by, features },
  );
  const r = c.result as GroupMeanProduct;
  t.same(r.by, by);
  t.same(
    r.groups.map((g) => g.key),
    [[0], [1]],
  );
  const label = column(all, 'MedHouseValDiscrete');
  for (const g of r.groups) {
    const rows = { columns: features, rows: all.rows.filter((_, i) => label[i] === g.key[0]) };
    t.equal(g.count, rows.rows.length, `group ${g.key}`);
    for (const f of features) {
      t.ok(relErr(g.mean[f] as number, meanOf(column(rows, f))) <= 1e-9, `group ${g.key} ${f}`);
      t.equal(g.n[f], rows.rows.length);
    }
  }
  const [h0] = c.hops as MaskedRunning[];
  t.same(h0?.keys, ['[0]', '[1]'], 'the key layout is public, the values masked');
});

t.test('MinMax equals the central extrema', async (t) => {
  const c = await chain({ kind: 'MinMaxInit', features }, { kind: 'MinMax', features, query: HOUSE_AGE_30 }, { kind: 'MinMaxFinal', features });
  const r = c.result as MinMaxProduct;
  for (const f of features) {
    const xs = column(filtered, f);
    t.equal(r.min[f], Math.min(...xs), `${f} min`);
    t.equal(r.max[f], Math.max(...xs), `${f} max`);
  }
});

t.test('Histogram equals the central histogram; Quantiles are within the stated bound', async (t) => {
  const f = 'MedInc';
  const xs = column(all, f);
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  const bins = [{ lo: 0, hi: 10, count: 20 }];
  const h = (await chain({ kind: 'HistogramInit', features: [f], bins }, { kind: 'Histogram', features: [f], bins }, { kind: 'HistogramFinal', features: [f], bins }))
    .result as HistogramProduct;
  const w = 10 / 20;
  const counts = new Array<number>(20).fill(0);
  let above = 0;
  for (const x of xs) {
    if (x > 10) above++;
    else {
      const b = Math.min(19, Math.floor(x / w));
      counts[b] = (counts[b] ?? 0) + 1;
    }
  }
  t.same(h.histograms[0]?.counts, counts);
  t.equal(h.histograms[0]?.above, above);
  t.equal(h.histograms[0]?.below, 0);
  t.same(h.histograms[0]?.edges, binEdges(bins[0] as { lo: number; hi: number; count: number }));

  const q = [0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1];
  for (const count of [100, 1000]) {
    const qb = [{ lo, hi, count }];
    const r = (await chain({ kind: 'QuantilesInit', features: [f], bins: qb }, { kind: 'Quantiles', features: [f], bins: qb }, { kind: 'QuantilesFinal', features: [f], bins: qb, q }))
      .result as QuantilesProduct;
    const bound = (hi - lo) / count;
    t.equal(r.errorBound[f], bound);
    t.equal(r.count[f], xs.length);
    const sorted = [...xs].sort((a, b) => a - b);
    for (const e of r.quantiles[f] ?? []) {
      const exact = quantileDisc(sorted, quantileRank(e.q, xs.length));
      const slack = 1e-12 * Math.abs(hi);
      t.ok(Math.abs((e.value as number) - exact) <= bound + slack, `${count} bins, q=${e.q}: ${e.value} vs ${exact} (bound ${bound})`);
      t.ok((e.low as number) - slack <= exact && exact <= (e.high as number) + slack, `q=${e.q}: exact in [${e.low}, ${e.high}]`);
    }
  }
});

t.test('Covariance and correlation equal the central matrices', async (t) => {
  const fs = ['MedInc', 'HouseAge', 'Latitude', 'Longitude', 'Population'];
  const r = (await chain({ kind: 'CovarianceInit', features: fs }, { kind: 'Covariance', features: fs }, { kind: 'CovarianceFinal', features: fs }))
    .result as CovarianceProduct;
  t.equal(r.count, all.rows.length);
  for (const [j, a] of fs.entries()) {
    t.ok(relErr(r.mean[j] as number, meanOf(column(all, a))) <= 1e-12, `${a} mean`);
    for (const [k, b] of fs.entries()) {
      const cov = covarianceOf(column(all, a), column(all, b));
      const scale = Math.sqrt(varianceOf(column(all, a)) * varianceOf(column(all, b)));
      const got = r.covariance[j]?.[k] as number;
      t.ok(Math.abs(got - cov) <= 1e-9 * Math.max(Math.abs(cov), 1e-3 * scale), `cov(${a}, ${b}): ${got} vs ${cov}`);
      t.ok(Math.abs((r.correlation[j]?.[k] as number) - cov / scale) <= 1e-9, `corr(${a}, ${b})`);
    }
  }
});

t.test('chains refuse inputs of another estimator, bad shapes, and missing masks', async (t) => {
  const w = workers[0] as ChainNode;
  const sumStart = await runOperation(ctxOf(initiator, { kind: 'SumInit', features: ['MedInc'] }, [], { stepIndex: 900 }));
  const wrong = await caught(runOperation(ctxOf(w, { kind: 'Variance', features: ['MedInc'] }, [sumStart], { stepIndex: 900 })));
  t.equal(wrong.code, 'OPERATION_FAILED');
  t.match(wrong.message, /not a variance running value/);
  const wrongFinal = await caught(runOperation(ctxOf(initiator, { kind: 'HistogramFinal', features: ['MedInc'], bins: [{ lo: 0, hi: 1, count: 1 }] }, [sumStart], { stepIndex: 900 })));
  t.equal(wrongFinal.code, 'OPERATION_FAILED');
  const shape = await caught(runOperation(ctxOf(w, { kind: 'Sum', features: ['MedInc', 'HouseAge'] }, [sumStart], { stepIndex: 900 })));
  t.match(shape.message, /slots/);
  for (const bad of [{ family: 'sum', n: [-1, 0], x: ['0'.repeat(64)] }, { family: 'sum', n: [0, 0], x: ['xyz'] }, { family: 'sum', n: [INT_RING, 0], x: ['0'.repeat(64)] }]) {
    t.equal((await caught(runOperation(ctxOf(w, { kind: 'Sum', features: ['MedInc'] }, [bad], { stepIndex: 900 })))).code, 'OPERATION_FAILED');
  }
  const dup = await caught(runOperation(ctxOf(initiator, { kind: 'SumInit', features: ['a', 'a'] }, [], { stepIndex: 901 })));
  t.equal(dup.code, 'BAD_QUERY');
  const fresh = await caught(runOperation(ctxOf({ data: undefined, locals: new MapLocals() }, { kind: 'SumFinal', features: ['MedInc'] }, [sumStart], { stepIndex: 900 })));
  t.equal(fresh.code, 'INTERNAL');
  const notNumeric = await caught(runOperation(ctxOf(w, { kind: 'Sum', features: ['nope'] }, [await runOperation(ctxOf(initiator, { kind: 'SumInit', features: ['nope'] }, [], { stepIndex: 902 }))], { stepIndex: 902 })));
  t.equal(notNumeric.code, 'BAD_QUERY');
  t.equal(notNumeric.path, 'operation.features[0]');
  // A retried init reuses its masks.
  const again = await runOperation(ctxOf(initiator, { kind: 'SumInit', features: ['MedInc'] }, [], { stepIndex: 900, attempt: 2 }));
  t.same(again, sumStart);
});

t.test("an initiator with a durable secret derives its masks: the init writes nothing, a restarted node's final unmasks exactly, each chain has masks of its own, kept masks win", async (t) => {
  const secret = randomBytes(32);
  const dir = t.testdir({});
  const ops = [
    { kind: 'MeanInit', features },
    { kind: 'Mean', features },
    { kind: 'MeanFinal', features },
  ] as const satisfies Operation[];
  const reference = (await sequential({ data: undefined, locals: new MapLocals() }, workers, ...ops, { stepIndex: 950 })).result as MeanProduct;
  const at = (artifactId: string, stepIndex = 950) => ({ artifactId, stepIndex });
  const init = (store: LocalsStore, artifactId: string, stepIndex = 950) =>
    runOperation(ctxOf({ data: undefined, locals: store.for(artifactId) }, ops[0], [], at(artifactId, stepIndex))) as Promise<MaskedRunning>;

  const before = new LocalsStore(dir, undefined, secret);
  const start = await init(before, 'a-1');
  t.same(readdirSync(dir), [], 'nothing written: no file, no fsync');
  t.same(await init(before, 'a-1'), start, 'a retried init has the same masks');
  t.notSame((await init(before, 'a-2')).x, start.x, 'another artifact, other masks');
  t.notSame((await init(before, 'a-1', 951)).n, start.n, 'another step, other masks');
  let running: unknown = start;
  for (const w of workers) running = await runOperation(ctxOf(w, ops[1], [running], at('a-1')));
  // The node restarts: a new LocalsStore over the same folder and the same secret.
  const after = new LocalsStore(dir, undefined, secret);
  const result = (await runOperation(ctxOf({ data: undefined, locals: after.for('a-1') }, ops[2], [running], at('a-1')))) as MeanProduct;
  t.same(result.count, reference.count);
  for (const f of features) t.ok(relErr(result.mean[f] as number, reference.mean[f] as number) <= 1e-12, `${f}: ${result.mean[f]}`);
  const other = await caught(
    Promise.resolve().then(() => runOperation(ctxOf({ data: undefined, locals: new MapLocals() }, ops[2], [running], at('a-1')))),
  );
  t.equal(other.code, 'INTERNAL', 'a node without the secret or the masks cannot unmask');

  // Masks drawn and kept (a node without a secret, or an older version) are the ones used after an upgrade.
  const kept = new LocalsStore(dir);
  const old = await init(kept, 'a-3');
  t.same(await init(new LocalsStore(dir, undefined, secret), 'a-3'), old, 'kept masks win over derived ones');
});

t.test('the fixed-point ring is exact and hides magnitudes', async (t) => {
  // 128 fractional bits: every double in [2^-76, 2^100) is a ring element exactly.
  for (const x of [0, 1, -1, 0.1, -123456.789, 2 ** 60, -(2 ** 99), 3.14159e20, 2 ** -11, 1e-9, -1e-15, 1e-20, 2 ** -76, 1e12 + 0.5, 2 ** 100 - 2 ** 47]) {
    t.equal(fromFixed(toFixed(x)), x, `${x} round-trips`);
  }
  for (const x of [1e-30, -3e-35, 2 ** -130]) t.ok(Math.abs(fromFixed(toFixed(x)) - x) <= 2 ** -129, `${x} within 2^-129`);
  t.throws(() => toFixed(2 ** 100), { code: 'BAD_QUERY' });
  t.throws(() => toFixed(-(2 ** 100)), { code: 'BAD_QUERY' });
  t.throws(() => toFixed(Number.NaN), { code: 'OPERATION_FAILED' });
  // Exact addition: the sum of many values is the sum of their fixed-point images.
  const values = [1e15, 1, -1e15, 1e-3, 7.25];
  const total = values.reduce((acc, v) => acc + toFixed(v), 0n);
  t.equal(fromFixed(total % (1n << 256n)), 1 + 1e-3 + 7.25);
  // A running value whose total is beyond what any chain can reach (+-2^126) is refused, not released.
  const start = (await runOperation(ctxOf(initiator, { kind: 'SumInit', features: ['MedInc'] }, [], { stepIndex: 950 }))) as MaskedRunning;
  const far = { ...start, x: [((BigInt(`0x${start.x[0]}`) + (1n << 255n)) % (1n << 256n)).toString(16).padStart(64, '0')] };
  const refused = await caught(runOperation(ctxOf(initiator, { kind: 'SumFinal', features: ['MedInc'] }, [far], { stepIndex: 950 })));
  t.equal(refused.code, 'OPERATION_FAILED');
  t.match(refused.message, /out of range/);
});

t.test('hostile feature names and values stay data, nulls are skipped, empty results are null', async (t) => {
  const dir = t.testdir({
    'h.csv': '__proto__,constructor,"a""b",g\n1,10,,x\n2,,5,x\n3,30,6,"y\'; DROP"\n,40,7,x\n5,50,8,"y\'; DROP"\n6,60,9,x\n',
  });
  const data = await DataEngine.open([{ name: 'h', path: join(dir, 'h.csv'), projects: [TOKEN] }]);
  t.teardown(() => data.close());
  const ws: ChainNode[] = [{ data, locals: new MapLocals(), privacy: { minGroupSize: 1 } }];
  const fs = ['__proto__', 'constructor', 'a"b'];
  const c = await chain({ kind: 'VarianceInit', features: fs }, { kind: 'Variance', features: fs }, { kind: 'VarianceFinal', features: fs }, ws);
  // The product as the initiator makes it (msgpackr renames a `__proto__` key when it decodes a map).
  const v = (await runOperation(ctxOf(initiator, { kind: 'VarianceFinal', features: fs }, [c.hops.at(-1)], { stepIndex: step - 1 }))) as VarianceProduct;
  t.ok(Object.hasOwn(v.mean, '__proto__'), '__proto__ is an own key');
  t.equal(Object.getPrototypeOf(v.mean), Object.prototype);
  const proto: string = '__proto__';
  const ctor: string = 'constructor';
  t.equal(v.count[proto], 5);
  t.equal(v.mean[proto], 17 / 5);
  t.ok(relErr(v.variance[ctor] as number, varianceOf([10, 30, 40, 50, 60])) <= 1e-12);
  t.equal(v.count['a"b'], 5);
  const gm = (await chain(
    { kind: 'GroupMeanInit', by: ['g'], domain: [['x', "y'; DROP", 'z']], features: ['a"b'] },
    { kind: 'GroupMean', by: ['g'], features: ['a"b'] },
    { kind: 'GroupMeanFinal', by: ['g'], features: ['a"b'] },
    ws,
  )).result as GroupMeanProduct;
  t.same(gm.groups, [
    { key: ['x'], count: 4, mean: { 'a"b': 7 }, n: { 'a"b': 3 } },
    { key: ["y'; DROP"], count: 2, mean: { 'a"b': 7 }, n: { 'a"b': 2 } },
  ]);
  const none = { where: { feature: '__proto__', op: '>' as const, value: 100 } };
  const empty = (await chain({ kind: 'VarianceInit', features: fs }, { kind: 'Variance', features: fs, query: none }, { kind: 'VarianceFinal', features: fs }, ws))
    .result as VarianceProduct;
  t.same(empty.mean[ctor], null);
  t.same(empty.variance['a"b'], null);
  const one = (await chain({ kind: 'CovarianceInit', features: ['constructor'] }, { kind: 'Covariance', features: ['constructor'], query: { where: { feature: 'constructor', op: '==', value: 10 } } }, { kind: 'CovarianceFinal', features: ['constructor'] }, ws))
    .result as CovarianceProduct;
  t.equal(one.count, 1);
  t.same(one.covariance, [[null]], 'one row: no sample covariance');
  t.same(one.correlation, [[null]]);
});
