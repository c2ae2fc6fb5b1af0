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
import { runFdl } from '../helpers/fdl.ts';

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

t.test('fdl demo --json runs the whole demo and reports every figure equal', async (t) => {
  const r = await fdl('demo', '--json');
  t.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { ok: boolean; results: Array<{ statistic: string; match: boolean }> };
  t.equal(doc.ok, true);
  t.equal(doc.results.length, 13);
  t.ok(doc.results.every((x) => x.match));
});
