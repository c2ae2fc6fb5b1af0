// The estimators are Ferdelance's secure sums with its bugs fixed: run whole Sequential chains in-process (initiator -> worker 1 -> worker 2 -> initiator) and check the exact central answer, that the mask hides every partial, and the refusals.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { DataEngine } from '../lib/data/engine.ts';
import { keyJson, normalizeScalar, type OpContext } from '../lib/ops/context.ts';
import { compareKeys, domainKeys, MAX_GROUP_KEYS } from '../lib/ops/estimators/group-count.ts';
import { fromFixed, INT_RING } from '../lib/ops/estimators/masked.ts';
import type { MaskedRunning } from '../lib/ops/index.ts';
import { runOperation } from '../lib/ops/index.ts';
import type { Filter, Operation, Query, Scalar } from '../protocols/entities.ts';
import { type ChainNode, caught, ctxOf, MapLocals, seeded, sequential as chainSequential, TOKEN, } from './helpers/chain.ts';

const DATA = new URL('../examples/data/', import.meta.url).pathname;
const SHARD1 = join(DATA, 'california_housing.MedInc1.csv');
const SHARD2 = join(DATA, 'california_housing.MedInc2.csv');

function readCsv(path: string): { header: string[]; rows: number[][] } {
  const lines = readFileSync(path, 'utf8').trim().split('\n');
  return { header: (lines[0] ?? '').split(','), rows: lines.slice(1).map((l) => l.split(',').map(Number)) };
}
const s1 = readCsv(SHARD1);
const s2 = readCsv(SHARD2);
const header = s1.header;
const all = [...s1.rows, ...s2.rows];
const v = (r: number[], f: string): number => r[header.indexOf(f)] as number;

// These tests check the masked sums against every row; the minimum group size has its own tests (estimators-privacy).
const noSuppression: Partial<OpContext> = { privacy: { minGroupSize: 1 } };
type Node = ChainNode;
const ctx = (node: Node, operation: Operation, inputs: unknown[], extra: Partial<OpContext> = {}) =>
  ctxOf(node, operation, inputs, { ...noSuppression, ...extra });
const sequential = (initiator: Node, workers: Node[], init: Operation, op: Operation, final: Operation, extra: Partial<OpContext> = {}) =>
  chainSequential(initiator, workers, init, op, final, { ...noSuppression, ...extra });

