import { openDatabase } from './db.ts';
import { type Dialect, type Engine, type EngineStatement, type Params, type Row, type RunResult, Savepoints } from './engine.ts';
import type { SqliteDatabase, Statement } from './sqlite.ts';

const DIALECT: Dialect = {
  jsonValues: 'SELECT value FROM json_each(?)',
  jsonField: (column, key) => `json_extract(${column}, '$.${key}')`,
  jsonArrayAgg: (values, orderBy) => `json_group_array(json_array(${values.join(', ')}) ORDER BY ${orderBy})`,
};

/** Writes begin the open transaction first; reads go as they are (inside it they see its writes). */
class SqliteStatement implements EngineStatement {
  constructor(
    private readonly engine: SqliteEngine,
    private readonly statement: Statement,
  ) {}

  run(...params: Params): RunResult {
    return this.engine.write(() => this.statement.run(...params));
  }

  get<T = Row>(...params: Params): T | undefined {
    this.engine.check();
    return this.statement.get<T>(...params);
  }

  all<T = Row>(...params: Params): T[] {
    this.engine.check();
    return this.statement.all<T>(...params);
  }

  value<T = unknown>(...params: Params): T | undefined {
    this.engine.check();
    return this.statement.value<T>(...params);
  }
}

/**
 * The store on a SQLite file (or in memory: `file` undefined).
 *
 * On a file, group commit the same way as on PostgreSQL (postgres.ts): ONE open transaction. The
 * first write after a barrier begins it (BEGIN IMMEDIATE: the write lock first, so `fdl tokens`
 * in another process waits for the barrier rather than failing half-way); every later write joins
 * it (`transaction(fn)` is a savepoint inside it); `barrier()` is its COMMIT at
 * `synchronous = FULL`, whose fsync of the WAL makes it durable. A round pays one commit (a WAL
 * append and its locks) instead of one per transition. What was written after the last barrier
 * is seen by no other connection and is lost with the process (a kill, as a power cut): nobody
 * was told about it, and the scheduler redoes it (ARCHITECTURE.md, "What is durable when").
 *
 * A failed statement rolls back only itself (SQLite's statement-level rollback: the implicit
 * savepoint of each statement), and the open transaction goes on. Some errors (I/O, disk full,
 * out of memory) make SQLite roll back the whole transaction instead, and a failed COMMIT always
 * does: then writes the actors believe stored are gone, and the engine refuses every later call
 * (`lost`), as PostgreSQL's does: the scheduler must not go on.
 *
 * In memory (tests) nothing is durable anyway and there is no group commit: each write commits
 * at once, as before.
 */
export class SqliteEngine implements Engine {
  readonly kind = 'sqlite';
  readonly dialect = DIALECT;
  readonly db: SqliteDatabase;
  onPending: (() => void) | undefined;
  onFailed: ((e: Error) => void) | undefined;
  /** Writes gather in one open transaction, committed by barriers (a file); else autocommit. */
  private readonly grouped: boolean;
  private readonly totalChanges;
  /** Transactions begun: with total_changes(), the counter a barrier is due on (an empty one too must end). */
  private begun = 0;
  private failed: Error | undefined;
  private readonly savepoints: Savepoints;

  constructor(file: string | undefined) {
    this.db = openDatabase(file);
    this.savepoints = new Savepoints((sql) => this.db.exec(sql));
    this.grouped = file !== undefined;
    this.totalChanges = this.db.prepare('SELECT total_changes()');
  }

  get open(): boolean {
    return this.db.open;
  }

  /** Why the store gave up its uncommitted writes: then the scheduler must stop. */
  get lost(): Error | undefined {
    return this.failed;
  }

  prepare(text: string): EngineStatement {
    return new SqliteStatement(this, this.db.prepare(text));
  }

  /** Throws once the engine gave up (see the class comment). */
  check(): void {
    if (this.failed) throw this.failed;
  }

  /** One write statement: in the open transaction (begun if need be); its failure costs only itself. */
  write<R>(run: () => R): R {
    this.begin();
    try {
      return run();
    } catch (e) {
      this.lostIfRolledBack(e as Error);
      throw e;
    }
  }

  transaction<R>(fn: () => R, opts: { immediate?: boolean } = {}): R {
    if (!this.grouped) {
      const tx = this.db.transaction(fn);
      return opts.immediate ? tx.immediate() : tx();
    }
    // Always BEGIN IMMEDIATE here, so `immediate` holds for every transaction.
    this.begin();
    return this.savepoints.run(fn, (e) => {
      if (this.db.inTransaction) return false;
      this.lostIfRolledBack(e as Error);
      return true;
    });
  }

  /** Moves with every write, and with every transaction begun (an empty one still wants its COMMIT). */
  changes(): number {
    return (this.totalChanges.value<number>() ?? 0) + this.begun;
  }

  /** COMMIT of the open transaction at synchronous = FULL (db.ts): one fsync of the WAL. */
  barrier(): void {
    this.check();
    if (!this.db.inTransaction) return;
    try {
      this.db.exec('COMMIT');
    } catch (e) {
      // SQLITE_BUSY leaves the transaction open (the next barrier tries again); anything else ended it.
      this.lostIfRolledBack(e as Error);
      throw e;
    }
  }

  close(): void {
    // Whatever no barrier committed is given up, as by a kill (Store.close runs one first).
    this.db.close();
  }

  private begin(): void {
    this.check();
    if (!this.grouped || this.db.inTransaction) return;
    this.db.exec('BEGIN IMMEDIATE');
    this.begun++;
    this.onPending?.();
  }

  private lostIfRolledBack(e: Error): void {
    if (this.grouped && this.begun > 0 && !this.db.inTransaction && !this.failed) {
      this.failed = new Error(`the SQLite store gave up its uncommitted changes (${e.message}): this scheduler must stop`);
      this.onFailed?.(this.failed);
    }
  }
}
