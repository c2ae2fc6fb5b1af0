import type { ResourceRef, RetryPolicy } from '../protocols/entities.ts';
import { type WireError, wireError } from '../protocols/errors.ts';
import type { AssignedInput, Message } from '../protocols/messages.ts';
import { toWireError } from '../lib/errors.ts';
import { type Ref, send, spawnActor } from '../lib/kit/actors.ts';
import type { Logger } from '../lib/log.ts';
import { nextDelay } from '../lib/retry.ts';
import { sha256Hex } from '../lib/store/blobs.ts';
import type { JobChange, Store, StoredJob } from '../lib/store/store.ts';
import { tooLarge } from '../lib/transport/stream.ts';
import type { ReportMsg } from './report-routes.ts';
import type { NodePeer } from './scheduler.ts';

/**
 * JobActor: one per live job. It owns the job's attempts: assigns each attempt to the
 * job's worker, bounds it with the attempt timeout, waits a grace time for a lost worker,
 * retries failures with exponential backoff up to the policy's maxAttempts, and writes
 * every change to the store before telling its ArtifactSupervisor. Reports and timers
 * carry the attempt number; stale ones are dropped. After a crash it is reset from the
 * store and picks its attempt up again.
 */

export type JobMsg =
  | { kind: 'start' }
  /** A worker's report, unchecked: checked here, once (report-routes.ts). */
  | ReportMsg
  | { kind: 'started'; attempt: number }
  /** A product already stored (a streamed upload, the initiator's file). `rows`: of the node's data, that the attempt read; `ranMs`: how long it ran (its report's). */
  | { kind: 'completed'; attempt: number; resource: ResourceRef; rows?: number | undefined; ranMs?: number | undefined }
  | { kind: 'failed'; attempt: number; error: WireError }
  /** The worker (re)joined; `holding`: it announced this very attempt as running. */
  | { kind: 'workerConnected'; holding: boolean; peer: NodePeer }
  | { kind: 'workerLost' }
  | { kind: 'cancel' }
  // private: timers and recovery
  | { kind: 'attemptTimedOut'; attempt: number }
  | { kind: 'retryDue'; attempt: number }
  | { kind: 'graceExpired'; attempt: number }
  | { kind: 'recovered' };

/** What a JobActor tells its supervisor: the job row as just written; when it completed, its product. */
export interface JobChanged {
  kind: 'jobChanged';
  job: StoredJob;
  product?: ResourceRef;
}

export interface JobProps {
  store: Store;
  log: Logger;
  artifactId: string;
  projectToken: string;
  policy: RetryPolicy;
  jobIndex: number;
  /** Bumped each time the supervisor is reset, so a new JobActor never collides with a stopped one's name. */
  generation?: number;
  /** Indices of the jobs whose products are this job's inputs (left-out jobs give none). */
  predecessors: number[];
  /** The job's row as the supervisor holds it (the store's): spares a read at start. Absent: read. */
  job?: StoredJob;
  /**
   * The products of `predecessors` (left-out ones give none), in order, as the supervisor holds
   * them from their reports: spares reading their jobs' and resources' rows per assignment.
   * Absent: read from the store. Small bytes are read from the store either way, where their
   * checksum is checked (rotten bytes are made again, not sent).
   */
  inputs?: ResourceRef[];
  supervisor: Ref<JobChanged>;
  /**
   * The job's node (a worker's connection, or the local initiator) when it is connected at spawn.
   * From then on this actor keeps its own, from the workerConnected/workerLost its supervisor sends.
   */
  peer?: NodePeer | undefined;
  /** A product over this many bytes fails its attempt (`store.max_resource_bytes`; default: no limit). */
  maxResourceBytes?: number;
  now(): number;
  random?: () => number;
  /** Test seam: throw inside the actor for this message (a bug), to exercise crash recovery. */
  crashOn?: (msg: JobMsg) => boolean;
}

interface Timers {
  attempt: NodeJS.Timeout | undefined;
  retry: NodeJS.Timeout | undefined;
  grace: NodeJS.Timeout | undefined;
}

interface JobState {
  job: StoredJob;
  timers: Timers;
}

const noTimers = (): Timers => ({ attempt: undefined, retry: undefined, grace: undefined });