t.test('Sequential chains over two shards match the central computation', async (t) => {
  const e1 = await DataEngine.open([{ name: 'shard1', path: SHARD1, projects: [TOKEN] }]);
  const e2 = await DataEngine.open([{ name: 'shard2', path: SHARD2, projects: [TOKEN] }]);
  t.teardown(async () => {
    await e1.close();
    await e2.close();
  });
  const initiator: Node = { data: undefined, locals: new MapLocals() };
  const workers: Node[] = [
    { data: e1, locals: new MapLocals() },
    { data: e2, locals: new MapLocals() },
  ];

  const filter: Filter = {
    and: [
      { feature: 'HouseAge', op: '>=', value: 15 },
      { feature: 'Longitude', op: '<', value: -118 },
    ],
  };
  const pred = (r: number[]) => v(r, 'HouseAge') >= 15 && v(r, 'Longitude') < -118;
  const queries: Array<[string, Query | undefined, (r: number[]) => boolean]> = [
    ['no filter', undefined, () => true],
    ['filtered', { where: filter }, pred],
  ];

  for (const [label, query, keep] of queries) {
    const rows = all.filter(keep);
    const rows1 = s1.rows.filter(keep);

    t.test(`count, ${label}`, async (t) => {
      const c = await sequential(
        initiator,
        workers,
        { kind: 'CountInit' },
        query ? { kind: 'Count', query } : { kind: 'Count' },
        { kind: 'CountFinal' },
      );
      t.same(c.result, { count: rows.length });
      const [h0, h1, h2] = c.hops as MaskedRunning[];
      t.equal(h0?.family, 'count');
      t.not(h0?.n[0], 0, 'the chain starts at the mask');
      t.equal(h1?.n[0], ((h0?.n[0] ?? 0) + rows1.length) % INT_RING, 'worker 1 adds its count (mod 2^52)');
      t.not(h1?.n[0], rows1.length, 'worker 1 product is not its plain count');
      t.not(h2?.n[0], rows.length, 'worker 2 product is not the plain total');
    });

    t.test(`mean of every feature, ${label}`, async (t) => {
      const c = await sequential(
        initiator,
        workers,
        { kind: 'MeanInit', features: header },
        query ? { kind: 'Mean', features: header, query } : { kind: 'Mean', features: header },
        { kind: 'MeanFinal', features: header },
        { stepIndex: 1 },
      );
      const result = c.result as { mean: Record<string, number>; count: Record<string, number> };
      t.same(Object.keys(result.mean), header);
      for (const f of header) {
        const central = rows.reduce((a, r) => a + v(r, f), 0) / rows.length;
        const rel = Math.abs(result.mean[f] as number - central) / Math.abs(central);
        t.ok(rel <= 1e-9, `${f}: ${result.mean[f]} vs ${central} (rel ${rel.toExponential(2)})`);
        t.equal(result.count[f], rows.length, `${f} count`);
      }
      const [h0, h1, h2] = c.hops as MaskedRunning[];
      t.equal(h0?.family, 'mean');
      t.equal(new Set(h0?.n).size + new Set(h0?.x).size, 2 * header.length, 'an independent mask per feature, for the sum and for the count');
      const real = (h: MaskedRunning | undefined, i: number) => fromFixed(BigInt(`0x${h?.x[i] ?? '0'}`));
      for (const [i, f] of header.entries()) {
        const sum1 = rows1.reduce((a, r) => a + v(r, f), 0);
        const sum = rows.reduce((a, r) => a + v(r, f), 0);
        t.not(h1?.n[i], rows1.length, `${f}: worker 1 count is masked`);
        t.not(h2?.n[i], rows.length, `${f}: worker 2 count is masked`);
        t.ok(Math.abs(real(h1, i) - sum1) > 1, `${f}: worker 1 sum is masked`);
        t.ok(Math.abs(real(h2, i) - sum) > 1, `${f}: worker 2 sum is masked`);
      }
    });

    t.test(`group count by (MedHouseValDiscrete, HouseAge), ${label}`, async (t) => {
      const by = ['MedHouseValDiscrete', 'HouseAge'];
      const ages = Array.from({ length: 60 }, (_, i) => i);
      const c = await sequential(
        initiator,
        workers,
        { kind: 'GroupCountInit', by, domain: [[1, 0n as unknown as number, -0], ages] },
        query ? { kind: 'GroupCount', by, query } : { kind: 'GroupCount', by },
        { kind: 'GroupCountFinal', by },
        { stepIndex: 2 },
      );
      const central = new Map<string, number>();
      for (const r of rows) {
        const k = JSON.stringify([v(r, 'MedHouseValDiscrete'), v(r, 'HouseAge')]);
        central.set(k, (central.get(k) ?? 0) + 1);
      }
      const expected = [...central]
        .map(([k, count]) => ({ key: JSON.parse(k) as Scalar[], count }))
        .sort((a, b) => compareKeys(a.key, b.key));
      const result = c.result as { by: string[]; groups: Array<{ key: Scalar[]; count: number }> };
      t.same(result.by, by);
      t.same(result.groups, expected, 'exact counts, sorted, zero groups left out');
      t.ok(result.groups.length < 2 * 60, 'some declared keys had no row and are not listed');
      const [h0, h1, h2] = c.hops as MaskedRunning[];
      t.equal(h0?.family, 'group-count');
      t.equal(h0?.keys?.length, 2 * 60, 'every key of the domain is masked from the start');
      t.equal(h0?.n.length, 2 * 60);
      t.same(h2?.keys, h0?.keys, 'workers see the same key set');
      const slot = (k: string) => h0?.keys?.indexOf(k) ?? -1;
      const local1 = new Map<string, number>();
      for (const r of rows1) {
        const k = JSON.stringify([v(r, 'MedHouseValDiscrete'), v(r, 'HouseAge')]);
        local1.set(k, (local1.get(k) ?? 0) + 1);
      }
      for (const [k, n] of local1) {
        t.equal(h1?.n[slot(k)], ((h0?.n[slot(k)] ?? 0) + n) % INT_RING);
        t.not(h1?.n[slot(k)], n, `${k}: worker 1 count is masked`);
      }
      for (const g of expected) t.not(h2?.n[slot(JSON.stringify(g.key))], g.count, 'worker 2 counts are masked');
    });
  }

  t.test('a key outside the declared domain is refused', async (t) => {
    const err = await caught(
      sequential(
        initiator,
        workers,
        { kind: 'GroupCountInit', by: ['MedHouseValDiscrete'], domain: [[0]] },
        { kind: 'GroupCount', by: ['MedHouseValDiscrete'] },
        { kind: 'GroupCountFinal', by: ['MedHouseValDiscrete'] },
        { stepIndex: 3 },
      ),
    );
    t.equal(err.code, 'BAD_QUERY');
    t.equal(err.retryable, false);
    t.match(err.message, /outside the declared domain/);
    t.equal(err.path, 'operation.domain');
    // Filtering the rows down to the domain makes the same plan work.
    const c = await sequential(
      initiator,
      workers,
      { kind: 'GroupCountInit', by: ['MedHouseValDiscrete'], domain: [[0]] },
      {
        kind: 'GroupCount',
        by: ['MedHouseValDiscrete'],
        query: { where: { feature: 'MedHouseValDiscrete', op: '==', value: 0 } },
      },
      { kind: 'GroupCountFinal', by: ['MedHouseValDiscrete'] },
      { stepIndex: 3 },
    );
    t.same(c.result, {
      by: ['MedHouseValDiscrete'],
      groups: [{ key: [0], count: all.filter((r) => v(r, 'MedHouseValDiscrete') === 0).length }],
    });
  });

  t.test('a bad query fails on the first worker with a job-relative path', async (t) => {
    const err = await caught(
      sequential(
        initiator,
        workers,
        { kind: 'CountInit' },
        { kind: 'Count', query: { where: { and: [{ feature: 'nope', op: 'is null' }] } } },
        { kind: 'CountFinal' },
        { stepIndex: 4 },
      ),
    );
    t.equal(err.code, 'BAD_QUERY');
    t.equal(err.path, 'operation.query.where.and[0].feature');
    t.equal(err.retryable, false);
    const err2 = await caught(
      runOperation(ctx(workers[0] as Node, { kind: 'Mean', features: ['nope'] }, [{ family: 'mean', n: [0], x: ['0'.repeat(64)] }])),
    );
    t.equal(err2.code, 'BAD_QUERY');
    t.equal(err2.path, 'operation.features[0]');
  });

  t.test('a mean with no rows is null', async (t) => {
    const c = await sequential(
      initiator,
      workers,
      { kind: 'MeanInit', features: ['MedInc'] },
      { kind: 'Mean', features: ['MedInc'], query: { where: { feature: 'MedInc', op: '<', value: -1 } } },
      { kind: 'MeanFinal', features: ['MedInc'] },
      { stepIndex: 5 },
    );
    t.same(c.result, { mean: { MedInc: null }, count: { MedInc: 0 } });
  });
});

