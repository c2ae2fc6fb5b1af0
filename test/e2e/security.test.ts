// Why: data holders join a network only if they can trust it. These tests attack it the way a
// stranger on the network would: joining without a token, stealing a node id, replaying a
// handshake, fetching resources meant for others, reading another project, and reading the
// scheduler's disk for intermediate sums. Each attack must fail, and the work beside it go on.
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { openSqlite } from '../../lib/store/sqlite.ts';
import t from 'tap';
import { handshakeMessage, type Identity, signWith } from '../../lib/security/identity.ts';
import type { MeanProduct } from '../../lib/workbench.ts';
import { steps, Workbench } from '../../lib/workbench.ts';
import { decodeValue, encode } from '../../protocols/codec.ts';
import type { Message } from '../../protocols/messages.ts';
import { PROTOCOL_VERSION } from '../../protocols/version.ts';
import { column, mean, readCsv, relErr, union } from '../helpers/central.ts';
import { PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster, until, WAIT_MS, waitForJob } from '../helpers/cluster.ts';
import { runFdl } from '../helpers/fdl.ts';
import { RawPeer } from '../helpers/raw-peer.ts';
import { storedBytes } from '../helpers/resources.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const all = union(...SHARDS.map(readCsv));
const OTHER_TOKEN = 'other-project-token-123';
const SCOPED = 'fdl_w_scoped-to-the-other-project';
const { cluster, wb, token, dir } = await testCluster(t, 'security', {
  workers: SHARDS.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })),
  projects: [{ name: 'other', token: OTHER_TOKEN }],
  workbenchTokens: [{ token: SCOPED, projects: ['other'] }],
  env: { FDL_LOG_LEVEL: 'info' },
});
const project = await wb.project(token);
const schedulerDb = () => openSqlite(join(dir, 'scheduler', 'scheduler.sqlite'), { readonly: true, fileMustExist: true });

function newIdentity(): Identity {
  const sign = generateKeyPairSync('ed25519');
  const box = generateKeyPairSync('x25519');
  const signKey = sign.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  return {
    signKey,
    boxKey: box.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
    fingerprint: '',
    signPrivate: sign.privateKey,
    boxPrivate: box.privateKey,
  };
}

function workerHello(peer: RawPeer, me: Identity, nodeId: string, joinToken?: string): Message {
  const c = peer.challenge;
  if (!c) throw new Error('no challenge yet');
  const hello: Message = {
    type: 'workerHello',
    protocolVersion: PROTOCOL_VERSION,
    nodeId,
    name: nodeId,
    signKey: me.signKey,
    boxKey: me.boxKey,
    signature: signWith(me, handshakeMessage(c.schedulerId, nodeId, c.nonce, me.boxKey)),
    projects: [],
    holding: [],
  };
  if (joinToken) hello.joinToken = joinToken;
  return hello;
}

const fdl = (...args: string[]) => runFdl(args);

t.test('each node has a key pair in its workdir (0600) and a fingerprint others can compare', async (t) => {
  const file = join(dir, 'worker-1', 'identity.json');
  t.equal(statSync(file).mode & 0o777, 0o600);
  const nodes = await wb.nodes();
  const w1 = nodes.find((n) => n.id === 'worker-1');
  t.match(w1?.fingerprint, /^[0-9a-f]{4}(:[0-9a-f]{4}){7}$/);
  t.match(readFileSync(join(dir, 'worker-1.log'), 'utf8'), w1?.fingerprint as string, 'the worker logs the same fingerprint');
  t.ok(nodes.find((n) => n.id === 'scheduler')?.fingerprint, "the scheduler's own fingerprint");
});

