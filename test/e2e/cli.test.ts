// Why: `fdl` is how operators and researchers meet the system from a terminal. Each command is
// run here as a user would run it, against real node processes, and checked for what it prints.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { Cluster, EXAMPLE_DATA } from '../../lib/sim/cluster.ts';
import { column, mean, readCsv, relErr, union } from '../helpers/central.ts';
import { LONG_SLEEP_MS, PROCESS_FILE_TIMEOUT_MS, waitForJob } from '../helpers/cluster.ts';
import { runFdl, startFdl } from '../helpers/fdl.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const shards = ['california_housing.MedInc1.csv', 'california_housing.MedInc2.csv'].map((f) => join(EXAMPLE_DATA, f));
const all = union(...shards.map(readCsv));
const token = randomBytes(16).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'fdl-cli-'));
const artifacts = fileURLToPath(new URL('../../examples/artifacts/', import.meta.url));

const cluster = await Cluster.start({
  dir,
  projectName: 'california',
  projectToken: token,
  workers: shards.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })),
});
t.teardown(async () => {
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
});

const wb = await cluster.connect('cli-test');
t.teardown(() => wb.close());

const fdl = (...args: string[]) => runFdl(args, { FDL_URL: cluster.url, FDL_TOKEN: cluster.workbenchToken });

t.test('fdl nodes and fdl projects', async (t) => {
  const nodes = await fdl('nodes', '--json');
  t.equal(nodes.code, 0, nodes.stderr);
  const list = JSON.parse(nodes.stdout) as Array<{ id: string; connected: boolean; role: string }>;
  t.same(list.map((n) => [n.id, n.role, n.connected]).sort(), [
    ['scheduler', 'scheduler', true],
    ['worker-1', 'worker', true],
    ['worker-2', 'worker', true],
  ]);
  const table = await fdl('nodes');
  t.match(table.stdout, /worker-1\s+worker\s+yes/);
  const projects = await fdl('projects');
  t.match(projects.stdout, /california\s+2\s+2\s+18576/, 'name, workers, data sources, rows');
  t.notMatch(projects.stdout, token, 'a listing never shows a token');
});

t.test('fdl datasources shows the aggregated schema only', async (t) => {
  const r = await fdl('datasources', '--project', token);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /2 workers, 2 data sources, 18576 rows/);
  t.match(r.stdout, /MedHouseValDiscrete\s+numeric\s+18576\s+0\s+0\s+0\.282407\s+1\s+0 1/);
  const json = JSON.parse((await fdl('datasources', '--project', token, '--json')).stdout) as { features: unknown[] };
  t.equal(json.features.length, 9);
  const bad = await fdl('datasources', '--project', 'wrong-token-1');
  t.equal(bad.code, 1);
  t.match(bad.stderr, /UNKNOWN_PROJECT/);
});

t.test('fdl submit --wait, then status and result', async (t) => {
  const r = await fdl('submit', join(artifacts, 'mean.yaml'), '--project', token, '--wait', '--json');
  t.equal(r.code, 0, r.stderr);
  const { id, result } = JSON.parse(r.stdout) as { id: string; result: { mean: Record<string, number> } };
  const age = column(all, 'HouseAge');
  const older = (f: string) => column(all, f).filter((_, i) => (age[i] as number) > 30);
  t.ok(relErr(result.mean.MedInc as number, mean(older('MedInc'))) <= 1e-9, 'MedInc mean over HouseAge > 30');
  t.ok(relErr(result.mean.AveRooms as number, mean(older('AveRooms'))) <= 1e-9, 'AveRooms mean over HouseAge > 30');
  t.match(r.stderr, /jobs.*4\/4/, 'progress was shown');

  const status = await fdl('status', id);
  t.match(status.stdout, new RegExp(`artifact ${id} \\(mean-of-older-blocks\\): COMPLETED, 4/4 jobs`));
  t.match(status.stdout, /worker-2\s+Mean\s+COMPLETED\s+1/);
  const fetched = await fdl('result', id);
  t.same(JSON.parse(fetched.stdout), result);

  const submitted = await fdl('submit', join(artifacts, 'count.json'), '--project', token);
  t.match(submitted.stdout, /^a-[0-9a-f-]+\n$/, 'without --wait: the id alone');
  const groups = await fdl('submit', join(artifacts, 'group-count.yaml'), '--project', token, '--wait');
  t.same(JSON.parse(groups.stdout).groups, [
    { key: [0], count: 13330 },
    { key: [1], count: 5246 },
  ]);
});

t.test('fdl cancel', async (t) => {
  // The sleep outlasts the test and the cancel waits for it to run: a cancel, never a finish.
  const file = join(dir, 'sleep.json');
  writeFileSync(
    file,
    JSON.stringify({ steps: [{ kind: 'Parallel', operation: { kind: 'TestSleep', ms: LONG_SLEEP_MS } }, { kind: 'Finalize', operation: { kind: 'Noop' } }] }),
  );
  const submitted = await fdl('submit', file, '--project', token);
  t.equal(submitted.code, 0, submitted.stderr);
  const id = submitted.stdout.trim();
  await waitForJob(await wb.watch(id), { state: 'RUNNING', operation: 'TestSleep' });
  const r = await fdl('cancel', id);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, new RegExp(`artifact ${id}: CANCELLED`));
  t.match(r.stdout, /^error: CANCELLED: cancelled by a workbench$/m);
});