t.test('a key first seen at a later worker comes out right (the original bug)', async (t) => {
  const dir = t.testdir({
    'w1.csv': 'city,n\nrome,1\nrome,2\nparis,3\n',
    'w2.csv': 'city,n\nparis,4\noslo,5\noslo,6\noslo,7\n',
  });
  const e1 = await DataEngine.open([{ name: 'w1', path: join(dir, 'w1.csv'), projects: [TOKEN] }]);
  const e2 = await DataEngine.open([{ name: 'w2', path: join(dir, 'w2.csv'), projects: [TOKEN] }]);
  t.teardown(async () => {
    await e1.close();
    await e2.close();
  });
  const initiator: Node = { data: undefined, locals: new MapLocals() };
  const c = await sequential(
    initiator,
    [
      { data: e1, locals: new MapLocals() },
      { data: e2, locals: new MapLocals() },
    ],
    { kind: 'GroupCountInit', by: ['city'], domain: [['rome', 'paris', 'oslo', 'lima', null]] },
    { kind: 'GroupCount', by: ['city'] },
    { kind: 'GroupCountFinal', by: ['city'] },
  );
  t.same(c.result, {
    by: ['city'],
    groups: [
      { key: ['oslo'], count: 3 },
      { key: ['paris'], count: 2 },
      { key: ['rome'], count: 2 },
    ],
  });
});

