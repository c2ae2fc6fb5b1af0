// The dashboard's parts that need no browser: the scheduler's file serving (no path leaves the
// bundle folder, right content types, only GET/HEAD, a clear 503 when the bundle is missing), and
// the page's DAG layout and live model at the sizes the issue names (3,000 jobs, 1,000 workers).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { COLLAPSE_AT, layoutDag } from '../dashboard/dag.ts';
import { Model } from '../dashboard/model.ts';
import { flatRow, perFeatureArray, toJson } from '../dashboard/tables.ts';
import { layoutTimeline, MIN_BAR } from '../dashboard/timeline.ts';
import { dashboardHandler } from '../lib/dashboard/serve.ts';
import { startServer } from '../lib/transport/server.ts';
import type { JobStatus, NodeInfo } from '../protocols/entities.ts';

function get(url: string, path: string, method = 'GET'): Promise<{ status: number; type: string; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url.replace(/^ws/, 'http'));
    // A raw path, as a hostile client would send it (no normalization by a URL parser).
    const req = request({ host: u.hostname, port: u.port, path, method }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('the scheduler serves the bundle and nothing else', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'fdl-dash-serve-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, 'bundle');
  mkdirSync(join(dir, 'sub'), { recursive: true });
  writeFileSync(join(dir, 'index.html'), '<!doctype html><title>x</title>');
  writeFileSync(join(dir, 'app.js'), 'console.log(1)');
  writeFileSync(join(dir, 'app.css'), 'body{}');
  writeFileSync(join(dir, 'notes.txt'), 'not an asset type');
  writeFileSync(join(dir, 'sub', 'inner.js'), 'nested');
  writeFileSync(join(root, 'secret.js'), 'SECRET');
  const server = await startServer({ host: '127.0.0.1', port: 0, http: dashboardHandler(dir), onConnection: (p) => p.terminate() });
  t.teardown(() => server.close());

  const index = await get(server.url, '/');
  t.equal(index.status, 200, '/ is the page');
  t.match(index.type, /^text\/html/);
  t.match(index.body, /<title>x/);
  t.match(String(index.headers['content-security-policy']), /connect-src 'self'/, 'with a content security policy');
  t.equal(String(index.headers['x-content-type-options']), 'nosniff');
  t.match((await get(server.url, '/app.js')).type, /^text\/javascript/);
  t.match((await get(server.url, '/app.css')).type, /^text\/css/);
  t.equal((await get(server.url, '/app.js?v=2')).status, 200, 'a query string is ignored');
  const head = await get(server.url, '/app.js', 'HEAD');
  t.equal(head.status, 200);
  t.equal(head.body, '', 'HEAD has no body');
  for (const path of ['/../secret.js', '/%2e%2e/secret.js', '/..%2fsecret.js', '//secret.js', '/sub/inner.js', '/sub', '/notes.txt', '/index.html/', '/nope']) {
    const r = await get(server.url, path);
    t.equal(r.status, 404, `${path}: 404`);
    t.notMatch(r.body, /SECRET|nested/, `${path}: nothing outside the listed files`);
  }
  const post = await get(server.url, '/', 'POST');
  t.equal(post.status, 405, 'only GET and HEAD');
});

t.test('a scheduler without a built bundle says how to build it; without the handler, 426', async (t) => {
  const empty = mkdtempSync(join(tmpdir(), 'fdl-dash-empty-'));
  t.teardown(() => rmSync(empty, { recursive: true, force: true }));
  const server = await startServer({ host: '127.0.0.1', port: 0, http: dashboardHandler(join(empty, 'none')), onConnection: (p) => p.terminate() });
  t.teardown(() => server.close());
  const r = await get(server.url, '/');
  t.equal(r.status, 503);
  t.match(r.body, /npm run build:dashboard/);
  const off = await startServer({ host: '127.0.0.1', port: 0, onConnection: (p) => p.terminate() });
  t.teardown(() => off.close());
  t.equal((await get(off.url, '/')).status, 426, 'dashboard: false keeps the plain 426');
});

const job = (index: number, stepIndex: number, operation: string, worker: string, locks: number[]): JobStatus => ({
  id: `a-x.${index}`,
  index,
  worker,
  stepIndex,
  iteration: 0,
  operation,
  state: 'WAITING',
  attempt: 0,
  locks,
});

