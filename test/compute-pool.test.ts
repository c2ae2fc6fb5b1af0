// Why: a worker runs the JavaScript-heavy half of operations (training, cross-validation,
// evaluation) in a pool of threads (lib/ops/pool.ts), so the answers must not depend on where
// they ran: the same bytes from a thread as inline, errors with the same code and message, and a
// cancelled task must stop (rejected; its thread ended) while the pool goes on serving. A task
// smaller than the trip to a thread (a FedAvg round's training) runs inline, and only such a one.
import { join } from 'node:path';
import t from 'tap';
import { decodeValue, encodeValue } from '../protocols/codec.ts';
import { type Operation, OperationSchema } from '../protocols/entities.ts';
import { DataEngine } from '../lib/data/engine.ts';
import { isFdlError } from '../lib/errors.ts';
import { type Compute, DEFAULT_INLINE_WORK, type Locals, type OpContext } from '../lib/ops/context.ts';
import { runOperation } from '../lib/ops/index.ts';
import { type ComputeHandle, ComputePool, computePool, defaultComputeThreads, shareCompute } from '../lib/ops/pool.ts';
import { parseConfig } from '../lib/config.ts';
import { EXAMPLE_DATA } from '../lib/sim/cluster.ts';

const TOKEN = 'project-token';
const LABEL = 'MedHouseValDiscrete';
const data = await DataEngine.open([{ name: 's0', path: join(EXAMPLE_DATA, 'california_housing.MedInc1.csv'), projects: [TOKEN] }]);
// Every task that tells its work goes to this pool's thread (no inline shortcut for small ones):
// the cases below compare a thread's answer with an inline one.
const pool = new ComputePool(1, undefined, 0);
t.teardown(async () => {
  await pool.close();
  await data.close();
});
const features = (await data.metadata())[0]?.datasources[0]?.features.map((f) => f.name).filter((f) => f !== LABEL) ?? [];

const noLocals: Locals = { get: () => undefined, set: () => {} };

function ctxOf(operation: Operation, inputs: unknown[], extra: Partial<OpContext> = {}): OpContext {
  return {
    operation: OperationSchema.parse(operation),
    attempt: 1,
    artifactId: 'a1',
    stepIndex: 0,
    iteration: 1,
    projectToken: TOKEN,
    inputs: inputs.map((i) => decodeValue(encodeValue(i))),
    data,
    locals: noLocals,
    random: Math.random,
    ...extra,
  };
}

/** The product's bytes as they would go on the wire. */
async function wire(operation: Operation, inputs: unknown[], compute?: Compute): Promise<string> {
  const product = await runOperation(ctxOf(operation, inputs, compute ? { compute } : {}));
  return Buffer.from(encodeValue(product)).toString('hex');
}

async function failure(operation: Operation, compute?: Compute): Promise<unknown> {
  try {
    await runOperation(ctxOf(operation, [], compute ? { compute } : {}));
  } catch (e) {
    return isFdlError(e) ? { code: e.code, message: e.message, retryable: e.retryable } : { error: String(e) };
  }
  return 'no error';
}

t.test('a pool thread gives the same bytes as inline, for every offloaded operation', async (t) => {
  t.ok(features.length > 2, 'the shard has features');
  const logistic = { type: 'logisticRegression' as const, features, label: LABEL, epochs: 2, seed: 4 };
  const linear = { type: 'linearRegression' as const, features: features.slice(1), label: features[0] as string, epochs: 2, seed: 5 };
  const forest = { type: 'randomForest' as const, features, label: LABEL, strategy: 'merge' as const, nEstimators: 3, maxDepth: 6, seed: 2 };
  const start = decodeValue(encodeValue(await runOperation(ctxOf({ kind: 'Train', model: logistic }, []))));
  const global = (start as { model: unknown }).model;
  const cases: [string, Operation, unknown[]][] = [
    ['Train logistic, no input', { kind: 'Train', model: logistic }, []],
    ['Train logistic from a global model', { kind: 'Train', model: logistic }, [global]],
    ['Train linear', { kind: 'Train', model: linear }, []],
    ['Train forest', { kind: 'Train', model: forest }, []],
    ['TrainTest forest', { kind: 'TrainTest', model: forest, testFraction: 0.25 }, []],
    ['LocalCrossValidation', { kind: 'LocalCrossValidation', model: logistic, folds: 3 }, []],
    ['EvaluateModel', { kind: 'EvaluateModel' }, [global]],
  ];
  for (const [name, op, inputs] of cases) {
    const inline = await wire(op, inputs);
    const pooled = await wire(op, inputs, pool);
    t.equal(pooled, inline, `${name}: the same bytes`);
  }
});

