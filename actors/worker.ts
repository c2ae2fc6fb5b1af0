import type { KeyObject } from 'node:crypto';
import type { WireError } from '../protocols/errors.ts';
import { type Message, type MessageOf, STARTED_NOTICE_MS } from '../protocols/messages.ts';
import { type DataEngine, forAttempt } from '../lib/data/engine.ts';
import { FdlError, toWireError } from '../lib/errors.ts';
import { type Ref, send, spawnActor } from '../lib/kit/actors.ts';
import type { Logger } from '../lib/log.ts';
import { type Compute, type PrivacySettings, runOperation } from '../lib/ops/index.ts';
import type { LocalsStore } from '../lib/store/locals.ts';
import { type CollectorMsg, type CollectorReport, type LargeInputs, spawnCollector } from './collector.ts';
import { type DistributorMsg, type DistributorReport, type LargeProducts, spawnDistributor } from './distributor.ts';

/**
 * WorkerActor: runs jobs on a node's local data. The same code serves a remote worker
 * (messages over its socket) and the scheduler's in-process initiator (local dispatch).
 * An attempt `(jobId, attempt)` runs once: delivered again, it is reported again.
 * Operations run off the actor's mailbox (their promise reports back), so the actor keeps
 * answering while a long job runs; their JavaScript-heavy half runs on the node's compute pool
 * (lib/ops/pool.ts), so the event loop does too. A cancelled attempt's operation is aborted
 * (its pool thread ended, or inline, stopped at its next check) and is never reported.
 */

export type WorkerMsg =
  | { kind: 'inbound'; message: Message }
  | { kind: 'opDone'; key: string; product: unknown }
  | { kind: 'opFailed'; key: string; error: WireError }
  /** Timer: the attempt's operation has run STARTED_NOTICE_MS; still running, it says so. */
  | { kind: 'startedNotice'; key: string }
  | CollectorReport
  | DistributorReport;

interface Attempt {
  /** Without its inputs once the attempt is over (see `settle`). */
  assignment: MessageOf<'assignJob'>;
  phase: 'collecting' | 'running' | 'distributing' | 'done' | 'failed' | 'cancelled';
  report?: Message;
  /** Aborted by cancelJob: stops the running operation. */
  abort?: AbortController;
  /** The operation read the node's data for the assignment's project. */
  readData?: boolean;
  /** When the operation began (performance.now()), for the report's `ranMs`. */
  began?: number;
  /** Armed when the operation began: sends `jobStarted` if it is still running then. */
  notice?: NodeJS.Timeout;
}

interface WorkerState {
  attempts: Map<string, Attempt>;
  collector: Ref<CollectorMsg>;
  distributor: Ref<DistributorMsg>;
}

export interface WorkerProps {
  name: string;
  log: Logger;
  data: DataEngine | undefined;
  locals: LocalsStore;
  /** Sends to the scheduler: false when the link is down (the scheduler will ask again). */
  sendToScheduler(message: Message): boolean;
  /**
   * Kept up to date by the actor: the attempts (`jobId#attempt`) it is working on and has not
   * reported yet. Read when the link comes back, to announce them in the hello.
   */
  running?: Set<string>;
  /** The node's privacy rules (min group size, differential-privacy budget); absent: the safe defaults. */
  privacy?: PrivacySettings;
  /** This node's id and X25519 private key: sealed inputs are opened with it. */
  identity?: { nodeId: string; boxPrivate: KeyObject };
  /** Test seam: alter a report before it is sent (corrupt or drop a product). */
  tamper?: (report: MessageOf<'jobCompleted'>) => MessageOf<'jobCompleted'> | undefined;
  random?: () => number;
  /** Where operations run their JavaScript-heavy half (lib/ops/pool.ts); absent: inline. */
  compute?: Compute;
  /** Resources over the stream threshold: how inputs are fetched and products sent; absent: always in one frame. */
  large?: LargeInputs & LargeProducts;
  /** A folder for products written as files (lib/ops/file-blob.ts). */
  scratch?: string;
}

