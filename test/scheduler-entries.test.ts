// Why: a scheduler runs for months and serves thousands of artifacts. What it keeps per artifact
// (the workbenches subscribed to its pushes, its live supervisor) must go when the artifact
// finishes, after the subscribers got the final push; a subscription to an artifact that is
// already finished has nothing left to push and is not kept. Runs the Scheduler actor in-process
// with a scripted initiator that holds the project's data and completes every job at once.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { start, stop } from 'nact';
import pino from 'pino';
import t, { type Test } from 'tap';
import { decode, encode, encodeValue } from '../protocols/codec.ts';
import { RetryPolicySchema } from '../protocols/entities.ts';
import type { Message, MessageOf, WorkbenchRequest } from '../protocols/messages.ts';
import { Uploads } from '../lib/store/uploads.ts';
import { ProjectListing } from '../actors/listings.ts';
import { type PeerHandle, type SchedulerMsg, spawnScheduler } from '../actors/scheduler.ts';
import { PROTOCOL_VERSION } from '../protocols/version.ts';
import { send, type Ref } from '../lib/kit/actors.ts';
import { sha256Hex } from '../lib/store/blobs.ts';
import { artifactStatus } from '../lib/store/status.ts';
import { type StoredArtifact, Store } from '../lib/store/store.ts';
import { until } from './helpers/cluster.ts';

const TOKEN = 'project-token-1';

/** A Scheduler actor over `store`, with `initiator` as its in-process worker holding TOKEN's data; `extra` adds or overrides props. */
function spawnTestScheduler(
  system: Parameters<typeof spawnScheduler>[0],
  store: Store,
  log: pino.Logger,
  initiator: PeerHandle,
  extra: Partial<Parameters<typeof spawnScheduler>[1]> = {},
): Ref<SchedulerMsg> {
  return spawnScheduler(system, {
    store,
    log,
    schedulerId: 's',
    policy: RetryPolicySchema.parse({}),
    allowResourceDownload: true,
    initiator: { peer: initiator, name: 's', projects: [{ token: TOKEN, datasources: [{ name: 'd', rows: 10, features: [] }] }] },
    identity: { signKey: 'sign-key', boxKey: 'box-key' },
    retentionMs: 7 * 24 * 3600_000,
    artifactsInFlightPerWorkbench: 1000,
    locals: { delete: () => {} },
    uploads: new Uploads(store.blobs.incoming),
    streaming: { thresholdBytes: 1024 * 1024, maxResourceBytes: 1024 * 1024 * 1024 },
    ...extra,
  });
}

