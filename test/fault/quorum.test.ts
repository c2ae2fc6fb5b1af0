// Why: a quorum lets an artifact go on without a worker that died, but only if the later rounds
// stop waiting for it. A worker that a quorum left out while it was away must not be waited on
// again (grace × attempts per round) for the rest of the artifact, and must rejoin at the next
// round when it comes back. The first test runs the supervisor in-process with a scripted
// worker (so the moment of the return is exact); the second kills a real worker process for good.
import { start, stop } from 'nact';
import pino from 'pino';
import t from 'tap';
import { type SupervisorMsg, spawnArtifactSupervisor } from '../../actors/artifact-supervisor.ts';
import { type Ref, send, spawnActor } from '../../lib/kit/actors.ts';
import { bindArtifact } from '../../lib/plan/index.ts';
import { sha256Hex } from '../../lib/store/blobs.ts';
import { Store, type StoredJob } from '../../lib/store/store.ts';
import type { ArtifactHandle } from '../../lib/workbench.ts';
import { steps as wbSteps } from '../../lib/workbench.ts';
import { encodeValue } from '../../protocols/codec.ts';
import { RetryPolicySchema, type Step } from '../../protocols/entities.ts';
import type { Message, MessageOf } from '../../protocols/messages.ts';
import { PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster, until, VALIDATION } from '../helpers/cluster.ts';
import { scriptedPeers } from '../helpers/peers.ts';
import type { NodePeer } from '../../actors/scheduler.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const ROUNDS = 4;

t.test('a worker left out while away is not waited on again, and rejoins at the next round when it comes back', async (t) => {
  const log = pino({ level: 'silent' });
  const store = new Store(undefined);
  const project = store.ensureProject('p', 'token-123456');
  const steps: Step[] = [
    { kind: 'Iterate', iterations: ROUNDS, steps: [{ kind: 'Parallel', operation: { kind: 'Noop' }, quorum: 2 }] },
    { kind: 'Finalize', operation: { kind: 'Noop' } },
  ];
  const plan = bindArtifact(steps, { initiator: 's', workers: ['w1', 'w2', 'w3'] });
  const policy = RetryPolicySchema.parse({ maxAttempts: 2, workerGraceMs: 100, initialIntervalMs: 50, maxIntervalMs: 50 });
  store.createArtifact({ id: 'a-q', projectId: project.id, projectToken: 'token-123456', spec: { steps }, policy, plan, now: Date.now() });
  const jobOf = (worker: string, round: number): StoredJob => {
    const job = store.jobs('a-q').find((j) => j.worker === worker && j.iteration === round && j.quorum);
    if (!job) throw new Error(`no job of ${worker} in round ${round}`);
    return job;
  };

  const system = start();
  t.teardown(() => stop(system));
  const events: Array<MessageOf<'artifactEvent'>['events'][number]> = [];
  const scheduler = spawnActor<null, { kind: string; message?: MessageOf<'artifactEvent'> }>(
    system,
    'scheduler',
    (s, m) => {
      if (m.kind === 'artifactEvent' && m.message) events.push(...m.message.events);
      return s;
    },
    { log, initialState: () => null },
  );
  let supervisor: Ref<SupervisorMsg> | undefined;
  let w3Connected = false;
  let heldRound1: (() => void) | undefined;
  const assignments: string[] = [];
  // A scripted worker: w3 is away until the test brings it back; w1 holds its round-1 product
  // back so that w3's return falls between rounds 1 and 2.
  const deliver = (nodeId: string, m: Message) => {
    if (m.type !== 'assignJob') return true;
    if (nodeId === 'w3' && !w3Connected) return false;
    assignments.push(`${m.jobId}#${m.attempt}`);
    const complete = () => {
      const bytes = encodeValue({ from: nodeId });
      const resource = store.putResource({ artifactId: 'a-q', jobId: m.jobId, producer: nodeId, sha256: sha256Hex(bytes) }, bytes, Date.now());
      const jobIndex = Number(m.jobId.split('.')[1]);
      if (supervisor) send(supervisor, { kind: 'jobReport', jobIndex, report: { kind: 'completed', attempt: m.attempt, resource } });
    };
    if (nodeId === 'w1' && m.iteration === 1) heldRound1 = complete;
    else setImmediate(complete);
    return true;
  };
  supervisor = spawnArtifactSupervisor(scheduler, { store, log, artifactId: 'a-q', scheduler: scheduler as never, watchers: scheduler as never, peers: scriptedPeers(['s', 'w1', 'w2'], deliver), now: Date.now });
  send(supervisor, { kind: 'workerLost', nodeId: 'w3' });
  send(supervisor, { kind: 'start' });

  await until(() => jobOf('w3', 1).leftOut && heldRound1 !== undefined, 10_000, "w3's round-1 job to be left out while round 1 runs");
  w3Connected = true;
  send(supervisor, { kind: 'workerConnected', nodeId: 'w3', holding: new Set<string>(), peer: scriptedPeers(['w3'], deliver).get('w3') as NodePeer });
  heldRound1?.();
  await until(() => store.artifact('a-q')?.state === 'COMPLETED', 10_000, 'the artifact to complete');

  const round0 = jobOf('w3', 0);
  t.ok(round0.leftOut, 'round 0: w3 left out after its attempts');
  t.equal(round0.attempt, 2, 'round 0: w3 was waited on for maxAttempts');
  t.equal(round0.lastError?.code, 'WORKER_LOST');
  const round1 = jobOf('w3', 1);
  t.ok(round1.leftOut, 'round 1: w3 left out');
  t.equal(round1.attempt, 0, 'round 1: left out at scheduling, without an attempt (not waited on)');
  t.equal(round1.lastError?.code, 'WORKER_LOST');
  t.equal(round1.lastError?.message, 'worker w3 was left out in round 0 and has not come back', 'the status says why');
  for (let round = 2; round < ROUNDS; round++) {
    const job = jobOf('w3', round);
    t.equal(job.state, 'COMPLETED', `round ${round}: w3 rejoined after it came back`);
    t.equal(job.attempt, 1, `round ${round}: one attempt`);
    t.notOk(job.leftOut);
  }
  t.notOk(assignments.some((a) => a.startsWith(`${round1.id}#`)), "w3's round-1 job was never assigned");
  const announced = events.filter((e) => e.kind === 'jobState' && e.jobId === round1.id);
  t.same(
    announced.map((e) => e.kind === 'jobState' && { state: e.state, attempt: e.attempt, leftOut: e.leftOut, code: e.error?.code }),
    [{ state: 'ERROR', attempt: 0, leftOut: true, code: 'WORKER_LOST' }],
    'the jobState event announced it once, left out with its cause',
  );
});

