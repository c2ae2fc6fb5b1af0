// Why: OPERATIONS.md promises exact counts and means within 1e-9 of the central figure, and a mean that hid its sums behind float offsets of up to 2^31 missed it (5e-8 relative on a feature summing to 0.8). Every masking estimator now shares one exact masked sum (lib/ops/estimators/masked.ts); these chains probe it where a fixed-point encoding breaks first: values of magnitude 1e-9 and 1e12, negative values, 1,000 chain links, and a sum too large to encode. Means are held to 1e-12 relative of the exact (BigInt) central mean, counts to exact integers.
import { join } from 'node:path';
import t from 'tap';
import type { DataEngine } from '../lib/data/engine.ts';
import { DataEngine as Engine } from '../lib/data/engine.ts';
import type { CountProduct, GroupCountProduct, MeanProduct, SumProduct } from '../lib/ops/index.ts';
import type { Operation } from '../protocols/entities.ts';
import { exactMean, exactSum, relErr } from './helpers/central.ts';
import { type ChainNode, caught, MapLocals, seeded, sequential, TOKEN } from './helpers/chain.ts';
import { fsum } from './helpers/stats.ts';

const open = { minGroupSize: 1 };
const initiator: ChainNode = { data: undefined, locals: new MapLocals() };
let step = 0;
const chain = (ws: ChainNode[], init: Operation, op: Operation, final: Operation) =>
  sequential(initiator, ws, init, op, final, { stepIndex: step++ });
const mean = async (ws: ChainNode[], features: string[]) =>
  (await chain(ws, { kind: 'MeanInit', features }, { kind: 'Mean', features }, { kind: 'MeanFinal', features })).result as MeanProduct;

/** The edges: a generator of one feature's values per magnitude. */
const EDGES: Array<[string, (r: () => number) => number]> = [
  ['1e-9', (r) => 1e-9 * (0.5 + r())],
  ['1e12', (r) => 1e12 * (0.5 + r())],
  ['negative', (r) => -1e3 * (0.5 + r())],
  ['mixed sign', (r) => 1e6 * (r() - 0.5)],
];

/**
 * A worker's data engine that holds rows in memory: the chain under test is the masking, so the
 * local aggregates are the exact ones (correctly rounded), as DuckDB's compensated sum gives them.
 */
function memoryEngine(columns: Record<string, number[]>): DataEngine {
  const rows = Object.values(columns)[0]?.length ?? 0;
  const local = (f: string) => columns[f] ?? [];
  const engine = {
    count: async () => rows,
    sums: async (_token: string, features: string[]) => ({
      sums: Object.fromEntries(features.map((f) => [f, exactSum(local(f))])),
      counts: Object.fromEntries(features.map((f) => [f, local(f).length])),
    }),
    moments: async (_token: string, features: string[]) =>
      Object.fromEntries(
        features.map((f) => [f, { n: local(f).length, sum: exactSum(local(f)), m2: 0, min: null, max: null, shifted: exactSum(local(f)) }]),
      ),
    groupCounts: async () => [{ key: [rows % 3], count: rows }],
  };
  return engine as unknown as DataEngine;
}

t.test('1,000 chain links: means within 1e-12 of the exact mean at every edge, counts exact', async (t) => {
  const r = seeded(11);
  const features = EDGES.map(([label]) => label);
  // 15 rows per link, 15,000 rows in all (the size the defect was found at).
  const shards = Array.from({ length: 1000 }, () =>
    Object.fromEntries(EDGES.map(([label, gen]) => [label, Array.from({ length: 15 }, () => gen(r))])),
  );
  const ws: ChainNode[] = shards.map((s) => ({ data: memoryEngine(s), locals: new MapLocals(), privacy: open }));
  const m = await mean(ws, features);
  for (const f of features) {
    const xs = shards.flatMap((s) => s[f] as number[]);
    const exact = exactMean(xs);
    const err = relErr(m.mean[f] as number, exact);
    t.ok(err <= 1e-12, `${f}: ${m.mean[f]} vs exact ${exact} (rel ${err.toExponential(2)})`);
    t.equal(m.count[f], 15_000, `${f}: count exact`);
  }
  t.same((await chain(ws, { kind: 'CountInit' }, { kind: 'Count' }, { kind: 'CountFinal' })).result as CountProduct, { count: 15_000 });
  const gc = (await chain(ws, { kind: 'GroupCountInit', by: ['g'], domain: [[0, 1, 2]] }, { kind: 'GroupCount', by: ['g'] }, { kind: 'GroupCountFinal', by: ['g'] }))
    .result as GroupCountProduct;
  t.same(gc.groups, [{ key: [0], count: 15_000 }], 'group counts exact');
});

