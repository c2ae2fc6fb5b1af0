import type { Params, Row, RunResult } from './sqlite.ts';

/**
 * The seam between the Store and the database it runs on: SQLite (sqlite-engine.ts, the embedded
 * default) or PostgreSQL (postgres.ts, through a synchronous bridge to `pg`). The Store's API
 * stays synchronous, so the actors never wait on a promise for a row.
 *
 * What an engine promises the Store:
 * - statements with `?` placeholders (the PostgreSQL engine numbers them);
 * - `transaction(fn)`: all of fn's writes or none (a savepoint when nested or, on PostgreSQL,
 *   inside the open group transaction);
 * - `changes()`: a counter that moves with every write; `barrier()`: every write so far is
 *   durable when it returns (group-commit.ts). On both engines writes gather in one open
 *   transaction and the barrier is its COMMIT (SQLite on a file: then an fdatasync of the WAL),
 *   so nothing written between barriers is seen by anyone else (or survives a kill).
 * - `dialect`: the few SQL fragments that differ.
 */

export type { Params, Row, RunResult };

export interface EngineStatement {
  run(...params: Params): RunResult;
  get<T = Row>(...params: Params): T | undefined;
  all<T = Row>(...params: Params): T[];
  value<T = unknown>(...params: Params): T | undefined;
}

export interface Dialect {
  /** A subquery of one column `value`: the elements of the JSON array of strings bound to its one `?`. */
  readonly jsonValues: string;
  /** The text of field `key` of JSON text column `column`. */
  jsonField(column: string, key: string): string;
  /** An aggregate: the rows' `values` as JSON text, an array of arrays in `orderBy` order (`[]` for no row). */
  jsonArrayAgg(values: readonly string[], orderBy: string): string;
}

export interface Engine {
  readonly kind: 'sqlite' | 'postgres';
  readonly open: boolean;
  readonly dialect: Dialect;
  prepare(text: string): EngineStatement;
  /** `immediate`: SQLite's BEGIN IMMEDIATE (take the write lock first; the open transaction always does); PostgreSQL ignores it. */
  transaction<R>(fn: () => R, opts?: { immediate?: boolean }): R;
  changes(): number;
  barrier(): void;
  /**
   * A barrier in two halves, for an engine whose sync can leave the event loop (SQLite: the
   * COMMIT, then an fdatasync of the WAL in libuv's threadpool); see group-commit.ts's `Durable`.
   * PostgreSQL has none: its COMMIT is the durable step, on the bridge's thread.
   */
  commit?(): void;
  sync?(done: (e?: Error) => void): void;
  /**
   * Called when writes start to wait for a barrier that nobody asked for yet (a transaction was
   * begun). The Store schedules one, so an open transaction never idles.
   */
  onPending?: (() => void) | undefined;
  /**
   * Told once when the engine gives up its open transaction (a failed barrier; PostgreSQL: a lost
   * connection; SQLite: an error that rolled the whole transaction back): the scheduler stops.
   */
  onFailed?: ((e: Error) => void) | undefined;
  close(): void;
}

/**
 * The nested transactions of an engine whose writes gather in one open transaction (both engines,
 * between barriers): `run(fn)` wraps fn in a savepoint, released when fn returns and rolled back
 * to when it throws, so a failed `transaction(fn)` costs only its own writes. `rolledBack(e)` says
 * the database already dropped the whole open transaction (then no savepoint is left to return to).
 */
export class Savepoints {
  private level = 0;

  constructor(private readonly exec: (sql: string) => void) {}

  /** How many savepoints are open: 0 outside any `transaction(fn)`. */
  get depth(): number {
    return this.level;
  }

  run<R>(fn: () => R, rolledBack: (e: unknown) => boolean): R {
    const name = `fdl_tx${this.level}`;
    this.exec(`SAVEPOINT ${name}`);
    this.level++;
    let result: R;
    try {
      result = fn();
    } catch (e) {
      this.level--;
      if (!rolledBack(e)) this.exec(`ROLLBACK TO ${name}; RELEASE ${name}`);
      throw e;
    }
    this.level--;
    this.exec(`RELEASE ${name}`);
    return result;
  }
}