t.test('per-artifact entries go when the artifact finishes, after the final push', async (t) => {
  const log = pino({ level: 'silent' });
  const store = new Store(undefined);
  store.ensureProject('p', TOKEN);
  const system = start();
  t.teardown(() => stop(system));

  let scheduler: Ref<SchedulerMsg> | undefined;
  /** Assignments of jobs the test holds back (the artifact stays RUNNING until released). */
  const held: Array<() => void> = [];
  let holdNext = false;
  const initiator: PeerHandle = {
    sessionId: 'initiator',
    send: (m: Message) => {
      if (m.type !== 'assignJob') return;
      const complete = () => {
        const data = encodeValue({ products: 0 });
        const message: Message = { type: 'jobCompleted', jobId: m.jobId, attempt: m.attempt, sha256: sha256Hex(data), data };
        if (scheduler) send(scheduler, { kind: 'fromWorker', peer: initiator, nodeId: 's', message });
      };
      if (holdNext) held.push(complete);
      else setImmediate(complete);
    },
    close: () => {},
  };
  scheduler = spawnTestScheduler(system, store, log, initiator);
  const self = scheduler;
  send(self, { kind: 'resume' });

  const workbench = (sessionId: string) => {
    const received: Message[] = [];
    const peer: PeerHandle = { sessionId, send: (m) => received.push(m), close: () => {} };
    send(self, { kind: 'workbenchJoined', peer, scope: { tokenId: 't', projects: undefined } });
    const request = (message: WorkbenchRequest) => send(self, { kind: 'fromWorkbench', peer, message });
    return { peer, received, request };
  };
  const entries = () => new Promise<{ subscriptions: number; supervisors: number; pending: number }>((resolve) => send(self, { kind: 'countEntries', replyTo: resolve }));
  const accepted = async (wb: ReturnType<typeof workbench>, reqId: number) => {
    await until(() => wb.received.some((m) => m.type === 'artifactAccepted' && m.reqId === reqId), 10_000, `artifactAccepted ${reqId}`);
    const m = wb.received.find((x) => x.type === 'artifactAccepted' && x.reqId === reqId) as MessageOf<'artifactAccepted'>;
    return m.status.id;
  };
  const finalPush = (wb: ReturnType<typeof workbench>, artifactId: string) =>
    wb.received.find((m) => m.type === 'artifactEvent' && m.artifactId === artifactId && m.events.some((e) => e.kind === 'artifactState' && e.state === 'COMPLETED'));
  const parallelNoop = { steps: [{ kind: 'Parallel' as const, operation: { kind: 'Noop' as const } }] };

  const submitter = workbench('wb-1');
  const ids: string[] = [];
  for (let reqId = 1; reqId <= 5; reqId++) {
    submitter.request({ type: 'submitArtifact', reqId, projectToken: TOKEN, artifact: parallelNoop });
    ids.push(await accepted(submitter, reqId));
  }
  await until(() => ids.every((id) => store.artifact(id)?.state === 'COMPLETED'), 10_000, 'five artifacts to complete');
  await until(() => ids.every((id) => finalPush(submitter, id)), 10_000, 'the final pushes');
  t.same(await entries(), { subscriptions: 0, supervisors: 0, pending: 0 }, 'five finished artifacts: no entries left');

  const follower = workbench('wb-2');
  follower.request({ type: 'subscribe', reqId: 1, artifactId: ids[0] as string });
  await until(() => follower.received.some((m) => m.type === 'status' && m.reqId === 1), 10_000, 'the status reply');
  t.same(await entries(), { subscriptions: 0, supervisors: 0, pending: 0 }, 'subscribing to a finished artifact keeps nothing');

  holdNext = true;
  submitter.request({ type: 'submitArtifact', reqId: 6, projectToken: TOKEN, artifact: parallelNoop });
  const running = await accepted(submitter, 6);
  follower.request({ type: 'subscribe', reqId: 2, artifactId: running });
  await until(() => follower.received.some((m) => m.type === 'status' && m.reqId === 2) && held.length === 1, 10_000, 'a running artifact');
  t.same(await entries(), { subscriptions: 1, supervisors: 1, pending: 0 }, 'a running artifact has its entries');
  send(self, { kind: 'peerLeft', peer: submitter.peer });
  t.same(await entries(), { subscriptions: 1, supervisors: 1, pending: 0 }, 'one subscriber left, the other stays');
  held[0]?.();
  await until(() => finalPush(follower, running) !== undefined, 10_000, 'the final push to the subscriber');
  t.same(await entries(), { subscriptions: 0, supervisors: 0, pending: 0 }, 'finished: its entries are gone');
});

/**
 * A Scheduler on a store with a work directory (so the group commit's barriers are real) running
 * `Iterate(rounds, [Parallel(Noop)])` on a scripted initiator that completes every job at once,
 * except the `holdJob`-th assigned (released by the test through `held`); a workbench peer
 * subscribed as the submitter. `progressIntervalMs` absent: the scheduler's default.
 */
