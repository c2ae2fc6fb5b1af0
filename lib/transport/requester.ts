import { FdlError } from '../errors.ts';
import type { Message } from '../../protocols/messages.ts';
import { DEFAULT_REQUEST_TIMEOUT_MS } from './defaults.ts';

interface Pending {
  resolve(m: Message): void;
  reject(e: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * Request/reply over any message link, with our own increasing correlation ids
 * (nact's `query` uses random 32-bit ids that collide under load). Browser-safe: the dashboard's
 * session (dashboard/session.ts) uses it as the workbench does.
 */
export class Requester {
  private next = 1;
  private readonly pending = new Map<number, Pending>();

  request(build: (reqId: number) => Message, send: (m: Message) => boolean, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Promise<Message> {
    const reqId = this.next++;
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(reqId);
        reject(new FdlError('INTERNAL', `no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      // In Node, a pending request does not keep the process alive; a browser (the dashboard) has no unref.
      (timer as { unref?: () => void }).unref?.();
      this.pending.set(reqId, { resolve, reject, timer });
      if (!send(build(reqId))) {
        clearTimeout(timer);
        this.pending.delete(reqId);
        reject(new FdlError('INTERNAL', 'not connected to the scheduler'));
      }
    });
  }

  /** True when the message answered a pending request. */
  settle(message: Message): boolean {
    const reqId = (message as { reqId?: number }).reqId;
    if (reqId === undefined) return false;
    const p = this.pending.get(reqId);
    if (!p) return false;
    this.pending.delete(reqId);
    clearTimeout(p.timer);
    if (message.type === 'error') {
      p.reject(new FdlError(message.error.code, message.error.message, { retryable: message.error.retryable, ...(message.error.path ? { path: message.error.path } : {}) }));
    } else p.resolve(message);
    return true;
  }

  /** Fails everything in flight (the connection dropped). */
  failAll(reason: string): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new FdlError('INTERNAL', reason));
      this.pending.delete(id);
    }
  }
}
