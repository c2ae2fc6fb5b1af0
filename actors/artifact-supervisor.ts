import { stop } from 'nact';
import { decodeValue, encodeValue } from '../protocols/codec.ts';
import type { ArtifactState, ResourceRef } from '../protocols/entities.ts';
import { type WireError, wireError } from '../protocols/errors.ts';
import type { ArtifactEventItem, Message, MessageOf } from '../protocols/messages.ts';
import { coalesce, framesOf } from '../lib/artifact-events.ts';
import { toWireError } from '../lib/errors.ts';
import { type Ref, send, spawnActor } from '../lib/kit/actors.ts';
import type { Logger } from '../lib/log.ts';
import { sha256Hex } from '../lib/store/blobs.ts';
import { provenanceOf } from '../lib/provenance.ts';
import { artifactStatus } from '../lib/store/status.ts';
import type { Store, StoredArtifact, StoredJob } from '../lib/store/store.ts';
import { type JobChanged, type JobMsg, spawnJobActor } from './job.ts';
import type { NodePeer } from './scheduler.ts';

/**
 * ArtifactSupervisor: one per unfinished artifact. It owns the artifact's DAG: starts a
 * JobActor for each job whose predecessors are all done (AND-join; a job left out under its
 * step's quorum counts as done, with no product), moves the artifact to COMPLETED when every
 * job is done, or to ERROR when a required job runs out of attempts (then cancels the
 * others). A worker that a quorum left out while it was away is not waited on again: its later
 * quorum jobs are left out as they become ready, until it connects again. A JobActor that crashes is reset from the store (nact supervision). Everything is
 * written to the store before it is announced.
 */

export type SupervisorMsg =
  | { kind: 'start' }
  /** For the JobActor of `jobIndex`, which checks it (a worker's report without a route, report-routes.ts; a stored upload). */
  | { kind: 'jobReport'; jobIndex: number; report: JobMsg }
  /** `holding`: the attempts the worker announced as running, as `jobId#attempt`. */
  | { kind: 'workerConnected'; nodeId: string; holding: ReadonlySet<string>; peer: NodePeer }
  | { kind: 'workerLost'; nodeId: string }
  /** A resource's bytes no longer match its sha256: produce it again. */
  | { kind: 'resourceCorrupt'; jobIndex: number }
  | { kind: 'cancel'; replyTo?: { peer: { send(message: Message): void }; reqId: number } }
  /** Private: the barrier after the first unsent transition ran; push what gathered since. */
  | { kind: 'flushEvents' }
  | JobChanged;

/** What a supervisor tells the scheduler. */
export type SupervisorReport = { kind: 'supervisorFinished'; artifactId: string };

/** What a supervisor tells those who watch its artifact (actors/watchers.ts). */
export type SupervisorEvent = { kind: 'artifactEvent'; message: MessageOf<'artifactEvent'> };

export interface SupervisorProps {
  store: Store;
  log: Logger;
  artifactId: string;
  scheduler: Ref<SupervisorReport>;
  /** Where its artifact's transitions go (the Watchers: subscriptions and listing lines). */
  watchers: Ref<SupervisorEvent>;
  /** The nodes connected at spawn (a copy); from then on this actor keeps its own, from workerConnected/workerLost. */
  peers: ReadonlyMap<string, NodePeer>;
  /**
   * Its rows as the submit just read them: the first start uses them instead of reading them
   * again (a reset reads the store). Handed over: the submit does not touch them after.
   */
  loaded?: { artifact: StoredArtifact; jobs: StoredJob[] };
  /** Passed to every JobActor (JobProps.maxResourceBytes). */
  maxResourceBytes?: number;
  /** The least time between two progress pushes (lib/transport/defaults.ts); absent or 0: after every barrier. */
  progressIntervalMs?: number;
  now(): number;
  /** Test seam, passed to every JobActor (see JobProps.crashOn). */
  jobCrashOn?: (jobIndex: number, msg: JobMsg) => boolean;
  /** Test seam: throw inside the supervisor for this message (a bug), to exercise its reset. */
  crashOn?: (msg: SupervisorMsg) => boolean;
}