/** Finished attempts remembered for re-reporting; older ones are forgotten first. */
const REMEMBERED_ATTEMPTS = 10_000;

const keyOf = (jobId: string, attempt: number) => `${jobId}#${attempt}`;

/**
 * An attempt is over (reported or cancelled): only its report and ids are needed any more (to
 * report it again, to log a late outcome). Why drop the inputs: a remembered attempt kept its
 * assignment whole, and the scheduler's initiator remembers 10,000 of them, so each Finalize of
 * N workers kept N products (1,000 workers: ~1.5 MiB per artifact, 230 → 470 MiB of RSS after 40).
 */
function settle(a: Attempt, phase: 'done' | 'failed' | 'cancelled'): void {
  a.phase = phase;
  a.abort = undefined;
  if (a.assignment.inputs.length > 0 || a.assignment.sealFor) a.assignment = { ...a.assignment, inputs: [], sealFor: undefined };
}

export function spawnWorker(parent: Ref<unknown>, props: WorkerProps): Ref<WorkerMsg> {
  const random = props.random ?? Math.random;
  const { log } = props;

  const running = props.running ?? new Set<string>();

  const report = (a: Attempt, message: Message, phase: 'done' | 'failed') => {
    clearTimeout(a.notice);
    a.report = message;
    settle(a, phase);
    running.delete(keyOf(a.assignment.jobId, a.assignment.attempt));
    props.sendToScheduler(message);
  };

  const forget = (attempts: Map<string, Attempt>) => {
    if (attempts.size <= REMEMBERED_ATTEMPTS) return;
    for (const [key, a] of attempts) {
      if (attempts.size <= REMEMBERED_ATTEMPTS) break;
      if (a.phase === 'done' || a.phase === 'failed' || a.phase === 'cancelled') attempts.delete(key);
    }
  };

  return spawnActor<WorkerState, WorkerMsg>(
    parent,
    `worker-${props.name}`,
    (s, msg, ctx) => {
      switch (msg.kind) {
        case 'inbound': {
          const m = msg.message;
          if (m.type === 'assignJob') {
            const key = keyOf(m.jobId, m.attempt);
            const known = s.attempts.get(key);
            if (known) {
              // A duplicate delivery (reconnect, scheduler restart): never run twice.
              if (known.report) props.sendToScheduler(known.report);
              return s;
            }
            s.attempts.set(key, { assignment: m, phase: 'collecting' });
            running.add(key);
            forget(s.attempts);
            log.debug({ jobId: m.jobId, attempt: m.attempt, op: m.operation.kind }, 'job assigned');
            send(s.collector, { kind: 'collect', key, assignment: m });
            return s;
          }
          if (m.type === 'cancelJob') {
            log.info({ jobId: m.jobId, attempt: m.attempt }, 'job cancelled');
            const a = s.attempts.get(keyOf(m.jobId, m.attempt));
            if (a && a.phase !== 'done' && a.phase !== 'failed') {
              clearTimeout(a.notice);
              a.abort?.abort(new FdlError('CANCELLED', 'the job was cancelled', { retryable: false }));
              settle(a, 'cancelled');
            }
            running.delete(keyOf(m.jobId, m.attempt));
            return s;
          }
          if (m.type === 'resourceData' || (m.type === 'error' && m.reqId !== undefined)) {
            send(s.collector, { kind: 'reply', message: m });
            return s;
          }
          if (m.type === 'error') log.warn({ error: m.error }, 'scheduler reported an error');
          return s;
        }
        case 'inputsReady': {
          const a = s.attempts.get(msg.key);
          if (a?.phase !== 'collecting') return s;
          a.phase = 'running';
          const { assignment } = a;
          const self = ctx.self;
          // A short operation goes straight to its report (with `ranMs`): no jobStarted frame.
          a.began = performance.now();
          a.notice = setTimeout(() => send(self, { kind: 'startedNotice', key: msg.key }), STARTED_NOTICE_MS);
          a.notice.unref();
          const abort = new AbortController();
          a.abort = abort;
          const data = props.data
            ? forAttempt(props.data, {
                onRead: (token) => {
                  if (token === assignment.projectToken) a.readData = true;
                },
                signal: abort.signal,
              })
            : undefined;
          runOperation({
            operation: assignment.operation,
            attempt: assignment.attempt,
            artifactId: assignment.artifactId,
            stepIndex: assignment.stepIndex,
            iteration: assignment.iteration,
            projectToken: assignment.projectToken,
            inputs: msg.inputs,
            data,
            locals: props.locals.for(assignment.artifactId),
            random,
            ...(props.privacy ? { privacy: props.privacy } : {}),
            signal: a.abort.signal,
            ...(props.compute ? { compute: props.compute } : {}),
            ...(props.scratch ? { scratch: props.scratch } : {}),
          }).then(
            (product) => send(self, { kind: 'opDone', key: msg.key, product }),
            (e: unknown) => send(self, { kind: 'opFailed', key: msg.key, error: toWireError(e, 'OPERATION_FAILED') }),
          );
          return s;
        }
        case 'startedNotice': {
          const a = s.attempts.get(msg.key);
          if (a?.phase !== 'running') return s;
          props.sendToScheduler({ type: 'jobStarted', jobId: a.assignment.jobId, attempt: a.assignment.attempt });
          return s;
        }
        case 'inputsFailed':
        case 'opFailed': {
          const a = s.attempts.get(msg.key);
          if (a?.phase === 'cancelled' && msg.kind === 'opFailed') {
            log.info({ jobId: a.assignment.jobId, attempt: a.assignment.attempt }, 'cancelled job stopped');
          }
          if (!a || a.phase === 'cancelled' || a.phase === 'done' || a.phase === 'failed') return s;
          log.warn({ jobId: a.assignment.jobId, attempt: a.assignment.attempt, error: msg.error }, 'job attempt failed');
          report(a, { type: 'jobFailed', jobId: a.assignment.jobId, attempt: a.assignment.attempt, error: msg.error }, 'failed');
          return s;
        }
        case 'opDone': {
          const a = s.attempts.get(msg.key);
          if (a?.phase === 'cancelled') log.info({ jobId: a.assignment.jobId, attempt: a.assignment.attempt }, 'cancelled job finished unreported');
          if (a?.phase !== 'running') return s;
          a.phase = 'distributing';
          clearTimeout(a.notice);
          send(s.distributor, {
            kind: 'distribute',
            key: msg.key,
            artifactId: a.assignment.artifactId,
            jobId: a.assignment.jobId,
            attempt: a.assignment.attempt,
            product: msg.product,
            sealFor: a.assignment.sealFor,
            rows: a.readData && props.data ? props.data.rowsOf(a.assignment.projectToken) : undefined,
            ranMs: Math.round((performance.now() - (a.began ?? performance.now())) * 1000) / 1000,
          });
          return s;
        }
        case 'distributed': {
          const a = s.attempts.get(msg.key);
          if (!a) return s;
          a.report = msg.report;
          settle(a, 'done');
          running.delete(msg.key);
          return s;
        }
      }
    },
    {
      log,
      initialState: (ctx) => ({
        attempts: new Map(),
        collector: spawnCollector(ctx.self as Ref<CollectorReport>, {
          log,
          sendToScheduler: props.sendToScheduler,
          identity: props.identity,
          large: props.large,
        }),
        distributor: spawnDistributor(ctx.self as Ref<DistributorReport>, {
          log,
          sendToScheduler: props.sendToScheduler,
          ...(props.tamper ? { tamper: props.tamper } : {}),
          large: props.large,
        }),
      }),
      onCrash: 'resume',
    },
  );
}
