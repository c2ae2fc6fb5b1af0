import { stop } from 'nact';
import { decodeValue, encodeValue } from '../protocols/codec.ts';
import type { ArtifactState, ResourceRef } from '../protocols/entities.ts';
import type { WireError } from '../protocols/errors.ts';
import type { Message, MessageOf } from '../protocols/messages.ts';
import { type Ref, send, spawnActor } from '../lib/kit/actors.ts';
import type { Logger } from '../lib/log.ts';
import { sha256Hex } from '../lib/store/blobs.ts';
import type { Store, StoredArtifact, StoredJob } from '../lib/store/store.ts';
import { type JobChanged, type JobMsg, spawnJobActor } from './job.ts';

/**
 * ArtifactSupervisor: one per unfinished artifact. It owns the artifact's DAG: starts a
 * JobActor for each job whose predecessors all completed (AND-join), moves the artifact
 * to COMPLETED when every job is, or to ERROR when a job runs out of attempts (and then
 * cancels the others). Everything is written to the store before it is announced.
 */

export type SupervisorMsg =
  | { kind: 'start' }
  | { kind: 'jobReport'; jobIndex: number; worker: string; report: JobMsg }
  | { kind: 'workerConnected'; nodeId: string }
  | { kind: 'cancel' }
  | JobChanged;

/** What a supervisor tells the scheduler. */
export type SupervisorReport =
  | { kind: 'artifactEvent'; message: MessageOf<'artifactEvent'> }
  | { kind: 'supervisorFinished'; artifactId: string };

export interface SupervisorProps {
  store: Store;
  log: Logger;
  artifactId: string;
  scheduler: Ref<SupervisorReport>;
  deliver(nodeId: string, message: Message): boolean;
  now(): number;
}

interface SupervisorState {
  artifact: StoredArtifact;
  jobs: StoredJob[];
  predecessors: number[][];
  live: Map<number, Ref<JobMsg>>;
}

const TERMINAL: ReadonlySet<ArtifactState> = new Set(['COMPLETED', 'ERROR', 'CANCELLED']);