async function iterateOnDisk(
  t: Test,
  opts: { rounds: number; progressIntervalMs?: number; holdJob?: number },
) {
  const log = pino({ level: 'silent' });
  const workdir = mkdtempSync(join(tmpdir(), 'fdl-iterate-'));
  const store = new Store(workdir);
  t.teardown(() => {
    store.close();
    rmSync(workdir, { recursive: true, force: true });
  });
  store.ensureProject('p', TOKEN);
  const system = start();
  t.teardown(() => stop(system));
  let scheduler: Ref<SchedulerMsg> | undefined;
  let assigned = 0;
  const held: Array<() => void> = [];
  const initiator: PeerHandle = {
    sessionId: 'initiator',
    send: (m: Message) => {
      if (m.type !== 'assignJob') return;
      const data = encodeValue({ n: 1 });
      const message: Message = { type: 'jobCompleted', jobId: m.jobId, attempt: m.attempt, sha256: sha256Hex(data), data };
      const complete = () => scheduler && send(scheduler, { kind: 'fromWorker', peer: initiator, nodeId: 's', message });
      if (assigned++ === opts.holdJob) held.push(complete);
      else setImmediate(complete);
    },
    close: () => {},
  };
  scheduler = spawnTestScheduler(system, store, log, initiator, opts.progressIntervalMs === undefined ? {} : { progressIntervalMs: opts.progressIntervalMs });
  send(scheduler, { kind: 'resume' });
  const received: Message[] = [];
  const peer: PeerHandle = { sessionId: 'wb', send: (m) => received.push(m), close: () => {} };
  send(scheduler, { kind: 'workbenchJoined', peer, scope: { tokenId: 't', projects: undefined } });
  const artifact = { steps: [{ kind: 'Iterate' as const, iterations: opts.rounds, steps: [{ kind: 'Parallel' as const, operation: { kind: 'Noop' as const } }] }] };
  const submittedAt = Date.now();
  send(scheduler, { kind: 'fromWorkbench', peer, message: { type: 'submitArtifact', reqId: 1, projectToken: TOKEN, artifact } });
  const pushes = () => received.filter((m): m is MessageOf<'artifactEvent'> => m.type === 'artifactEvent');
  const finished = () => pushes().some((m) => m.events.some((e) => e.kind === 'artifactState' && e.state === 'COMPLETED'));
  return { store, received, pushes, finished, held, submittedAt };
}

// Why (protocol 6): a subscriber's pushes carry the transitions of one barrier each. Whatever the
// batching, it must see every job's final state, nothing of a job after it, and the artifact's
// final state last. On a store with a work directory, so the group commit's barriers are real.
t.test('progress pushes: every job ends COMPLETED in them, the artifact state comes last', async (t) => {
  const ROUNDS = 6;
  const { store, received, pushes, finished } = await iterateOnDisk(t, { rounds: ROUNDS });
  await until(finished, 10_000, 'the final push');

  const events = pushes().flatMap((m) => m.events);
  const last = events[events.length - 1];
  t.match(
    last,
    { kind: 'artifactState', state: 'COMPLETED', updatedAt: Number, resultResourceId: String, provenance: { complete: true } },
    "the artifact's final state is the last event, with the final status's own fields",
  );
  const jobs = store.jobs((received.find((m) => m.type === 'artifactAccepted') as MessageOf<'artifactAccepted'>).status.id);
  t.equal(jobs.length, ROUNDS);
  for (const job of jobs) {
    const mine = events.filter((e) => e.kind === 'jobState' && e.jobId === job.id);
    t.match(mine[mine.length - 1], { state: 'COMPLETED', attempt: 1 }, `job ${job.index} ends COMPLETED in the pushes, nothing of it after`);
  }
  t.ok(pushes().every((m) => m.events.length > 0), 'no empty push');
  const first = pushes()[0]?.events ?? [];
  t.match(first[0], { kind: 'artifactState', state: 'RUNNING' }, 'RUNNING is the first event');
  t.ok(
    first.some((e) => e.kind === 'jobState' && e.jobId === jobs[0]?.id),
    "RUNNING rides in one push with the first job's transition, not in a push of its own",
  );
  t.ok(pushes().length < 2 * ROUNDS + 2, `fewer pushes (${pushes().length}) than transitions (${2 * ROUNDS + 2})`);
});