t.test('chain links check their inputs and their node', async (t) => {
  const e1 = await DataEngine.open([{ name: 'shard1', path: SHARD1, projects: [TOKEN] }]);
  t.teardown(() => e1.close());
  const worker: Node = { data: e1, locals: new MapLocals() };
  const initiator: Node = { data: undefined, locals: new MapLocals() };

  for (const inputs of [[], [{ count: 1 }, { count: 2 }]]) {
    const err = await caught(runOperation(ctx(worker, { kind: 'Count' }, inputs)));
    t.equal(err.code, 'OPERATION_FAILED');
    t.match(err.message, /exactly 1 input/);
  }
  for (const bad of [null, 'x', [1], { count: 'x' }, { count: Number.NaN }, {}]) {
    const err = await caught(runOperation(ctx(worker, { kind: 'Count' }, [bad])));
    t.equal(err.code, 'OPERATION_FAILED', JSON.stringify(bad));
  }
  t.equal((await caught(runOperation(ctx(worker, { kind: 'Mean', features: ['MedInc'] }, [{ sums: {}, counts: {} }])))).code, 'OPERATION_FAILED');
  t.equal(
    (await caught(runOperation(ctx(worker, { kind: 'GroupCount', by: ['MedInc'] }, [{ counts: { '[1]': 'x' } }])))).code,
    'OPERATION_FAILED',
  );

  const start = await runOperation(ctx(initiator, { kind: 'CountInit' }, [], { stepIndex: 6 }));
  const noData = await caught(runOperation(ctx(initiator, { kind: 'Count' }, [start])));
  t.equal(noData.code, 'DATA_UNAVAILABLE');
  const otherToken = await caught(runOperation(ctx(worker, { kind: 'Count' }, [start], { projectToken: 'other' })));
  t.equal(otherToken.code, 'DATA_UNAVAILABLE');

  // A well-formed running value on a node that drew no masks for the step.
  const fresh: Node = { data: undefined, locals: new MapLocals() };
  const meanStart = await runOperation(ctx(initiator, { kind: 'MeanInit', features: ['a'] }, [], { stepIndex: 6 }));
  const groupStart = await runOperation(ctx(initiator, { kind: 'GroupCountInit', by: ['a'], domain: [[1]] }, [], { stepIndex: 6 }));
  t.equal((await caught(runOperation(ctx(fresh, { kind: 'CountFinal' }, [start], { stepIndex: 6 })))).code, 'INTERNAL');
  t.equal((await caught(runOperation(ctx(fresh, { kind: 'MeanFinal', features: ['a'] }, [meanStart], { stepIndex: 6 })))).code, 'INTERNAL');
  t.equal((await caught(runOperation(ctx(fresh, { kind: 'GroupCountFinal', by: ['a'] }, [groupStart], { stepIndex: 6 })))).code, 'INTERNAL');
  // A Count link refuses the running value of another estimator.
  t.match((await caught(runOperation(ctx(worker, { kind: 'Count' }, [meanStart], { stepIndex: 6 })))).message, /not a count running value/);

  // Masks are scoped by step and iteration: another iteration has none.
  const seven = await runOperation(ctx(initiator, { kind: 'CountInit' }, [], { stepIndex: 7, iteration: 0 }));
  t.equal((await caught(runOperation(ctx(initiator, { kind: 'CountFinal' }, [seven], { stepIndex: 7, iteration: 1 })))).code, 'INTERNAL');

  // A retried init reuses its masks, so a chain already under way stays right (even with another random source).
  const bytes = (seed: number) => {
    const r = seeded(seed);
    return (n: number) => Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
  };
  const a = await runOperation(ctx(initiator, { kind: 'MeanInit', features: ['x', 'y'] }, [], { stepIndex: 8, randomBytes: bytes(1) }));
  const b = await runOperation(
    ctx(initiator, { kind: 'MeanInit', features: ['x', 'y'] }, [], { stepIndex: 8, randomBytes: bytes(2), attempt: 2 }),
  );
  t.same(a, b);
  const g1 = await runOperation(ctx(initiator, { kind: 'GroupCountInit', by: ['x'], domain: [[1, 2]] }, [], { stepIndex: 8, randomBytes: bytes(1) }));
  const g2 = await runOperation(ctx(initiator, { kind: 'GroupCountInit', by: ['x'], domain: [[1, 2]] }, [], { stepIndex: 8, randomBytes: bytes(2) }));
  t.same(g1, g2);
  const c1 = (await runOperation(ctx(initiator, { kind: 'CountInit' }, [], { stepIndex: 8, randomBytes: bytes(1) }))) as MaskedRunning;
  const c2 = await runOperation(ctx(initiator, { kind: 'CountInit' }, [], { stepIndex: 8, randomBytes: bytes(2) }));
  t.same(c1, c2);

  // Init and final run anywhere: the initiator holds no data and needs none.
  const plus12 = { ...c1, n: [((c1.n[0] as number) + 12) % INT_RING] };
  t.same(await runOperation(ctx(initiator, { kind: 'CountFinal' }, [plus12], { stepIndex: 8 })), { count: 12 });

  // A feature named __proto__ is an ordinary key.
  const p = await runOperation(ctx(initiator, { kind: 'MeanInit', features: ['__proto__'] }, [], { stepIndex: 9 }));
  const pm = (await runOperation(ctx(initiator, { kind: 'MeanFinal', features: ['__proto__'] }, [p], { stepIndex: 9 }))) as {
    mean: Record<string, number | null>;
    count: Record<string, number>;
  };
  t.ok(Object.hasOwn(pm.mean, '__proto__') && Object.hasOwn(pm.count, '__proto__'));
  t.equal(Object.getPrototypeOf(pm.mean), Object.prototype);
});