t.test('clear errors: bad artifact file, unknown artifact, unreachable scheduler', async (t) => {
  const badFile = join(dir, 'bad.json');
  writeFileSync(badFile, JSON.stringify({ steps: [{ kind: 'Parallel', operation: { kind: 'Count', query: { where: { feature: 'x', op: '~' } } } }] }));
  const bad = await fdl('submit', badFile, '--project', token);
  t.equal(bad.code, 1);
  t.match(bad.stderr, /INVALID_ARTIFACT: steps\[0\]\.operation/);
  t.notMatch(bad.stderr, /\n\s+at /);
  const notJson = join(dir, 'bad.txt');
  writeFileSync(notJson, '{ nope');
  t.match((await fdl('submit', notJson, '--project', token)).stderr, /cannot read .*bad\.txt/);
  const unknown = await fdl('status', 'a-nope');
  t.match(unknown.stderr, /UNKNOWN_ARTIFACT/);
  const down = await fdl('nodes', '--url', 'ws://127.0.0.1:1');
  t.equal(down.code, 1);
  t.match(down.stderr, /cannot reach the scheduler at ws:\/\/127\.0\.0\.1:1/);
});

t.test('fdl status --watch follows the pushed events to the end: exit 0 when COMPLETED, 1 when ERROR', async (t) => {
  const submitted = await fdl('submit', join(artifacts, 'mean.yaml'), '--project', token);
  t.equal(submitted.code, 0, submitted.stderr);
  const id = submitted.stdout.trim();
  const watched = await fdl('status', id, '--watch');
  t.equal(watched.code, 0, watched.stderr);
  // mean.yaml is one Sequential step: init on the initiator, the chain through both workers, final.
  t.match(
    watched.stdout,
    new RegExp(`artifact ${id} \\(mean-of-older-blocks\\): COMPLETED, 4/4 jobs\\n  step 1  MeanInit/Mean/MeanFinal  \\[####\\]  done 4/4, running 0, failed 0, waiting 0; attempts 4\\n$`),
    'the last view: the end state, then the step with its jobs counted, one attempt each',
  );

  const lines = await fdl('status', id, '--watch', '--json');
  t.equal(lines.code, 0, lines.stderr);
  const views = lines.stdout.trim().split('\n').map((l) => JSON.parse(l) as { state: string; progress: { completed: number; total: number }; steps: Array<{ done: number; jobs: number }> });
  t.same(views.at(-1)?.progress, { completed: 4, total: 4 }, '--json: one JSON line per view, the last complete');
  t.equal(views.at(-1)?.state, 'COMPLETED');

  // Fails at once on every attempt, and has one: ERROR. The watch may start before or after it ends.
  const file = join(dir, 'fails.json');
  writeFileSync(file, JSON.stringify({ name: 'fails', steps: [{ kind: 'Parallel', operation: { kind: 'TestFail', failAttempts: 100 } }], policy: { maxAttempts: 1 } }));
  const failing = await fdl('submit', file, '--project', token);
  t.equal(failing.code, 0, failing.stderr);
  const failed = await fdl('status', failing.stdout.trim(), '--watch');
  t.equal(failed.code, 1, 'exit 1: the artifact failed');
  t.match(failed.stdout, /\(fails\): ERROR/);
  // The other worker's job may have failed too, or still be waiting or running when the first failure ended it.
  t.match(failed.stdout, /step 1\s+TestFail\s+\[[>x.]{2}\]\s+done 0\/2, running [01], failed [12], waiting [01]; attempts [12]/);
  t.match(failed.stdout, /^error \(job .* on worker-\d\): /m, 'the view names the failed job and its worker');
  t.match(failed.stderr, /ended ERROR/, 'and stderr says how it ended, in one line');
  t.notMatch(failed.stderr, /\n\s+at /);
});