t.test('joining needs a join token, the pinned key, and a fresh signature', async (t) => {
  const me = newIdentity();
  const noToken = new RawPeer(cluster.url);
  await noToken.open();
  noToken.msg(workerHello(noToken, me, 'rogue'));
  t.match(await noToken.next(), { type: 'error', error: { code: 'AUTH_FAILED', message: /join token/ } }, 'no join token');
  t.equal(await noToken.closed, 1008);

  const badToken = new RawPeer(cluster.url);
  await badToken.open();
  badToken.msg(workerHello(badToken, me, 'rogue', 'fdl_j_not-a-real-token'));
  t.match(await badToken.next(), { type: 'error', error: { code: 'AUTH_FAILED' } }, 'a wrong join token');

  const thief = new RawPeer(cluster.url);
  await thief.open();
  thief.msg(workerHello(thief, me, 'worker-1', cluster.joinToken));
  t.match(await thief.next(), { type: 'error', error: { code: 'AUTH_FAILED', message: /bound to another key/ } }, 'a second key for a pinned id');
  t.ok((await wb.nodes()).find((n) => n.id === 'worker-1')?.connected, 'the real worker-1 is untouched');

  const first = new RawPeer(cluster.url);
  await first.open();
  const hello = workerHello(first, me, 'rogue', cluster.joinToken);
  first.msg(hello);
  t.match(await first.next(), { type: 'welcome' }, 'a valid join token lets a new node in');
  first.ws.close();
  await first.closed;

  const replay = new RawPeer(cluster.url);
  await replay.open();
  replay.raw(encode(hello));
  t.match(await replay.next(), { type: 'error', error: { code: 'AUTH_FAILED', message: /signature/ } }, 'a replayed hello');
});

t.test('a joined stranger cannot fetch what is not addressed to it, nor report on others jobs', async (t) => {
  await (await project.count()).done();
  const handle = await project.submit([steps.parallel({ kind: 'TestSleep', ms: 1200 }), steps.finalize({ kind: 'Noop' })]);
  // worker-1 is frozen while its job runs, so the forged report always comes before the real one.
  await waitForJob(handle, { worker: 'worker-1', state: 'RUNNING' });
  cluster.kill('worker-1', 'SIGSTOP');
  t.teardown(() => cluster.kill('worker-1', 'SIGCONT'));

  const db = schedulerDb();
  const someResource = db.prepare('SELECT id FROM resources LIMIT 1').get() as { id: string };
  db.close();
  const rogue = new RawPeer(cluster.url);
  await rogue.open();
  rogue.msg(workerHello(rogue, newIdentity(), 'rogue-2', cluster.joinToken));
  t.match(await rogue.next(), { type: 'welcome' });
  rogue.msg({ type: 'fetchResource', reqId: 1, resourceId: someResource.id });
  t.match(await rogue.next(), { type: 'error', reqId: 1, error: { code: 'UNKNOWN_RESOURCE' } }, 'no resource for it');

  const victim = handle.status.jobs.find((j) => j.worker === 'worker-1') ?? t.fail('no job');
  const fake = new Uint8Array([0x81, 0xa1, 0x78, 0x01]);
  const { createHash } = await import('node:crypto');
  rogue.msg({
    type: 'jobCompleted',
    jobId: (victim as { id: string }).id,
    attempt: 1,
    sha256: createHash('sha256').update(fake).digest('hex'),
    data: fake,
  });
  // A reply to a later frame of the same connection: the forged report was handled before it.
  rogue.msg({ type: 'listProjects', reqId: 2 });
  t.match(await rogue.next(), { type: 'error', error: { code: 'UNEXPECTED_MESSAGE' } }, 'the forged report was handled');
  cluster.kill('worker-1', 'SIGCONT');
  const status = await handle.done();
  t.equal(status.state, 'COMPLETED');
  t.same(await wb.result(handle.id), { products: 2 }, "the forged report was ignored: the real products were used");
  rogue.ws.close();
});

t.test('a workbench sees only the projects of its token', async (t) => {
  const bad = new RawPeer(cluster.url);
  await bad.open();
  bad.msg({ type: 'workbenchHello', protocolVersion: PROTOCOL_VERSION, token: 'fdl_w_nope-nope-nope' });
  t.match(await bad.next(), { type: 'error', error: { code: 'AUTH_FAILED' } }, 'an unknown workbench token');

  const done = await (await project.count()).done();
  const scoped = await Workbench.connect(cluster.url, { token: SCOPED, reconnect: false });
  t.teardown(() => scoped.close());
  t.same((await scoped.projects()).map((p) => p.name), ['other'], 'only its project is listed');
  await t.rejects(scoped.project(token), { code: 'FORBIDDEN' }, 'another project, even with its token');
  await t.rejects(scoped.status(done.id), { code: 'UNKNOWN_ARTIFACT' }, "another project's artifact does not exist for it");
  await t.rejects(scoped.result(done.id), { code: 'UNKNOWN_ARTIFACT' });
  t.same(
    (await scoped.nodes()).map((n) => n.id),
    ['scheduler'],
    'the workers of another project are not shown',
  );
});