// Why: a fast Iterate made one push per round to every watcher (a frame, its encoding and a
// wake-up of the workbench's process each), where a person watching needs a few a second. Pushes of
// an artifact are progress_interval_ms apart; the final state never waits, and nothing is lost.
t.test('progress pushes are progress_interval_ms apart, the final one at once, every final state in them', async (t) => {
  const finalStates = (store: Store, run: Awaited<ReturnType<typeof iterateOnDisk>>) => {
    const events = run.pushes().flatMap((m) => m.events);
    const id = (run.received.find((m) => m.type === 'artifactAccepted') as MessageOf<'artifactAccepted'>).status.id;
    const jobs = store.jobs(id);
    t.equal(jobs.length, 8);
    for (const job of jobs) {
      const mine = events.filter((e) => e.kind === 'jobState' && e.jobId === job.id);
      t.match(mine[mine.length - 1], { state: 'COMPLETED' }, `job ${job.index}: its final state is pushed`);
    }
    t.match(events[0], { kind: 'artifactState', state: 'RUNNING' }, 'RUNNING first');
    t.match(events[events.length - 1], { kind: 'artifactState', state: 'COMPLETED', updatedAt: Number }, 'COMPLETED last');
  };

  // Far apart: an artifact done within the interval is one push in all, its final one, even when
  // barriers passed while it ran (each would have brought a push without the interval).
  const slow = await iterateOnDisk(t, { rounds: 8, progressIntervalMs: 60_000, holdJob: 3 });
  await until(() => slow.held.length === 1, 10_000, 'the fourth job held (interval 60 s)');
  const barriers = slow.store.barriers;
  await until(() => slow.store.barriers > barriers, 10_000, 'a barrier while the job is held');
  for (const release of slow.held) release();
  await until(slow.finished, 10_000, 'the final push (interval 60 s)');
  t.equal(slow.pushes().length, 1, 'one push: the final state did not wait for the interval');
  finalStates(slow.store, slow);

  // 0: a push after every barrier, as before the interval (here the rounds run in one barrier's
  // hold until a job is held back, so the first push comes then, the final one after).
  const every = await iterateOnDisk(t, { rounds: 8, progressIntervalMs: 0, holdJob: 3 });
  await until(() => every.held.length === 1 && every.pushes().length > 0, 10_000, 'a progress push while the fourth job is held (interval 0)');
  for (const release of every.held) release();
  await until(every.finished, 10_000, 'the final push (interval 0)');
  t.ok(every.pushes().length > 1, `pushes as the barriers come (${every.pushes().length})`);
  finalStates(every.store, every);

  // A job that takes its time: progress comes after the interval, not at the end.
  const paced = await iterateOnDisk(t, { rounds: 8, progressIntervalMs: 200, holdJob: 3 });
  await until(() => paced.held.length === 1, 10_000, 'the fourth job held');
  await until(() => paced.pushes().length > 0, 10_000, 'a progress push while the artifact runs');
  t.ok(Date.now() - paced.submittedAt >= 195, 'not before the interval since the acceptance');
  t.notOk(paced.finished(), 'while the artifact still runs');
  t.match(paced.pushes()[0]?.events[0], { kind: 'artifactState', state: 'RUNNING' });
  for (const release of paced.held) release();
  await until(paced.finished, 10_000, 'the final push after the release');
  finalStates(paced.store, paced);
});

