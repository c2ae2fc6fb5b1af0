// Why: a plan needs every known holder of the project's data, and a submit while one is away is
// held, not dropped and not run over part of the data. What a held submit becomes must follow
// what happens to the holders and to the submitter: the holder joins (bound over all of them),
// the operator forgets the holder (bound over the others, at the end of the wait at the latest),
// the submitter leaves (nothing kept), nothing happens (HOLDERS_MISSING naming it). Runs the
// Scheduler actor in-process with the store as a restarted scheduler finds it: worker w2 is a
// known holder that has not reconnected.
import { start, stop } from 'nact';
import pino from 'pino';
import t, { type Test } from 'tap';
import { type PeerHandle, type SchedulerMsg, spawnScheduler } from '../actors/scheduler.ts';
import { type Ref, send } from '../lib/kit/actors.ts';
import { Store } from '../lib/store/store.ts';
import { Uploads } from '../lib/store/uploads.ts';
import { RetryPolicySchema } from '../protocols/entities.ts';
import type { Message, MessageOf } from '../protocols/messages.ts';
import { until } from './helpers/cluster.ts';

const TOKEN = 'project-token-1';
const DATA = [{ token: TOKEN, datasources: [{ name: 'd', rows: 10, features: [] }] }];
const COUNT = {
  steps: [{ kind: 'Sequential' as const, init: { kind: 'CountInit' as const }, operation: { kind: 'Count' as const }, final: { kind: 'CountFinal' as const } }],
};

function setup(t: Test, holderWaitMs: number) {
  const store = new Store(undefined);
  const project = store.ensureProject('p', TOKEN);
  store.setHoldings('w2', [project.id]);
  const system = start();
  t.teardown(() => {
    stop(system);
    store.close();
  });
  const quiet: PeerHandle = { sessionId: 'initiator', send: () => {}, close: () => {} };
  const scheduler: Ref<SchedulerMsg> = spawnScheduler(system, {
    store,
    log: pino({ level: 'silent' }),
    schedulerId: 's',
    policy: RetryPolicySchema.parse({}),
    allowResourceDownload: true,
    // A standalone scheduler: it holds data itself, and is always connected.
    initiator: { peer: quiet, name: 's', projects: DATA },
    identity: { signKey: 'sign-key', boxKey: 'box-key' },
    retentionMs: 7 * 24 * 3600_000,
    artifactsInFlightPerWorkbench: 1000,
    uploads: new Uploads(store.blobs.incoming),
    streaming: { thresholdBytes: 1024 * 1024, maxResourceBytes: 1024 * 1024 * 1024 },
    holderWaitMs,
    locals: { delete: () => {} },
  });
  send(scheduler, { kind: 'resume' });
  const received: Message[] = [];
  const peer: PeerHandle = { sessionId: 'wb', send: (m) => received.push(m), close: () => {} };
  send(scheduler, { kind: 'workbenchJoined', peer, scope: { tokenId: 't', projects: undefined } });
  const submit = (reqId: number) =>
    send(scheduler, { kind: 'fromWorkbench', peer, message: { type: 'submitArtifact', reqId, projectToken: TOKEN, artifact: COUNT } });
  const reply = async (reqId: number) => {
    await until(() => received.some((m) => 'reqId' in m && m.reqId === reqId), 10_000, `the reply to ${reqId}`);
    return received.find((m) => 'reqId' in m && m.reqId === reqId) as Message;
  };
  const pending = () =>
    new Promise<number>((resolve) => send(scheduler, { kind: 'countEntries', replyTo: (c) => resolve(c.pending) }));
  const waitPending = (n: number) => until(async () => (await pending()) === n, 10_000, `${n} submit(s) waiting for holders`);
  return { store, project, scheduler, peer, received, submit, reply, pending, waitPending };
}

