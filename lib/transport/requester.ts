import { FdlError } from '../errors.ts';
import type { Message } from '../../protocols/messages.ts';
import { DEFAULT_REQUEST_TIMEOUT_MS } from './defaults.ts';

interface Pending {
  resolve(m: Message): void;
  reject(e: Error): void;
  /** Date.now() past which it fails. */
  deadline: number;
  timeoutMs: number;
}

/**
 * Request/reply over any message link, with our own increasing correlation ids
 * (nact's `query` uses random 32-bit ids that collide under load). Browser-safe: the dashboard's
 * session (dashboard/session.ts) uses it as the workbench does.
 */
export class Requester {
  private next = 1;
  private readonly pending = new Map<number, Pending>();
  /**
   * One timer for all requests, due at the earliest deadline it knows of. A request's reply does
   * not touch it (a timer armed and cleared per request cost as much as the Requester's own work):
   * when it fires, it fails what is overdue and is armed again for the earliest deadline left.
   */
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timerAt = Number.POSITIVE_INFINITY;

  request(build: (reqId: number) => Message, send: (m: Message) => boolean, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Promise<Message> {
    const reqId = this.next++;
    return new Promise<Message>((resolve, reject) => {
      const deadline = Date.now() + timeoutMs;
      this.pending.set(reqId, { resolve, reject, deadline, timeoutMs });
      if (deadline < this.timerAt) this.arm(deadline);
      if (!send(build(reqId))) {
        this.pending.delete(reqId);
        reject(new FdlError('INTERNAL', 'not connected to the scheduler'));
      }
    });
  }

  private arm(at: number): void {
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.expire(), Math.max(0, at - Date.now()));
    // In Node, a pending request does not keep the process alive; a browser (the dashboard) has no unref.
    (this.timer as { unref?: () => void }).unref?.();
  }

  private expire(): void {
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    for (const [reqId, p] of this.pending) {
      if (p.deadline <= now) {
        this.pending.delete(reqId);
        p.reject(new FdlError('INTERNAL', `no reply within ${p.timeoutMs} ms`));
      } else next = Math.min(next, p.deadline);
    }
    if (next !== Number.POSITIVE_INFINITY) this.arm(next);
  }

  /** True when the message answered a pending request. */
  settle(message: Message): boolean {
    const reqId = (message as { reqId?: number }).reqId;
    if (reqId === undefined) return false;
    const p = this.pending.get(reqId);
    if (!p) return false;
    this.pending.delete(reqId);
    if (message.type === 'error') {
      p.reject(new FdlError(message.error.code, message.error.message, { retryable: message.error.retryable, ...(message.error.path ? { path: message.error.path } : {}) }));
    } else p.resolve(message);
    return true;
  }

  /** Fails everything in flight (the connection dropped). */
  failAll(reason: string): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
    for (const [id, p] of this.pending) {
      p.reject(new FdlError('INTERNAL', reason));
      this.pending.delete(id);
    }
  }
}
