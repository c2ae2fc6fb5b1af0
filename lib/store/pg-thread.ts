import { type MessagePort, workerData } from 'node:worker_threads';
import pg from 'pg';
import type { BridgeReply, BridgeRequest } from './pg-bridge.ts';

/**
 * The thread behind the PostgreSQL bridge (pg-bridge.ts): one `pg` connection, one request at a
 * time. The main thread is blocked on `flag` while a request runs; each answer is posted on
 * `port` first, then the flag is raised and notified.
 */

const { url, flag, port, idleInTransactionMs } = workerData as {
  url: string;
  flag: SharedArrayBuffer;
  port: MessagePort;
  idleInTransactionMs: number;
};
const signal = new Int32Array(flag);

// Epoch-ms timestamps and counts are BIGINT (int8) and sums NUMERIC: numbers, as SQLite gives them.
pg.types.setTypeParser(20, Number);
pg.types.setTypeParser(1700, Number);

const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
/** A lost connection: every later request fails with it (pg emits it outside any query). */
let lost: Error | undefined;
client.on('error', (e) => {
  lost = e;
});

/** Buffers as pg takes them (a Buffer crosses the thread boundary as a plain Uint8Array). */
function bindable(params: unknown[]): unknown[] {
  return params.map((p) => (p instanceof Uint8Array && !Buffer.isBuffer(p) ? Buffer.from(p.buffer, p.byteOffset, p.byteLength) : p));
}

async function handle(req: BridgeRequest): Promise<BridgeReply> {
  if (lost) throw lost;
  switch (req.op) {
    case 'connect':
      await client.connect();
      // A frozen or stuck process must not hold its open transaction's locks for ever.
      await client.query(`SET idle_in_transaction_session_timeout = ${Math.floor(idleInTransactionMs)}`);
      await client.query('SET synchronous_commit = on');
      return { ok: true, rows: [], rowCount: 0 };
    case 'close':
      await client.end();
      return { ok: true, rows: [], rowCount: 0 };
    case 'query': {
      if (!req.guard) {
        const r = await client.query({ text: req.sql, values: bindable(req.params) });
        return { ok: true, rows: r.rows ?? [], rowCount: r.rowCount ?? 0 };
      }
      // Inside the open transaction, a failed statement would abort all of it: a savepoint
      // keeps the failure to this statement, as SQLite does.
      await client.query('SAVEPOINT fdl_statement');
      try {
        const r = await client.query({ text: req.sql, values: bindable(req.params) });
        await client.query('RELEASE fdl_statement');
        return { ok: true, rows: r.rows ?? [], rowCount: r.rowCount ?? 0 };
      } catch (e) {
        await client.query('ROLLBACK TO fdl_statement; RELEASE fdl_statement');
        throw e;
      }
    }
  }
}

port.on('message', (req: BridgeRequest) => {
  handle(req).then(
    (reply) => answer(reply),
    (e: unknown) => {
      const err = e as { code?: unknown; message?: unknown };
      answer({ ok: false, code: typeof err.code === 'string' ? err.code : undefined, message: String(err.message ?? e) });
    },
  );
});

function answer(reply: BridgeReply): void {
  port.postMessage(reply);
  Atomics.store(signal, 0, 1);
  Atomics.notify(signal, 0);
}