t.test('a quorum of 2 of 3 over 6 rounds, one worker killed for good in round 2: later rounds go on without waiting for it', async (t) => {
  const { cluster, wb, token } = await testCluster(t, 'fault-quorum', {
    workers: [
      { name: 'worker-1', files: [SHARDS[0] as string] },
      { name: 'worker-2', files: [SHARDS[1] as string] },
      { name: 'worker-3', files: [VALIDATION] },
    ],
    scheduler: { heartbeat_ms: 1000, retry: { initial_interval_ms: 100, max_interval_ms: 200, worker_grace_ms: 1500 } },
  });
  const project = await wb.project(token);
  const handle: ArtifactHandle = await project.submit({
    steps: [
      // 1 s a job: the kill below must land while worker-3's round-2 job runs, and a job's RUNNING
      // reaches the workbench up to one lazy barrier (~100 ms) after it starts, later on a loaded machine.
      { kind: 'Iterate', iterations: 6, steps: [{ kind: 'Parallel', operation: { kind: 'TestSleep', ms: 1000 }, quorum: 2 }] },
      wbSteps.finalize({ kind: 'Noop' }),
    ],
    policy: { maxAttempts: 2 },
  });
  const leftOut: Array<{ jobId: string; attempt: number }> = [];
  handle.on('event', (e) => {
    if (e.event.kind === 'jobState' && e.event.leftOut) leftOut.push({ jobId: e.event.jobId, attempt: e.event.attempt });
  });
  const w3 = (round: number) => {
    const job = handle.status.jobs.find((j) => j.worker === 'worker-3' && j.iteration === round && j.operation === 'TestSleep');
    if (!job) throw new Error(`no job of worker-3 in round ${round}`);
    return job;
  };
  await until(() => w3(2).state === 'RUNNING', 30_000, "worker-3's round-2 job to run");
  cluster.kill('worker-3', 'SIGKILL');

  const done = await handle.done();
  t.equal(done.state, 'COMPLETED', 'the quorum let it finish');
  // Since protocol 7 the handle's final status is built from the pushes (retries, left-out jobs): it must be the store's.
  t.same(done, await wb.status(handle.id), 'the final status from the pushes is the one getStatus answers');
  const jobs = done.jobs.filter((j) => j.worker === 'worker-3' && j.operation === 'TestSleep');
  t.same(
    jobs.map((j) => j.state),
    ['COMPLETED', 'COMPLETED', 'ERROR', 'ERROR', 'ERROR', 'ERROR'],
  );
  const dying = jobs[2];
  t.ok(dying?.leftOut, 'round 2: left out');
  t.equal(dying?.attempt, 2, 'round 2: waited on for its attempts (the worker might have come back)');
  t.equal(dying?.lastError?.code, 'WORKER_LOST');
  for (const job of jobs.slice(3)) {
    t.ok(job.leftOut, `round ${job.iteration}: left out`);
    t.equal(job.attempt, 0, `round ${job.iteration}: not waited on (left out without being assigned)`);
    t.equal(job.lastError?.message, 'worker worker-3 was left out in round 2 and has not come back');
  }
  t.same(
    leftOut.map((e) => e.jobId),
    jobs.slice(2).map((j) => j.id),
    'each left-out job was announced once, in round order',
  );
  t.same(await wb.result(done.id), { products: 2 }, 'the last round went on with the two live workers');
});
