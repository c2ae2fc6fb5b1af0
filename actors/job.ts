import type { ResourceRef, RetryPolicy } from '../protocols/entities.ts';
import { type WireError, wireError } from '../protocols/errors.ts';
import type { Message } from '../protocols/messages.ts';
import { type Ref, send, spawnActor } from '../lib/kit/actors.ts';
import type { Logger } from '../lib/log.ts';
import type { Store, StoredJob } from '../lib/store/store.ts';

/**
 * JobActor: one per live job. It owns the job's attempts: assigns each attempt to the
 * job's worker, bounds it with a timeout, retries failures after a delay up to the
 * policy's maxAttempts, and writes every change to the store before telling its
 * ArtifactSupervisor. Reports and timers carry the attempt number; stale ones are dropped.
 */

export type JobMsg =
  | { kind: 'start' }
  | { kind: 'started'; attempt: number }
  | { kind: 'completed'; attempt: number; resource: ResourceRef }
  | { kind: 'failed'; attempt: number; error: WireError }
  | { kind: 'workerConnected' }
  | { kind: 'cancel' }
  // private: timers
  | { kind: 'attemptTimedOut'; attempt: number }
  | { kind: 'retryDue'; attempt: number };

/** What a JobActor tells its supervisor: the job row as just written. */
export interface JobChanged {
  kind: 'jobChanged';
  job: StoredJob;
}

export interface JobProps {
  store: Store;
  log: Logger;
  artifactId: string;
  projectToken: string;
  policy: RetryPolicy;
  jobIndex: number;
  /** Indices of the jobs whose products are this job's inputs. */
  predecessors: number[];
  supervisor: Ref<JobChanged>;
  /** Sends a message to a node (worker or the local initiator); false when it is not connected. */
  deliver(nodeId: string, message: Message): boolean;
}

interface JobState {
  job: StoredJob;
  attemptTimer: NodeJS.Timeout | undefined;
  retryTimer: NodeJS.Timeout | undefined;
}

export function spawnJobActor(parent: Ref<unknown>, props: JobProps): Ref<JobMsg> {
  const load = (): StoredJob => {
    const job = props.store.jobs(props.artifactId)[props.jobIndex];
    if (!job) throw new Error(`job ${props.artifactId}.${props.jobIndex} is not in the store`);
    return job;
  };

  const write = (s: JobState, change: Parameters<Store['updateJob']>[1]): JobState => {
    props.store.updateJob(s.job.id, change);
    const job: StoredJob = { ...s.job, ...change };
    send(props.supervisor, { kind: 'jobChanged', job });
    return { ...s, job };
  };

  const inputs = (): ResourceRef[] => {
    const all = props.store.jobs(props.artifactId);
    return props.predecessors.map((i) => {
      const id = all[i]?.resultResourceId;
      const ref = id ? props.store.resource(id) : undefined;
      if (!ref) throw new Error(`input of job ${props.jobIndex} from job ${i} is missing`);
      return { id: ref.id, jobId: ref.jobId, producer: ref.producer, size: ref.size, sha256: ref.sha256 };
    });
  };

  const assign = (s: JobState, self: Ref<JobMsg>): JobState => {
    const job = s.job;
    props.deliver(job.worker, {
      type: 'assignJob',
      artifactId: props.artifactId,
      jobId: job.id,
      attempt: job.attempt,
      projectToken: props.projectToken,
      stepIndex: job.stepIndex,
      iteration: job.iteration,
      operation: job.operation,
      inputs: inputs(),
    });
    if (s.attemptTimer) clearTimeout(s.attemptTimer);
    const attempt = job.attempt;
    const attemptTimer = setTimeout(() => send(self, { kind: 'attemptTimedOut', attempt }), props.policy.attemptTimeoutMs);
    attemptTimer.unref();
    return { ...s, attemptTimer };
  };

  const clearTimers = (s: JobState): JobState => {
    if (s.attemptTimer) clearTimeout(s.attemptTimer);
    if (s.retryTimer) clearTimeout(s.retryTimer);
    return { ...s, attemptTimer: undefined, retryTimer: undefined };
  };

  const inFlight = (s: JobState, attempt: number) =>
    attempt === s.job.attempt && (s.job.state === 'SCHEDULED' || s.job.state === 'RUNNING');

  const fail = (s0: JobState, error: WireError, self: Ref<JobMsg>): JobState => {
    const s = clearTimers(s0);
    const attempt = s.job.attempt;
    if (error.retryable && attempt < props.policy.maxAttempts) {
      props.log.warn({ jobId: s.job.id, worker: s.job.worker, attempt, error }, 'job attempt failed; retrying');
      const next = write(s, { state: 'FAILED', lastError: error });
      const retryTimer = setTimeout(() => send(self, { kind: 'retryDue', attempt }), props.policy.retryDelayMs);
      retryTimer.unref();
      return { ...next, retryTimer };
    }
    props.log.error({ jobId: s.job.id, worker: s.job.worker, attempt, error }, 'job out of attempts');
    return write(s, { state: 'ERROR', lastError: error });
  };

  return spawnActor<JobState, JobMsg>(
    parent,
    `job-${props.jobIndex}`,
    (s, msg, ctx) => {
      switch (msg.kind) {
        case 'start': {
          // A job found SCHEDULED/RUNNING was handed out before a restart: send the same
          // attempt again (the worker runs an attempt once and reports it again).
          if (s.job.state === 'SCHEDULED' || s.job.state === 'RUNNING') return assign(s, ctx.self);
          if (s.job.state !== 'WAITING' && s.job.state !== 'FAILED') return s;
          return assign(write(s, { state: 'SCHEDULED', attempt: s.job.attempt + 1 }), ctx.self);
        }
        case 'retryDue':
          if (msg.attempt !== s.job.attempt || s.job.state !== 'FAILED') return s;
          return assign(write({ ...s, retryTimer: undefined }, { state: 'SCHEDULED', attempt: s.job.attempt + 1 }), ctx.self);
        case 'started':
          if (!inFlight(s, msg.attempt) || s.job.state === 'RUNNING') return s;
          return write(s, { state: 'RUNNING' });
        case 'completed':
          if (!inFlight(s, msg.attempt)) return s;
          return write(clearTimers(s), { state: 'COMPLETED', resultResourceId: msg.resource.id });
        case 'failed':
          if (!inFlight(s, msg.attempt)) return s;
          return fail(s, msg.error, ctx.self);
        case 'attemptTimedOut':
          if (!inFlight(s, msg.attempt)) return s;
          return fail(
            s,
            wireError('ATTEMPT_TIMEOUT', `attempt ${msg.attempt} did not finish within ${props.policy.attemptTimeoutMs} ms`),
            ctx.self,
          );
        case 'workerConnected':
          return s.job.state === 'SCHEDULED' || s.job.state === 'RUNNING' ? assign(s, ctx.self) : s;
        case 'cancel':
          if (s.job.state === 'SCHEDULED' || s.job.state === 'RUNNING') {
            props.deliver(s.job.worker, { type: 'cancelJob', jobId: s.job.id, attempt: s.job.attempt });
          }
          return clearTimers(s);
      }
    },
    {
      log: props.log,
      // Reset from the store: the durable row is the truth, memory is a cache of it.
      initialState: () => ({ job: load(), attemptTimer: undefined, retryTimer: undefined }),
      afterStop: (s) => {
        clearTimers(s);
      },
    },
  );
}
