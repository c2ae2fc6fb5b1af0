import type { Message, MessageOf } from '../protocols/messages.ts';
import { type Ref, send } from '../lib/kit/actors.ts';

/** What a worker reports about one attempt of a job. */
export type WorkerReport = MessageOf<'jobStarted'> | MessageOf<'jobCompleted'> | MessageOf<'jobFailed'>;

/**
 * A worker's report as the JobActor that owns the job gets it: not checked yet. The JobActor checks
 * it once, from its memory (the worker is the job's, the attempt is the one in flight), and stores
 * the product; nobody on the way reads the job's row.
 */
export interface ReportMsg {
  kind: 'report';
  worker: string;
  message: WorkerReport;
}

export const isWorkerReport = (m: Message): m is WorkerReport => m.type === 'jobStarted' || m.type === 'jobCompleted' || m.type === 'jobFailed';

/**
 * The attempts assigned over one peer, each with the JobActor that assigned it (the assignment's
 * reply address, as `replyTo` in Akka): that peer's reports on them go straight to it, not through
 * the Scheduler and the ArtifactSupervisor (two actor hops less per report). Owned by the peer's
 * side (a Connection, the initiator's handle) and filled by its `send`. A report it has no route
 * for (the worker reconnected and reports an attempt assigned over its old socket) goes the long
 * way, which ends at the same JobActor and the same checks.
 */
export class ReportRoutes {
  /** By job id: the attempt assigned last over this peer, and who assigned it. */
  private readonly routes = new Map<string, { attempt: number; to: Ref<ReportMsg> }>();

  /** A message is going out over this peer: an assignment opens its route, a cancel closes it. */
  sending(message: Message, reportsTo: Ref<ReportMsg> | undefined): void {
    if (message.type === 'assignJob' && reportsTo) this.routes.set(message.jobId, { attempt: message.attempt, to: reportsTo });
    else if (message.type === 'cancelJob') this.routes.delete(message.jobId);
  }

  /** Hands a report to the JobActor of its attempt; false when there is no route for it here. */
  route(worker: string, m: WorkerReport): boolean {
    const r = this.routes.get(m.jobId);
    if (!r || r.attempt !== m.attempt) return false;
    // The attempt's last word closes the route (a repeated report then goes the long way, and is dropped as stale).
    if (m.type !== 'jobStarted') this.routes.delete(m.jobId);
    send(r.to, { kind: 'report', worker, message: m });
    return true;
  }

  /** Routes open (tests, metrics). */
  get size(): number {
    return this.routes.size;
  }
}
