// Privacy is enforced by each worker on what it contributes: a group, bin or feature with fewer rows than the minimum group size (5 unless the node says otherwise) is left out, and differential-privacy noise is charged to a per-project budget that refuses queries past it. These chains run in-process over tiny shards whose small groups are known.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { DataEngine } from '../lib/data/engine.ts';
import { discreteLaplace, FileBudgetLedger, laplace } from '../lib/ops/estimators/privacy.ts';
import type {
  CountProduct,
  CovarianceProduct,
  GroupCountProduct,
  GroupMeanProduct,
  HistogramProduct,
  MeanProduct,
  MinMaxProduct,
  QuantilesProduct,
  SumProduct,
  VarianceProduct,
} from '../lib/ops/index.ts';
import { runOperation } from '../lib/ops/index.ts';
import type { OpContext } from '../lib/ops/context.ts';
import type { Operation } from '../protocols/entities.ts';
import { type ChainNode, caught, ctxOf, MapLocals, seeded, sequential, TOKEN } from './helpers/chain.ts';

/** Deterministic "random bytes" for reproducible noise. */
function seededBytes(seed: number): (n: number) => Uint8Array {
  const r = seeded(seed);
  return (n) => Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
}

// Worker 1: rome 6 rows, paris 3, oslo 5 (one with no n). Worker 2: rome 2, paris 4, oslo 7.
const rows1 = [
  ...[1, 2, 3, 4, 5, 6].map((n) => `rome,${n}`),
  ...[10, 20, 30].map((n) => `paris,${n}`),
  ...['7', '8', '9', '10', ''].map((n) => `oslo,${n}`),
];
const rows2 = [...[100, 200].map((n) => `rome,${n}`), ...[1, 2, 3, 4].map((n) => `paris,${n}`), ...[1, 1, 2, 3, 5, 8, 13].map((n) => `oslo,${n}`)];
const dir = mkdtempSync(join(tmpdir(), 'fdl-privacy-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const td = t.testdir({ 'w1.csv': `city,n\n${rows1.join('\n')}\n`, 'w2.csv': `city,n\n${rows2.join('\n')}\n` });
const engines = await Promise.all(['w1.csv', 'w2.csv'].map((f) => DataEngine.open([{ name: f, path: join(td, f), projects: [TOKEN] }])));
t.teardown(async () => {
  for (const e of engines) await e.close();
});

const initiator: ChainNode = { data: undefined, locals: new MapLocals() };
/** Workers with no privacy settings: the defaults apply (minimum group size 5). */
const defaults: ChainNode[] = engines.map((data) => ({ data, locals: new MapLocals() }));
let step = 0;
const chain = (init: Operation, op: Operation, final: Operation, ws: ChainNode[] = defaults, extra: Partial<OpContext> = {}) =>
  sequential(initiator, ws, init, op, final, { stepIndex: step++, ...extra });
const cities = [['rome', 'paris', 'oslo', 'lima']];

t.test('minimum group size 5 by default: small groups are not contributed', async (t) => {
  const gc = (await chain({ kind: 'GroupCountInit', by: ['city'], domain: cities }, { kind: 'GroupCount', by: ['city'] }, { kind: 'GroupCountFinal', by: ['city'] }))
    .result as GroupCountProduct;
  t.same(gc.groups, [
    { key: ['oslo'], count: 12 },
    { key: ['rome'], count: 6 },
  ], 'paris (3 + 4) and rome at worker 2 (2) are suppressed; every released count is 0 or >= 5');

  const paris = { where: { feature: 'city', op: '==' as const, value: 'paris' } };
  t.same((await chain({ kind: 'CountInit' }, { kind: 'Count', query: paris }, { kind: 'CountFinal' })).result, { count: 0 });
  t.same((await chain({ kind: 'CountInit' }, { kind: 'Count' }, { kind: 'CountFinal' })).result, { count: 27 });
  const m = (await chain({ kind: 'MeanInit', features: ['n'] }, { kind: 'Mean', features: ['n'], query: paris }, { kind: 'MeanFinal', features: ['n'] })).result as MeanProduct;
  t.same(m, { mean: { n: null }, count: { n: 0 } });

  const s = (await chain({ kind: 'SumInit', features: ['n'] }, { kind: 'Sum', features: ['n'], query: paris }, { kind: 'SumFinal', features: ['n'] })).result as SumProduct;
  t.same(s, { sum: { n: 0 }, count: { n: 0 }, suppressed: 2 }, 'both contributions were held back, and the product says so');

  const gm = (await chain(
    { kind: 'GroupMeanInit', by: ['city'], domain: cities, features: ['n'] },
    { kind: 'GroupMean', by: ['city'], features: ['n'] },
    { kind: 'GroupMeanFinal', by: ['city'], features: ['n'] },
  )).result as GroupMeanProduct;
  t.same(gm.groups, [
    { key: ['oslo'], count: 12, mean: { n: 33 / 7 }, n: { n: 7 } },
    { key: ['rome'], count: 6, mean: { n: 3.5 }, n: { n: 6 } },
  ], "oslo's n at worker 1 has 4 values: left out, its rows still counted");
  t.equal(gm.suppressed, 4, 'paris twice, rome at worker 2, oslo.n at worker 1');

  const mm = (await chain({ kind: 'MinMaxInit', features: ['n'] }, { kind: 'MinMax', features: ['n'], query: paris }, { kind: 'MinMaxFinal', features: ['n'] })).result as MinMaxProduct;
  t.same(mm, { min: { n: null }, max: { n: null }, suppressed: 2 });

  const v = (await chain({ kind: 'VarianceInit', features: ['n'] }, { kind: 'Variance', features: ['n'], query: paris }, { kind: 'VarianceFinal', features: ['n'] })).result as VarianceProduct;
  t.same(v.count, { n: 0 });
  t.same(v.variance, { n: null });
  const cv = (await chain({ kind: 'CovarianceInit', features: ['n'] }, { kind: 'Covariance', features: ['n'], query: paris }, { kind: 'CovarianceFinal', features: ['n'] })).result as CovarianceProduct;
  t.equal(cv.count, 0);
  t.equal(cv.suppressed, 2);
});

t.test('histogram bins under the minimum are suppressed; quantiles keep a worker whole or leave it out', async (t) => {
  const bins = [{ lo: 0, hi: 10, count: 2 }];
  // n in [0,5): w1 1..4 (4 values) + w2 1,2,3,4,1,1,2,3 (8); [5,10]: w1 5,6,10,7,8,9,10 (7) + w2 5,8 (2); above: w1 20,30 (2) + w2 13,100,200 (3).
  const h = (await chain({ kind: 'HistogramInit', features: ['n'], bins }, { kind: 'Histogram', features: ['n'], bins }, { kind: 'HistogramFinal', features: ['n'], bins }))
    .result as HistogramProduct;
  t.same(h.histograms[0]?.counts, [8, 7], 'worker 1 holds back [0,5) (4), worker 2 holds back [5,10] (2)');
  t.equal(h.histograms[0]?.above, 0, 'above: 2 and 3, both held back');
  t.equal(h.suppressed, 4);
  const q = (await chain({ kind: 'QuantilesInit', features: ['n'], bins }, { kind: 'Quantiles', features: ['n'], bins }, { kind: 'QuantilesFinal', features: ['n'], bins, q: [0.5] }))
    .result as QuantilesProduct;
  t.equal(q.count.n, 26, 'both workers have >= 5 values of n: all their bins count');
  t.equal(q.suppressed, 0);
});

t.test('the node sets the minimum group size', async (t) => {
  const k3 = engines.map((data) => ({ data, locals: new MapLocals(), privacy: { minGroupSize: 3 } }));
  const gc = (await chain({ kind: 'GroupCountInit', by: ['city'], domain: cities }, { kind: 'GroupCount', by: ['city'] }, { kind: 'GroupCountFinal', by: ['city'] }, k3))
    .result as GroupCountProduct;
  t.same(gc.groups, [
    { key: ['oslo'], count: 12 },
    { key: ['paris'], count: 7 },
    { key: ['rome'], count: 6 },
  ]);
  const mixed = [
    { data: engines[0], locals: new MapLocals(), privacy: { minGroupSize: 1 } },
    { data: engines[1], locals: new MapLocals(), privacy: { minGroupSize: 14 } },
  ] as ChainNode[];
  const c = (await chain({ kind: 'CountInit' }, { kind: 'Count' }, { kind: 'CountFinal' }, mixed)).result as CountProduct;
  t.equal(c.count, 14, 'each worker applies its own: worker 2 has 13 rows, fewer than its 14');
});

t.test('differential privacy: noise, budget per project, retries, refusals', async (t) => {
  const file = join(dir, 'budget.json');
  const ledger = new FileBudgetLedger(file, 1);
  const ws = engines.map((data, i) => ({ data, locals: new MapLocals(), privacy: { minGroupSize: 1, budget: i === 0 ? ledger : new FileBudgetLedger(undefined, 1) } }));
  const dp = { epsilon: 0.4 };
  const extra = { randomBytes: seededBytes(7) };
  const first = (await chain({ kind: 'CountInit' }, { kind: 'Count', dp }, { kind: 'CountFinal' }, ws, extra)).result as CountProduct;
  t.ok(Number.isInteger(first.count), 'integer noise on a count');
  t.ok(Math.abs(first.count - 27) < 60, `noisy count ${first.count} near 27`);
  t.ok(Math.abs(ledger.remaining(TOKEN) - 0.6) < 1e-12, 'epsilon 0.4 spent');

  // A retried attempt of the same job spends nothing and sends the same noisy figure.
  const s = step;
  const start = await runOperation(ctxOf(initiator, { kind: 'CountInit' }, [], { stepIndex: s }));
  const a1 = await runOperation(ctxOf(ws[0] as ChainNode, { kind: 'Count', dp }, [start], { stepIndex: s, ...extra }));
  const a2 = await runOperation(ctxOf(ws[0] as ChainNode, { kind: 'Count', dp }, [start], { stepIndex: s, attempt: 2, randomBytes: seededBytes(99) }));
  t.same(a1, a2, 'same noise on retry');
  t.ok(Math.abs(ledger.remaining(TOKEN) - 0.2) < 1e-12, 'charged once');
  step++;

  const refused = await caught(chain({ kind: 'CountInit' }, { kind: 'Count', dp }, { kind: 'CountFinal' }, ws, extra));
  t.equal(refused.code, 'PRIVACY_REFUSED');
  t.equal(refused.retryable, false);
  t.match(refused.message, /privacy budget exhausted: this query asks epsilon 0.4, the project has 0.2 of 1 left/);
  t.ok(Math.abs(ledger.remaining(TOKEN) - 0.2) < 1e-12, 'a refused query spends nothing');

  const reopened = new FileBudgetLedger(file, 1);
  t.ok(Math.abs(reopened.remaining(TOKEN) - 0.2) < 1e-12, 'the ledger survives a restart');
  t.equal(reopened.remaining('another-project'), 1, 'budgets are per project');
  t.notMatch(JSON.stringify(await import('node:fs').then((fs) => fs.readFileSync(file, 'utf8'))), TOKEN, 'the token is not written down');

  // A noisy mean needs bounds; values are clipped to them.
  const noBounds = await caught(chain({ kind: 'MeanInit', features: ['n'] }, { kind: 'Mean', features: ['n'], dp: { epsilon: 1 } }, { kind: 'MeanFinal', features: ['n'] }, [{ ...ws[1], privacy: { minGroupSize: 1 } } as ChainNode]));
  t.equal(noBounds.code, 'BAD_QUERY');
  t.match(noBounds.message, /dp.bounds/);
  const mean = (await chain(
    { kind: 'MeanInit', features: ['n'] },
    { kind: 'Mean', features: ['n'], dp: { epsilon: 1000, bounds: [[0, 10]] } },
    { kind: 'MeanFinal', features: ['n'] },
    [{ data: engines[1], locals: new MapLocals(), privacy: { minGroupSize: 1 } }],
    extra,
  )).result as MeanProduct;
  // Worker 2's n clipped to [0, 10]: 10,10,1,2,3,4,1,1,2,3,5,8,10 -> 60/13; epsilon 1000 makes the noise tiny.
  t.ok(Math.abs((mean.mean.n as number) - 60 / 13) < 0.05, `clipped noisy mean ${mean.mean.n}`);

  // A node may require noise: estimators without it are refused, and so are those that have no noisy form.
  const strict = engines.map((data) => ({ data, locals: new MapLocals(), privacy: { minGroupSize: 1, requireDp: true } }));
  const plain = await caught(chain({ kind: 'CountInit' }, { kind: 'Count' }, { kind: 'CountFinal' }, strict));
  t.equal(plain.code, 'PRIVACY_REFUSED');
  t.equal(plain.path, 'operation.dp');
  const variance = await caught(chain({ kind: 'VarianceInit', features: ['n'] }, { kind: 'Variance', features: ['n'] }, { kind: 'VarianceFinal', features: ['n'] }, strict));
  t.match(variance.message, /only with differential-privacy noise/);
  const noisy = (await chain(
    { kind: 'GroupCountInit', by: ['city'], domain: cities },
    { kind: 'GroupCount', by: ['city'], dp: { epsilon: 2 } },
    { kind: 'GroupCountFinal', by: ['city'] },
    strict,
    extra,
  )).result as GroupCountProduct;
  t.ok(noisy.groups.every((g) => Number.isInteger(g.count) && g.count > 0), 'noisy group counts are integers; empty ones dropped');
});

t.test('the noise samplers have the scale they claim', async (t) => {
  const ctx = { randomBytes: seededBytes(3) } as unknown as OpContext;
  const n = 20_000;
  let abs = 0;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const x = laplace(ctx, 2);
    abs += Math.abs(x);
    sum += x;
  }
  t.ok(Math.abs(abs / n - 2) < 0.08, `Laplace(2): mean |x| ${abs / n}`);
  t.ok(Math.abs(sum / n) < 0.08, `Laplace(2): mean ${sum / n}`);
  let sq = 0;
  for (let i = 0; i < n; i++) {
    const k = discreteLaplace(ctx, 2);
    if (!Number.isInteger(k)) t.fail(`${k} is not an integer`);
    sq += k * k;
  }
  const alpha = Math.exp(-1 / 2);
  const variance = (2 * alpha) / (1 - alpha) ** 2;
  t.ok(Math.abs(sq / n - variance) / variance < 0.06, `discrete Laplace(2): variance ${sq / n} vs ${variance}`);
});
