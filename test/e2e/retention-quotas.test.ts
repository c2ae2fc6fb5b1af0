// Why: a scheduler used to keep every finished artifact for ever (rows, result files, the
// initiator's masks), and one workbench's burst of 300 submits delayed another's count from 0.1 s
// to 16 s. Now finished artifacts are deleted after the retention or on request, and each
// workbench token has a quota of artifacts in flight that leaves the others unaffected. Run as
// users would: real processes, the workbench library and the `fdl` command, the store's own files.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSqlite } from '../../lib/store/sqlite.ts';
import t from 'tap';
import { FdlError } from '../../lib/errors.ts';
import { FDL_BIN } from '../../lib/sim/cluster.ts';
import type { CountProduct, Workbench } from '../../lib/workbench.ts';
import { steps } from '../../lib/workbench.ts';
import { PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster, until } from '../helpers/cluster.ts';
import { storedBytes } from '../helpers/resources.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

/** What the scheduler's store holds of one artifact: row counts, resource files, the initiator's masks. */
function traces(schedulerDir: string, artifactId: string) {
  const db = openSqlite(join(schedulerDir, 'scheduler.sqlite'), { readonly: true });
  try {
    const count = (sql: string) => (db.prepare(sql).get(artifactId) as { n: number }).n;
    const resources = (db.prepare('SELECT id FROM resources WHERE artifact_id = ?').all(artifactId) as Array<{ id: string }>).map((r) => r.id);
    return {
      artifacts: count('SELECT COUNT(*) AS n FROM artifacts WHERE id = ?'),
      jobs: count('SELECT COUNT(*) AS n FROM jobs WHERE artifact_id = ?'),
      resources,
      stored: resources.filter((id) => storedBytes(schedulerDir, id) !== undefined).length,
      masks: existsSync(join(schedulerDir, 'locals', `${artifactId}.msgpack`)),
    };
  } finally {
    db.close();
  }
}

/** The error a workbench call ends with (the test fails if it succeeds). */
async function failure(p: Promise<unknown>): Promise<FdlError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof FdlError) return e;
    throw e;
  }
  throw new Error('expected the request to be refused');
}

async function statusGone(wb: Workbench, id: string): Promise<boolean> {
  try {
    await wb.status(id);
    return false;
  } catch (e) {
    return e instanceof FdlError && e.code === 'UNKNOWN_ARTIFACT';
  }
}

t.test('retention: a finished artifact is deleted by the sweep, rows, files and kept masks', async (t) => {
  const { wb, token, dir } = await testCluster(t, 'retention', {
    workers: [{ name: 'worker-1', files: [SHARDS[0] as string] }],
    scheduler: { retention: { finished_artifacts_ms: 1_000, sweep_interval_ms: 200 } },
  });
  const schedulerDir = join(dir, 'scheduler');
  const project = await wb.project(token);
  const count = await project.count();
  t.ok((await count.result<CountProduct>()).count > 0, 'the count ran');
  const before = traces(schedulerDir, count.id);
  t.equal(before.artifacts, 1);
  t.ok(before.jobs > 0 && before.resources.length > 0, `rows of its jobs and resources (${before.jobs}, ${before.resources.length})`);
  t.equal(before.stored, before.resources.length, 'bytes stored for each resource');
  t.notOk(before.masks, "no masks file: the initiator derives its masks from its secret");
  // A masks file an older version kept for it (it wins over derived masks while the artifact lives) goes with it.
  mkdirSync(join(schedulerDir, 'locals'), { recursive: true });
  writeFileSync(join(schedulerDir, 'locals', `${count.id}.msgpack`), 'masks of an older version');
  t.ok(traces(schedulerDir, count.id).masks, "an older version's masks file");

  await until(() => statusGone(wb, count.id), 30_000, `the sweep to delete ${count.id}`);
  t.pass('getStatus now says UNKNOWN_ARTIFACT');
  t.same(traces(schedulerDir, count.id), { artifacts: 0, jobs: 0, resources: [], stored: 0, masks: false }, 'no row, no file left');
  t.equal(
    before.resources.filter((id) => storedBytes(schedulerDir, id) !== undefined).length,
    0,
    'the resource bytes are gone from the disk (files and rows)',
  );
  t.match(await failure(wb.result(count.id)), { code: 'UNKNOWN_ARTIFACT' }, 'and so is its result');
});