/**
 * A JobActor's behaviour, one object per job with its methods on the prototype: a closure per
 * helper per job (~18, each named again by the build's keepNames) was the larger part of what
 * starting a JobActor cost, and garbage for every job of every artifact.
 */
class Job {
  private readonly random: () => number;
  incarnation = 0;
  /** The job's node, when connected: this actor's own news of it (kept across a reset, like the ref). */
  peer: NodePeer | undefined;

  constructor(private readonly props: JobProps) {
    this.random = props.random ?? Math.random;
    this.peer = props.peer;
  }

  /** Sends to the job's node; false when it is not connected. An assignment names this actor for the reports. */
  deliver(message: Message, reportsTo?: Ref<ReportMsg>): boolean {
    if (!this.peer) return false;
    this.peer.send(message, reportsTo);
    return true;
  }

  load(): StoredJob {
    const job = this.props.store.job(this.props.artifactId, this.props.jobIndex);
    if (!job) throw new Error(`job ${this.props.artifactId}.${this.props.jobIndex} is not in the store`);
    return job;
  }

  write(s: JobState, change: JobChange, product?: ResourceRef): JobState {
    this.props.store.updateJob(s.job.id, change);
    const job: StoredJob = {
      ...s.job,
      ...change,
      nextAttemptAt: change.nextAttemptAt,
      leftOut: change.leftOut ?? s.job.leftOut,
      // A new attempt running clears when the last one stopped (as the store does).
      finishedAt: change.startedAt === undefined ? (change.finishedAt ?? s.job.finishedAt) : change.finishedAt,
    };
    send(this.props.supervisor, product ? { kind: 'jobChanged', job, product } : { kind: 'jobChanged', job });
    return { ...s, job };
  }

  /** The predecessors' products; small ones carry their bytes, so the worker need not fetch them. */
  inputs(): AssignedInput[] {
    const props = this.props;
    const refs: ResourceRef[] = [];
    if (props.inputs) refs.push(...props.inputs);
    else {
      for (const i of props.predecessors) {
        const pred = props.store.job(props.artifactId, i);
        if (pred?.leftOut) continue;
        const ref = pred?.resultResourceId ? props.store.resource(pred.resultResourceId) : undefined;
        if (!ref) throw new Error(`input of job ${props.jobIndex} from job ${i} is missing`);
        refs.push(ref);
      }
    }
    return refs.map((ref) => {
      const input: AssignedInput = { id: ref.id, jobId: ref.jobId, producer: ref.producer, size: ref.size, sha256: ref.sha256 };
      const data = ref.size <= props.store.inlineResourceMaxBytes ? this.smallBytes(ref.id) : undefined;
      if (data) input.data = data;
      return input;
    });
  }

  /** Bytes that failed their checksum are not sent: the worker's fetch reports the rot (and has them made again). */
  smallBytes(resourceId: string): Uint8Array | undefined {
    try {
      return this.props.store.readResource(resourceId)?.bytes;
    } catch {
      return undefined;
    }
  }

  arm(ms: number, msg: JobMsg, self: Ref<JobMsg>): NodeJS.Timeout {
    const t = setTimeout(() => send(self, msg), ms);
    t.unref();
    return t;
  }

  clear(s: JobState, ...which: Array<keyof Timers>): JobState {
    const timers = { ...s.timers };
    for (const w of which) {
      if (timers[w]) clearTimeout(timers[w]);
      timers[w] = undefined;
    }
    return { ...s, timers };
  }

  clearAll(s: JobState): JobState {
    return this.clear(s, 'attempt', 'retry', 'grace');
  }

  /** The nodes that will read this job's product, with the keys pinned at their joins. */
  recipients(job: StoredJob): Array<{ nodeId: string; boxKey: string }> {
    const { store, artifactId } = this.props;
    const nodes = [...new Set(job.locks.map((i) => store.job(artifactId, i)?.worker).filter((w): w is string => w !== undefined))];
    return nodes.map((nodeId) => {
      const keys = store.nodeKeys(nodeId);
      if (!keys) throw new Error(`no key pinned for ${nodeId}`);
      return { nodeId, boxKey: keys.boxKey };
    });
  }

