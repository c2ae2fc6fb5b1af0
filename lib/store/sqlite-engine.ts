import { openDatabase } from './db.ts';
import type { Dialect, Engine, EngineStatement } from './engine.ts';
import type { SqliteDatabase } from './sqlite.ts';

const DIALECT: Dialect = {
  jsonValues: 'SELECT value FROM json_each(?)',
  jsonField: (column, key) => `json_extract(${column}, '$.${key}')`,
};

/**
 * The store on a SQLite file (or in memory: `file` undefined). Every write commits at once with
 * synchronous = NORMAL (safe from a process kill); the barrier is one commit at FULL, whose
 * fsync of the WAL makes every earlier commit durable too (group-commit.ts).
 */
export class SqliteEngine implements Engine {
  readonly kind = 'sqlite';
  readonly dialect = DIALECT;
  readonly db: SqliteDatabase;
  private readonly totalChanges;
  private readonly stampBarrier;

  constructor(file: string | undefined) {
    this.db = openDatabase(file);
    this.totalChanges = this.db.prepare('SELECT total_changes()');
    this.stampBarrier = this.db.prepare(
      `INSERT INTO meta (key, value) VALUES ('barrier', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
    );
  }

  get open(): boolean {
    return this.db.open;
  }

  prepare(text: string): EngineStatement {
    return this.db.prepare(text);
  }

  transaction<R>(fn: () => R, opts: { immediate?: boolean } = {}): R {
    const tx = this.db.transaction(fn);
    return opts.immediate ? tx.immediate() : tx();
  }

  /** SQLite's count of changed rows on this connection: moves with every write. */
  changes(): number {
    return this.totalChanges.value<number>() ?? 0;
  }

  /** One commit with synchronous = FULL: its fsync of the WAL makes every earlier commit durable. */
  barrier(): void {
    this.db.exec('PRAGMA synchronous = FULL');
    try {
      this.stampBarrier.run(String(Date.now()));
    } finally {
      this.db.exec('PRAGMA synchronous = NORMAL');
    }
  }

  close(): void {
    this.db.close();
  }
}
