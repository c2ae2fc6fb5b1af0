// Why: a bug that throws inside an actor must not silently stop the work (nact's default policy
// stops the actor). A JobActor that crashes is reset by supervision from the durable store and
// picks its attempt up again; the artifact completes. Runs in-process, with a scripted worker.
import { Writable } from 'node:stream';
import { start, stop } from 'nact';
import pino from 'pino';
import t from 'tap';
import { encodeValue } from '../../protocols/codec.ts';
import { RetryPolicySchema, type Step } from '../../protocols/entities.ts';
import type { Message } from '../../protocols/messages.ts';
import { spawnArtifactSupervisor, type SupervisorMsg } from '../../actors/artifact-supervisor.ts';
import { send, spawnActor, type Ref } from '../../lib/kit/actors.ts';
import { bindArtifact } from '../../lib/plan/index.ts';
import { sha256Hex } from '../../lib/store/blobs.ts';
import { Store } from '../../lib/store/store.ts';
import { until } from '../helpers/cluster.ts';
import { scriptedPeers } from '../helpers/peers.ts';

t.test('a JobActor that crashes is reset from the store and the artifact completes', async (t) => {
  const lines: string[] = [];
  const log = pino(
    { level: 'warn' },
    new Writable({
      write: (chunk, _e, cb) => {
        lines.push(String(chunk));
        cb();
      },
    }),
  );
  const store = new Store(undefined);
  const project = store.ensureProject('p', 'token-123456');
  const steps: Step[] = [
    { kind: 'Parallel', operation: { kind: 'Noop' } },
    { kind: 'Finalize', operation: { kind: 'Noop' } },
  ];
  const plan = bindArtifact(steps, { initiator: 's', workers: ['w1', 'w2'] });
  store.createArtifact({
    id: 'a-1',
    projectId: project.id,
    projectToken: 'token-123456',
    spec: { steps },
    policy: RetryPolicySchema.parse({}),
    plan,
    now: Date.now(),
  });

  const system = start();
  t.teardown(() => stop(system));
  const reports: unknown[] = [];
  const scheduler = spawnActor<null, unknown>(
    system,
    'scheduler',
    (s, m) => {
      reports.push(m);
      return s;
    },
    { log, initialState: () => null },
  );
  const assignments: Array<{ jobId: string; attempt: number }> = [];
  let supervisor: Ref<SupervisorMsg> | undefined;
  // A scripted worker: every assignment completes at once with a product.
  const deliver = (nodeId: string, m: Message) => {
    if (m.type !== 'assignJob') return true;
    assignments.push({ jobId: m.jobId, attempt: m.attempt });
    setImmediate(() => {
      const bytes = encodeValue({ from: nodeId });
      const resource = store.putResource({ artifactId: 'a-1', jobId: m.jobId, producer: nodeId, sha256: sha256Hex(bytes) }, bytes, Date.now());
      const jobIndex = Number(m.jobId.split('.')[1]);
      if (supervisor) send(supervisor, { kind: 'jobReport', jobIndex, report: { kind: 'completed', attempt: m.attempt, resource } });
    });
    return true;
  };
  let crashes = 0;
  supervisor = spawnArtifactSupervisor(scheduler, {
    store,
    log,
    artifactId: 'a-1',
    scheduler: scheduler as never,
    watchers: scheduler as never,
    peers: scriptedPeers(['s', 'w1', 'w2'], deliver),
    now: Date.now,
    // A bug in the JobActor of job 1, the first time it handles a completion.
    jobCrashOn: (index, msg) => index === 1 && msg.kind === 'completed' && crashes++ === 0,
  });
  send(supervisor, { kind: 'start' });

  await until(() => store.artifact('a-1')?.state === 'COMPLETED', 10_000, 'the artifact to complete');
  t.equal(crashes, 2, 'the crash happened once (and the seam was asked again after the reset)');
  const job1 = store.jobs('a-1')[1];
  t.equal(job1?.state, 'COMPLETED');
  t.equal(job1?.attempt, 1, 'the same attempt was picked up again, not a new one');
  t.same(
    assignments.filter((a) => a.jobId === 'a-1.1').map((a) => a.attempt),
    [1, 1],
    'after the reset, the attempt was sent again from the store',
  );
  t.ok(lines.some((l) => l.includes('actor crashed') && l.includes('"decision":"reset"')), 'the crash was logged with its decision');
  t.ok(reports.some((r) => (r as { kind?: string }).kind === 'supervisorFinished'), 'the supervisor finished');
});

t.test('an ArtifactSupervisor that crashes is reset from the store, respawns its jobs, and completes', async (t) => {
  const log = pino({ level: 'silent' });
  const store = new Store(undefined);
  const project = store.ensureProject('p', 'token-123456');
  const steps: Step[] = [
    { kind: 'Parallel', operation: { kind: 'Noop' } },
    { kind: 'Finalize', operation: { kind: 'Noop' } },
  ];
  const plan = bindArtifact(steps, { initiator: 's', workers: ['w1', 'w2'] });
  store.createArtifact({ id: 'a-2', projectId: project.id, projectToken: 'token-123456', spec: { steps }, policy: RetryPolicySchema.parse({}), plan, now: Date.now() });
  const system = start();
  t.teardown(() => stop(system));
  const scheduler = spawnActor<null, unknown>(system, 'scheduler', (s) => s, { log, initialState: () => null });
  let supervisor: Ref<SupervisorMsg> | undefined;
  let held: (() => void) | undefined;
  const deliver = (nodeId: string, m: Message) => {
    if (m.type !== 'assignJob') return true;
    const complete = () => {
      const bytes = encodeValue({ from: nodeId });
      const resource = store.putResource({ artifactId: 'a-2', jobId: m.jobId, producer: nodeId, sha256: sha256Hex(bytes) }, bytes, Date.now());
      const jobIndex = Number(m.jobId.split('.')[1]);
      if (supervisor) send(supervisor, { kind: 'jobReport', jobIndex, report: { kind: 'completed', attempt: m.attempt, resource } });
    };
    // w2's first assignment is held back until after the crash: it must be sent again.
    if (nodeId === 'w2' && !held) held = complete;
    else setImmediate(complete);
    return true;
  };
  let crashed = false;
  supervisor = spawnArtifactSupervisor(scheduler, {
    store,
    log,
    artifactId: 'a-2',
    scheduler: scheduler as never,
    watchers: scheduler as never,
    peers: scriptedPeers(['s', 'w1', 'w2'], deliver),
    now: Date.now,
    crashOn: (msg) => {
      if (crashed || msg.kind !== 'jobChanged' || msg.job.state !== 'COMPLETED') return false;
      crashed = true;
      return true;
    },
  });
  send(supervisor, { kind: 'start' });
  await until(() => store.artifact('a-2')?.state === 'COMPLETED', 10_000, 'the artifact to complete after the reset');
  t.ok(crashed, 'the supervisor crashed once');
  t.same(store.jobs('a-2').map((j) => j.state), ['COMPLETED', 'COMPLETED', 'COMPLETED']);
});