t.test('the feature of the report: values summing to 0.8 over 15,000 rows, 1,000 links', async (t) => {
  const r = seeded(5);
  const shards = Array.from({ length: 1000 }, () => ({ p: Array.from({ length: 15 }, () => (0.8 / 15_000) * 2 * r()) }));
  const ws: ChainNode[] = shards.map((s) => ({ data: memoryEngine(s), locals: new MapLocals(), privacy: open }));
  const m = await mean(ws, ['p']);
  const exact = exactMean(shards.flatMap((s) => s.p));
  const err = relErr(m.mean.p as number, exact);
  t.ok(err <= 1e-12, `${m.mean.p} vs exact ${exact} (rel ${err.toExponential(2)})`);
});

t.test('real shards through DuckDB: Mean, Sum and Count at magnitudes 1e-9 and 1e12 and with negatives', async (t) => {
  const r = seeded(3);
  const sizes = [5000, 7000, 3000];
  const shards = sizes.map((n) => Object.fromEntries(EDGES.map(([label, gen]) => [label, Array.from({ length: n }, () => gen(r))])));
  const names = EDGES.map((_, i) => `f${i}`);
  const dir = t.testdir(
    Object.fromEntries(
      shards.map((s, k) => [
        `s${k}.csv`,
        `${names.join(',')}\n${Array.from({ length: sizes[k] as number }, (_, i) => EDGES.map(([label]) => String((s[label] as number[])[i])).join(',')).join('\n')}\n`,
      ]),
    ),
  );
  const engines = await Promise.all(shards.map((_, k) => Engine.open([{ name: `s${k}`, path: join(dir, `s${k}.csv`), projects: [TOKEN] }])));
  t.teardown(async () => {
    for (const e of engines) await e.close();
  });
  const ws: ChainNode[] = engines.map((data) => ({ data, locals: new MapLocals(), privacy: open }));
  const m = await mean(ws, names);
  const s = (await chain(ws, { kind: 'SumInit', features: names }, { kind: 'Sum', features: names }, { kind: 'SumFinal', features: names })).result as SumProduct;
  for (const [i, [label]] of EDGES.entries()) {
    const f = names[i] as string;
    // What DuckDB reads back from the CSV is the shortest decimal of each double: the same doubles.
    const xs = shards.flatMap((sh) => sh[label] as number[]);
    const exact = exactMean(xs);
    const err = relErr(m.mean[f] as number, exact);
    t.ok(err <= 1e-12, `${label}: mean ${m.mean[f]} vs exact ${exact} (rel ${err.toExponential(2)})`);
    t.equal(m.count[f], 15_000, `${label}: count exact`);
    t.ok(relErr(s.sum[f] as number, exactSum(xs)) <= 1e-12, `${label}: sum ${s.sum[f]} vs ${exactSum(xs)}`);
    t.ok(relErr(fsum(xs), exactSum(xs)) <= 1e-15, `${label}: the compensated central sum agrees with the exact one`);
  }
  t.same((await chain(ws, { kind: 'CountInit' }, { kind: 'Count' }, { kind: 'CountFinal' })).result, { count: 15_000 });
});

t.test('a sum too large to encode is refused with a clear error, never wrapped', async (t) => {
  const ws: ChainNode[] = [{ data: memoryEngine({ x: [2 ** 99, 2 ** 99] }), locals: new MapLocals(), privacy: open }];
  const e = await caught(mean(ws, ['x']));
  t.equal(e.code, 'BAD_QUERY');
  t.equal(e.retryable, false);
  t.match(e.message, /too large to aggregate exactly \(\|x\| >= 2\^100\)/);
  // Just below the bound: exact.
  const below = (await mean([{ data: memoryEngine({ x: [2 ** 98, 2 ** 98 + 2 ** 46] }), locals: new MapLocals(), privacy: open }], ['x'])).mean.x;
  t.equal(below, 2 ** 98 + 2 ** 45);
});
