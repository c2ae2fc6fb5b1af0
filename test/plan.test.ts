// The plan is the contract between a submitted artifact and the scheduler: which jobs exist, on which node,
// and whose products each job waits for. A wrong lock runs a job on partial inputs or never runs it, so these
// tests pin the DAG of every step kind and distribution, the canonical DAGs of the original Ferdelance,
// the refusals, and, over all small combinations, that the lock graph is acyclic and fully connected.
import t from 'tap';
import { bindArtifact, MAX_JOBS, type Plan, type PlanContext, predecessors, quorumToleratesAbsence } from '../lib/plan/index.ts';
import type { Distribution, Operation, SimpleStep, Step } from '../protocols/entities.ts';

type DistKind = Distribution['kind'];
type SimpleKind = SimpleStep['kind'];

const noop: Operation = { kind: 'Noop' };
const countInit: Operation = { kind: 'CountInit' };

const dist = (kind: DistKind | undefined): { distribution?: Distribution } =>
  kind === undefined ? {} : { distribution: { kind, encryption: false } };

const Initialize = (d?: DistKind): SimpleStep => ({ kind: 'Initialize', operation: countInit, ...dist(d) });
const Parallel = (d?: DistKind): SimpleStep => ({ kind: 'Parallel', operation: noop, ...dist(d) });
const Finalize = (d?: DistKind): SimpleStep => ({ kind: 'Finalize', operation: noop, ...dist(d) });
const RoundRobin = (d?: DistKind): SimpleStep => ({ kind: 'RoundRobin', operation: noop, ...dist(d) });
const Sequential = (d?: DistKind): SimpleStep => ({
  kind: 'Sequential',
  init: { kind: 'CountInit' },
  operation: { kind: 'Count' },
  final: { kind: 'CountFinal' },
  ...dist(d),
});
const Iterate = (iterations: number, steps: SimpleStep[]): Step => ({ kind: 'Iterate', iterations, steps });

const make: Record<SimpleKind, (d?: DistKind) => SimpleStep> = {
  Initialize,
  Parallel,
  Sequential,
  RoundRobin,
  Finalize,
};

/** Scheduler S, workers W0..W(n-1), as in the inventory's section 3.8. */
const ctx = (n: number): PlanContext => ({ initiator: 'S', workers: Array.from({ length: n }, (_, i) => `W${i}`) });

/** `index:worker->[locks]`, the notation of the inventory. */
const shape = (plan: Plan): string[] => plan.jobs.map((j) => `${j.index}:${j.worker}->[${j.locks.join(',')}]`);

const bind = (steps: Step[], n: number): Plan => bindArtifact(steps, ctx(n));

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

function refused(fn: () => unknown): { code?: unknown; path?: unknown; message: string } {
  try {
    fn();
  } catch (e) {
    return e as { code?: unknown; path?: unknown; message: string };
  }
  throw new Error('expected the plan to be refused');
}

// ---------------------------------------------------------------- step kinds

t.test('Initialize and Finalize: one job on the initiator, whatever the workers', async (t) => {
  for (const step of [Initialize(), Finalize()]) {
    for (const n of [1, 2, 5]) {
      const plan = bind([step], n);
      t.same(shape(plan), ['0:S->[]'], `${step.kind} with ${n} workers`);
      t.same(plan.exits, [0]);
      t.match(plan.jobs[0], { stepIndex: 0, iteration: 0, role: 'op', operation: step.operation });
    }
  }
});

t.test('Parallel: one job per worker, in worker order, no locks', async (t) => {
  t.same(shape(bind([Parallel()], 1)), ['0:W0->[]']);
  t.same(shape(bind([Parallel()], 2)), ['0:W0->[]', '1:W1->[]']);
  const plan = bind([Parallel()], 5);
  t.same(shape(plan), ['0:W0->[]', '1:W1->[]', '2:W2->[]', '3:W3->[]', '4:W4->[]']);
  t.same(plan.exits, [0, 1, 2, 3, 4]);
  t.ok(plan.jobs.every((j) => j.role === 'op' && j.stepIndex === 0 && j.iteration === 0));
});