interface SupervisorState {
  artifact: StoredArtifact;
  jobs: StoredJob[];
  predecessors: number[][];
  live: Map<number, Ref<JobMsg>>;
  /** The artifact's nodes, to ignore news about the others. */
  nodes: ReadonlySet<string>;
  /** The latest news about each of its nodes' connections (none yet: unknown). */
  presence: Map<string, 'connected' | 'lost'>;
  /**
   * Workers a quorum left out while they were away, with the round they were left out in:
   * their later jobs are left out at once (where the quorum still holds) instead of waiting
   * out grace × attempts again each round, until the worker connects again.
   */
  gone: Map<string, number>;
  /** How many jobs are done (COMPLETED or left out): kept with every change, never counted. */
  doneCount: number;
  /**
   * Per job, how many of its predecessors are not done: kept with every change, so a job is ready
   * in O(1). Counting them per report made a 1,000-worker step's Finalize check up to 1,000
   * predecessors for each of its 1,000 reports.
   */
  undone: number[];
  /**
   * Products reported since this actor (re)started, by producing job, until every job they feed
   * has been started: their JobActors get them without reading the jobs' and resources' rows.
   */
  products: Map<number, ResourceRef>;
}

const TERMINAL: ReadonlySet<ArtifactState> = new Set(['COMPLETED', 'ERROR', 'CANCELLED']);
const done = (j: StoredJob | undefined) => j !== undefined && (j.state === 'COMPLETED' || j.leftOut);
const inFlight = (j: StoredJob | undefined) => j !== undefined && (j.state === 'SCHEDULED' || j.state === 'RUNNING');

/** Whether the job's Parallel step still meets its quorum if this job gives no product. */
const quorumHoldsWithout = (s: { jobs: StoredJob[] }, job: StoredJob): boolean => {
  const q = job.quorum;
  if (!q) return false;
  const others = s.jobs.filter((j) => j.quorum?.group === q.group && j.index !== job.index && j.state !== 'ERROR');
  return others.length >= q.required;
};

/** Per job, how many of its predecessors (the jobs whose locks name it) are not done. */
const undoneOf = (jobs: readonly StoredJob[]): number[] => {
  const undone = jobs.map(() => 0);
  for (const j of jobs) if (!done(j)) for (const next of j.locks) undone[next] = (undone[next] ?? 0) + 1;
  return undone;
};

/** The round of `gone` that stands for "away when the artifact was submitted". */
const AWAY_AT_SUBMIT = -1;

/**
 * The workers a quorum left out while away and that were not given a job since, as the rows
 * tell it (jobs are bound round by round, so index order is time order per worker), starting
 * from the holders away at submit.
 */
const goneFromRows = (jobs: StoredJob[], absentAtSubmit: readonly string[]): Map<string, number> => {
  const gone = new Map<string, number>(absentAtSubmit.map((w) => [w, AWAY_AT_SUBMIT]));
  for (const j of jobs) {
    const leftOutAway = j.leftOut && j.lastError?.code === 'WORKER_LOST';
    if (leftOutAway && !gone.has(j.worker)) gone.set(j.worker, j.iteration);
    else if (!leftOutAway && j.attempt > 0) gone.delete(j.worker);
  }
  return gone;
};


