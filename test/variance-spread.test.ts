// Why: a Variance job takes each feature's M2 from compensated sums of (x - shift) and its square in one scan
// (DataEngine.spread), cheaper than DuckDB's streaming var_pop; that form cancels when the shift is far from the
// data in standard deviations, and then the job falls back to var_pop. These cases are where it would break: data 3e12 standard deviations from 0, a shift
// at the bound (200 and 300 local standard deviations away), no shift, an absurd shift, constant columns,
// shards each far from the shared shift in their own (tiny) spread. Every M2 is held to 1e-10 of the exact
// BigInt figure, and the test says which way it was taken, so a bound loosened or a fallback lost shows here.
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { DataEngine, SPREAD_MAX_RHO, type Spread } from '../lib/data/engine.ts';
import type { VarianceProduct } from '../lib/ops/index.ts';
import { exactM2, exactMean, exactSum, relErr } from './helpers/central.ts';
import { type ChainNode, MapLocals, seeded, sequential, TOKEN } from './helpers/chain.ts';

const csv = (cols: Record<string, Array<number | null>>) => {
  const names = Object.keys(cols);
  const rows = (cols[names[0] as string] ?? []).map((_, i) => names.map((n) => cols[n]?.[i] ?? '').join(','));
  return `${names.join(',')}\n${rows.join('\n')}\n`;
};

async function engineOf(t: Test, cols: Record<string, Array<number | null>>): Promise<DataEngine> {
  const dir = t.testdir({ 'd.csv': csv(cols) });
  const e = await DataEngine.open([{ name: 'd', path: join(dir, 'd.csv'), projects: [TOKEN] }]);
  t.teardown(() => e.close());
  return e;
}

const r = seeded(7);
// 50,000 values near 1e9 (one ulp is 2^-23), standard deviation ~2.9e-4: 3.4e12 standard deviations from 0.
const far = Array.from({ length: 50_000 }, () => 1e9 + (r() - 0.5) * 1e-3);
const farMean = exactMean(far);
const farStd = Math.sqrt(exactM2(far) / far.length);

t.test('far from 0, tiny spread: M2 within 1e-10 of exact for any shift; the one-scan form only within 256 std', async (t) => {
  const e = await engineOf(t, { x: far });
  const cases: Array<[string, number, Spread['from']]> = [
    ['at the mean', farMean, 'squares'],
    ['200 std away', farMean + 200 * farStd, 'squares'],
    ['-250 std away', farMean - 250 * farStd, 'squares'],
    ['300 std away', farMean + 300 * farStd, 'var_pop'],
    ['no shift (0)', 0, 'var_pop'],
    ['absurd (1e25)', 1e25, 'var_pop'],
  ];
  const m2 = exactM2(far);
  for (const [label, shift, from] of cases) {
    const s = (await e.spread(TOKEN, ['x'], undefined, [shift])).x as Spread;
    t.equal(s.from, from, `${label}: M2 from ${from}`);
    t.equal(s.n, far.length);
    t.ok(relErr(s.m2, m2) <= 1e-10, `${label}: m2 ${s.m2} vs exact ${m2} (rel ${relErr(s.m2, m2).toExponential(2)})`);
    t.ok(relErr(s.sum, exactSum(far)) <= 1e-15, `${label}: the sum is the compensated sum of x, whatever the shift`);
    if (shift !== 1e25) {
      // x - shift is exact here (Sterbenz) or rounded once; the shifted sum is the compensated sum of those.
      const d = exactSum(far.map((x) => x - shift));
      t.ok(Math.abs(s.shifted - d) <= 1e-15 * Math.abs(d) + 1e-6 * farStd, `${label}: shifted ${s.shifted} vs ${d}`);
    }
  }
  t.equal(SPREAD_MAX_RHO, 2 ** 16, 'the bound the cases above sit on either side of (256 std)');
});