// Why: the store keeps each artifact's status between its changes, shared by every reader, and the
// codec keeps its encoding. A poller must still see every change at once, and a subscriber asking
// for the DAG's locks must get them without the next poller getting them too.
t.test('getStatus after each change of an artifact answers the new status; locks stay on their own reply', async (t) => {
  const log = pino({ level: 'silent' });
  const store = new Store(undefined);
  store.ensureProject('p', TOKEN);
  const system = start();
  t.teardown(() => stop(system));
  let scheduler: Ref<SchedulerMsg> | undefined;
  const held: Array<() => void> = [];
  const initiator: PeerHandle = {
    sessionId: 'initiator',
    send: (m: Message) => {
      if (m.type !== 'assignJob') return;
      held.push(() => {
        const data = encodeValue({ products: 0 });
        const message: Message = { type: 'jobCompleted', jobId: m.jobId, attempt: m.attempt, sha256: sha256Hex(data), data };
        if (scheduler) send(scheduler, { kind: 'fromWorker', peer: initiator, nodeId: 's', message });
      });
    },
    close: () => {},
  };
  scheduler = spawnTestScheduler(system, store, log, initiator);
  const self = scheduler;
  send(self, { kind: 'resume' });
  const received: Message[] = [];
  const peer: PeerHandle = { sessionId: 'wb', send: (m) => received.push(m), close: () => {} };
  send(self, { kind: 'workbenchJoined', peer, scope: { tokenId: 't', projects: undefined } });
  let reqId = 0;
  const ask = async (message: (reqId: number) => WorkbenchRequest) => {
    const id = ++reqId;
    send(self, { kind: 'fromWorkbench', peer, message: message(id) });
    await until(() => received.some((m) => m.type === 'status' && m.reqId === id), 10_000, `the status reply ${id}`);
    return (received.find((m) => m.type === 'status' && m.reqId === id) as MessageOf<'status'>).status;
  };
  // The reply as the workbench gets it: through the codec (a kept status is sent from its kept bytes).
  const onWire = (status: unknown) => {
    const d = decode(encode({ type: 'status', reqId: 1, status } as Message));
    if (!d.ok || d.message.type !== 'status') throw new Error(`the status does not cross the wire: ${d.ok ? d.message.type : d.error.message}`);
    return d.message.status;
  };
  const getStatus = async (artifactId: string) => onWire(await ask((id) => ({ type: 'getStatus', reqId: id, artifactId })));

  // Two steps: the Finalize waits for the Parallel job, so each completion is a change of its own.
  send(self, { kind: 'fromWorkbench', peer, message: { type: 'submitArtifact', reqId: 1000, projectToken: TOKEN, artifact: { steps: [{ kind: 'Parallel', operation: { kind: 'Noop' } }, { kind: 'Finalize', operation: { kind: 'Noop' } }] } } });
  await until(() => received.some((m) => m.type === 'artifactAccepted'), 10_000, 'the artifact accepted');
  const artifactId = (received.find((m) => m.type === 'artifactAccepted') as MessageOf<'artifactAccepted'>).status.id;
  await until(() => held.length === 1, 10_000, 'the first job assigned');
  const first = await getStatus(artifactId);
  t.same(first.progress, { completed: 0, total: 2 }, 'nothing done yet');
  t.same(await getStatus(artifactId), first, 'asked again, unchanged: the same answer');

  const withLocks = onWire(await ask((id) => ({ type: 'subscribe', reqId: id, artifactId, locks: true })));
  t.ok(withLocks.jobs.every((j) => Array.isArray(j.locks)), 'the subscriber asking for locks gets each job’s');
  t.ok((await getStatus(artifactId)).jobs.every((j) => j.locks === undefined), 'the next getStatus has none');

  held.shift()?.();
  await until(() => held.length === 1, 10_000, 'the second job assigned');
  const second = await getStatus(artifactId);
  t.equal(second.jobs[0]?.state, 'COMPLETED', 'the first job completed: the status says so');
  t.same(second.progress, { completed: 1, total: 2 });
  held.shift()?.();
  await until(() => store.artifact(artifactId)?.state === 'COMPLETED', 10_000, 'the artifact to complete');
  const done = await getStatus(artifactId);
  t.equal(done.state, 'COMPLETED', 'completed');
  t.same(done.progress, { completed: 2, total: 2 });
  t.ok(done.provenance, 'with its provenance');
  t.same(done, onWire(store.artifact(artifactId) && artifactStatus(store.artifact(artifactId) as StoredArtifact, store.jobs(artifactId))), 'what the rows say');

  send(self, { kind: 'fromWorkbench', peer, message: { type: 'deleteArtifact', reqId: 2000, artifactId } });
  const reqIdOf = (m: Message) => (m as { reqId?: number }).reqId;
  await until(() => received.some((m) => reqIdOf(m) === 2000), 10_000, 'the delete reply');
  send(self, { kind: 'fromWorkbench', peer, message: { type: 'getStatus', reqId: 2001, artifactId } });
  await until(() => received.some((m) => reqIdOf(m) === 2001), 10_000, 'the reply after the delete');
  const gone = received.find((m) => reqIdOf(m) === 2001);
  t.match(gone, { type: 'error', error: { code: 'UNKNOWN_ARTIFACT' } }, 'deleted: unknown');
});

