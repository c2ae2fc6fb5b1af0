import { type MessagePort, workerData } from 'node:worker_threads';
import pg from 'pg';
import { type BridgeReply, type BridgeRequest, CONNECTION_LOST } from './pg-bridge.ts';

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

let client: pg.Client | undefined;
/** The connection broke (pg emits it outside any query): every request fails with it until `connect`. */
let lost: Error | undefined;

function newClient(): pg.Client {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  c.on('error', (e) => {
    if (c === client) lost = e;
  });
  return c;
}

/** PostgreSQL's connection exceptions (class 08), a server shutting the session down (57P0x), or pg's own words for a dead socket. */
function isConnectionError(e: unknown): boolean {
  const { code, message } = e as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (code.startsWith('08') || code.startsWith('57P0') || code === 'ECONNRESET' || code === 'EPIPE')) return true;
  return /Connection terminated|not queryable|ECONNRESET|EPIPE/.test(String(message));
}

function connectionLost(e: unknown): Error {
  return Object.assign(new Error(`the connection to PostgreSQL was lost: ${(e as Error).message}`), { code: CONNECTION_LOST });
}

/** Buffers as pg takes them (a Buffer crosses the thread boundary as a plain Uint8Array). */
function bindable(params: unknown[]): unknown[] {
  return params.map((p) => (p instanceof Uint8Array && !Buffer.isBuffer(p) ? Buffer.from(p.buffer, p.byteOffset, p.byteLength) : p));
}

/** A value as an SQL literal: NULL, a BYTEA from hex, or any other value as a quoted string (pg's escaping). */
function literal(c: pg.Client, v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  if (v instanceof Uint8Array) return `decode('${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}', 'hex')`;
  return c.escapeLiteral(String(v));
}

/** `sql` with its `$n` placeholders (outside quotes) replaced by the literals of `params`. */
function inline(sql: string, params: unknown[]): string {
  const c = client as pg.Client;
  let quoted = false;
  let out = '';
  for (let i = 0; i < sql.length; i++) {
    const ch = sql[i] as string;
    if (ch === "'") quoted = !quoted;
    const digits = !quoted && ch === '$' ? /^\d+/.exec(sql.slice(i + 1)) : null;
    if (digits) {
      out += literal(c, params[Number(digits[0]) - 1]);
      i += digits[0].length;
    } else out += ch;
  }
  return out;
}

async function handle(req: BridgeRequest): Promise<BridgeReply> {
  if (req.op === 'connect') {
    // A first connection, or a new one after a loss (the old one is dropped).
    const old = client;
    client = newClient();
    lost = undefined;
    old?.end().catch(() => {});
  } else if (lost || !client) throw connectionLost(lost ?? new Error('not connected'));
  try {
    return await run(client, req);
  } catch (e) {
    if (lost || isConnectionError(e)) throw connectionLost(e);
    throw e;
  }
}

async function run(client: pg.Client, req: BridgeRequest): Promise<BridgeReply> {
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
      // keeps the failure to this statement, as SQLite does. Savepoint, statement and release go
      // as one simple-protocol query (one round trip instead of three), so the parameters are
      // written in as literals: quoted, hence typed by the server as a bound parameter is.
      try {
        const results = (await client.query(`SAVEPOINT fdl_statement; ${inline(req.sql, req.params)}; RELEASE fdl_statement`)) as unknown as pg.QueryResult[];
        const r = results[1];
        return { ok: true, rows: r?.rows ?? [], rowCount: r?.rowCount ?? 0 };
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
