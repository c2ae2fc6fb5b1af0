import { DEFAULT_IDLE_IN_TRANSACTION_MS } from './defaults.ts';
import { MIGRATIONS, postgresDdl, SCHEMA_VERSION, StoreCheckError } from './db.ts';
import { type Dialect, type Engine, type EngineStatement, type Params, type Row, type RunResult, Savepoints } from './engine.ts';
import { CONNECTION_LOST, PgBridge } from './pg-bridge.ts';

/**
 * The store on PostgreSQL (chosen by `store: { url: postgres://… }`), synchronous through
 * pg-bridge.ts.
 *
 * Group commit, the PostgreSQL way: the engine keeps ONE open transaction. The first write after
 * a commit begins it; every later write (a `transaction(fn)` is a savepoint inside it) joins it;
 * `barrier()` commits it, with synchronous_commit on, so commits happen only at barriers: what a
 * message to a peer acknowledges is durable before the message goes, and one WAL flush covers
 * every change made meanwhile. Reads go through the same connection, so they see the open
 * transaction's own writes. Writes between barriers are seen by no other session and are lost
 * with the process (a restarted scheduler redoes them, as after a kill on SQLite).
 *
 * A failed barrier (the COMMIT, or the `beforeCommit` hook that a failover lease installs)
 * rolls the transaction back and leaves the engine broken: every later call throws. The actors'
 * memory then holds state the database does not, so the process must not go on writing.
 */

const DIALECT: Dialect = {
  jsonValues: 'SELECT value FROM json_array_elements_text(CAST(? AS json)) AS value',
  jsonField: (column, key) => `(CAST(${column} AS json) ->> '${key}')`,
  // As text (node-postgres would parse json itself), and `[]` where json_agg gives NULL for no row.
  jsonArrayAgg: (values, orderBy) => `COALESCE(CAST(json_agg(json_build_array(${values.join(', ')}) ORDER BY ${orderBy}) AS text), '[]')`,
};


/** Serializes the schema migrations of replicas starting at once (any constant of our own). */
const MIGRATION_LOCK = 0x66646c01;

/** `?` placeholders as PostgreSQL's `$1, $2, …` (none of the store's SQL has a `?` inside quotes). */
export function numberPlaceholders(sql: string): string {
  let n = 0;
  let quoted = false;
  let out = '';
  for (const ch of sql) {
    if (ch === "'") quoted = !quoted;
    out += ch === '?' && !quoted ? `$${++n}` : ch;
  }
  return out;
}

/** The URL with its password masked: what a log line or an error may show. */
export function redactUrl(url: string): string {
  return url.replace(/(\/\/[^:/@]*):[^@]*@/, '$1:***@');
}

class PgStatement implements EngineStatement {
  constructor(
    private readonly engine: PostgresEngine,
    private readonly sql: string,
  ) {}

  run(...params: Params): RunResult {
    const r = this.engine.query(this.sql, params, true);
    return { changes: r.rowCount, lastInsertRowid: 0 };
  }

  get<T = Row>(...params: Params): T | undefined {
    return this.engine.query(this.sql, params, false).rows[0] as T | undefined;
  }

  all<T = Row>(...params: Params): T[] {
    return this.engine.query(this.sql, params, false).rows as T[];
  }

  value<T = unknown>(...params: Params): T | undefined {
    const row = this.engine.query(this.sql, params, false).rows[0];
    return (row ? Object.values(row)[0] : undefined) as T | undefined;
  }
}

export interface PostgresOptions {
  /** `idle_in_transaction_session_timeout` of the session (ms). */
  idleInTransactionMs?: number;
  /** How long one statement may take before the bridge gives up (ms). */
  timeoutMs?: number;
}

export class PostgresEngine implements Engine {
  readonly kind = 'postgres';
  readonly dialect = DIALECT;
  readonly url: string;
  onPending: (() => void) | undefined;
  /**
   * Runs before each COMMIT of a barrier: a throw rolls the transaction back (nothing of it
   * lands) and is rethrown. The failover lease checks its epoch here.
   */
  beforeCommit: (() => void) | undefined;
  /**
   * Told once when the engine gives up (a failed barrier, a connection lost with its open
   * transaction): the scheduler stops at once (lib/node.ts). Going on, its actors would hold state
   * the database does not, and loop on a store that refuses every call.
   */
  onFailed: ((e: Error) => void) | undefined;
  private readonly bridge: PgBridge;
  private inTransaction = false;
  private readonly savepoints = new Savepoints((sql) => this.exec(sql));
  private writes = 0;
  private failed: Error | undefined;
  private closed = false;