t.test('tokens are stored hashed, and revoking one closes its sessions', async (t) => {
  const bytes = readFileSync(join(dir, 'scheduler', 'scheduler.sqlite'));
  t.notOk(bytes.includes(Buffer.from(cluster.workbenchToken)), 'no token text in the database');
  t.notOk(bytes.includes(Buffer.from(token)), 'no project token text in the database');

  const config = join(dir, 'scheduler.yaml');
  const created = await fdl('tokens', 'create', '--config', config, '--kind', 'workbench', '--label', 'alice');
  t.equal(created.code, 0, created.stderr);
  const alice = created.stdout.trim();
  t.match(alice, /^fdl_w_/);
  const session = await Workbench.connect(cluster.url, { token: alice, reconnect: false });
  t.equal((await session.projects()).length, 2, 'an unscoped token sees every project');
  const list = await fdl('tokens', 'list', '--config', config);
  t.match(list.stdout, /workbench\s+alice\s+\(all\)/);
  t.notMatch(list.stdout, alice, 'a listing never shows token text');

  const revoked = await fdl('tokens', 'revoke', '--config', config, alice);
  t.equal(revoked.code, 0, revoked.stderr);
  await until(
    () =>
      session.projects().then(
        () => false,
        () => true,
      ),
    WAIT_MS,
    'the session to be closed',
  );
  await t.rejects(Workbench.connect(cluster.url, { token: alice, reconnect: false }), 'a revoked token cannot connect again');
  t.equal((await fdl('tokens', 'revoke', '--config', config, alice)).code, 2, 'revoking twice says so');
});

t.test('with encryption, the scheduler stores no plaintext of the intermediate sums of a mean', async (t) => {
  const features = ['MedInc', 'Population'];
  const handle = await project.submit([
    {
      kind: 'Sequential',
      init: { kind: 'MeanInit', features },
      operation: { kind: 'Mean', features },
      final: { kind: 'MeanFinal', features },
      encryption: true,
    },
  ]);
  const result = await handle.result<MeanProduct>();
  for (const f of features) t.ok(relErr(result.mean[f] as number, mean(column(all, f))) <= 1e-9, `${f} is right`);

  const db = schedulerDb();
  const rows = db
    .prepare('SELECT r.id, j.role FROM resources r JOIN jobs j ON j.id = r.job_id WHERE r.artifact_id = ?')
    .all(handle.id) as Array<{ id: string; role: string }>;
  db.close();
  const intermediate = rows.filter((r) => r.role !== 'final');
  t.equal(intermediate.length, 3, 'init and both workers left a product');
  for (const r of intermediate) {
    const blob = storedBytes(join(dir, 'scheduler'), r.id);
    if (!blob) {
      t.fail(`no bytes stored for ${r.id}`);
      continue;
    }
    t.match(decodeValue(blob), { fdlSealed: 1 }, `${r.role} product is sealed`);
    // The fields of a masked running value (lib/ops/estimators/masked.ts) and a feature's name.
    const readable = ['family', 'mean', 'Population'].filter((text) => blob.includes(Buffer.from(text)));
    t.same(readable, [], 'no field of the running sums is readable');
  }
});

t.test('allow_resource_download: false is honoured', async (t) => {
  const done = await (await project.count()).done();
  t.equal(await cluster.signal('scheduler', 'SIGTERM'), 0);
  cluster.opts.scheduler = { ...cluster.opts.scheduler, allow_resource_download: false };
  await cluster.startScheduler();
  const again = await cluster.connect('after-restart', { reconnect: false });
  t.teardown(() => again.close());
  await t.rejects(again.result(done.id), { code: 'DOWNLOAD_FORBIDDEN' });
});
