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
 *   transaction and the barrier is its COMMIT (SQLite on a file: at synchronous = FULL), so
 *   nothing written between barriers is seen by anyone else (or survives a kill).
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