  /** Sends the current attempt to the worker; a worker that is away gets its grace time. */
  assign(s: JobState, self: Ref<JobMsg>): JobState {
    const props = this.props;
    const job = s.job;
    const assignment: Message = {
      type: 'assignJob',
      artifactId: props.artifactId,
      jobId: job.id,
      attempt: job.attempt,
      projectToken: props.projectToken,
      stepIndex: job.stepIndex,
      iteration: job.iteration,
      operation: job.operation,
      inputs: this.inputs(),
    };
    if (job.seal && job.locks.length > 0) assignment.sealFor = this.recipients(job);
    const delivered = this.deliver(assignment, self as Ref<ReportMsg>);
    const timers = { ...s.timers };
    // The attempt timer is armed once per attempt: re-deliveries do not extend it.
    timers.attempt ??= this.arm(props.policy.attemptTimeoutMs, { kind: 'attemptTimedOut', attempt: job.attempt }, self);
    if (!delivered) timers.grace ??= this.arm(props.policy.workerGraceMs, { kind: 'graceExpired', attempt: job.attempt }, self);
    return { ...s, timers };
  }

  nextAttempt(s: JobState, self: Ref<JobMsg>): JobState {
    return this.assign(this.write(this.clearAll(s), { state: 'SCHEDULED', attempt: s.job.attempt + 1 }), self);
  }

  inFlight(s: JobState, attempt: number): boolean {
    return attempt === s.job.attempt && (s.job.state === 'SCHEDULED' || s.job.state === 'RUNNING');
  }

  fail(s0: JobState, error: WireError, self: Ref<JobMsg>): JobState {
    const props = this.props;
    const s = this.clearAll(s0);
    const attempt = s.job.attempt;
    if (error.retryable && attempt < props.policy.maxAttempts) {
      const delay = nextDelay(props.policy, attempt + 1, this.random);
      const nextAttemptAt = props.now() + delay;
      props.log.warn({ jobId: s.job.id, worker: s.job.worker, attempt, error, delay }, 'job attempt failed; retrying');
      const next = this.write(s, { state: 'FAILED', lastError: error, nextAttemptAt, finishedAt: props.now() });
      return { ...next, timers: { ...next.timers, retry: this.arm(delay, { kind: 'retryDue', attempt }, self) } };
    }
    props.log.error({ jobId: s.job.id, worker: s.job.worker, attempt, error }, 'job out of attempts');
    return this.write(s, { state: 'ERROR', lastError: error, finishedAt: props.now() });
  }

  started(s: JobState, attempt: number): JobState {
    if (!this.inFlight(s, attempt) || s.job.state === 'RUNNING') return s;
    return this.write(s, { state: 'RUNNING', startedAt: this.props.now() });
  }

  complete(s: JobState, done: { resource: ResourceRef; rows?: number | undefined; ranMs?: number | undefined }): JobState {
    const finishedAt = this.props.now();
    return this.write(
      this.clearAll(s),
      {
        state: 'COMPLETED',
        resultResourceId: done.resource.id,
        finishedAt,
        ...(done.rows === undefined ? {} : { rows: done.rows }),
        // A short attempt is reported without jobStarted: it ran for the report's ranMs.
        ...(s.job.state === 'SCHEDULED' ? { startedAt: finishedAt - Math.round(done.ranMs ?? 0) } : {}),
      },
      done.resource,
    );
  }

  /**
   * A worker's report, checked here and nowhere else: from the job's worker, about the attempt in
   * flight (a stale or repeated one is dropped), its product within the size limit and matching its
   * sha256; then stored (bytes and row in the open transaction) and the job COMPLETED. A product
   * that cannot be stored fails the attempt with its cause, at once (not an attempt timeout later).
   */
  onReport(s: JobState, { worker, message: m }: ReportMsg, self: Ref<JobMsg>): JobState {
    const props = this.props;
    if (worker !== s.job.worker || !this.inFlight(s, m.attempt)) return s;
    if (m.type === 'jobStarted') return this.started(s, m.attempt);
    if (m.type === 'jobFailed') return this.fail(s, m.error, self);
    const limit = props.maxResourceBytes ?? Number.POSITIVE_INFINITY;
    if (m.data.byteLength > limit) return this.fail(s, toWireError(tooLarge(`the product of ${m.jobId}`, m.data.byteLength, limit)), self);
    // Corrupted in transit: the attempt failed, and a retry will produce it again.
    if (sha256Hex(m.data) !== m.sha256) return this.fail(s, wireError('CHECKSUM_MISMATCH', `product of ${m.jobId} does not match its sha256`), self);
    let resource: ResourceRef;
    try {
      resource = props.store.putResource({ artifactId: props.artifactId, jobId: m.jobId, producer: worker, sha256: m.sha256 }, m.data, props.now());
    } catch (e) {
      const error = toWireError(e, 'STORE_WRITE_FAILED');
      props.log.error({ jobId: m.jobId, attempt: m.attempt, error }, 'a reported product could not be stored');
      return this.fail(s, error, self);
    }
    return this.complete(s, { resource, rows: m.rows, ranMs: m.ranMs });
  }