t.test('the DAG: steps as columns, a lane of many jobs collapsed, edges stay few at 3,000 jobs', async (t) => {
  // Parallel over 3,000 workers, collected by one Finalize.
  const n = 3000;
  const jobs = [...Array.from({ length: n }, (_, i) => job(i, 0, 'TestSleep', `w-${i}`, [n])), job(n, 1, 'Noop', 'scheduler', [])];
  const layout = layoutDag(jobs);
  t.equal(layout.columns.length, 2, 'one column per step');
  t.ok(layout.columns[0]?.collapsed, `a step of ${n} jobs is one collapsed lane`);
  t.notOk(layout.columns[1]?.collapsed, 'a step of one job is drawn job by job');
  t.equal(layout.edges.length, 1, "the lane's 3,000 locks are drawn as one edge");
  t.ok(layout.height < 400, 'the picture stays small');
  // The layout grows with the jobs, not with their square: 10x the jobs costs well under 100x
  // the time. A ratio of this process's CPU time (best of 5 each) holds on a slow or loaded
  // machine, where a fixed bound in milliseconds would not (nor would wall time: a long run is
  // preempted by other processes where a short one slips between them).
  const lane = (k: number) => [...Array.from({ length: k }, (_, i) => job(i, 0, 'TestSleep', `w-${i}`, [k])), job(k, 1, 'Noop', 'scheduler', [])];
  const best = (k: number) => {
    const input = lane(k);
    let min = Number.POSITIVE_INFINITY;
    for (let r = 0; r < 5; r++) {
      const before = process.cpuUsage();
      layoutDag(input);
      const used = process.cpuUsage(before);
      min = Math.min(min, (used.user + used.system) / 1000);
    }
    return min;
  };
  best(n); // warm the JIT
  const [base, tenfold] = [best(n), best(10 * n)];
  t.ok(tenfold < 40 * Math.max(base, 0.5), `10x the jobs: ${(tenfold / Math.max(base, 0.5)).toFixed(1)}x the time (${base.toFixed(1)} -> ${tenfold.toFixed(1)} ms)`);

  // A Sequential chain: init -> worker 1 -> worker 2 -> final, each operation its own column.
  const chain = [job(0, 0, 'MeanInit', 'scheduler', [1]), job(1, 0, 'Mean', 'w1', [2]), job(2, 0, 'Mean', 'w2', [3]), job(3, 0, 'MeanFinal', 'scheduler', [])];
  const c = layoutDag(chain);
  t.same(
    c.columns.map((x) => x.jobs.length),
    [1, 2, 1],
  );
  t.equal(c.edges.length, 3, 'every lock an edge');
  t.equal(c.edges.filter((e) => e.same).length, 1, 'the link between the two workers stays in their column');
  // The same chain over 120 workers: one lane, no arrow from the lane to itself.
  const long = [job(0, 0, 'MeanInit', 'scheduler', [1]), ...Array.from({ length: 120 }, (_, i) => job(i + 1, 0, 'Mean', `w-${i}`, [i + 2])), job(121, 0, 'MeanFinal', 'scheduler', [])];
  const l = layoutDag(long);
  t.ok(l.columns[1]?.collapsed, 'the chain of 120 workers is one lane');
  t.same(
    l.edges.map((e) => e.same),
    [false, false],
    'two arrows: into the lane and out of it',
  );
  const small = layoutDag(Array.from({ length: COLLAPSE_AT }, (_, i) => job(i, 0, 'Count', `w-${i}`, [])));
  t.notOk(small.columns[0]?.collapsed, `${COLLAPSE_AT} jobs are still drawn one by one`);
});

t.test('the model: pushes update in place, project counts follow the nodes', async (t) => {
  const model = new Model();
  const project = { id: 'p-1', name: 'california', workers: 0, datasources: 0, rows: 0 };
  const node = (i: number, connected: boolean): NodeInfo => ({
    id: `w-${i}`,
    name: `w-${i}`,
    role: 'worker',
    connected,
    lastSeen: 1,
    projects: 1,
    datasources: 1,
    sources: [{ projectId: 'p-1', name: 'd', rows: 10, features: 9 }],
  });
  model.applyNetwork({ type: 'network', reqId: 1, nodes: [], projects: [project], artifacts: [] });
  for (let i = 0; i < 1000; i++) model.applyNetworkEvent({ type: 'networkEvent', event: { kind: 'node', node: node(i, true) } });
  model.applyNetworkEvent({ type: 'networkEvent', event: { kind: 'node', node: node(7, false) } });
  const [line] = model.projectLines();
  t.equal(line?.workers, 999, 'the worker that left is not counted');
  t.equal(line?.rows, 9990);
  t.equal(line?.features, 9);

  const artifact = { id: 'a-x', projectId: 'p-1', state: 'RUNNING' as const, createdAt: 1, updatedAt: 1, progress: { completed: 0, total: 2 } };
  model.applyNetworkEvent({ type: 'networkEvent', event: { kind: 'artifact', artifact } });
  t.equal(model.artifacts.size, 1);
  model.select('a-x');
  const jobs = [job(0, 0, 'TestSleep', 'w-1', [1]), job(1, 1, 'Noop', 'scheduler', [])];
  model.applyStatus({ id: 'a-x', projectId: 'p-1', state: 'RUNNING', progress: { completed: 0, total: 2 }, jobs, createdAt: 1, updatedAt: 1 });
  const error = { code: 'WORKER_LOST' as const, message: 'gone', retryable: true };
  model.applyArtifactEvent({
    type: 'artifactEvent',
    artifactId: 'a-x',
    progress: { completed: 0, total: 2 },
    events: [{ kind: 'jobState', jobId: 'a-x.0', worker: 'w-1', state: 'FAILED', attempt: 1, error, nextAttemptAt: 5 }],
  });
  t.match(model.selected?.byId.get('a-x.0'), { state: 'FAILED', attempt: 1, lastError: error, nextAttemptAt: 5 });
  model.applyArtifactEvent({
    type: 'artifactEvent',
    artifactId: 'a-x',
    progress: { completed: 1, total: 2 },
    events: [{ kind: 'jobState', jobId: 'a-x.0', worker: 'w-1', state: 'COMPLETED', attempt: 2 }],
  });
  const j0 = model.selected?.byId.get('a-x.0');
  t.match(j0, { state: 'COMPLETED', attempt: 2, lastError: error }, 'the last error stays after a successful retry');
  t.equal(j0?.nextAttemptAt, undefined, 'no next retry once it is done');
  t.equal(model.selected?.status?.progress.completed, 1);
  model.applyNetworkEvent({ type: 'networkEvent', event: { kind: 'artifactDeleted', artifactId: 'a-x' } });
  t.equal(model.artifacts.size, 0);
});