t.test('fdl status --watch redraws as the pushes come, and exits 1 when the artifact is cancelled', async (t) => {
  // The sleep outlasts the test: the watch sees it waiting, then running, then cancelled.
  const file = join(dir, 'watch-sleep.json');
  writeFileSync(file, JSON.stringify({ name: 'sleepy', steps: [{ kind: 'Parallel', operation: { kind: 'TestSleep', ms: LONG_SLEEP_MS } }, { kind: 'Finalize', operation: { kind: 'Noop' } }] }));
  const submitted = await fdl('submit', file, '--project', token);
  t.equal(submitted.code, 0, submitted.stderr);
  const id = submitted.stdout.trim();
  const watch = startFdl(['status', id, '--watch', '--json'], { FDL_URL: cluster.url, FDL_TOKEN: cluster.workbenchToken });
  t.teardown(() => watch.kill('SIGKILL'));
  await watch.stdoutMatch(/"steps":\[\{"step":0,"iteration":0,"operation":"TestSleep","jobs":2,"done":0,"running":2/, { what: 'a view with both sleeps running' });
  await wb.cancel(id);
  const end = await watch.ended;
  t.equal(end.code, 1, 'exit 1: cancelled');
  const views = end.stdout.trim().split('\n').map((l) => JSON.parse(l) as { state: string });
  t.ok(views.length >= 2, `one view per change (${views.length})`);
  t.equal(views.at(-1)?.state, 'CANCELLED', 'the last view is the end');
  t.match(end.stderr, /ended CANCELLED/);
});

t.test('--json on every command that prints data, and fdl artifacts --project/--state', async (t) => {
  const json = async (...args: string[]) => {
    const r = await fdl(...args);
    t.equal(r.code, 0, `fdl ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as unknown;
  };
  const done = (await json('submit', join(artifacts, 'count.json'), '--project', token, '--wait', '--json')) as { id: string; result: { count: number } };
  t.equal(done.result.count, 18576, 'submit --wait --json: id and result');
  const id = ((await json('submit', join(artifacts, 'count.json'), '--project', token, '--json')) as { id: string }).id;
  t.match(id, /^a-/, 'submit --json: the id');
  t.equal(((await json('status', done.id, '--json')) as { state: string }).state, 'COMPLETED', 'status --json');
  const fetched = (await json('result', done.id, '--json')) as { id: string; result: unknown; provenance?: { complete: boolean } };
  t.same({ id: fetched.id, result: fetched.result }, { id: done.id, result: done.result }, 'result --json: id and result');
  t.equal(fetched.provenance?.complete, true, 'result --json: and its provenance');
  t.equal(((await json('projects', '--json')) as Array<{ name: string }>)[0]?.name, 'california', 'projects --json');
  t.equal(((await json('nodes', '--json')) as unknown[]).length, 3, 'nodes --json');
  t.equal(((await json('datasources', '--project', token, '--json')) as { rows: number }).rows, 18576, 'datasources --json');

  type Summary = { id: string; state: string; projectId: string };
  const listed = (await json('artifacts', '--json')) as Summary[];
  t.ok(listed.some((a) => a.id === done.id), 'fdl artifacts (list is the default) --json');
  const completed = (await json('artifacts', 'list', '--state', 'COMPLETED', '--json')) as Summary[];
  t.ok(completed.length > 0 && completed.every((a) => a.state === 'COMPLETED'), '--state COMPLETED: only those');
  t.ok(completed.some((a) => a.id === done.id));
  t.ok(((await json('artifacts', '--state', 'ERROR', '--json')) as Summary[]).every((a) => a.state === 'ERROR'), '--state ERROR: only those');
  const byProject = (await json('artifacts', '--project', 'california', '--limit', '2', '--json')) as Summary[];
  t.equal(byProject.length, 2, '--project by name, with --limit');
  t.same((await json('artifacts', '--project', byProject[0]?.projectId ?? '?', '--limit', '2', '--json')) as Summary[], byProject, '--project by id: the same');
  const table = await fdl('artifacts', '--state', 'COMPLETED');
  t.match(table.stdout, new RegExp(`${done.id}\\s+\\S*\\s*COMPLETED\\s+california`), 'the table, filtered');
  t.notMatch(table.stdout, /\s(ERROR|CANCELLED|RUNNING)\s/);
  const unknown = await fdl('artifacts', '--project', 'nope');
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /no project "nope"/);
  const badState = await fdl('artifacts', '--state', 'DONE');
  t.not(badState.code, 0);
  t.match(badState.stderr, /COMPLETED/, 'a wrong state lists the right ones');

  await wb.watch(id).then((h) => h.done());
  t.same(await json('artifacts', 'delete', id, '--json'), { deleted: id }, 'artifacts delete --json');

  const config = join(dir, 'scheduler.yaml');
  const created = (await json('tokens', 'create', '--config', config, '--kind', 'workbench', '--label', 'json', '--json')) as { id: string; kind: string; token: string };
  t.equal(created.kind, 'workbench', 'tokens create --json');
  const tokens = (await json('tokens', 'list', '--config', config, '--json')) as Array<{ id: string; label?: string }>;
  t.ok(tokens.some((x) => x.id === created.id && x.label === 'json'), 'tokens list --json');
  t.notMatch(JSON.stringify(tokens), created.token, 'never the token text');
  t.same(await json('tokens', 'revoke', '--config', config, created.id, '--json'), { revoked: true }, 'tokens revoke --json');
});

t.test('fdl demo --json runs the whole demo and reports every figure equal', async (t) => {
  const r = await fdl('demo', '--json');
  t.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { ok: boolean; results: Array<{ statistic: string; match: boolean }> };
  t.equal(doc.ok, true);
  t.equal(doc.results.length, 13);
  t.ok(doc.results.every((x) => x.match));
});