  /** Picks the job up from its row: after a crash, or a restart of the scheduler. */
  resume(s: JobState, self: Ref<JobMsg>): JobState {
    switch (s.job.state) {
      case 'WAITING':
        return this.nextAttempt(s, self);
      case 'SCHEDULED':
      case 'RUNNING':
        // Handed out before: send the same attempt again (the worker runs an attempt once
        // and answers a second delivery with its report).
        return this.assign(s, self);
      case 'FAILED': {
        const wait = Math.max(0, (s.job.nextAttemptAt ?? 0) - this.props.now());
        return { ...s, timers: { ...s.timers, retry: this.arm(wait, { kind: 'retryDue', attempt: s.job.attempt }, self) } };
      }
      default:
        return s;
    }
  }

  handle(s: JobState, msg: JobMsg, self: Ref<JobMsg>): JobState {
    const props = this.props;
    if (props.crashOn?.(msg)) throw new Error(`injected crash on ${msg.kind}`);
    switch (msg.kind) {
      case 'start':
      case 'recovered':
        return this.resume(s, self);
      case 'retryDue':
        if (msg.attempt !== s.job.attempt || s.job.state !== 'FAILED') return s;
        return this.nextAttempt(s, self);
      case 'report':
        return this.onReport(s, msg, self);
      case 'started':
        return this.started(s, msg.attempt);
      case 'completed':
        if (!this.inFlight(s, msg.attempt)) return s;
        return this.complete(s, msg);
      case 'failed':
        if (!this.inFlight(s, msg.attempt)) return s;
        return this.fail(s, msg.error, self);
      case 'attemptTimedOut':
        if (!this.inFlight(s, msg.attempt)) return s;
        return this.fail(s, wireError('ATTEMPT_TIMEOUT', `attempt ${msg.attempt} did not finish within ${props.policy.attemptTimeoutMs} ms`), self);
      case 'graceExpired':
        if (!this.inFlight(s, msg.attempt)) return s;
        return this.fail(s, wireError('WORKER_LOST', `worker ${s.job.worker} was away longer than ${props.policy.workerGraceMs} ms`), self);
      case 'workerLost':
        this.peer = undefined;
        if (!this.inFlight(s, s.job.attempt) || s.timers.grace) return s;
        return {
          ...s,
          timers: { ...s.timers, grace: this.arm(props.policy.workerGraceMs, { kind: 'graceExpired', attempt: s.job.attempt }, self) },
        };
      case 'workerConnected': {
        this.peer = msg.peer;
        if (!this.inFlight(s, s.job.attempt)) return s;
        const back = this.clear(s, 'grace');
        return msg.holding ? back : this.assign(back, self);
      }
      case 'cancel':
        if (this.inFlight(s, s.job.attempt)) this.deliver({ type: 'cancelJob', jobId: s.job.id, attempt: s.job.attempt });
        return this.clearAll(s);
    }
  }

  /** Reset from the store: the durable row is the truth, memory is a cache of it. */
  initialState(self: Ref<JobMsg>): JobState {
    if (this.incarnation++ > 0) {
      send(self, { kind: 'recovered' });
      return { job: this.load(), timers: noTimers() };
    }
    return { job: this.props.job ?? this.load(), timers: noTimers() };
  }
}

export function spawnJobActor(parent: Ref<unknown>, props: JobProps): Ref<JobMsg> {
  const job = new Job(props);
  return spawnActor<JobState, JobMsg>(parent, `job-${props.jobIndex}-g${props.generation ?? 0}`, (s, msg, ctx) => job.handle(s, msg, ctx.self), {
    log: props.log,
    initialState: (ctx) => job.initialState(ctx.self),
    afterStop: (s) => {
      job.clearAll(s);
    },
  });
}
