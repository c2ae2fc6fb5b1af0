// Why: the scheduler's store is the network's memory. It must keep working across schema changes
// (migrations over an existing work directory), refuse to start as a brand-new network where one
// was held (a lost or damaged file would forget every artifact and every pinned node key), and
// delete what retention or a workbench says to delete: rows, resource bytes and masks alike.
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqlite } from '../lib/store/sqlite.ts';
import t, { type Test } from 'tap';
import { ArtifactStatusSchema, RetryPolicySchema, type Step } from '../protocols/entities.ts';
import { bindArtifact } from '../lib/plan/index.ts';
import { sha256Hex } from '../lib/store/blobs.ts';
import { CHUNK_BYTES } from '../lib/store/chunks.ts';
import { MIGRATIONS, SCHEMA_VERSION, StoreCheckError } from '../lib/store/db.ts';
import { LOCALS_DIR, LocalsStore } from '../lib/store/locals.ts';
import { NETWORK_MARKER, openSchedulerStore } from '../lib/store/network.ts';
import { artifactSha256, provenanceOf } from '../lib/provenance.ts';
import { artifactStatus } from '../lib/store/status.ts';
import { forEachEngine } from './helpers/engines.ts';
import { PROCESS_FILE_TIMEOUT_MS } from './helpers/cluster.ts';
import { DATABASE_FILE, RESOURCES_DIR, Store } from '../lib/store/store.ts';

// Each PostgreSQL store makes a database and starts its bridge's thread (which transpiles its
// entry under tsx: ~1-3 s of CPU): the longer timeout of files that start processes, for npm run test:slow.
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const STEPS: Step[] = [
  { kind: 'Parallel', operation: { kind: 'Noop' } },
  { kind: 'Finalize', operation: { kind: 'Noop' } },
];

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'fdl-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function addArtifact(store: Store, id: string, opts: { projectId: string; now: number; submitterTokenId?: string }): void {
  store.createArtifact({
    id,
    projectId: opts.projectId,
    projectToken: 'token-123456',
    spec: { name: id, steps: STEPS },
    policy: RetryPolicySchema.parse({}),
    plan: bindArtifact(STEPS, { initiator: 's', workers: ['w1'] }),
    now: opts.now,
    ...(opts.submitterTokenId ? { submitterTokenId: opts.submitterTokenId } : {}),
  });
}

/** The refusal a store check gives, as the operator would read it. */
function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof StoreCheckError) return e.message;
    throw e;
  }
  throw new Error('expected a StoreCheckError, the store opened');
}

t.test('schema versions: a fresh store is at the latest; an unversioned one is taken as version 1 and migrated', async (t) => {
  const dir = tempDir(t);
  const fresh = new Store(dir);
  fresh.close();
  const version = (file: string) => {
    const db = openSqlite(file, { readonly: true });
    try {
      return db.pragmaValue('user_version');
    } finally {
      db.close();
    }
  };
  t.equal(version(join(dir, DATABASE_FILE)), SCHEMA_VERSION, 'a new file is stamped with the latest version');

  // A work directory from before versioning: version 1's tables, user_version 0, rows in them.
  const old = tempDir(t);
  const db = openSqlite(join(old, DATABASE_FILE));
  db.exec(MIGRATIONS[0]?.sql ?? '');
  db.prepare(
    `INSERT INTO artifacts (id, project_id, project_token, name, spec_json, policy_json, state, exits_json, created_at, updated_at)
     VALUES ('a-old', 'p-1', 'token', 'old', ?, ?, 'COMPLETED', '[1]', 10, 20)`,
  ).run(JSON.stringify({ steps: STEPS }), JSON.stringify(RetryPolicySchema.parse({})));
  t.equal(db.pragmaValue('user_version'), 0);
  db.close();
  const store = new Store(old);
  const artifact = store.artifact('a-old');
  t.equal(artifact?.state, 'COMPLETED', 'its rows are kept');
  t.equal(artifact?.submitterTokenId, undefined, 'the column of version 2 is there, empty');
  t.equal(store.artifactsInFlight('t-any'), 0);
  store.close();
  t.equal(version(join(old, DATABASE_FILE)), SCHEMA_VERSION, 'and it is now at the latest version');
  const again = new Store(old);
  t.equal(again.artifact('a-old')?.name, 'old', 'opening it again migrates nothing twice');
  again.close();
});