t.test('quotas, listing and deletion on request', async (t) => {
  const otherToken = `fdl_w_${randomBytes(18).toString('base64url')}`;
  const elsewhereToken = `fdl_w_${randomBytes(18).toString('base64url')}`;
  const { cluster, wb, token, dir } = await testCluster(t, 'quotas', {
    workers: [{ name: 'worker-1', files: [SHARDS[0] as string] }],
    scheduler: { quotas: { artifacts_in_flight_per_workbench: 1 } },
    projects: [{ name: 'elsewhere', token: randomBytes(16).toString('hex') }],
    workbenchTokens: [{ token: otherToken }, { token: elsewhereToken, projects: ['elsewhere'] }],
  });
  const schedulerDir = join(dir, 'scheduler');
  const other = await cluster.connect('other', { token: otherToken });
  const elsewhere = await cluster.connect('elsewhere', { token: elsewhereToken });
  t.teardown(() => {
    other.close();
    elsewhere.close();
  });
  const fdl = (...args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [FDL_BIN, ...args], { env: { ...process.env, FDL_URL: cluster.url, FDL_TOKEN: cluster.workbenchToken }, timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });

  const project = await wb.project(token);
  const long = await project.submit({ name: 'long', steps: [steps.parallel({ kind: 'TestSleep', ms: 600_000 }), steps.finalize({ kind: 'Noop' })] });
  const refused = await failure(project.count());
  t.equal(refused.code, 'QUOTA_EXCEEDED', 'a second artifact in flight is refused');
  t.equal(refused.retryable, true, 'retryable: one will finish');
  t.match(refused.message, /has 1 artifacts in flight \(SCHEDULED or RUNNING\), its limit is 1 \(quotas\.artifacts_in_flight_per_workbench\)/);

  const theirs = await (await other.project(token)).count();
  t.ok((await theirs.result<CountProduct>()).count > 0, 'another workbench token is unaffected');

  const listed = await fdl('artifacts', 'list', '--json');
  t.equal(listed.code, 0, listed.stderr);
  const list = JSON.parse(listed.stdout) as Array<{ id: string; state: string; finishedAt?: number }>;
  t.same(list.map((a) => a.id), [theirs.id, long.id], 'every artifact of the projects in scope, newest first');
  t.equal(list[0]?.state, 'COMPLETED');
  t.ok(list[0]?.finishedAt, 'a finished one says when');
  t.notOk(list[1]?.finishedAt, 'a running one does not');
  const table = await fdl('artifacts', 'list');
  t.match(table.stdout, /^id\s+name\s+state\s+project\s+submitted\s+finished\n/, 'a table with a header');
  t.match(table.stdout, new RegExp(`${long.id}\\s+long\\s+(SCHEDULED|RUNNING)\\s+california\\s+\\S+Z\\n`), 'naming the project');
  t.same(await elsewhere.artifacts(), [], "a token scoped to another project sees none of them");

  const running = await fdl('artifacts', 'delete', long.id);
  t.equal(running.code, 1, 'a running artifact cannot be deleted');
  t.match(running.stderr, new RegExp(`^fdl: ARTIFACT_NOT_FINISHED: artifact ${long.id} is (SCHEDULED|RUNNING): cancel it first \\(fdl cancel ${long.id}\\), then delete it\\n$`));
  t.match(await failure(elsewhere.deleteArtifact(theirs.id)), { code: 'UNKNOWN_ARTIFACT' }, 'outside the scope it does not exist');

  t.equal((await long.cancel()).state, 'CANCELLED');
  const next = await project.count();
  t.ok((await next.result<CountProduct>()).count > 0, 'once cancelled, it no longer counts against the quota');

  mkdirSync(join(schedulerDir, 'locals'), { recursive: true });
  writeFileSync(join(schedulerDir, 'locals', `${next.id}.msgpack`), 'masks of an older version');
  const before = traces(schedulerDir, next.id);
  t.ok(before.stored > 0 && before.masks, "the finished count has stored resources and an older version's masks file");
  const deleted = await fdl('artifacts', 'delete', next.id);
  t.equal(deleted.code, 0, deleted.stderr);
  t.equal(deleted.stdout, `deleted ${next.id}\n`);
  t.same(traces(schedulerDir, next.id), { artifacts: 0, jobs: 0, resources: [], stored: 0, masks: false }, 'no row, no file left');
  t.equal(before.resources.filter((id) => storedBytes(schedulerDir, id) !== undefined).length, 0, 'no bytes left (files and rows)');
  t.ok(await statusGone(wb, next.id), 'getStatus says UNKNOWN_ARTIFACT');
  const again = await fdl('artifacts', 'delete', next.id);
  t.match(again.stderr, /UNKNOWN_ARTIFACT/, 'a second delete finds nothing');
  await wb.deleteArtifact(long.id);
  t.same((await wb.artifacts()).map((a) => a.id), [theirs.id], 'a cancelled artifact can be deleted too');
});
