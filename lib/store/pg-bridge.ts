import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads';
import type { Row } from './engine.ts';

/**
 * A synchronous call into `pg`, which is asynchronous: the client runs in a worker thread
 * (pg-thread.ts); the caller posts a request and blocks on `Atomics.wait` over a shared flag
 * until the thread has posted the answer, then takes it with `receiveMessageOnPort` (the
 * synckit pattern). The Store's API stays synchronous, as on SQLite, at the cost of one thread
 * hop per statement (docs/PERFORMANCE.md). A wait is bounded: a server that does not answer
 * fails the call with one line instead of hanging the scheduler, and the bridge is then broken
 * for good (a late answer would be taken for the next call's).
 */

export type BridgeRequest =
  | { op: 'connect' }
  | { op: 'close' }
  | { op: 'query'; sql: string; params: unknown[]; guard: boolean };

export type BridgeReply = { ok: true; rows: Row[]; rowCount: number } | { ok: false; code: string | undefined; message: string };

/** The code a lost connection crosses the bridge with: outside a transaction the engine connects again (postgres.ts). */
export const CONNECTION_LOST = 'FDL_CONNECTION_LOST';

/** PostgreSQL's error, with its SQLSTATE as `code` (e.g. 23505, unique_violation). */
export class PostgresError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'PostgresError';
  }
}

/** The thread's entry: the compiled one beside a compiled bundle, else the sources' (through tsx). */
const THREAD_ENTRY = new URL(import.meta.url.endsWith('.ts') ? './pg-thread-tsx.mjs' : './pg-thread.js', import.meta.url);

export const DEFAULT_BRIDGE_TIMEOUT_MS = 30_000;

/** A BYTEA column as a Buffer again (it crosses the thread boundary as a plain Uint8Array). */
function revive(row: Row): Row {
  for (const key in row) {
    const v = row[key];
    if (v instanceof Uint8Array && !Buffer.isBuffer(v)) row[key] = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  }
  return row;
}

export class PgBridge {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly signal = new Int32Array(new SharedArrayBuffer(4));
  private broken: Error | undefined;
  private readonly timeoutMs: number;

  /** Connects before it returns (throws the server's refusal, e.g. a wrong password). */
  constructor(url: string, opts: { idleInTransactionMs: number; timeoutMs?: number }) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_BRIDGE_TIMEOUT_MS;
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(THREAD_ENTRY, {
      workerData: { url, flag: this.signal.buffer, port: port2, idleInTransactionMs: opts.idleInTransactionMs },
      transferList: [port2],
    });
    // The thread holds no work of its own between calls: it never keeps the process alive.
    this.worker.unref();
    this.port.unref();
    try {
      this.call({ op: 'connect' }, 'connecting');
    } catch (e) {
      void this.worker.terminate();
      throw e;
    }
  }

  query(sql: string, params: unknown[], guard: boolean): { rows: Row[]; rowCount: number } {
    const reply = this.call({ op: 'query', sql, params, guard }, sql);
    return { rows: reply.rows.map(revive), rowCount: reply.rowCount };
  }

  /** A new connection (after CONNECTION_LOST): its session starts with nothing open. */
  reconnect(): void {
    this.call({ op: 'connect' }, 'connecting again');
  }

  close(): void {
    if (!this.broken) {
      try {
        this.call({ op: 'close' }, 'closing');
      } catch {
        // The connection is gone already: nothing more to close.
      }
    }
    this.broken ??= new Error('the PostgreSQL store is closed');
    void this.worker.terminate();
  }

  /**
   * Waits until the thread raises the flag; false after the timeout. A wake-up with the flag still
   * down is not an answer: the thread raises the flag, then notifies, and the main thread may have
   * read the answer and posted the next request between the two, so the previous answer's notify
   * wakes this wait early (seen as "flag without an answer", and the late answer then taken for the
   * next call's). So wait again until the flag is really up.
   */
  private awaitFlag(): boolean {
    const deadline = performance.now() + this.timeoutMs;
    while (Atomics.load(this.signal, 0) === 0) {
      const left = deadline - performance.now();
      if (left <= 0 || Atomics.wait(this.signal, 0, 0, left) === 'timed-out') return Atomics.load(this.signal, 0) !== 0;
    }
    return true;
  }

  private call(req: BridgeRequest, what: string): { rows: Row[]; rowCount: number } {
    if (this.broken) throw this.broken;
    Atomics.store(this.signal, 0, 0);
    this.port.postMessage(req);
    if (!this.awaitFlag()) {
      this.broken = new PostgresError(
        `PostgreSQL did not answer within ${this.timeoutMs / 1000} s (${what.replace(/\s+/g, ' ').slice(0, 80)}): the store's connection is given up`,
        undefined,
      );
      void this.worker.terminate();
      throw this.broken;
    }
    const reply = receiveMessageOnPort(this.port)?.message as BridgeReply | undefined;
    if (!reply) {
      // Never expected now (see awaitFlag); if it happens, a later answer would be taken for another call's.
      this.broken = new PostgresError('the PostgreSQL bridge raised its flag without an answer: the store\'s connection is given up', undefined);
      void this.worker.terminate();
      throw this.broken;
    }
    if (!reply.ok) throw new PostgresError(reply.message, reply.code);
    return reply;
  }
}