t.test('no index of the schema repeats another: each costs a page write per insert', async (t) => {
  const dir = tempDir(t);
  new Store(dir).close();
  const db = openSqlite(join(dir, DATABASE_FILE), { readonly: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all<{ name: string }>();
    let indices = 0;
    for (const { name: table } of tables) {
      const seen = new Map<string, string>();
      for (const index of db.pragma<{ name: string; partial: number }>(`index_list(${table})`)) {
        if (index.partial) continue; // a partial index covers other rows than a full one on the same columns
        const columns = db.pragma<{ name: string }>(`index_info(${index.name})`).map((c) => c.name).join(', ');
        const other = seen.get(columns);
        t.notOk(other, `${table}: ${index.name} on (${columns}) ${other ? `repeats ${other}` : 'repeats no other index'}`);
        seen.set(columns, index.name);
        indices++;
      }
    }
    t.ok(indices >= 5, `the check saw the schema's indices (${indices})`);
  } finally {
    db.close();
  }
});

t.test('a store written by a newer fdl is refused, and --init-store does not replace it', async (t) => {
  const dir = tempDir(t);
  new Store(dir).close();
  const db = openSqlite(join(dir, DATABASE_FILE));
  db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  db.close();
  t.match(refusal(() => new Store(dir)), new RegExp(`schema version ${SCHEMA_VERSION + 1}, newer than this fdl knows \\(${SCHEMA_VERSION}\\): run a newer fdl`));
  t.match(refusal(() => openSchedulerStore(dir, { initStore: true })), /run a newer fdl/);
  t.ok(existsSync(join(dir, DATABASE_FILE)), 'the file is left where it is');
});

forEachEngine(t, 'retention queries: only finished artifacts past the cutoff; deleting removes rows and bytes', async (t, open) => {
  const store = open();
  t.teardown(() => store.close());
  const p = store.ensureProject('p', 'token-123456').id;
  addArtifact(store, 'a-done-old', { projectId: p, now: 1_000, submitterTokenId: 't-1' });
  addArtifact(store, 'a-done-new', { projectId: p, now: 1_000, submitterTokenId: 't-1' });
  addArtifact(store, 'a-running', { projectId: p, now: 1_000, submitterTokenId: 't-1' });
  addArtifact(store, 'a-other', { projectId: p, now: 1_000, submitterTokenId: 't-2' });
  store.setArtifactState('a-done-old', 'COMPLETED', 2_000);
  store.setArtifactState('a-done-new', 'CANCELLED', 9_000);
  store.setArtifactState('a-running', 'RUNNING', 2_000);
  t.same(store.finishedBefore(5_000, 10), ['a-done-old'], 'a running artifact is never due, a recent finished one not yet');
  t.same(store.finishedBefore(10_000, 10), ['a-done-old', 'a-done-new'], 'oldest first');
  t.same(store.finishedBefore(10_000, 1), ['a-done-old'], 'in batches');
  t.equal(store.artifactsInFlight('t-1'), 1, 't-1 has one artifact SCHEDULED or RUNNING');
  t.equal(store.artifactsInFlight('t-2'), 1, 'and t-2 one of its own');

  const ref = store.putResource({ artifactId: 'a-done-old', jobId: 'a-done-old.0', producer: 'w1', sha256: 'x'.repeat(64) }, Uint8Array.of(1), 2_000);
  t.ok(store.resource(ref.id), 'a resource of the artifact');
  t.equal(store.deleteArtifact('a-done-old'), true);
  t.equal(store.artifact('a-done-old'), undefined, 'the artifact row is gone');
  t.same(store.jobs('a-done-old'), [], 'its job rows too');
  t.equal(store.resource(ref.id), undefined, 'its resource row too');
  t.throws(() => store.blobs.get(ref.id, ref.sha256), { code: 'UNKNOWN_RESOURCE' }, 'and its bytes');
  t.equal(store.deleteArtifact('a-done-old'), false, 'a second delete finds nothing');
  t.ok(store.artifact('a-done-new'), 'other artifacts are untouched');
});

forEachEngine(t, 'listArtifacts: newest first, within the scope, bounded', async (t, open) => {
  const store = open();
  t.teardown(() => store.close());
  const p1 = store.ensureProject('p1', 'token-111111').id;
  const p2 = store.ensureProject('p2', 'token-222222').id;
  addArtifact(store, 'a-1', { projectId: p1, now: 1 });
  addArtifact(store, 'a-2', { projectId: p2, now: 2 });
  addArtifact(store, 'a-3', { projectId: p1, now: 3 });
  t.same(store.listArtifacts(undefined, 10).map((a) => a.id), ['a-3', 'a-2', 'a-1'], 'every project, newest first');
  t.same(store.listArtifacts(new Set([p1]), 10).map((a) => a.id), ['a-3', 'a-1'], 'a scope sees only its projects');
  t.same(store.listArtifacts(new Set(), 10), [], 'an empty scope sees nothing');
  t.same(store.listArtifacts(undefined, 2).map((a) => a.id), ['a-3', 'a-2'], 'at most the limit');
});

t.test("a deleted artifact's locals are gone from memory and disk", async (t) => {
  const dir = join(tempDir(t), LOCALS_DIR);
  const locals = new LocalsStore(dir);
  locals.for('a-1').set('mask', 42);
  locals.for('a-2').set('mask', 7);
  t.ok(existsSync(join(dir, 'a-1.msgpack')));
  locals.delete('a-1');
  t.notOk(existsSync(join(dir, 'a-1.msgpack')), 'the file is deleted');
  t.equal(locals.for('a-1').get('mask'), undefined, 'and the cached copy');
  t.equal(locals.for('a-2').get('mask'), 7, "another artifact's locals stay");
  t.doesNotThrow(() => locals.delete('a-none'), 'deleting what is not there is fine');
});

t.test('a work directory that has held a network never starts as a new one by itself', async (t) => {
  const dir = tempDir(t);
  const first = openSchedulerStore(dir);
  first.store.ensureProject('p', 'token-123456');
  first.store.close();
  t.ok(existsSync(join(dir, NETWORK_MARKER)), 'a fresh directory starts a network and writes its marker');
  const again = openSchedulerStore(dir);
  t.equal(again.network.networkId, first.network.networkId, 'the same network at the next start');
  again.store.close();

  const dbFile = join(dir, DATABASE_FILE);
  rmSync(dbFile);
  t.match(refusal(() => openSchedulerStore(dir)), new RegExp(`scheduler\\.sqlite is missing, but this work directory has held network ${first.network.networkId}`));
  t.notOk(existsSync(dbFile), 'and no new file was made');
  writeFileSync(dbFile, '');
  t.match(refusal(() => openSchedulerStore(dir)), /scheduler\.sqlite is empty \(0 bytes\), but this work directory has held network/);

  // A store from another network copied in.
  const elsewhere = tempDir(t);
  openSchedulerStore(elsewhere).store.close();
  rmSync(dbFile);
  copyDatabase(join(elsewhere, DATABASE_FILE), dbFile);
  t.match(refusal(() => openSchedulerStore(dir)), /scheduler\.sqlite holds network n-[0-9a-f-]+, but this work directory has held network/);

  // --init-store: a new network; the old files kept aside, nothing destroyed.
  const replaced = openSchedulerStore(dir, { initStore: true });
  t.not(replaced.network.networkId, first.network.networkId, 'a new network');
  t.match(replaced.replaced?.problem, /holds network/);
  t.same(replaced.store.listProjects(), [], 'which starts empty');
  replaced.store.close();
  const aside = readdirSync(dir).filter((f) => f.startsWith('replaced-'));
  t.equal(aside.length, 1, 'the old files are in one folder');
  t.ok(existsSync(join(dir, aside[0] ?? '', DATABASE_FILE)), 'the old database among them');
  const healthy = openSchedulerStore(dir, { initStore: true });
  t.equal(healthy.network.networkId, replaced.network.networkId, '--init-store never replaces a healthy store');
  t.equal(healthy.replaced, undefined);
  healthy.store.close();

  // The marker lost, the store intact: the marker is written again from the store.
  rmSync(join(dir, NETWORK_MARKER));
  const remarked = openSchedulerStore(dir);
  t.equal(remarked.network.networkId, replaced.network.networkId, 'the store is the authority');
  remarked.store.close();
  t.ok(existsSync(join(dir, NETWORK_MARKER)));
});

t.test('a damaged page is found at open, not when a query reaches it', async (t) => {
  const dir = tempDir(t);
  const { store } = openSchedulerStore(dir);
  const p = store.ensureProject('p', 'token-123456').id;
  for (let i = 0; i < 50; i++) addArtifact(store, `a-${i}`, { projectId: p, now: i });
  store.close();
  const dbFile = join(dir, DATABASE_FILE);
  const size = statSync(dbFile).size;
  t.ok(size > 16 * 4096, `the file has many pages (${size} bytes)`);
  // Page 1 (the header and the schema) stays; every page after the 4th is overwritten.
  const fd = openSync(dbFile, 'r+');
  writeSync(fd, Buffer.alloc(size - 4 * 4096, 0xa5), 0, size - 4 * 4096, 4 * 4096);
  closeSync(fd);
  const message = refusal(() => openSchedulerStore(dir));
  t.match(message, /scheduler\.sqlite (is damaged \(PRAGMA quick_check: .+\)|cannot be read \(.+\)): restore it from a backup, or start a new network with fdl node --init-store$/);
  t.notMatch(message, /\n/, 'one line');
  const fresh = openSchedulerStore(dir, { initStore: true });
  t.ok(fresh.replaced, 'with --init-store it starts a new network');
  fresh.store.close();
});

t.test('work directories from before the marker: adopted when their store has rows, refused when it was lost', async (t) => {
  const dir = tempDir(t);
  const legacy = new Store(dir);
  legacy.schedulerId('scheduler');
  legacy.close();
  t.notOk(existsSync(join(dir, NETWORK_MARKER)));
  const adopted = openSchedulerStore(dir);
  adopted.store.close();
  t.ok(existsSync(join(dir, NETWORK_MARKER)), 'stamped at its first start with a healthy store');

  const lost = tempDir(t);
  new Store(lost).close();
  t.ok(existsSync(join(lost, RESOURCES_DIR)), 'an old scheduler made resources/');
  rmSync(join(lost, DATABASE_FILE));
  t.match(refusal(() => openSchedulerStore(lost)), /scheduler\.sqlite is missing, but this work directory has held a network/);
});

function copyDatabase(from: string, to: string): void {
  const db = openSqlite(from, { readonly: true });
  try {
    db.exec(`VACUUM INTO '${to.replace(/'/g, "''")}'`);
  } finally {
    db.close();
  }
}

forEachEngine(t, 'the status read from the rows equals the status built from whole artifacts and jobs, in every state', async (t, open) => {
  const store = open();
  t.teardown(() => store.close());
  addArtifact(store, 'a-status', { projectId: 'p-1', now: 1000 });
  const whole = () => {
    const artifact = store.artifact('a-status');
    if (!artifact) throw new Error('no artifact');
    return artifactStatus(artifact, store.jobs('a-status'));
  };
  t.same(store.status('a-status'), whole(), 'just submitted');
  const [first, second] = store.jobs('a-status');
  if (!first || !second) throw new Error('the plan has two jobs');
  store.updateJob(first.id, { state: 'RUNNING', attempt: 1, startedAt: 1500 });
  t.match(store.status('a-status')?.jobs[0], { startedAt: 1500, finishedAt: undefined }, 'a running attempt has its start, no end');
  store.updateJob(first.id, { state: 'FAILED', attempt: 1, lastError: { code: 'WORKER_LOST', message: 'away', retryable: true }, nextAttemptAt: 5000, finishedAt: 1800 });
  store.setArtifactState('a-status', 'RUNNING', 2000);
  t.same(store.status('a-status'), whole(), 'a failed attempt waiting for its retry');
  t.match(store.status('a-status')?.jobs[0], { startedAt: 1500, finishedAt: 1800 }, 'it stopped');
  store.updateJob(first.id, { state: 'RUNNING', attempt: 2, startedAt: 5100 });
  const retried = store.jobs('a-status')[0];
  t.match(retried, { startedAt: 5100, finishedAt: undefined }, 'a new attempt running: its start, and the last end cleared');
  t.same(store.status('a-status'), whole(), 'a second attempt running');
  store.updateJob(first.id, { state: 'ERROR', leftOut: true, finishedAt: 5200 });
  store.updateJob(second.id, { state: 'COMPLETED', attempt: 1, resultResourceId: 'r-1', startedAt: 5300 });
  store.updateJob(second.id, { state: 'COMPLETED', finishedAt: 5400 });
  store.setArtifactState('a-status', 'COMPLETED', 3000, { resultResourceId: 'r-1' });
  const done = store.status('a-status');
  t.same(done, whole(), 'completed with a job left out');
  t.same(done?.progress, { completed: 2, total: 2 });
  // t.same is loose (1 equals '1'): the wire's schema is not.
  const onWire = ArtifactStatusSchema.safeParse(done);
  t.ok(onWire.success, `the status is valid on the wire${onWire.success ? '' : `: ${JSON.stringify(onWire.error.issues[0])}`}`);
  t.equal(store.status('a-missing'), undefined);
  t.same(store.artifactHead('a-status'), { id: 'a-status', projectId: 'p-1', state: 'COMPLETED', resultResourceId: 'r-1' });
});

forEachEngine(t, 'a kept status is shared and frozen until its artifact changes, and read again after every change', async (t, open) => {
  const store = open();
  t.teardown(() => store.close());
  addArtifact(store, 'a-kept', { projectId: 'p-1', now: 1000 });
  addArtifact(store, 'a-other', { projectId: 'p-1', now: 1000 });
  const first = store.status('a-kept');
  t.ok(first && Object.isFrozen(first) && Object.isFrozen(first.jobs) && Object.isFrozen(first.jobs[0]), 'frozen, jobs and all');
  t.equal(store.status('a-kept'), first, 'nothing changed: the same status');
  t.throws(() => {
    (first?.jobs[0] as { state: string }).state = 'COMPLETED';
  }, TypeError, 'a reader cannot change it for the others');
  const [job] = store.jobs('a-kept');
  if (!job) throw new Error('the plan has jobs');
  // Each change of what a status shows gives a new one, equal to what the rows say.
  const reread = (what: string) => {
    const artifact = store.artifact('a-kept');
    if (!artifact) throw new Error('no artifact');
    const now = store.status('a-kept');
    t.same(now, artifactStatus(artifact, store.jobs('a-kept')), what);
    return now;
  };
  const other = store.status('a-other');
  store.updateJob(job.id, { state: 'RUNNING', attempt: 1, startedAt: 1500 });
  const running = reread('a job started');
  t.not(running, first, 'not the kept one');
  t.equal(running?.jobs[0]?.state, 'RUNNING');
  t.equal(store.status('a-other'), other, "another artifact's kept status stays");
  store.updateJob(job.id, { state: 'COMPLETED', finishedAt: 1600 });
  t.equal(reread('a job completed')?.progress.completed, 1);
  store.setArtifactState('a-kept', 'ERROR', 2000, { error: { error: { code: 'INTERNAL', message: 'x', retryable: false } } });
  t.equal(reread('the artifact ended')?.state, 'ERROR');
  t.ok(store.deleteArtifact('a-kept'));
  t.equal(store.status('a-kept'), undefined, 'deleted: no status');
  addArtifact(store, 'a-kept', { projectId: 'p-2', now: 3000 });
  t.equal(reread('made again under the same id')?.projectId, 'p-2');
});

forEachEngine(t, 'the project list is kept, frozen, until a project is added', async (t, open) => {
  const store = open();
  t.teardown(() => store.close());
  const a = store.ensureProject('b-project', 'token-bbbbbbbb');
  const first = store.listProjects();
  t.same(first, [a]);
  t.ok(Object.isFrozen(first) && Object.isFrozen(first[0]), 'frozen, each project too');
  t.equal(store.listProjects(), first, 'nothing changed: the same list');
  store.ensureProject('b-project', 'token-bbbbbbbb');
  const c = store.ensureProject('a-project', 'token-aaaaaaaa');
  t.same(store.listProjects(), [c, a], 'a project added: in the list, by name');
});

forEachEngine(t, "holders of a project's data: kept per project, read by key, changed by what a node announces, forgotten on request", async (t, open) => {
  const store = open();
  t.teardown(() => store.close());
  const a = store.ensureProject('a', 'token-aaaaaaaa');
  const b = store.ensureProject('b', 'token-bbbbbbbb');
  store.setHoldings('w2', [a.id]);
  store.setHoldings('w1', [a.id, b.id]);
  t.same(store.holdersOf(a.id), ['w1', 'w2'], 'sorted by id');
  t.same(store.holdersOf(b.id), ['w1']);
  store.setHoldings('w1', [b.id]);
  t.same(store.holdersOf(a.id), ['w2'], 'a node that no longer announces a project stops holding it');
  t.same(store.holdersOf(b.id), ['w1'], 'and keeps the others');
  t.equal(store.forgetHolder('w1'), 1, 'forgotten: the projects it held');
  t.same(store.holdersOf(b.id), []);
  t.same(store.holdersOf(a.id), ['w2'], 'the others are untouched');
});

forEachEngine(t, 'a store from before holders were kept learns them once, from what each worker announced', async (t, open) => {
  const dir = tempDir(t);
  const first = open(dir);
  const p = first.ensureProject('california', 'token-california');
  const ds = { name: 'd', rows: 3, features: [] };
  first.upsertNode({ id: 'w1', name: 'w1', role: 'worker', lastSeen: 1, projects: [{ token: 'token-california', datasources: [ds] }] });
  first.upsertNode({ id: 'w2', name: 'w2', role: 'worker', lastSeen: 1, projects: [{ token: 'token-california', datasources: [] }] });
  first.upsertNode({ id: 'w3', name: 'w3', role: 'worker', lastSeen: 1, projects: [{ token: 'token-unknown-project', datasources: [ds] }] });
  first.close();
  const second = open(dir);
  t.teardown(() => second.close());
  second.backfillHolders();
  t.same(second.holdersOf(p.id), ['w1'], 'only a worker that announced a data source for a known project');
  second.forgetHolder('w1');
  second.backfillHolders();
  t.same(second.holdersOf(p.id), [], 'once: a forgotten holder is not brought back by a restart');
});

forEachEngine(t, 'createArtifact gives back the artifact and jobs as artifact() and jobs() read them', async (t, open) => {
  const store = open();
  t.teardown(() => store.close());
  const steps: Step[] = [
    { kind: 'Parallel', quorum: 1, operation: { kind: 'Train', model: { type: 'logisticRegression', features: ['x'], label: 'y', seed: 7 } } },
    { kind: 'Sequential', init: { kind: 'CountInit' }, operation: { kind: 'Count' }, final: { kind: 'CountFinal' }, encryption: true },
  ];
  const written = store.createArtifact({
    id: 'a-back',
    projectId: 'p-1',
    projectToken: 'token-123456',
    spec: { name: 'back', steps },
    policy: RetryPolicySchema.parse({}),
    plan: bindArtifact(steps, { initiator: 's', workers: ['w1', 'w2'] }),
    now: 5,
    submitterTokenId: 't-1',
    workers: ['w1', 'w2'],
    absent: ['w2'],
  });
  t.strictSame(written.artifact, store.artifact('a-back'), 'the artifact, field for field');
  t.strictSame(written.jobs, store.jobs('a-back'), 'every job, field for field (quorum, seal, locks, operation)');
  t.ok(written.jobs.some((j) => j.seal) && written.jobs.some((j) => j.quorum), 'the plan had sealed and quorum jobs to compare');
});

forEachEngine(t, "a completed artifact's provenance: holders, rows, left-out jobs, seeds, hash, software; kept in the status", async (t, open) => {
  const store = open();
  t.teardown(() => store.close());
  const steps: Step[] = [
    { kind: 'Parallel', quorum: 1, operation: { kind: 'Train', model: { type: 'logisticRegression', features: ['x'], label: 'y', seed: 7 } } },
    { kind: 'Finalize', operation: { kind: 'TrainTest', model: { type: 'logisticRegression', features: ['x'], label: 'y' }, testFraction: 0.2 } },
  ];
  store.createArtifact({
    id: 'a-prov',
    projectId: 'p-1',
    projectToken: 'token-123456',
    spec: { steps },
    policy: RetryPolicySchema.parse({}),
    plan: bindArtifact(steps, { initiator: 's', workers: ['w1', 'w2'] }),
    now: 1,
    workers: ['w1', 'w2'],
    absent: ['w2'],
  });
  const [w1, w2, fin] = store.jobs('a-prov');
  if (!w1 || !w2 || !fin) throw new Error('three jobs');
  store.updateJob(w1.id, { state: 'COMPLETED', attempt: 1, resultResourceId: 'r-1', rows: 120 });
  store.updateJob(w2.id, { state: 'ERROR', leftOut: true });
  store.updateJob(fin.id, { state: 'COMPLETED', attempt: 1, resultResourceId: 'r-2' });
  const artifact = store.artifact('a-prov');
  if (!artifact) throw new Error('no artifact');
  t.same(artifact.absent, ['w2'], 'the holders away at submit are kept');
  const p = provenanceOf(artifact, store.jobs('a-prov'));
  t.same(
    { ...p, software: undefined },
    {
      complete: false,
      workers: [
        { nodeId: 'w1', rows: 120, completedJobs: 1, leftOutJobs: 0 },
        { nodeId: 'w2', completedJobs: 0, leftOutJobs: 1 },
      ],
      included: ['w1'],
      leftOut: ['w2'],
      rows: 120,
      leftOutJobs: [w2.id],
      seeds: { model: [0, 7], split: [0] },
      artifactSha256: artifactSha256({ steps }),
      software: undefined,
    },
  );
  t.match(p.software, { name: 'fdl', version: /^\d+\.\d+\.\d+/, protocolVersion: Number }, 'the software: package name and version, protocol version');
  t.equal(artifactSha256({ steps }), artifactSha256(JSON.parse(JSON.stringify({ steps }).replace('"kind":"Parallel","quorum":1', '"quorum":1,"kind":"Parallel"'))), 'the hash does not depend on key order');
  store.setArtifactState('a-prov', 'COMPLETED', 2, { resultResourceId: 'r-2', provenance: p });
  t.same(store.status('a-prov')?.provenance, p, 'the status carries it');
  t.same(store.provenance('a-prov'), p, 'read by key');
});

t.test("the SQLite adapter (lib/store/sqlite.ts): what it promises over the binding's own behaviour", async (t) => {
  const file = join(tempDir(t), 'adapter.sqlite');
  t.throws(() => openSqlite(file, { fileMustExist: true }), { code: 'SQLITE_CANTOPEN' }, 'fileMustExist: a missing file is not created');
  t.notOk(existsSync(file));
  const db = openSqlite(file);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, bytes BLOB)');
  const insert = db.prepare('INSERT INTO t (name, bytes) VALUES (?, ?)');
  t.same(insert.run('a', Buffer.from([1, 2, 3])), { changes: 1, lastInsertRowid: 1 }, 'run(): changes and rowid, nothing else');
  const row = db.prepare('SELECT * FROM t WHERE id = ?').get(1) as Record<string, unknown>;
  t.equal(Object.getPrototypeOf(row), Object.prototype, 'a row is a plain object');
  t.same(Object.keys(row), ['id', 'name', 'bytes'], 'holding its columns only');
  t.ok(Buffer.isBuffer(row.bytes) && (row.bytes as Buffer).equals(Buffer.from([1, 2, 3])), 'a BLOB is a Buffer');
  t.ok(db.prepare('SELECT * FROM t').all().every((r) => Object.getPrototypeOf(r) === Object.prototype && Buffer.isBuffer(r.bytes)), 'so are all() rows');
  t.equal(db.prepare('SELECT * FROM t WHERE id = ?').get(99), undefined);
  t.equal(db.prepare('SELECT name FROM t WHERE id = ?').value(1), 'a', 'value(): the first column of the first row');
  t.equal(db.prepare('SELECT total_changes()').value(), 1);
  db.pragma('user_version = 7');
  t.equal(db.pragmaValue('user_version'), 7, "pragmaValue(): the pragma's one value");
  t.same(db.pragma('quick_check'), [{ quick_check: 'ok' }], "pragma(): the pragma's rows");

  const add = db.transaction((name: string) => {
    insert.run(name, null);
    if (name === 'bad') throw new Error('refused');
  });
  add.immediate('b');
  t.throws(() => add('bad'), /refused/);
  const outer = db.transaction(() => {
    insert.run('c', null);
    t.throws(() => add('bad'), /refused/, 'a nested transaction rolls back alone (a savepoint)');
  });
  outer();
  t.same(db.prepare('SELECT name FROM t ORDER BY id').all(), [{ name: 'a' }, { name: 'b' }, { name: 'c' }], 'what threw left no row');
  t.notOk(db.inTransaction);

  db.close();
  t.notOk(db.open);
  t.throws(() => insert.run('d', null), 'a statement of a closed database throws');
  t.notOk(existsSync(`${file}-wal`), 'close() moved the WAL into the file (the statements above are still referenced)');
  const reader = openSqlite(file, { readonly: true, fileMustExist: true });
  t.equal(reader.prepare('SELECT COUNT(*) FROM t').value(), 3, 'the file holds every commit');
  t.throws(() => reader.exec(`INSERT INTO t (name) VALUES ('e')`), /readonly/, 'readonly: a write throws');
  reader.close();
});