t.test('Sequential: init on the initiator, each worker in turn, final on the initiator', async (t) => {
  const one = bind([Sequential()], 1);
  t.same(shape(one), ['0:S->[1]', '1:W0->[2]', '2:S->[]']);
  t.same(one.exits, [2]);
  t.same(
    one.jobs.map((j) => [j.role, j.operation.kind]),
    [
      ['init', 'CountInit'],
      ['op', 'Count'],
      ['final', 'CountFinal'],
    ],
  );

  // Canonical (test_plan_sequence): 2 workers.
  const two = bind([Sequential()], 2);
  t.same(shape(two), ['0:S->[1]', '1:W0->[2]', '2:W1->[3]', '3:S->[]']);
  t.same(two.exits, [3]);
  t.equal(bind([Sequential()], 3).jobs.length, 5, '3 workers give 5 jobs (test_counts)');

  const five = bind([Sequential()], 5);
  t.same(shape(five), ['0:S->[1]', '1:W0->[2]', '2:W1->[3]', '3:W2->[4]', '4:W3->[5]', '5:W4->[6]', '6:S->[]']);
  t.same(five.exits, [6]);
  t.same(
    five.jobs.map((j) => j.role),
    ['init', 'op', 'op', 'op', 'op', 'op', 'final'],
  );
});

t.test('RoundRobin: n rounds, each product travels the whole ring', async (t) => {
  t.same(shape(bind([RoundRobin()], 1)), ['0:W0->[]'], '1 worker: one job');

  const two = bind([RoundRobin()], 2);
  t.same(shape(two), ['0:W0->[3]', '1:W1->[2]', '2:W0->[]', '3:W1->[]']);
  t.same(two.exits, [2, 3]);

  const n = 5;
  const five = bind([RoundRobin()], n);
  // job(r,i) = r*n+i runs on Wi and unlocks job(r+1,(i+1)%n).
  const expected = range(n * n).map((k) => {
    const r = Math.floor(k / n);
    const i = k % n;
    return `${k}:W${i}->[${r + 1 < n ? (r + 1) * n + ((i + 1) % n) : ''}]`;
  });
  t.same(shape(five), expected);
  t.same(five.exits, [20, 21, 22, 23, 24]);

  // Follow the product started by W0: it must visit every worker once.
  let k = 0;
  const visited = [five.jobs[k]?.worker];
  for (;;) {
    const next = five.jobs[k]?.locks ?? [];
    if (next.length === 0) break;
    t.equal(next.length, 1);
    k = next[0] as number;
    visited.push(five.jobs[k]?.worker);
  }
  t.same([...visited].sort(), ['W0', 'W1', 'W2', 'W3', 'W4']);
});

t.test('Iterate: inner steps repeated, iteration k+1 locked by iteration k', async (t) => {
  // Canonical (test_iteration): 1 worker, 4 jobs, iteration 1 locked by iteration 0's Finalize.
  const one = bind([Iterate(2, [Parallel('Collect'), Finalize()])], 1);
  t.same(shape(one), ['0:W0->[1]', '1:S->[2]', '2:W0->[3]', '3:S->[]']);
  t.same(
    one.jobs.map((j) => j.iteration),
    [0, 0, 1, 1],
  );
  t.same(one.exits, [3]);

  const two = bind([Iterate(2, [Parallel('Collect'), Finalize()])], 2);
  t.same(shape(two), ['0:W0->[2]', '1:W1->[2]', '2:S->[3,4]', '3:W0->[5]', '4:W1->[5]', '5:S->[]']);
  t.same(two.exits, [5]);

  const n = 5;
  const five = bind([Iterate(3, [Parallel('Collect'), Finalize('Distribute')])], n);
  // Per iteration: workers at base..base+n-1, then the initiator at base+n.
  const expected: string[] = [];
  for (let it = 0; it < 3; it++) {
    const base = it * (n + 1);
    for (let i = 0; i < n; i++) expected.push(`${base + i}:W${i}->[${base + n}]`);
    const next = it < 2 ? range(n).map((i) => base + n + 1 + i) : [];
    expected.push(`${base + n}:S->[${next.join(',')}]`);
  }
  t.same(shape(five), expected);
  t.same(five.exits, [17]);
  t.same(
    five.jobs.map((j) => j.iteration),
    [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2],
  );

  // No distribution on the last inner step: Arrange, all exits of iteration k to all entries of k+1.
  t.same(shape(bind([Iterate(3, [Parallel()])], 2)), ['0:W0->[2,3]', '1:W1->[2,3]', '2:W0->[4,5]', '3:W1->[4,5]', '4:W0->[]', '5:W1->[]']);
  t.same(shape(bind([Iterate(2, [Parallel('DirectToNext')])], 2)), ['0:W0->[2]', '1:W1->[3]', '2:W0->[]', '3:W1->[]']);
});