t.test('a task too small for the trip runs inline; a larger one, or one that cannot tell its work, goes to the pool', async (t) => {
  const shipped: string[] = [];
  const counting: Compute = {
    inlineWork: DEFAULT_INLINE_WORK,
    run: (task, args, signal) => {
      shipped.push(task);
      return pool.run(task, args, signal);
    },
  };
  const rows = (await data.numericColumns(TOKEN, [...features, LABEL])).rows;
  const logistic = (epochs: number) => ({ type: 'logisticRegression' as const, features, label: LABEL, epochs, seed: 4 });
  const small = Math.floor(DEFAULT_INLINE_WORK / (rows * features.length));
  t.ok(small >= 1, `one epoch over the shard's ${rows} rows is below the bound`);
  const inline = await wire({ kind: 'Train', model: logistic(small) }, []);
  t.equal(await wire({ kind: 'Train', model: logistic(small) }, [], counting), inline, 'the same bytes');
  t.same(shipped, [], `${small} epoch(s): ${rows * features.length * small} values, run inline`);
  await wire({ kind: 'Train', model: logistic(small + 1) }, [], counting);
  t.same(shipped, ['Train'], `${small + 1} epochs: over the bound, shipped`);
  await wire({ kind: 'Train', model: { type: 'randomForest', features, label: LABEL, strategy: 'merge', nEstimators: 1, maxDepth: 2 } }, [], counting);
  t.same(shipped, ['Train', 'Train'], 'a forest (its cost untold) is shipped');
  await wire({ kind: 'Train', model: logistic(small + 1) }, [], { ...counting, inlineWork: Number.POSITIVE_INFINITY });
  t.same(shipped, ['Train', 'Train'], "the pool's own bound decides");
});

t.test('errors cross the thread with their code, message and retryability', async (t) => {
  // A logistic regression on a continuous label is refused inside the training.
  const bad: Operation = { kind: 'Train', model: { type: 'logisticRegression', features: features.slice(1), label: features[0] as string } };
  const inline = await failure(bad);
  t.match(inline, { code: 'OPERATION_FAILED', message: /needs a 0\/1 label/, retryable: false });
  t.same(await failure(bad, pool), inline);
});

t.test('cancel: an aborted task rejects, and the pool serves the next one', async (t) => {
  const abort = new AbortController();
  const spinning = runOperation(ctxOf({ kind: 'TestSpin', ms: 600_000 }, [], { compute: pool, signal: abort.signal }));
  abort.abort(new Error('cancelled by the test'));
  await t.rejects(spinning, 'the ten-minute spin is stopped');
  t.same(await runOperation(ctxOf({ kind: 'TestSpin', ms: 1 }, [], { compute: pool })), { products: 0 }, 'the pool still runs tasks');

  const inlineAbort = new AbortController();
  const inlineSpin = runOperation(ctxOf({ kind: 'TestSpin', ms: 600_000 }, [], { signal: inlineAbort.signal }));
  // Inline, the spin yields to the loop between slices: this timer's callback runs during it.
  await new Promise<void>((resolve) => setTimeout(resolve, 1));
  inlineAbort.abort(new Error('cancelled by the test'));
  await t.rejects(inlineSpin, /cancelled by the test/, 'inline, the spin stops at its next check');
});

t.test('a pool needs at least one thread', async (t) => {
  t.throws(() => new ComputePool(0), RangeError);
});

t.test('config: compute.threads, absent for the default, 0 for inline', async (t) => {
  const worker = 'mode: worker\nname: w1\nscheduler: { url: "ws://127.0.0.1:1456" }\ndatasources:\n  - { name: d, path: x.csv, projects: [abcdefgh12] }\n';
  t.equal(parseConfig(worker, 'w.yaml', '/base').compute.threads, undefined, 'absent: the node picks the default');
  t.ok(defaultComputeThreads() >= 1, 'the default is at least one thread');
  t.equal(parseConfig(`${worker}compute: { threads: 0 }\n`, 'w.yaml', '/base').compute.threads, 0);
  t.equal(computePool(0), undefined, '0 threads: no pool, operations run inline');
  const problems = (yaml: string): string[] => {
    try {
      parseConfig(yaml, 'w.yaml', '/base');
    } catch (e) {
      return (e as { problems?: string[] }).problems ?? [String(e)];
    }
    return [];
  };
  t.match(problems(`${worker}compute: { threads: -1 }\n`), [/^compute\.threads: /]);
  t.match(problems(`${worker}compute: { thread: 2 }\n`), [/thread/]);
});

t.test('the workers of one process share one pool: each has a handle, and the last one closed ends the threads', async (t) => {
  const pool = new ComputePool(1);
  let closes = 0;
  const counted: ComputeHandle = {
    threads: pool.threads,
    run: (task, args, signal) => pool.run(task, args, signal),
    close: () => {
      closes++;
      return pool.close();
    },
  };
  const handles = shareCompute(counted, 3);
  t.equal(handles.length, 3);
  const [a, b, c] = handles as [ComputeHandle, ComputeHandle, ComputeHandle];
  const spins = await Promise.all([a, b, c].map((h) => h.run('TestSpin', { ms: 5 })));
  t.ok(spins.every((n) => typeof n === 'number' && n > 0), 'every handle runs tasks on the one pool');
  await a.close();
  await a.close(); // a second close of the same handle counts once
  await b.close();
  t.equal(closes, 0, 'two of three closed: the pool lives on');
  t.ok(((await c.run('TestSpin', { ms: 5 })) as number) > 0, 'and serves the worker still open');
  await c.close();
  t.equal(closes, 1, 'the last handle closed it, once');
  t.same(shareCompute(undefined, 2), [], 'no pool (0 threads): every worker runs inline');
});