export function spawnArtifactSupervisor(parent: Ref<unknown>, props: SupervisorProps): Ref<SupervisorMsg> {
  const load = (): SupervisorState => {
    const artifact = props.store.artifact(props.artifactId);
    if (!artifact) throw new Error(`artifact ${props.artifactId} is not in the store`);
    const jobs = props.store.jobs(props.artifactId);
    const predecessors: number[][] = jobs.map(() => []);
    for (const j of jobs) for (const next of j.locks) predecessors[next]?.push(j.index);
    return { artifact, jobs, predecessors, live: new Map() };
  };

  const progress = (s: SupervisorState) => ({
    completed: s.jobs.filter((j) => j.state === 'COMPLETED').length,
    total: s.jobs.length,
  });

  const emit = (s: SupervisorState, event: MessageOf<'artifactEvent'>['event']) =>
    send(props.scheduler, {
      kind: 'artifactEvent',
      message: { type: 'artifactEvent', artifactId: s.artifact.id, progress: progress(s), event },
    });

  const setArtifact = (
    s: SupervisorState,
    state: ArtifactState,
    extra: Parameters<Store['setArtifactState']>[3] = {},
  ): SupervisorState => {
    const now = props.now();
    props.store.setArtifactState(s.artifact.id, state, now, extra);
    const artifact = { ...s.artifact, state, updatedAt: now };
    if (extra.error) artifact.error = extra.error;
    if (extra.resultResourceId) artifact.resultResourceId = extra.resultResourceId;
    const next = { ...s, artifact };
    emit(next, { kind: 'artifactState', state });
    return next;
  };

  const stopAll = (s: SupervisorState, cancel: boolean) => {
    for (const [index, ref] of s.live) {
      const job = s.jobs[index];
      if (cancel && job && (job.state === 'SCHEDULED' || job.state === 'RUNNING')) {
        props.deliver(job.worker, { type: 'cancelJob', jobId: job.id, attempt: job.attempt });
      }
      stop(ref);
    }
    s.live.clear();
  };

  const startReady = (s: SupervisorState, self: Ref<SupervisorMsg>): void => {
    for (const job of s.jobs) {
      if (s.live.has(job.index) || job.state === 'COMPLETED' || job.state === 'ERROR') continue;
      const preds = s.predecessors[job.index] ?? [];
      if (!preds.every((p) => s.jobs[p]?.state === 'COMPLETED')) continue;
      const ref = spawnJobActor(self, {
        store: props.store,
        log: props.log,
        artifactId: s.artifact.id,
        projectToken: s.artifact.projectToken,
        policy: s.artifact.policy,
        jobIndex: job.index,
        predecessors: preds,
        supervisor: self as Ref<JobChanged>,
        deliver: props.deliver,
      });
      s.live.set(job.index, ref);
      send(ref, { kind: 'start' });
    }
  };

  /** One exit: its product is the result. Several: a product `{ products: [...] }` in exit order. */
  const resultOf = (s: SupervisorState): string | undefined => {
    const exits = s.artifact.exits.map((i) => s.jobs[i]);
    if (exits.length === 1) return exits[0]?.resultResourceId;
    const products = exits.map((j) => {
      const read = j?.resultResourceId ? props.store.readResource(j.resultResourceId) : undefined;
      return read ? decodeValue(read.bytes) : null;
    });
    const bytes = encodeValue({ products });
    const ref: ResourceRef = props.store.putResource(
      { artifactId: s.artifact.id, jobId: `${s.artifact.id}.result`, producer: 'scheduler', sha256: sha256Hex(bytes) },
      bytes,
      props.now(),
    );
    return ref.id;
  };

  const finish = (s: SupervisorState): SupervisorState => {
    stopAll(s, false);
    send(props.scheduler, { kind: 'supervisorFinished', artifactId: s.artifact.id });
    return s;
  };

  return spawnActor<SupervisorState, SupervisorMsg>(
    parent,
    `artifact-${props.artifactId}`,
    (s0, msg, ctx) => {
      let s = s0;
      if (TERMINAL.has(s.artifact.state) && msg.kind !== 'start') return s;
      switch (msg.kind) {
        case 'start': {
          if (TERMINAL.has(s.artifact.state)) return finish(s);
          if (s.artifact.state === 'SCHEDULED') s = setArtifact(s, 'RUNNING');
          startReady(s, ctx.self);
          return s;
        }
        case 'jobReport': {
          const job = s.jobs[msg.jobIndex];
          const ref = s.live.get(msg.jobIndex);
          // Only the worker the job is assigned to may report on it.
          if (!job || !ref || job.worker !== msg.worker) return s;
          send(ref, msg.report);
          return s;
        }
        case 'workerConnected':
          for (const [index, ref] of s.live) if (s.jobs[index]?.worker === msg.nodeId) send(ref, { kind: 'workerConnected' });
          return s;
        case 'jobChanged': {
          const jobs = s.jobs.slice();
          jobs[msg.job.index] = msg.job;
          s = { ...s, jobs };
          const event: MessageOf<'artifactEvent'>['event'] = {
            kind: 'jobState',
            jobId: msg.job.id,
            worker: msg.job.worker,
            state: msg.job.state,
            attempt: msg.job.attempt,
          };
          if (msg.job.lastError && (msg.job.state === 'FAILED' || msg.job.state === 'ERROR')) event.error = msg.job.lastError;
          emit(s, event);
          if (msg.job.state === 'COMPLETED') {
            const ref = s.live.get(msg.job.index);
            if (ref) stop(ref);
            s.live.delete(msg.job.index);
            if (s.jobs.every((j) => j.state === 'COMPLETED')) {
              const resultResourceId = resultOf(s);
              s = setArtifact(s, 'COMPLETED', resultResourceId ? { resultResourceId } : {});
              return finish(s);
            }
            startReady(s, ctx.self);
          } else if (msg.job.state === 'ERROR') {
            const error: WireError = msg.job.lastError ?? { code: 'INTERNAL', message: 'job failed', retryable: false };
            s = setArtifact(s, 'ERROR', { error: { jobId: msg.job.id, worker: msg.job.worker, error } });
            stopAll(s, true);
            return finish(s);
          }
          return s;
        }
        case 'cancel': {
          stopAll(s, true);
          s = setArtifact(s, 'CANCELLED');
          return finish(s);
        }
      }
    },
    { log: props.log, initialState: load },
  );
}