t.test('the away holder joins: the held submit is bound over every holder', async (t) => {
  const s = setup(t, 600_000);
  s.submit(1);
  await s.waitPending(1);
  t.notOk(s.received.some((m) => m.type === 'artifactAccepted'), 'no reply while w2 is away');
  const w2: PeerHandle = { sessionId: 'w2-session', send: () => {}, close: () => {} };
  const hello: MessageOf<'workerHello'> = {
    type: 'workerHello',
    protocolVersion: 2,
    nodeId: 'w2',
    name: 'w2',
    signKey: 'c2lnbi1rZXktb2YtdzI=',
    boxKey: 'Ym94LWtleS1vZi13Mg==',
    signature: new Uint8Array(64),
    projects: DATA,
    holding: [],
  };
  send(s.scheduler, { kind: 'workerJoined', peer: w2, hello, joinTokenId: undefined });
  const r = await s.reply(1);
  if (r.type !== 'artifactAccepted') return t.fail(`accepted, not ${JSON.stringify(r)}`);
  t.same(
    r.status.jobs.map((j) => j.worker),
    ['s', 's', 'w2', 's'],
    'the chain runs over both holders (the standalone scheduler and w2)',
  );
  t.equal(await s.pending(), 0);
  t.same(s.store.artifact(r.status.id)?.workers, ['s', 'w2'], 'the holders the plan bound are kept with the artifact');
});

t.test('the operator forgets the away holder: at the end of the wait the submit is bound over the others', async (t) => {
  const s = setup(t, 1500);
  s.submit(1);
  await s.waitPending(1);
  t.equal(s.store.forgetHolder('w2'), 1);
  const r = await s.reply(1);
  if (r.type !== 'artifactAccepted') return t.fail(`accepted, not ${JSON.stringify(r)}`);
  t.same([...new Set(r.status.jobs.map((j) => j.worker))], ['s'], 'over the holder left');
});

t.test('nothing changes: HOLDERS_MISSING naming the away holder, and nothing stored', async (t) => {
  const s = setup(t, 300);
  s.submit(1);
  const r = await s.reply(1);
  if (r.type !== 'error') return t.fail(`an error, not ${r.type}`);
  t.equal(r.error.code, 'HOLDERS_MISSING');
  t.equal(r.error.retryable, true, 'retryable: the holder may come back');
  t.match(r.error.message, /1 known holder\(s\) of project p's data did not connect within 300 ms: w2\./);
  t.match(r.error.message, /fdl nodes forget ID/, 'and says how to forget a holder that left for good');
  t.equal(await s.pending(), 0);
  t.same(s.store.listArtifacts(undefined, 10), [], 'nothing was stored');
});

t.test('the submitter leaves while its submit waits: nothing is kept', async (t) => {
  const s = setup(t, 600_000);
  s.submit(1);
  s.submit(2);
  await s.waitPending(2);
  send(s.scheduler, { kind: 'peerLeft', peer: s.peer });
  await s.waitPending(0);
  t.pass('both held submits went with their session');
});

t.test('with a quorum the present holders meet, the submit goes on at once, leaving the away holder out', async (t) => {
  const s = setup(t, 600_000);
  send(s.scheduler, {
    kind: 'fromWorkbench',
    peer: s.peer,
    message: {
      type: 'submitArtifact',
      reqId: 1,
      projectToken: TOKEN,
      artifact: { steps: [{ kind: 'Parallel', operation: { kind: 'Noop' }, quorum: 1 }, { kind: 'Finalize', operation: { kind: 'Noop' } }] },
    },
  });
  const r = await s.reply(1);
  if (r.type !== 'artifactAccepted') return t.fail(`accepted, not ${JSON.stringify(r)}`);
  const id = r.status.id;
  t.same(s.store.artifact(id)?.absent, ['w2'], 'w2 is bound, as away at submit');
  await until(() => s.store.job(id, 1)?.leftOut === true, 10_000, "w2's job to be left out");
  t.equal(s.store.job(id, 1)?.attempt, 0, 'at once, without an attempt');
  t.equal(s.store.job(id, 1)?.lastError?.message, 'worker w2 was away when the artifact was submitted and has not come back');
});