  constructor(url: string, opts: PostgresOptions = {}) {
    this.url = url;
    try {
      this.bridge = new PgBridge(url, {
        idleInTransactionMs: opts.idleInTransactionMs ?? DEFAULT_IDLE_IN_TRANSACTION_MS,
        ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      });
    } catch (e) {
      throw new StoreCheckError(`the PostgreSQL store at ${redactUrl(url)} cannot be reached: ${(e as Error).message}`, { replaceable: false });
    }
    try {
      this.migrate();
    } catch (e) {
      this.bridge.close();
      if (e instanceof StoreCheckError) throw e;
      throw new StoreCheckError(`the PostgreSQL store at ${redactUrl(url)} cannot be migrated: ${(e as Error).message}`, {
        replaceable: false,
      });
    }
  }

  get open(): boolean {
    return !this.closed;
  }

  /** Why the store gave up (a failed barrier, or a failed read in the open transaction): then the scheduler must stop. */
  get lost(): Error | undefined {
    return this.failed;
  }

  prepare(text: string): EngineStatement {
    return new PgStatement(this, numberPlaceholders(text));
  }

  /**
   * One statement: a write joins (or begins) the open transaction; a read outside one autocommits.
   * A failed statement aborts a PostgreSQL transaction: a write is guarded by a savepoint (its
   * failure costs only itself, as on SQLite: the store turns some into STORE_WRITE_FAILED and goes
   * on); a read is not (two round trips saved on most statements), and a read that fails inside
   * the open transaction (a bug, or a lost connection) gives the transaction up and stops the store.
   */
  query(sql: string, params: Params, write: boolean): { rows: Row[]; rowCount: number } {
    if (this.failed) throw this.failed;
    if (write) this.begin();
    if (!this.inTransaction) return this.reconnecting(() => this.bridge.query(sql, params, false));
    const open = this.savepoints.depth === 0;
    try {
      const r = this.bridge.query(sql, params, open && write);
      if (write) this.writes++;
      return r;
    } catch (e) {
      // A lost connection took the open transaction with it; so does a read's failure (unguarded).
      if ((open && !write) || (e as { code?: unknown }).code === CONNECTION_LOST) this.fail(e as Error);
      throw e;
    }
  }

  /**
   * `run` outside any transaction, once more on a new connection if the old one was lost (a
   * server restart, a dropped socket): nothing uncommitted was on it, so nothing is lost.
   */
  private reconnecting<T>(run: () => T): T {
    try {
      return run();
    } catch (e) {
      if ((e as { code?: unknown }).code !== CONNECTION_LOST) throw e;
      this.bridge.reconnect();
      return run();
    }
  }

  transaction<R>(fn: () => R): R {
    if (this.failed) throw this.failed;
    this.begin();
    this.writes++;
    return this.savepoints.run(fn, () => this.failed !== undefined);
  }

  /** Moves with every write (and every transaction): the group commit's view of pending work. */
  changes(): number {
    return this.writes;
  }

  /** COMMIT of the open transaction, after `beforeCommit`; a failure rolls it back and breaks the engine. */
  barrier(): void {
    if (this.failed) throw this.failed;
    if (!this.inTransaction) return;
    try {
      this.beforeCommit?.();
      this.exec('COMMIT');
      this.inTransaction = false;
    } catch (e) {
      this.fail(e as Error);
      throw e;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Whatever was not committed by a barrier is given up, as by a kill (Store.close runs one first).
    this.bridge.close();
  }

  private begin(): void {
    if (this.inTransaction) return;
    this.reconnecting(() => this.exec('BEGIN'));
    this.inTransaction = true;
    this.onPending?.();
  }

  private exec(sql: string): void {
    this.bridge.query(sql, [], false);
  }

  private fail(e: Error): void {
    this.failed = new Error(`the PostgreSQL store gave up its uncommitted changes (${e.message}): this scheduler must stop`);
    if (this.inTransaction) {
      try {
        this.exec('ROLLBACK');
      } catch {
        // The connection is gone: the server rolls it back itself.
      }
    }
    this.inTransaction = false;
    this.onFailed?.(this.failed);
  }

  /** Brings the schema to SCHEMA_VERSION in one committed transaction, before anything else. */
  private migrate(): void {
    this.exec('BEGIN');
    try {
      // Replicas starting together: one migrates, the next finds it done.
      this.exec(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
      this.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
      const row = this.bridge.query('SELECT max(version) AS v FROM schema_version', [], false).rows[0];
      const version = Number(row?.v ?? 0);
      if (version > SCHEMA_VERSION) {
        throw new StoreCheckError(
          `the PostgreSQL store at ${redactUrl(this.url)} has schema version ${version}, newer than this fdl knows (${SCHEMA_VERSION}): run a newer fdl`,
          { replaceable: false },
        );
      }
      for (const m of MIGRATIONS) if (m.version > version) this.exec(postgresDdl(m));
      this.exec('DELETE FROM schema_version');
      this.exec(`INSERT INTO schema_version (version) VALUES (${SCHEMA_VERSION})`);
      this.exec('COMMIT');
    } catch (e) {
      try {
        this.exec('ROLLBACK');
      } catch {
        // already gone
      }
      throw e;
    }
  }
}