t.test("Iterate: an Aggregation's last round also receives its earlier rounds' products (the model's history)", async (t) => {
  const model = { type: 'logisticRegression' as const, features: ['x'], label: 'y' };
  const train: SimpleStep = { kind: 'Parallel', operation: { kind: 'Train', model }, distribution: { kind: 'Collect', encryption: false } };
  const aggregate: SimpleStep = { kind: 'Finalize', operation: { kind: 'Aggregation', model }, distribution: { kind: 'Distribute', encryption: false } };
  const plan = bind([Initialize('Distribute'), Iterate(3, [train, aggregate])], 2);
  t.same(shape(plan), [
    '0:S->[1,2]',
    '1:W0->[3]',
    '2:W1->[3]',
    '3:S->[4,5,9]',
    '4:W0->[6]',
    '5:W1->[6]',
    '6:S->[7,8,9]',
    '7:W0->[9]',
    '8:W1->[9]',
    '9:S->[]',
  ]);
  t.same(predecessors(plan)[9], [3, 6, 7, 8], 'the earlier aggregates come first among its inputs');
  t.same(plan.exits, [9]);
  t.same(shape(bind([Iterate(1, [train, aggregate])], 2)), ['0:W0->[2]', '1:W1->[2]', '2:S->[]'], 'one round: nothing to gather');
  t.same(shape(bind([Iterate(2, [Parallel('Collect'), Finalize()])], 1)), ['0:W0->[1]', '1:S->[2]', '2:W0->[3]', '3:S->[]'], 'another operation: no extra link');
});

t.test('Iterate in the middle: jobs carry the Iterate step index, and it links on both sides', async (t) => {
  const plan = bind([Initialize('Distribute'), Iterate(2, [Parallel('Collect'), Finalize('Distribute')]), Finalize()], 2);
  t.same(shape(plan), [
    '0:S->[1,2]',
    '1:W0->[3]',
    '2:W1->[3]',
    '3:S->[4,5]',
    '4:W0->[6]',
    '5:W1->[6]',
    '6:S->[7]',
    '7:S->[]',
  ]);
  t.same(
    plan.jobs.map((j) => [j.stepIndex, j.iteration]),
    [
      [0, 0],
      [1, 0],
      [1, 0],
      [1, 0],
      [1, 1],
      [1, 1],
      [1, 1],
      [2, 0],
    ],
  );
  t.same(plan.exits, [7]);
});

// ---------------------------------------------------------------- canonical DAGs (inventory 3.8)

t.test('canonical: [Parallel(Collect), Finalize] with 2 workers', async (t) => {
  const plan = bind([Parallel('Collect'), Finalize()], 2);
  t.same(shape(plan), ['0:W0->[2]', '1:W1->[2]', '2:S->[]']);
  t.same(plan.exits, [2]);
});

t.test('canonical: [Initialize(Distribute), Parallel(Collect), Finalize] with 2 workers', async (t) => {
  const plan = bind([Initialize('Distribute'), Parallel('Collect'), Finalize()], 2);
  t.same(shape(plan), ['0:S->[1,2]', '1:W0->[3]', '2:W1->[3]', '3:S->[]']);
  t.same(predecessors(plan), [[], [0], [0], [1, 2]]);
});

t.test('canonical: the 9-job chain with 3 workers and its 12 locks', async (t) => {
  const plan = bind([Initialize('Distribute'), Parallel('Collect'), Finalize('Distribute'), Parallel('Collect'), Finalize()], 3);
  t.same(shape(plan), [
    '0:S->[1,2,3]',
    '1:W0->[4]',
    '2:W1->[4]',
    '3:W2->[4]',
    '4:S->[5,6,7]',
    '5:W0->[8]',
    '6:W1->[8]',
    '7:W2->[8]',
    '8:S->[]',
  ]);
  t.equal(
    plan.jobs.reduce((sum, j) => sum + j.locks.length, 0),
    12,
  );

  // The unlocked-set sizes of test_jobs_scheduling: a job is unlocked once all its predecessors completed.
  const preds = predecessors(plan);
  const unlocked = (done: number[]) => preds.filter((p) => p.every((q) => done.includes(q))).length;
  t.equal(unlocked([]), 1);
  t.equal(unlocked([0]), 4);
  t.equal(unlocked([0, 1, 2]), 4);
  t.equal(unlocked([0, 1, 2, 3]), 5);
});

