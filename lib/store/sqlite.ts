import { existsSync } from 'node:fs';
import { DatabaseSync, type DatabaseSyncInstance, type StatementSyncInstance } from '@photostructure/sqlite';

/**
 * The one place that knows which SQLite binding the store runs on. Everything else (the store,
 * db.ts, the group commit, the tests that inspect a scheduler's file) goes through this module.
 *
 * The binding is `@photostructure/sqlite`: Node's own `node:sqlite` (not in Node 20) as an
 * npm package whose binary ships inside it (`prebuilds/`), so an install compiles nothing;
 * it carries upstream SQLite (3.53). better-sqlite3 compiled SQLite from source on every fresh
 * install (60-420 s here: docs/PERFORMANCE.md). What this module adds to the binding:
 * - rows are plain objects (the binding's have a null prototype), so a row handed on looks like
 *   any other object to msgpackr, zod and `t.same`, and holds only its columns; a BLOB is a
 *   `Buffer` (the binding gives a bare Uint8Array), over the same memory;
 * - `value()`: the first column of the first row (better-sqlite3's `pluck().get()`);
 * - `transaction(fn)` with `.immediate()`: BEGIN, COMMIT, and ROLLBACK when `fn` or the COMMIT
 *   throws; a savepoint when nested;
 * - `pragma()` and `pragmaValue()`: a `PRAGMA` statement, as rows or as its one value;
 * - `fileMustExist`, which the binding does not have: checked here before opening;
 * - a `close()` that leaves the file whole: the binding's close cannot finalize the statements
 *   that JavaScript still holds (the store's cache), so SQLite keeps the connection, its WAL and
 *   its file descriptors until the garbage collector frees them, and only then checkpoints.
 *   better-sqlite3's close checkpointed at once (the last connection moves the WAL into the
 *   file and deletes it); here close() does it first itself, by leaving WAL mode.
 * Statements are not kept by the binding: the store keeps its own (Store.sql()).
 */

export type SqlValue = string | number | bigint | Uint8Array | null;
export type Row = Record<string, unknown>;
export type Params = SqlValue[] | [Record<string, SqlValue>];

export interface RunResult {
  changes: number;
  lastInsertRowid: number | bigint;
}

export interface OpenOptions {
  /** Opened for reading only: a write throws (SQLITE_READONLY). */
  readonly?: boolean;
  /** Throw when the file does not exist, rather than create it. */
  fileMustExist?: boolean;
}

/** A BLOB as a Buffer over the same bytes, as better-sqlite3 gave it; any other value as it is. */
function column(v: unknown): unknown {
  return v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : v;
}

export class Statement {
  private valueStatement: StatementSyncInstance | undefined;
  /**
   * The result's column names, once rows are read: the binding then gives each row as an array,
   * and `row()` builds the plain object. Why: copying the binding's own row objects (null
   * prototype, built property by property in C++) cost twice the query itself (a 3-job status
   * read: ~20 µs -> ~10 µs).
   */
  private names: string[] | undefined;

  constructor(
    private readonly db: DatabaseSyncInstance,
    private readonly statement: StatementSyncInstance,
    private readonly text: string,
  ) {}

  /** Rows as arrays from here on, and the names of their columns. */
  private readColumnNames(): void {
    this.statement.setReturnArrays(true);
    this.names = this.statement.columns().map((c) => c.name);
  }

  /** A plain object of the row's columns, in the result's order (a repeated name: the last value, at its first place). */
  private row(values: unknown[]): Row {
    // SQLite prepares a statement again when the schema changed under it (`SELECT *` after an
    // ALTER TABLE): its columns may have changed too.
    if (values.length !== this.names?.length) this.readColumnNames();
    const names = this.names as string[];
    const out: Row = {};
    for (let i = 0; i < names.length; i++) out[names[i] as string] = column(values[i]);
    return out;
  }

  run(...params: Params): RunResult {
    const r = this.statement.run(...params);
    return { changes: Number(r.changes), lastInsertRowid: r.lastInsertRowid };
  }

  /** The first row, or undefined when there is none. */
  get<T = Row>(...params: Params): T | undefined {
    if (!this.names) this.readColumnNames();
    const values = this.statement.get(...params) as unknown[] | undefined;
    return values === undefined ? undefined : (this.row(values) as T);
  }

  all<T = Row>(...params: Params): T[] {
    if (!this.names) this.readColumnNames();
    const rows = this.statement.all(...params) as unknown[][];
    const out: T[] = new Array(rows.length);
    for (let i = 0; i < rows.length; i++) out[i] = this.row(rows[i] as unknown[]) as T;
    return out;
  }