t.test("results as tables: a model's Float64 bytes per feature, rounds flattened, group keys by feature", async (t) => {
  const features = ['a', 'b'];
  const bytes = new Uint8Array(new Float64Array([1.5, -2]).buffer);
  t.same(perFeatureArray(bytes, features), { a: 1.5, b: -2 }, 'raw little-endian Float64 bytes, one per feature');
  t.equal(perFeatureArray(new Uint8Array(24), features), undefined, 'another length is not per feature');
  t.same(perFeatureArray([3, 4], features), { a: 3, b: 4 });
  t.same(flatRow({ round: 1, samples: 10, metrics: { accuracy: 0.9, confusionMatrix: { labels: [0, 1] } } }), { round: 1, samples: 10, accuracy: 0.9 }, 'one level down, scalars only');
  t.same(flatRow({ key: [0, 'x'], count: 7 }, ['label', 'city']), { label: 0, city: 'x', count: 7 }, 'a group key as a column per feature');
  t.same(JSON.parse(toJson({ features, mean: bytes, bias: 1 })), { features, mean: [1.5, -2], bias: 1 }, 'the JSON download has numbers');
});

t.test('the timeline: a row per worker, a bar per job that ran, placed by its times; 3,000 jobs over 1,000 workers', async (t) => {
  const timed = (index: number, worker: string, state: JobStatus['state'], startedAt?: number, finishedAt?: number): JobStatus => ({
    ...job(index, 0, 'Mean', worker, []),
    state,
    attempt: startedAt === undefined ? 0 : 1,
    ...(startedAt === undefined ? {} : { startedAt }),
    ...(finishedAt === undefined ? {} : { finishedAt }),
  });
  const tl = layoutTimeline(
    [timed(0, 'scheduler', 'COMPLETED', 1000, 1100), timed(1, 'w-b', 'RUNNING', 1500), timed(2, 'w-a', 'COMPLETED', 1100, 1500), timed(3, 'scheduler', 'WAITING')],
    3000,
  );
  t.same([tl.from, tl.to], [1000, 3000], 'from the first start to now (a job still runs)');
  t.same(
    tl.rows.map((r) => r.worker),
    ['scheduler', 'w-a', 'w-b'],
    'workers in the order they first started; a job that never ran draws nothing',
  );
  t.same(tl.rows[1]?.bars.map((b) => [b.jobId, b.left, b.width, b.state]), [['a-x.2', 0.05, 0.2, 'COMPLETED']], 'a bar placed and sized by its times');
  t.equal(tl.rows[2]?.bars[0]?.width, 0.75, 'a running job reaches now');
  t.same(layoutTimeline([timed(0, 'w', 'SCHEDULED')], 5), { from: 0, to: 0, rows: [] }, 'nothing started: nothing drawn');
  const justStarted = layoutTimeline([timed(0, 'w', 'COMPLETED', 0, 1000), timed(1, 'w', 'RUNNING', 1000)], 1000).rows[0]?.bars[1];
  t.same([justStarted?.left, justStarted?.width], [1 - MIN_BAR, MIN_BAR], 'an attempt that just started is drawn inside the span');
  t.equal(layoutTimeline([timed(0, 'w', 'COMPLETED', 10, 10), timed(1, 'w', 'COMPLETED', 10, 1010)], 0).rows[0]?.bars[0]?.width, MIN_BAR, 'an instant job stays visible');

  const many: JobStatus[] = [];
  for (let i = 0; i < 3000; i++) many.push(timed(i, `w-${i % 1000}`, 'COMPLETED', 1000 + i, 1000 + i + 50));
  const big = layoutTimeline(many, 0);
  t.equal(big.rows.length, 1000, 'a row per worker');
  t.equal(big.rows.reduce((n, r) => n + r.bars.length, 0), 3000, 'a bar per job');
  t.ok(
    big.rows.every((r) => r.bars.every((b) => b.left >= 0 && b.left + b.width <= 1 + 1e-9)),
    'every bar inside the span',
  );
});