t.test('Sequential links to the next step through its distribution (the original left it dangling)', async (t) => {
  const plan = bind([Sequential('Distribute'), Parallel('Collect'), Finalize()], 2);
  t.same(shape(plan), ['0:S->[1]', '1:W0->[2]', '2:W1->[3]', '3:S->[4,5]', '4:W0->[6]', '5:W1->[6]', '6:S->[]']);
});

// ---------------------------------------------------------------- distributions

t.test('distributions bind exits to entries', async (t) => {
  t.same(shape(bind([Parallel('Arrange'), Parallel()], 2)), ['0:W0->[2,3]', '1:W1->[2,3]', '2:W0->[]', '3:W1->[]']);
  t.same(
    shape(bind([Parallel(), Parallel()], 2)),
    shape(bind([Parallel('Arrange'), Parallel()], 2)),
    'no distribution means Arrange',
  );
  t.same(shape(bind([Parallel('Collect'), Finalize()], 2)), ['0:W0->[2]', '1:W1->[2]', '2:S->[]']);
  t.same(shape(bind([Initialize('Distribute'), Parallel()], 2)), ['0:S->[1,2]', '1:W0->[]', '2:W1->[]']);
  t.same(shape(bind([Parallel('DirectToNext'), Parallel()], 2)), ['0:W0->[2]', '1:W1->[3]', '2:W0->[]', '3:W1->[]']);
  t.same(
    shape(bind([RoundRobin('DirectToNext'), Parallel()], 2)),
    ['0:W0->[3]', '1:W1->[2]', '2:W0->[4]', '3:W1->[5]', '4:W0->[]', '5:W1->[]'],
    'DirectToNext from the last round',
  );
  t.same(shape(bind([Finalize('DirectToNext'), Initialize()], 2)), ['0:S->[1]', '1:S->[]']);
  t.same(shape(bind([Parallel('Collect')], 2)), ['0:W0->[]', '1:W1->[]'], "the last step's distribution is ignored");
  t.same(shape(bind([Parallel('Collect'), Parallel()], 1)), ['0:W0->[1]', '1:W0->[]'], 'Collect into one worker');
});

t.test('refusals: Collect into several sinks', async (t) => {
  const e = refused(() => bind([Initialize(), Parallel('Collect'), Parallel()], 2));
  t.equal(e.code, 'INVALID_ARTIFACT');
  t.equal(e.path, 'steps[1].distribution');
  t.match(e.message, /Collect needs exactly one receiving job, step steps\[2\] \(Parallel\) has 2/);
});

t.test('refusals: Distribute from several sources', async (t) => {
  const e = refused(() => bind([Parallel('Distribute'), Finalize()], 2));
  t.equal(e.code, 'INVALID_ARTIFACT');
  t.equal(e.path, 'steps[0].distribution');
  t.match(e.message, /Distribute needs exactly one sending job.*has 2.*use Arrange/);
  t.same(shape(bind([Parallel('Arrange'), Finalize()], 2)), ['0:W0->[2]', '1:W1->[2]', '2:S->[]'], 'Arrange is accepted');
});

t.test('refusals: DirectToNext with unequal counts', async (t) => {
  const e = refused(() => bind([Parallel('DirectToNext'), Finalize()], 2));
  t.equal(e.code, 'INVALID_ARTIFACT');
  t.equal(e.path, 'steps[0].distribution');
  t.match(e.message, /DirectToNext needs as many receiving jobs as sending jobs.*has 2.*has 1/);
  t.equal(refused(() => bind([RoundRobin('DirectToNext'), Sequential()], 3)).code, 'INVALID_ARTIFACT');
});

t.test('refusals inside Iterate point at the inner step', async (t) => {
  const inner = refused(() => bind([Initialize(), Iterate(2, [Parallel('Collect'), Parallel()])], 2));
  t.equal(inner.code, 'INVALID_ARTIFACT');
  t.equal(inner.path, 'steps[1].steps[0].distribution');

  // Between iterations, the last inner step's distribution applies.
  const wrap = refused(() => bind([Iterate(2, [Parallel('Collect'), Finalize('Collect')])], 2));
  t.equal(wrap.code, 'INVALID_ARTIFACT');
  t.equal(wrap.path, 'steps[0].steps[1].distribution');
  t.match(wrap.message, /Collect needs exactly one receiving job, step steps\[0\]\.steps\[0\] \(Parallel\) has 2/);
  t.equal(bind([Iterate(1, [Parallel('Collect'), Finalize('Collect')])], 2).jobs.length, 3, 'one iteration: no wrap');
});