t.test('ordinary data, its spread, constant columns, one value, nulls, none', async (t) => {
  const r2 = seeded(8);
  const wide = Array.from({ length: 20_000 }, () => (r2() - 0.5) * 2000);
  const e = await engineOf(t, {
    wide,
    konst: wide.map(() => 7.25),
    atShift: wide.map(() => 3),
    one: wide.map((_, i) => (i === 5 ? 42 : null)),
    gappy: wide.map((x, i) => (i % 3 === 0 ? null : x)),
  });
  const got = await e.spread(TOKEN, ['wide', 'konst', 'atShift', 'one', 'gappy'], undefined, [0.3, 0, 3, 0, 0]);
  t.equal(got.wide?.from, 'squares');
  t.ok(relErr(got.wide?.m2 as number, exactM2(wide)) <= 1e-12, `wide: ${got.wide?.m2} vs ${exactM2(wide)}`);
  // A constant that is not the shift: Q - D^2/n may not be exactly 0, so it takes var_pop, which is.
  t.same({ n: got.konst?.n, m2: got.konst?.m2, sum: got.konst?.sum }, { n: 20_000, m2: 0, sum: 7.25 * 20_000 });
  t.same(got.atShift, { n: 20_000, sum: 60_000, shifted: 0, m2: 0, from: 'squares' }, 'every value equal to the shift: 0, in one scan');
  t.same(got.one, { n: 1, sum: 42, shifted: 42, m2: 0, from: 'squares' }, 'one value: no spread');
  const gappy = wide.filter((_, i) => i % 3 !== 0);
  t.equal(got.gappy?.n, gappy.length, 'nulls are not counted');
  t.equal(got.gappy?.shifted, got.gappy?.sum, 'no shift: the shifted sum is the sum');
  t.same(await e.spread(TOKEN, ['gappy']), { gappy: got.gappy }, 'no shifts given is a shift of 0');
  t.ok(relErr(got.gappy?.m2 as number, exactM2(gappy)) <= 1e-12);
  t.same((await e.spread(TOKEN, ['wide'], { where: { feature: 'wide', op: '>', value: 1e9 } })).wide, { n: 0, sum: 0, shifted: 0, m2: 0, from: 'squares' });
  // MinMax's query (DataEngine.extremes): count, min and max only.
  t.same(await e.extremes(TOKEN, ['one', 'gappy']), {
    one: { n: 1, min: 42, max: 42 },
    gappy: { n: gappy.length, min: Math.min(...gappy), max: Math.max(...gappy) },
  });
  t.same((await e.extremes(TOKEN, ['wide'], { where: { feature: 'wide', op: '>', value: 1e9 } })).wide, { n: 0, min: null, max: null });
});

t.test('a Variance chain over shards each far from the shared shift in its own spread: exact', async (t) => {
  // Worker a's values sit near 1e6, worker b's near 1e6 + 1, each with a spread of ~1e-7: the shift (the
  // global mean) is 5e6 local standard deviations from each local mean, so each worker falls back to
  // var_pop, while the merge about the shared shift is well conditioned (the global std is ~0.5).
  const r3 = seeded(9);
  const a = Array.from({ length: 3000 }, () => 1e6 + (r3() - 0.5) * 3e-7);
  const b = Array.from({ length: 2000 }, () => 1e6 + 1 + (r3() - 0.5) * 3e-7);
  const es = [await engineOf(t, { x: a }), await engineOf(t, { x: b })];
  const all = [...a, ...b];
  const shift = exactMean(all);
  for (const [i, e] of es.entries()) t.equal((await e.spread(TOKEN, ['x'], undefined, [shift])).x?.from, 'var_pop', `shard ${i + 1} falls back`);
  const ws: ChainNode[] = es.map((data) => ({ data, locals: new MapLocals(), privacy: { minGroupSize: 1 } }));
  const initiator: ChainNode = { data: undefined, locals: new MapLocals() };
  for (const ddof of [0, 1] as const) {
    const c = await sequential(
      initiator,
      ws,
      { kind: 'VarianceInit', features: ['x'] },
      { kind: 'Variance', features: ['x'], shift: [shift] },
      { kind: 'VarianceFinal', features: ['x'], ddof },
      { stepIndex: ddof },
    );
    const v = c.result as VarianceProduct;
    const exact = exactM2(all) / (all.length - ddof);
    t.ok(relErr(v.variance.x as number, exact) <= 1e-10, `ddof ${ddof}: ${v.variance.x} vs exact ${exact} (rel ${relErr(v.variance.x as number, exact).toExponential(2)})`);
    t.ok(relErr(v.mean.x as number, exactMean(all)) <= 1e-15, `mean ${v.mean.x}`);
    t.equal(v.count.x, all.length);
  }
});