forEachEngine(t, 'resources small and large, from bytes and from a file: read back whole or as a file, checked against their sha256', async (t, open, engine) => {
  const dir = tempDir(t);
  const store = open(join(dir, 'work'));
  t.teardown(() => store.close());
  store.inlineResourceMaxBytes = 1024;
  const meta = (bytes: Uint8Array) => ({ artifactId: 'a-1', jobId: 'a-1.0', producer: 'w1', sha256: sha256Hex(bytes) });
  const small = Buffer.from('a small product');
  // Over two chunks of the PostgreSQL store, not a multiple of one.
  const large = Buffer.alloc(CHUNK_BYTES * 2 + 12345);
  for (let i = 0; i < large.length; i++) large[i] = (i * 31 + 7) % 251;
  const empty = Buffer.alloc(0);
  const refs = [small, large, empty].map((b) => store.putResource(meta(b), b, 1));
  const file = join(dir, 'spooled.bin');
  writeFileSync(file, large);
  const fromFile = store.putResourceFile({ ...meta(large), size: large.length }, file, 'move', 1);
  t.notOk(existsSync(file), "a moved file is the store's now");
  for (const [ref, bytes] of [...refs.map((r, i) => [r, [small, large, empty][i]] as const), [fromFile, large] as const]) {
    t.same(Buffer.from(store.readResource(ref.id)?.bytes ?? []), bytes, `${ref.size} bytes read back whole`);
    const body = store.resourceBody(ref.id);
    const got = body?.file ? readFileSync(body.file) : Buffer.from(body?.bytes ?? []);
    t.same(got, bytes, `${ref.size} bytes read back for a streamed reader`);
  }
  t.ok(store.resourceBody(refs[1]?.id ?? '')?.file, 'a large resource is a file for a streamed reader');
  await new Promise<void>((r) => store.afterDurable(r));

  const target = fromFile.id;
  if (engine === 'PostgreSQL') {
    // A replica's store, its cache empty: it reads the chunk rows, and checks what it reads.
    const other = open(join(dir, 'other'));
    t.teardown(() => other.close());
    t.same(Buffer.from(other.readResource(target)?.bytes ?? []), large, 'read whole by another store on the same database');
    other.db.prepare('UPDATE resource_chunks SET bytes = ? WHERE resource_id = ? AND seq = 1').run(Buffer.alloc(CHUNK_BYTES), target);
    other.barrier();
    const third = open(join(dir, 'third'));
    t.teardown(() => third.close());
    t.throws(() => third.resourceBody(target), { code: 'CHECKSUM_MISMATCH' }, 'a damaged chunk is refused before its file is used');
    t.throws(() => third.readResource(target), { code: 'CHECKSUM_MISMATCH' });
    t.notOk(existsSync(join(dir, 'third', RESOURCES_DIR, `${target}.bin`)), 'and leaves no cache file');
  } else {
    writeFileSync(join(dir, 'work', RESOURCES_DIR, `${target}.bin`), Buffer.alloc(large.length));
    t.throws(() => store.readResource(target), { code: 'CHECKSUM_MISMATCH' }, 'a damaged file is refused');
  }
});