t.test('group domains: normalization, cap, shape', async (t) => {
  t.equal(keyJson([0n, -0, 1.0]), '[0,0,1]');
  t.equal(normalizeScalar(5n), 5);
  t.equal(keyJson([null, 'a', true]), '[null,"a",true]');
  t.throws(() => normalizeScalar({}));
  t.throws(() => normalizeScalar(Number.POSITIVE_INFINITY));
  t.same(domainKeys(['a', 'b'], [[0, -0, 0n as unknown as number], ['x', 'y']]), ['[0,"x"]', '[0,"y"]']);
  t.same(
    [[null], [2], ['a'], [true], [1], ['B'], [false]].sort(compareKeys),
    [[null], [false], [true], [1], [2], ['B'], ['a']],
  );
  t.ok(compareKeys([1, 2], [1, 3]) < 0);
  t.ok(compareKeys([1], [1, 0]) < 0);

  const initiator: Node = { data: undefined, locals: new MapLocals() };
  const big = Array.from({ length: 400 }, (_, i) => i);
  const err = await caught(
    runOperation(ctx(initiator, { kind: 'GroupCountInit', by: ['a', 'b'], domain: [big, big] }, [])),
  );
  t.equal(err.code, 'BAD_QUERY');
  t.match(err.message, new RegExp(`at most ${MAX_GROUP_KEYS}`));
  const ok = (await runOperation(
    ctx(initiator, { kind: 'GroupCountInit', by: ['a', 'b'], domain: [big, big.slice(0, 250)] }, []),
  )) as MaskedRunning;
  t.equal(ok.keys?.length, MAX_GROUP_KEYS, 'exactly the cap is allowed');
  t.equal(ok.n.length, MAX_GROUP_KEYS);
  const shape = await caught(runOperation(ctx(initiator, { kind: 'GroupCountInit', by: ['a', 'b'], domain: [[1]] }, [])));
  t.equal(shape.code, 'BAD_QUERY');
});

t.test('masks come from node:crypto (ctx.randomBytes), never from ctx.random', async (t) => {
  const initiator: Node = { data: undefined, locals: new MapLocals() };
  const never = () => {
    throw new Error('ctx.random must not be used for masks');
  };
  const ops: Operation[] = [{ kind: 'CountInit' }, { kind: 'MeanInit', features: ['x'] }, { kind: 'GroupCountInit', by: ['x'], domain: [[1, 2]] }];
  for (const [i, op] of ops.entries()) {
    let drawn = 0;
    const counted = (n: number) => {
      drawn += n;
      return new Uint8Array(n).fill(0xab);
    };
    await runOperation(ctx(initiator, op, [], { stepIndex: 100 + i, random: never, randomBytes: counted }));
    t.ok(drawn > 0, `${op.kind}: its masks are drawn from randomBytes`);
  }
  // Without an injected source: node:crypto, so two steps differ.
  const x = (await runOperation(ctx(initiator, { kind: 'MeanInit', features: ['x'] }, [], { stepIndex: 110 }))) as MaskedRunning;
  const y = (await runOperation(ctx(initiator, { kind: 'MeanInit', features: ['x'] }, [], { stepIndex: 111 }))) as MaskedRunning;
  t.not(x.x[0], y.x[0]);
  t.not(x.n[0], y.n[0]);
});

t.test('test operations', async (t) => {
  const node: Node = { data: undefined, locals: new MapLocals() };
  t.same(await runOperation(ctx(node, { kind: 'Noop' }, [1, 2, 3])), { products: 3 });
  const fail = await caught(runOperation(ctx(node, { kind: 'TestFail', failAttempts: 1 }, [{}], { attempt: 1 })));
  t.equal(fail.code, 'OPERATION_FAILED');
  t.equal(fail.retryable, true);
  t.same(await runOperation(ctx(node, { kind: 'TestFail', failAttempts: 1 }, [{}], { attempt: 2 })), { products: 1 });
  t.same(await runOperation(ctx(node, { kind: 'TestFail', failAttempts: 0 }, [], { attempt: 1 })), { products: 0 });
  const start = Date.now();
  t.same(await runOperation(ctx(node, { kind: 'TestSleep', ms: 50 }, [{}, {}])), { products: 2 });
  t.ok(Date.now() - start >= 45, 'slept');
  const unknown = await caught(runOperation(ctx(node, { kind: 'Nope' } as unknown as Operation, [])));
  t.equal(unknown.code, 'OPERATION_FAILED');
  t.equal(unknown.retryable, false);
});
