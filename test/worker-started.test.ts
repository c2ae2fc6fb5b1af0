// Why: a round of short jobs should cost one frame each way per worker (the assignment, the
// report), so a worker says `jobStarted` only for an operation still running STARTED_NOTICE_MS
// after it began; the report says how long it ran, and the scheduler dates the job's start from it.
// Runs a WorkerActor in-process (its messages to the scheduler collected), then a JobActor on an
// in-memory store completed without a `jobStarted`.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { start, stop } from 'nact';
import pino from 'pino';
import t from 'tap';
import { RetryPolicySchema, type Step } from '../protocols/entities.ts';
import { type Message, type MessageOf, STARTED_NOTICE_MS } from '../protocols/messages.ts';
import { type JobChanged, spawnJobActor } from '../actors/job.ts';
import { spawnWorker } from '../actors/worker.ts';
import { send, spawnActor } from '../lib/kit/actors.ts';
import { bindArtifact } from '../lib/plan/index.ts';
import { LocalsStore } from '../lib/store/locals.ts';
import { Store } from '../lib/store/store.ts';
import { until } from './helpers/cluster.ts';

const log = pino({ level: 'silent' });

const assignment = (jobId: string, operation: MessageOf<'assignJob'>['operation']): MessageOf<'assignJob'> => ({
  type: 'assignJob',
  artifactId: 'a-1',
  jobId,
  attempt: 1,
  projectToken: 'token',
  stepIndex: 0,
  iteration: 0,
  operation,
  inputs: [],
});

t.test('a short attempt is reported without jobStarted, a long one says jobStarted first', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fdl-worker-started-'));
  const system = start();
  t.teardown(() => {
    stop(system);
    rmSync(dir, { recursive: true, force: true });
  });
  const sent: Message[] = [];
  const worker = spawnWorker(system, {
    name: 'w1',
    log,
    data: undefined,
    locals: new LocalsStore(dir),
    sendToScheduler: (m) => {
      sent.push(m);
      return true;
    },
  });
  const of = (jobId: string) => sent.filter((m) => 'jobId' in m && m.jobId === jobId).map((m) => m.type);

  send(worker, { kind: 'inbound', message: assignment('a-1.0', { kind: 'Noop' }) });
  await until(() => of('a-1.0').includes('jobCompleted'), 10_000, 'the Noop attempt to be reported');
  t.strictSame(of('a-1.0'), ['jobCompleted'], 'a Noop: one report, no jobStarted');
  const short = sent.find((m) => m.type === 'jobCompleted') as MessageOf<'jobCompleted'>;
  t.ok(short.ranMs !== undefined && short.ranMs >= 0 && short.ranMs < STARTED_NOTICE_MS, `the report says how long it ran (${short.ranMs} ms)`);

  send(worker, { kind: 'inbound', message: assignment('a-1.1', { kind: 'TestSleep', ms: STARTED_NOTICE_MS * 3 }) });
  await until(() => of('a-1.1').includes('jobCompleted'), 10_000, 'the sleeping attempt to be reported');
  t.strictSame(of('a-1.1'), ['jobStarted', 'jobCompleted'], 'an operation longer than the notice: jobStarted, then the report');
  const long = sent.filter((m) => m.type === 'jobCompleted')[1] as MessageOf<'jobCompleted'>;
  t.ok((long.ranMs ?? 0) >= STARTED_NOTICE_MS * 3 - 1, `its ranMs covers the sleep (${long.ranMs} ms)`);
});

t.test('a job completed from SCHEDULED starts ranMs before it finished', async (t) => {
  const store = new Store(undefined);
  store.ensureProject('p', 'token');
  const steps: Step[] = [{ kind: 'Finalize', operation: { kind: 'Noop' } }];
  store.createArtifact({
    id: 'a-1',
    projectId: store.projectByToken('token')?.id as string,
    projectToken: 'token',
    spec: { steps },
    policy: RetryPolicySchema.parse({}),
    plan: bindArtifact(steps, { initiator: 's', workers: ['w1'] }),
    now: 1_000,
  });
  const system = start();
  t.teardown(() => stop(system));
  let clock = 5_000;
  const delivered: Message[] = [];
  const supervisor = spawnActor<null, JobChanged>(system, 'supervisor', (s) => s, { log, initialState: () => null });
  const job = spawnJobActor(system, {
    store,
    log,
    artifactId: 'a-1',
    projectToken: 'token',
    policy: RetryPolicySchema.parse({}),
    jobIndex: 0,
    predecessors: [],
    supervisor,
    peer: { send: (m: Message) => void delivered.push(m) },
    now: () => clock,
  });
  send(job, { kind: 'start' });
  await until(() => delivered.length === 1, 10_000, 'the assignment');
  const resource = store.putResource({ artifactId: 'a-1', jobId: 'a-1.0', producer: 's', sha256: '0'.repeat(64) }, new Uint8Array(0), clock);
  clock = 5_040;
  send(job, { kind: 'completed', attempt: 1, resource, ranMs: 12.6 });
  await until(() => store.job('a-1', 0)?.state === 'COMPLETED', 10_000, 'the job to complete');
  const row = store.job('a-1', 0);
  t.equal(row?.finishedAt, 5_040, 'finished on arrival of the report');
  t.equal(row?.startedAt, 5_027, 'started ranMs (rounded) before');
});