forEachEngine(t, "the initiator's locals: kept across a restart (SQLite: files; PostgreSQL: rows), deleted with their artifact", async (t, open, engine) => {
  const dir = tempDir(t);
  const localsOf = (store: Store) => (engine === 'PostgreSQL' ? new LocalsStore(undefined, store) : new LocalsStore(join(dir, LOCALS_DIR)));
  const first = open(dir);
  const locals = localsOf(first);
  locals.for('a-1').set('mask', [1, 2, 3]);
  locals.for('a-1').set('seed', 9);
  locals.for('a-2').set('mask', 7);
  t.same(locals.for('a-1').get('mask'), [1, 2, 3]);
  await new Promise<void>((r) => first.afterDurable(r));
  first.close();
  const second = open(dir);
  t.teardown(() => second.close());
  const again = localsOf(second);
  t.same([again.for('a-1').get('mask'), again.for('a-1').get('seed'), again.for('a-2').get('mask')], [[1, 2, 3], 9, 7], 'read by the restarted store');
  again.delete('a-1');
  t.equal(again.for('a-1').get('mask'), undefined, 'deleted');
  t.equal(again.for('a-2').get('mask'), 7, "another artifact's locals stay");
  t.equal(again.for('a-none').get('mask'), undefined, 'an artifact without locals has none');
});