t.test('refusals: workers and artifact shape', async (t) => {
  const none = refused(() => bindArtifact([Parallel()], { initiator: 'S', workers: [] }));
  t.equal(none.code, 'NO_WORKERS');
  t.match(none.message, /no worker has announced data/);

  const dup = refused(() => bindArtifact([Parallel()], { initiator: 'S', workers: ['W0', 'W1', 'W0'] }));
  t.equal(dup.code, 'INVALID_ARTIFACT');
  t.match(dup.message, /W0/);

  const empty = refused(() => bind([], 2));
  t.equal(empty.code, 'INVALID_ARTIFACT');
  t.equal(empty.path, 'steps');

  const nan = refused(() => bind([Iterate(Number.NaN, [Parallel()])], 2));
  t.equal(nan.code, 'INVALID_ARTIFACT');
  t.equal(nan.path, 'steps[0].iterations');
});

t.test('the job count is capped before anything is built', async (t) => {
  const huge = refused(() => bind([Iterate(10_000, [RoundRobin()])], 5));
  t.equal(huge.code, 'INVALID_ARTIFACT');
  t.match(huge.message, /250000 jobs/);

  const over = refused(() => bind([Iterate(10_000, Array.from({ length: 11 }, () => Finalize()))], 1));
  t.match(over.message, /110000 jobs/);

  const atCap = bind([Iterate(10_000, Array.from({ length: 10 }, () => Finalize()))], 1);
  t.equal(atCap.jobs.length, MAX_JOBS, 'exactly the cap is accepted');
  t.same(atCap.exits, [MAX_JOBS - 1]);
});

t.test('predecessors is the inverse of locks', async (t) => {
  const plan = bind([RoundRobin(), Finalize()], 2);
  t.same(shape(plan), ['0:W0->[3]', '1:W1->[2]', '2:W0->[4]', '3:W1->[4]', '4:S->[]']);
  t.same(predecessors(plan), [[], [], [1], [0], [2, 3]]);
  t.same(predecessors({ jobs: [], exits: [] }), []);
});

// ---------------------------------------------------------------- all small combinations

/** Returns what is wrong with a plan, or [] when it is a well-formed DAG. */
function problems(plan: Plan, c: PlanContext): string[] {
  const out: string[] = [];
  const n = plan.jobs.length;
  const nodes = new Set([c.initiator, ...c.workers]);
  plan.jobs.forEach((j, i) => {
    if (j.index !== i) out.push(`job ${i} has index ${j.index}`);
    if (!nodes.has(j.worker)) out.push(`job ${i} runs on unknown ${j.worker}`);
    j.locks.forEach((l, k) => {
      if (!Number.isInteger(l) || l < 0 || l >= n) out.push(`job ${i} locks ${l}, out of range`);
      if (k > 0 && l <= (j.locks[k - 1] as number)) out.push(`job ${i} locks are not sorted and unique`);
    });
  });
  if (out.length > 0) return out;

  // Acyclic: Kahn's algorithm consumes every job.
  const preds = predecessors(plan);
  const indegree = preds.map((p) => p.length);
  const ready = range(n).filter((i) => indegree[i] === 0);
  let consumed = 0;
  while (ready.length > 0) {
    const i = ready.pop() as number;
    consumed++;
    for (const l of plan.jobs[i]?.locks ?? []) {
      indegree[l] = (indegree[l] as number) - 1;
      if (indegree[l] === 0) ready.push(l);
    }
  }
  if (consumed !== n) out.push('the lock graph has a cycle');

  // The artifact's entry jobs (no inputs) all belong to its first step; every other job is reachable from them.
  const roots = range(n).filter((i) => preds[i]?.length === 0);
  for (const r of roots) {
    const j = plan.jobs[r];
    if (j?.stepIndex !== 0 || j.iteration !== 0) out.push(`job ${r} has no input but is not in the first step`);
  }
  const reached = new Set(roots);
  const stack = [...roots];
  while (stack.length > 0) {
    for (const l of plan.jobs[stack.pop() as number]?.locks ?? []) {
      if (!reached.has(l)) {
        reached.add(l);
        stack.push(l);
      }
    }
  }
  if (reached.size !== n) out.push(`${n - reached.size} jobs are unreachable`);

  // Every product flows to the result: each job reaches an exit, and exits unlock nothing.
  if (plan.exits.length === 0) out.push('no exits');
  const reachesExit = new Set(plan.exits);
  for (const e of plan.exits) if ((plan.jobs[e]?.locks.length ?? 1) !== 0) out.push(`exit ${e} unlocks jobs`);
  for (let i = n - 1; i >= 0; i--) {
    if (plan.jobs[i]?.locks.some((l) => reachesExit.has(l))) reachesExit.add(i);
  }
  if (reachesExit.size !== n) out.push(`${n - reachesExit.size} jobs never reach the result`);

  // predecessors agrees with locks.
  const pairs = plan.jobs.reduce((s, j) => s + j.locks.length, 0);
  if (preds.reduce((s, p) => s + p.length, 0) !== pairs) out.push('predecessors and locks disagree');
  return out;
}