// Why: a Connection answers a workbench's listProjects from the listing the Scheduler published,
// without asking the Scheduler. The listing must never be older than who is connected: the
// Scheduler marks it stale at every join and leave, and a Connection finding it stale forwards.
t.test('the published project listing: made on the first request, stale at every join and leave, then made again', async (t) => {
  const log = pino({ level: 'silent' });
  const store = new Store(undefined);
  const project = store.ensureProject('p', TOKEN);
  const system = start();
  t.teardown(() => stop(system));
  const initiator: PeerHandle = { sessionId: 'initiator', send: () => {}, close: () => {} };
  const projectListing = new ProjectListing();
  const scheduler = spawnTestScheduler(system, store, log, initiator, { projectListing });
  send(scheduler, { kind: 'resume' });
  const received: Message[] = [];
  const wb: PeerHandle = { sessionId: 'wb', send: (m) => received.push(m), close: () => {} };
  send(scheduler, { kind: 'workbenchJoined', peer: wb, scope: { tokenId: 't', projects: undefined } });
  let reqId = 0;
  const list = async () => {
    const id = ++reqId;
    send(scheduler, { kind: 'fromWorkbench', peer: wb, message: { type: 'listProjects', reqId: id } });
    await until(() => received.some((m) => m.type === 'projectList' && m.reqId === id), 10_000, `projectList ${id}`);
    return (received.find((m) => m.type === 'projectList' && m.reqId === id) as MessageOf<'projectList'>).projects;
  };
  t.equal(projectListing.current, undefined, 'nothing published before anyone asked');
  t.strictSame(await list(), [{ id: project.id, name: 'p', workers: 1, datasources: 1, rows: 10 }], 'the scheduler holds the data');
  t.strictSame(projectListing.current, await list(), 'published: what a Connection answers from');
  t.ok(Object.isFrozen(projectListing.current), 'frozen');

  const worker: PeerHandle = { sessionId: 'w1-session', send: () => {}, close: () => {} };
  const hello: MessageOf<'workerHello'> = {
    type: 'workerHello',
    protocolVersion: PROTOCOL_VERSION,
    nodeId: 'w1',
    name: 'w1',
    signKey: 'w1-sign',
    boxKey: 'w1-box',
    signature: new Uint8Array(64),
    projects: [{ token: TOKEN, datasources: [{ name: 'd', rows: 32, features: [] }] }],
    holding: [],
  };
  send(scheduler, { kind: 'workerJoined', peer: worker, hello, joinTokenId: undefined });
  await until(() => projectListing.current === undefined, 10_000, 'the listing stale after a join');
  t.match(await list(), [{ workers: 2, datasources: 2, rows: 42 }], 'made again: the worker that joined counts');
  t.ok(projectListing.current, 'and published');
  send(scheduler, { kind: 'peerLeft', peer: worker, nodeId: 'w1' });
  await until(() => projectListing.current === undefined, 10_000, 'the listing stale after a leave');
  t.match(await list(), [{ workers: 1, datasources: 1, rows: 10 }], 'made again: the worker that left does not count');
});