export function spawnArtifactSupervisor(parent: Ref<unknown>, props: SupervisorProps): Ref<SupervisorMsg> {
  let generation = 0;
  /** Its nodes that are connected, as the news it got says (this actor's own; kept across a reset, like the ref). */
  const peers = new Map(props.peers);
  const load = (ctx?: { children: Map<string, Ref<unknown>> }): SupervisorState => {
    // After a reset (a bug in this actor), the JobActors of the old state are stopped and
    // spawned again from the store under a new generation of names.
    if (ctx) for (const child of ctx.children.values()) stop(child);
    generation++;
    const loaded = generation === 1 ? props.loaded : undefined;
    const artifact = loaded?.artifact ?? props.store.artifact(props.artifactId);
    if (!artifact) throw new Error(`artifact ${props.artifactId} is not in the store`);
    const jobs = loaded?.jobs ?? props.store.jobs(props.artifactId);
    const predecessors: number[][] = jobs.map(() => []);
    for (const j of jobs) for (const next of j.locks) predecessors[next]?.push(j.index);
    const nodes = new Set(jobs.map((j) => j.worker));
    // Rebuilt from the rows rather than persisted: in a new scheduler process every live worker
    // must say hello again, and its `workerConnected` takes it off the list. After a reset (a
    // bug) the workers' connections did not change but this actor's news of them is lost, so
    // it starts with no one gone: a dead worker then costs one more wait, a live one is never
    // left out by mistake.
    const gone = generation === 1 ? goneFromRows(jobs, artifact.absent) : new Map<string, number>();
    return {
      artifact,
      jobs,
      predecessors,
      live: new Map(),
      nodes,
      presence: new Map(),
      gone,
      doneCount: jobs.filter(done).length,
      undone: undoneOf(jobs),
      products: new Map(),
    };
  };

  const progress = (s: SupervisorState) => ({ completed: s.doneCount, total: s.jobs.length });

  /**
   * The one way a job row changes in this actor's memory (its own state, so in place: copying the
   * array per change made every change O(jobs), and an Iterate's rounds slower as it went on).
   */
  const setJob = (s: SupervisorState, job: StoredJob): void => {
    const was = done(s.jobs[job.index]);
    const is = done(job);
    if (was !== is) {
      s.doneCount += is ? 1 : -1;
      for (const next of job.locks) s.undone[next] = (s.undone[next] ?? 0) + (is ? -1 : 1);
    }
    s.jobs[job.index] = job;
  };

  /** Every job index, for a full pass (at start). */
  const allJobs = (s: SupervisorState): number[] => s.jobs.map((j) => j.index);

  /** This actor's ref, for the flush it asks itself for from the group commit's callback. */
  let self: Ref<SupervisorMsg> | undefined;
  /**
   * Transitions not pushed yet, in order, and whether a flush is due at the next barrier: one push
   * per barrier, not one frame per transition (an artifact's state goes at once). Outside the
   * state, like `peers`: a reset (a bug) must not lose transitions a watcher was not shown yet.
   */
  const outbox: { events: ArtifactEventItem[]; armed: boolean; lastPushAt: number; timer: NodeJS.Timeout | undefined } = {
    events: [],
    armed: false,
    // From the spawn (the acceptance): an artifact done within the interval is one push in all.
    lastPushAt: props.now(),
    timer: undefined,
  };
  const interval = props.progressIntervalMs ?? 0;

  /**
   * Queues a transition for the subscribers. A job's transitions wait for the next barrier the
   * round brings anyway (never one of their own: `atNextBarrier` asks for none), so a round's
   * progress is one push instead of one per transition; an artifact's final state goes at once,
   * behind what was queued before it (docs/PROTOCOL.md, "Progress pushes"). Its `RUNNING` rides
   * with its first jobs' `SCHEDULED`, after the barrier that covers all of them (the one that
   * accepted it): one push per artifact fewer.
   */
  const emit = (s: SupervisorState, event: ArtifactEventItem) => {
    outbox.events.push(event);
    if (event.kind === 'artifactState' && TERMINAL.has(event.state)) {
      flushEvents(s);
      return;
    }
    if (outbox.armed) return;
    outbox.armed = true;
    const me = self;
    const flush = () => {
      if (me) send(me, { kind: 'flushEvents' });
    };
    // Within the interval of the last push: when it ends (a progress push promises nothing, so
    // it need not wait for a barrier then). Else after the next barrier, as the round brings one.
    const wait = outbox.lastPushAt + interval - props.now();
    if (wait > 0) {
      outbox.timer = setTimeout(flush, wait);
      outbox.timer.unref();
    } else props.store.atNextBarrier(flush);
  };

  /** Pushes the queued transitions (coalesced, lib/artifact-events.ts) to the scheduler, for the subscribers. */
  const flushEvents = (s: SupervisorState) => {
    outbox.armed = false;
    if (outbox.timer) clearTimeout(outbox.timer);
    outbox.timer = undefined;
    if (outbox.events.length === 0) return;
    outbox.lastPushAt = props.now();
    const events = coalesce(outbox.events);
    outbox.events = [];
    for (const frame of framesOf(events)) {
      send(props.watchers, {
        kind: 'artifactEvent',
        message: { type: 'artifactEvent', artifactId: s.artifact.id, progress: progress(s), events: frame },
      });
    }
  };

  const emitJob = (s: SupervisorState, job: StoredJob) => {
    const event: ArtifactEventItem = {
      kind: 'jobState',
      jobId: job.id,
      worker: job.worker,
      state: job.state,
      attempt: job.attempt,
    };
    if (job.lastError && (job.state === 'FAILED' || job.state === 'ERROR')) event.error = job.lastError;
    if (job.leftOut) event.leftOut = true;
    if (job.state === 'FAILED' && job.nextAttemptAt !== undefined) event.nextAttemptAt = job.nextAttemptAt;
    if (job.startedAt !== undefined) event.startedAt = job.startedAt;
    if (job.finishedAt !== undefined) event.finishedAt = job.finishedAt;
    emit(s, event);
  };

  const setArtifact = (s: SupervisorState, state: ArtifactState, extra: Parameters<Store['setArtifactState']>[3] = {}): SupervisorState => {
    const now = props.now();
    props.store.setArtifactState(s.artifact.id, state, now, extra);
    const artifact = { ...s.artifact, state, updatedAt: now };
    if (extra.error) artifact.error = extra.error;
    if (extra.resultResourceId) artifact.resultResourceId = extra.resultResourceId;
    if (extra.provenance) artifact.provenance = extra.provenance;
    const next = { ...s, artifact };
    const event: ArtifactEventItem = { kind: 'artifactState', state };
    if (TERMINAL.has(state)) {
      // The final status's own fields ride with it: the watchers need not ask for the status.
      event.updatedAt = now;
      if (artifact.error) event.error = artifact.error;
      if (artifact.resultResourceId) event.resultResourceId = artifact.resultResourceId;
      if (artifact.provenance) event.provenance = artifact.provenance;
    }
    emit(next, event);
    return next;
  };

  const stopJob = (s: SupervisorState, index: number, cancel: boolean) => {
    const ref = s.live.get(index);
    const job = s.jobs[index];
    if (cancel && job && inFlight(job)) peers.get(job.worker)?.send({ type: 'cancelJob', jobId: job.id, attempt: job.attempt });
    if (ref) stop(ref);
    s.live.delete(index);
  };

  const stopAll = (s: SupervisorState, cancel: boolean) => {
    for (const index of [...s.live.keys()]) stopJob(s, index, cancel);
  };

  /** Starts a JobActor for each of `candidates` whose predecessors are all done. */
  const startReady = (s: SupervisorState, self: Ref<SupervisorMsg>, candidates: Iterable<number>): void => {
    for (const index of candidates) {
      const job = s.jobs[index];
      if (!job || s.live.has(job.index) || job.state === 'COMPLETED' || job.state === 'ERROR') continue;
      if (s.undone[job.index] !== 0) continue;
      const preds = s.predecessors[job.index] ?? [];
      const inputs = inputsOf(s, preds);
      // The supervisor is their parent, however many: nact's per-message copy of a parent's
      // children is made only when read (lib/kit/nact-patch.ts), so a message to a supervisor
      // of 1,000 JobActors costs what it costs with one. (They were spread under 32 shard
      // parents before that patch: 11 more actors spawned per artifact at 10 workers.)
      const ref = spawnJobActor(self, {
        store: props.store,
        log: props.log,
        artifactId: s.artifact.id,
        projectToken: s.artifact.projectToken,
        policy: s.artifact.policy,
        jobIndex: job.index,
        generation,
        predecessors: preds,
        job,
        ...(inputs ? { inputs } : {}),
        supervisor: self as Ref<JobChanged>,
        peer: peers.get(job.worker),
        ...(props.maxResourceBytes === undefined ? {} : { maxResourceBytes: props.maxResourceBytes }),
        now: props.now,
        ...(props.jobCrashOn ? { crashOn: (m: JobMsg) => props.jobCrashOn?.(job.index, m) ?? false } : {}),
      });
      s.live.set(job.index, ref);
      send(ref, { kind: 'start' });
      forgetFed(s, preds);
    }
  };

  /** The products of `preds` (left-out ones give none), when this actor holds every one; else undefined (read from the store). */
  const inputsOf = (s: SupervisorState, preds: number[]): ResourceRef[] | undefined => {
    const inputs: ResourceRef[] = [];
    for (const p of preds) {
      if (s.jobs[p]?.leftOut) continue;
      const product = s.products.get(p);
      if (!product) return undefined;
      inputs.push(product);
    }
    return inputs;
  };

  /** A product is let go once every job it feeds has started (their JobActors hold it). */
  const forgetFed = (s: SupervisorState, preds: number[]) => {
    for (const p of preds) {
      const producer = s.jobs[p];
      if (producer?.locks.every((l) => s.live.has(l) || done(s.jobs[l]) || s.jobs[l]?.state === 'ERROR')) s.products.delete(p);
    }
  };

  /** One exit: its product is the result. Several: a product `{ products: [...] }` in exit order (left-out ones skipped). */
  const resultOf = (s: SupervisorState): string | undefined => {
    const exits = s.artifact.exits.map((i) => s.jobs[i]).filter((j) => j && !j.leftOut) as StoredJob[];
    if (exits.length === 1) return exits[0]?.resultResourceId;
    const products = exits.map((j) => {
      const read = j.resultResourceId ? props.store.readResource(j.resultResourceId) : undefined;
      return read ? decodeValue(read.bytes) : null;
    });
    const bytes = encodeValue({ products });
    return props.store.putResource(
      { artifactId: s.artifact.id, jobId: `${s.artifact.id}.result`, producer: 'scheduler', sha256: sha256Hex(bytes) },
      bytes,
      props.now(),
    ).id;
  };

  const finish = (s: SupervisorState): SupervisorState => {
    stopAll(s, false);
    send(props.scheduler, { kind: 'supervisorFinished', artifactId: s.artifact.id });
    return s;
  };

  const fail = (s0: SupervisorState, job: StoredJob): SupervisorState => {
    const error: WireError = job.lastError ?? wireError('INTERNAL', 'job failed');
    const s = setArtifact(s0, 'ERROR', { error: { jobId: job.id, worker: job.worker, error } });
    stopAll(s, true);
    return finish(s);
  };

  /** A job out of attempts: left out if its step's quorum can still be met, else the artifact fails. */
  const onJobError = (s0: SupervisorState, job: StoredJob, self: Ref<SupervisorMsg>): SupervisorState => {
    if (!quorumHoldsWithout(s0, job)) {
      emitJob(s0, job);
      return fail(s0, job);
    }
    const s = leaveOut(s0, job, {});
    props.log.warn({ jobId: job.id, worker: job.worker, quorum: job.quorum }, 'job left out under its quorum');
    if (isAway(s, job)) {
      s.gone.set(job.worker, job.iteration);
      props.log.warn({ worker: job.worker, round: job.iteration }, 'worker left out while away: its later quorum jobs go on without it until it comes back');
    }
    return advance(s, self, job.locks);
  };

  /** Writes the job left out (store first), then announces it. */
  const leaveOut = (s: SupervisorState, job: StoredJob, change: { lastError?: WireError }): SupervisorState => {
    props.store.updateJob(job.id, { state: 'ERROR', leftOut: true, ...change });
    const left: StoredJob = { ...job, ...change, state: 'ERROR', leftOut: true, nextAttemptAt: undefined };
    setJob(s, left);
    emitJob(s, left);
    return s;
  };

  /**
   * Whether the job's worker was away when it was left out: the supervisor's latest news of
   * it says lost, or it has none and the last attempt failed for the worker's absence. A worker
   * whose reconnection arrived first is not away, whatever its last attempt's error.
   */
  const isAway = (s: SupervisorState, job: StoredJob): boolean => {
    const news = s.presence.get(job.worker);
    return news === 'lost' || (news === undefined && job.lastError?.code === 'WORKER_LOST');
  };

  /**
   * Jobs about to start whose worker a quorum left out in an earlier round and which has not come
   * back: left out now, without an attempt, when their step's quorum holds without them. Jobs
   * are bound in dependency order, so one pass also reaches jobs that these make ready.
   */
  const leaveOutGoneWorkers = (s: SupervisorState, candidates: number[]): number[] => {
    if (s.gone.size === 0) return candidates;
    const reached = [...candidates];
    for (let k = 0; k < reached.length; k++) {
      const job = s.jobs[reached[k] as number];
      const round = job ? s.gone.get(job.worker) : undefined;
      if (!job || round === undefined || job.state !== 'WAITING' || s.live.has(job.index)) continue;
      if (s.undone[job.index] !== 0) continue;
      if (!quorumHoldsWithout(s, job)) continue;
      const reason =
        round === AWAY_AT_SUBMIT
          ? `worker ${job.worker} was away when the artifact was submitted and has not come back`
          : `worker ${job.worker} was left out in round ${round} and has not come back`;
      props.log.info({ jobId: job.id, worker: job.worker, round: job.iteration }, 'job left out at once: its worker is still gone');
      leaveOut(s, job, { lastError: wireError('WORKER_LOST', reason) });
      reached.push(...job.locks); // the jobs it unlocks may now be ready too
    }
    return reached;
  };

  /**
   * After a change: finishes the artifact when every job is done, else starts what became ready.
   * `candidates`: the jobs the change can have made ready (those the changed job unlocks), so a
   * change costs what it touches, not the artifact's size; a full pass only at start.
   */
  const advance = (s0: SupervisorState, self: Ref<SupervisorMsg>, candidates: number[] = allJobs(s0)): SupervisorState => {
    let s = s0;
    const reached = leaveOutGoneWorkers(s, candidates);
    if (s.doneCount === s.jobs.length) {
      let resultResourceId: string | undefined;
      try {
        resultResourceId = resultOf(s);
      } catch (e) {
        // A product that cannot be read (not msgpack): end the artifact with the cause, rather
        // than crash and be reset into the same crash.
        const cause = toWireError(e, 'OPERATION_FAILED');
        s = setArtifact(s, 'ERROR', { error: { error: wireError(cause.code, `the result cannot be assembled: ${cause.message}`) } });
        return finish(s);
      }
      const provenance = provenanceOf(s.artifact, s.jobs);
      s = setArtifact(s, 'COMPLETED', resultResourceId ? { resultResourceId, provenance } : { provenance });
      return finish(s);
    }
    startReady(s, self, reached);
    return s;
  };

  self = spawnActor<SupervisorState, SupervisorMsg>(
    parent,
    `artifact-${props.artifactId}`,
    (s0, msg, ctx) => {
      if (props.crashOn?.(msg)) throw new Error(`injected crash on ${msg.kind}`);
      let s = s0;
      if (TERMINAL.has(s.artifact.state) && msg.kind !== 'start') {
        if (msg.kind === 'cancel') msg.replyTo?.peer.send({ type: 'status', reqId: msg.replyTo.reqId, status: artifactStatus(s.artifact, s.jobs) });
        return s;
      }
      switch (msg.kind) {
        case 'start': {
          if (TERMINAL.has(s.artifact.state)) return finish(s);
          if (s.artifact.state === 'SCHEDULED') s = setArtifact(s, 'RUNNING');
          return advance(s, ctx.self);
        }
        case 'jobReport': {
          // Checked by the JobActor, which owns the job (worker, attempt, product): once.
          const ref = s.live.get(msg.jobIndex);
          if (ref) send(ref, msg.report);
          return s;
        }
        case 'workerConnected':
          if (!s.nodes.has(msg.nodeId)) return s;
          s.presence.set(msg.nodeId, 'connected');
          peers.set(msg.nodeId, msg.peer);
          if (s.gone.delete(msg.nodeId)) props.log.info({ worker: msg.nodeId }, 'a left-out worker came back: it rejoins from the next round');
          for (const [index, ref] of s.live) {
            const job = s.jobs[index];
            if (job?.worker === msg.nodeId) send(ref, { kind: 'workerConnected', holding: msg.holding.has(`${job.id}#${job.attempt}`), peer: msg.peer });
          }
          return s;
        case 'workerLost':
          if (!s.nodes.has(msg.nodeId)) return s;
          s.presence.set(msg.nodeId, 'lost');
          peers.delete(msg.nodeId);
          for (const [index, ref] of s.live) if (s.jobs[index]?.worker === msg.nodeId) send(ref, { kind: 'workerLost' });
          return s;
        case 'resourceCorrupt': {
          // Produce it again: the producer goes back to WAITING, and so does every job that
          // was consuming it (their attempts could not have succeeded).
          const producer = s.jobs[msg.jobIndex];
          if (producer?.state !== 'COMPLETED') return s;
          for (const next of producer.locks) {
            const consumer = s.jobs[next];
            if (!consumer || consumer.state === 'COMPLETED' || consumer.state === 'ERROR') continue;
            stopJob(s, next, true);
            props.store.updateJob(consumer.id, { state: 'WAITING' });
            setJob(s, { ...consumer, state: 'WAITING', nextAttemptAt: undefined });
          }
          props.store.updateJob(producer.id, { state: 'WAITING', clearResult: true });
          s.products.delete(producer.index);
          const again: StoredJob = { ...producer, state: 'WAITING', resultResourceId: undefined };
          setJob(s, again);
          props.log.warn({ jobId: producer.id }, 'a product was corrupted; producing it again');
          emitJob(s, again);
          return advance(s, ctx.self, [producer.index, ...producer.locks]);
        }
        case 'jobChanged': {
          setJob(s, msg.job);
          // A job out of attempts is announced once its fate is known (left out, or fatal).
          if (msg.job.state !== 'ERROR') emitJob(s, msg.job);
          if (msg.job.state === 'COMPLETED') {
            if (msg.product) s.products.set(msg.job.index, msg.product);
            stopJob(s, msg.job.index, false);
            return advance(s, ctx.self, msg.job.locks);
          }
          if (msg.job.state === 'ERROR') {
            stopJob(s, msg.job.index, false);
            return onJobError(s, msg.job, ctx.self);
          }
          return s;
        }
        case 'flushEvents':
          flushEvents(s);
          return s;
        case 'cancel': {
          stopAll(s, true);
          s = setArtifact(s, 'CANCELLED', { error: { error: wireError('CANCELLED', 'cancelled by a workbench') } });
          msg.replyTo?.peer.send({
            type: 'status',
            reqId: msg.replyTo.reqId,
            status: artifactStatus(s.artifact, s.jobs),
          });
          return finish(s);
        }
      }
    },
    {
      log: props.log,
      initialState: (ctx) => {
        const state = load(generation > 0 ? ctx : undefined);
        if (generation > 1) send(ctx.self, { kind: 'start' });
        return state;
      },
      // Its state is a cache of the store: on a bug, reload and carry on.
      onCrash: 'reset',
    },
  );
  return self;
}