  /** The first column of the first row, or undefined when there is no row. */
  value<T = unknown>(...params: Params): T | undefined {
    if (!this.valueStatement) {
      this.valueStatement = this.db.prepare(this.text);
      this.valueStatement.setReturnArrays(true);
    }
    const row = this.valueStatement.get(...params) as unknown[] | undefined;
    return (row ? column(row[0]) : undefined) as T | undefined;
  }
}

export interface Transaction<A extends unknown[], R> {
  (...args: A): R;
  /** BEGIN IMMEDIATE: takes the write lock first (two processes never both read-then-write). */
  immediate(...args: A): R;
}

export class SqliteDatabase {
  private readonly db: DatabaseSyncInstance;
  readonly file: string;
  private readonly readonly: boolean;

  /** `file` undefined: in memory. */
  constructor(file: string | undefined, opts: OpenOptions = {}) {
    this.file = file ?? ':memory:';
    if (opts.fileMustExist && file && !existsSync(file)) {
      throw Object.assign(new Error(`unable to open database file: ${file} does not exist`), { code: 'SQLITE_CANTOPEN' });
    }
    this.readonly = opts.readonly ?? false;
    this.db = new DatabaseSync(this.file, { readOnly: this.readonly });
  }

  get open(): boolean {
    return this.db.isOpen;
  }

  get inTransaction(): boolean {
    return this.db.isTransaction;
  }

  prepare(text: string): Statement {
    return new Statement(this.db, this.db.prepare(text), text);
  }

  exec(sql: string): void {
    this.db.exec(sql);
  }

  /** `PRAGMA <text>`: its rows (e.g. quick_check's), or none for a pragma that sets. */
  pragma<T = Row>(text: string): T[] {
    return this.prepare(`PRAGMA ${text}`).all<T>();
  }

  /** `PRAGMA <text>`'s one value (e.g. user_version's number). */
  pragmaValue<T = unknown>(text: string): T | undefined {
    return this.prepare(`PRAGMA ${text}`).value<T>();
  }

  /**
   * Wraps `fn` in a transaction, as better-sqlite3's `transaction()` did: COMMIT when it returns,
   * ROLLBACK when it throws (or when the COMMIT fails), and a savepoint when nested.
   */
  transaction<A extends unknown[], R>(fn: (...args: A) => R): Transaction<A, R> {
    const wrap =
      (begin: string) =>
      (...args: A): R => {
        if (this.db.isTransaction) return this.nested(fn, args);
        this.db.exec(begin);
        try {
          const result = fn(...args);
          this.db.exec('COMMIT');
          return result;
        } catch (e) {
          // A failed statement may have ended the transaction already (e.g. SQLITE_FULL).
          if (this.db.isTransaction) this.db.exec('ROLLBACK');
          throw e;
        }
      };
    return Object.assign(wrap('BEGIN'), { immediate: wrap('BEGIN IMMEDIATE') });
  }

  private nested<A extends unknown[], R>(fn: (...args: A) => R, args: A): R {
    this.db.exec('SAVEPOINT fdl_nested');
    try {
      const result = fn(...args);
      this.db.exec('RELEASE fdl_nested');
      return result;
    } catch (e) {
      if (this.db.isTransaction) this.db.exec('ROLLBACK TO fdl_nested; RELEASE fdl_nested');
      throw e;
    }
  }

  /**
   * Closes the connection. A writer on a file first leaves WAL mode, which checkpoints every
   * commit into the file (fsynced) and deletes the WAL: what better-sqlite3's close did for the
   * last connection. While another connection has the file open (the scheduler, for a test or
   * `fdl tokens`), that fails at once (no busy wait) and the WAL is left to the others, as before.
   * The next open turns WAL mode on again (db.ts).
   */
  close(): void {
    if (!this.db.isOpen) return;
    if (this.file !== ':memory:' && !this.readonly && !this.db.isTransaction) {
      try {
        this.db.exec('PRAGMA busy_timeout = 0');
        this.db.exec('PRAGMA journal_mode = DELETE');
      } catch {
        // SQLITE_BUSY: another connection is open; it, or the last to close, checkpoints.
      }
    }
    this.db.close();
  }
}

/** Opens a SQLite file (or, `file` undefined, an in-memory database). */
export function openSqlite(file: string | undefined, opts: OpenOptions = {}): SqliteDatabase {
  return new SqliteDatabase(file, opts);
}