t.test('all small combinations give an acyclic, connected DAG or a distribution refusal', async (t) => {
  const kinds: SimpleKind[] = ['Initialize', 'Parallel', 'Sequential', 'RoundRobin', 'Finalize'];
  const dists: (DistKind | undefined)[] = [undefined, 'Arrange', 'Collect', 'Distribute', 'DirectToNext'];
  const simple: SimpleStep[] = kinds.flatMap((k) => dists.map((d) => make[k](d)));
  const shortIterates: Step[] = [1, 2].flatMap((it) => simple.map((s) => Iterate(it, [s])));
  const longIterates: Step[] = [1, 2].flatMap((it) => simple.flatMap((a) => simple.map((b) => Iterate(it, [a, b]))));

  const artifacts: Step[][] = [
    ...simple.flatMap((a) => simple.flatMap((b) => simple.map((c) => [a, b, c]))),
    ...shortIterates.flatMap((i) => simple.flatMap((s) => [
      [s, i],
      [i, s],
    ])),
    ...longIterates.map((i) => [i]),
  ];

  const failures: string[] = [];
  let built = 0;
  let refusedCount = 0;
  for (const n of [1, 2, 3]) {
    const c = ctx(n);
    for (const steps of artifacts) {
      const label = `${n} workers: ${JSON.stringify(steps)}`;
      let plan: Plan;
      try {
        plan = bindArtifact(steps, c);
      } catch (e) {
        const err = e as { code?: unknown; path?: unknown };
        refusedCount++;
        if (n === 1) failures.push(`${label}: refused with one worker, where every step has one entry and one exit`);
        if (err.code !== 'INVALID_ARTIFACT' || typeof err.path !== 'string' || !err.path.endsWith('.distribution')) {
          failures.push(`${label}: unexpected refusal ${String(e)}`);
        }
        continue;
      }
      built++;
      for (const p of problems(plan, c)) failures.push(`${label}: ${p}`);
    }
  }
  t.same(failures.slice(0, 20), [], 'no malformed plan');
  t.ok(built > 10_000, `${built} plans built`);
  t.ok(refusedCount > 1_000, `${refusedCount} plans refused`);
});

t.test('a plan goes on without away holders only where every worker step is a Parallel step whose quorum the present ones meet', async (t) => {
  const quorum = (q: number | string): SimpleStep => ({ kind: 'Parallel', operation: noop, quorum: q });
  const fin: SimpleStep = { kind: 'Finalize', operation: noop };
  t.ok(quorumToleratesAbsence([quorum(1), fin], 2, 1), 'quorum 1 of 2 with one present');
  t.ok(quorumToleratesAbsence([{ kind: 'Iterate', iterations: 3, steps: [quorum('50%')] }, fin], 4, 2), '50% of 4 inside an Iterate with two present');
  t.notOk(quorumToleratesAbsence([quorum(2), fin], 3, 1), 'a quorum the present holders cannot meet');
  t.notOk(quorumToleratesAbsence([Parallel(), fin], 2, 1), 'a Parallel step without a quorum needs every holder');
  t.notOk(quorumToleratesAbsence([quorum(1), Sequential()], 2, 1), 'a Sequential step needs every holder');
  t.notOk(quorumToleratesAbsence([quorum(5)], 2, 1), 'a quorum out of range is not a reason to go on');
});
