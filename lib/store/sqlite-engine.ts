import { closeSync, fdatasync, fdatasyncSync, openSync } from 'node:fs';
import { openDatabase } from './db.ts';
import { INLINE_SYNC_MAX_MS } from './defaults.ts';
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

/** Syncs a file's data to the disk, off the event loop (libuv's threadpool); tests replace it (`SqliteEngine.walSync`). */
export type WalSync = (fd: number, done: (e: NodeJS.ErrnoException | null) => void) => void;

/** Weight of the newest sync in the moving average of their durations (about the last ten count). */
const SYNC_AVERAGE_WEIGHT = 0.2;

/**
 * The store on a SQLite file (or in memory: `file` undefined).
 *
 * On a file, group commit the same way as on PostgreSQL (postgres.ts): ONE open transaction. The
 * first write after a barrier begins it (BEGIN IMMEDIATE: the write lock first, so `fdl tokens`
 * in another process waits for the barrier rather than failing half-way); every later write joins
 * it (`transaction(fn)` is a savepoint inside it). A barrier is its COMMIT and then an fdatasync
 * of the WAL file, by us, not by SQLite (`synchronous = NORMAL`, db.ts: a commit appends its WAL
 * frames and syncs nothing). `barrier()` does both at once, on the caller's thread: durable when it
 * returns (`fdl tokens`, the network's stamp, Store.close). The group commit splits them
 * (`commit()`, then `sync(done)`): the fdatasync runs in libuv's threadpool while the event loop
 * goes on, or, while syncs are fast (INLINE_SYNC_MAX_MS), on the loop itself, which then saves the
 * two thread wake-ups of the hand-off; either way, what waits for the barrier is released only
 * when it is done (group-commit.ts). A round pays one commit (a WAL append and its locks) instead
 * of one per transition, and its fsync no longer stops the scheduler. What was written after the last barrier is seen by no other
 * connection and is lost with the process (a kill, as a power cut); what was committed and not yet
 * synced is seen by other connections and may be lost by a power cut: nobody was told about either,
 * and the scheduler redoes it (ARCHITECTURE.md, "What is durable when").
 *
 * A failed statement rolls back only itself (SQLite's statement-level rollback: the implicit
 * savepoint of each statement), and the open transaction goes on. Some errors (I/O, disk full,
 * out of memory) make SQLite roll back the whole transaction instead, and a failed COMMIT always
 * does: then writes the actors believe stored are gone, and the engine refuses every later call
 * (`lost`), as PostgreSQL's does: the scheduler must not go on. A failed sync of the WAL is the
 * same: its frames may never reach the disk, and a second fdatasync could report success for pages
 * the kernel has already dropped (Linux marks them clean after a failed writeback), so it is never
 * retried: the engine gives up, and the node exits; a restart recovers from what is on disk, which
 * holds everything that was acknowledged.
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
  /** Transactions begun and write statements run: the counter a barrier is due on (an empty transaction too must end). */
  private begun = 0;
  private writes = 0;
  private failed: Error | undefined;
  private readonly savepoints: Savepoints;
  /** The WAL file (`<file>-wal`), which the barriers sync; undefined in memory. */
  private readonly walPath: string | undefined;
  /** Our own descriptor of the WAL file, for its syncs (`walFd`). */
  private wal: number | undefined;
  /** Commits made, and how many of them a completed sync covers (a sync covers every commit made before it began). */
  private commits = 0;
  private synced = 0;
  /** Syncs under way in the threadpool: the descriptor stays open until they end. */
  private syncing = 0;
  /** How the WAL is synced off the event loop: fs.fdatasync; tests put a hook of their own here. */
  walSync: WalSync = fdatasync;
  /** How the WAL is synced on the event loop: fs.fdatasyncSync; tests put a hook of their own here. */
  walSyncNow: (fd: number) => void = fdatasyncSync;
  /** Syncs expected to take less than this (ms) run on the event loop; 0: always in the threadpool. */
  inlineSyncMaxMs = INLINE_SYNC_MAX_MS;
  /** Moving average of how long the last syncs took (ms), from asking to done: where the next one runs. */
  private syncMs = 0;

  constructor(file: string | undefined) {
    this.db = openDatabase(file);
    this.savepoints = new Savepoints((sql) => this.db.exec(sql));
    this.grouped = file !== undefined;
    this.walPath = file === undefined ? undefined : `${file}-wal`;
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
    this.writes++;
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

  /**
   * Moves with every write statement, and with every transaction begun (an empty one still wants
   * its COMMIT). Counted here rather than asked of SQLite (`total_changes()`, a statement step each
   * time: the group commit asks after every turn of a cascade, ~8 times a round); a write that
   * changed no row moves it too, which costs at most a commit of what is open anyway.
   */
  changes(): number {
    return this.writes + this.begun;
  }

  /**
   * Every write so far durable when it returns: the COMMIT of the open transaction, then an
   * fdatasync of the WAL on this thread (what SQLite's `synchronous = FULL` did inside the COMMIT).
   */
  barrier(): void {
    this.commit();
    if (!this.grouped || this.synced === this.commits) return;
    const target = this.commits;
    try {
      fdatasyncSync(this.walFd());
    } catch (e) {
      throw this.syncFailed(e as Error);
    }
    if (this.synced < target) this.synced = target;
  }

  /**
   * The COMMIT of the open transaction, without its sync (`synchronous = NORMAL`): its WAL frames
   * are written, seen by other connections, and not yet durable; `sync` makes them so.
   */
  commit(): void {
    this.check();
    if (!this.db.inTransaction) return;
    try {
      this.db.exec('COMMIT');
    } catch (e) {
      // SQLITE_BUSY leaves the transaction open (the next barrier tries again); anything else ended it.
      this.lostIfRolledBack(e as Error);
      throw e;
    }
    if (this.grouped) this.commits++;
  }

  /**
   * Makes every commit made so far durable off the event loop: an fdatasync of the WAL in libuv's
   * threadpool (it covers every frame written before it began). `done` is called once: with no
   * error when they are on disk; with one, the engine has given up (see the class comment) and
   * nothing that waited may go out.
   */
  sync(done: (e?: Error) => void): void {
    if (this.failed) return void done(this.failed);
    if (!this.grouped || this.synced >= this.commits) return void done();
    const target = this.commits;
    let fd: number;
    try {
      fd = this.walFd();
    } catch (e) {
      return void done(this.syncFailed(e as Error));
    }
    const asked = performance.now();
    // A fast disk: the sync costs less than the hand-off to the threadpool and back (INLINE_SYNC_MAX_MS).
    if (this.syncing === 0 && this.syncsOnLoop) {
      try {
        this.walSyncNow(fd);
      } catch (e) {
        return void done(this.syncFailed(e as Error));
      }
      this.timed(asked);
      if (this.synced < target) this.synced = target;
      return void done();
    }
    this.syncing++;
    this.walSync(fd, (e) => {
      this.syncing--;
      this.timed(asked);
      if (this.syncing === 0 && !this.db.open) this.closeWal();
      if (e) return void done(this.syncFailed(e));
      if (this.synced < target) this.synced = target;
      done();
    });
  }

  /** Where the syncs ran lately, and how long they took on average (ms): tests and diagnostics. */
  get syncCost(): { averageMs: number; onLoop: boolean } {
    return { averageMs: this.syncMs, onLoop: this.syncsOnLoop };
  }

  /** The next sync runs on the event loop: the last ones took less than the threshold on average. */
  private get syncsOnLoop(): boolean {
    return this.syncMs < this.inlineSyncMaxMs;
  }

  /** One more sync into the moving average. In the threadpool it counts its hand-off too: a disk must be faster than the threshold by that much to bring the syncs back. */
  private timed(asked: number): void {
    this.syncMs += (performance.now() - asked - this.syncMs) * SYNC_AVERAGE_WEIGHT;
  }

  close(): void {
    // Whatever no barrier committed is given up, as by a kill (Store.close runs one first).
    this.db.close();
    // A sync still in the threadpool keeps the descriptor: it closes it when it ends.
    if (this.syncing === 0) this.closeWal();
  }

  /**
   * Our descriptor of the WAL, opened at the first sync, kept for the engine's life. The file it
   * names stays SQLite's WAL while this connection is open: SQLite restarts a WAL by writing it
   * again from the start (a new header and salt, synced before the first frame) and truncates it,
   * but deletes it only when closing the last connection to the file (sqlite3WalClose, with an
   * EXCLUSIVE lock that our connection's SHARED lock forbids), or when leaving WAL mode, which
   * the store does only in close().
   */
  private walFd(): number {
    this.wal ??= openSync(this.walPath as string, 'r');
    return this.wal;
  }

  private closeWal(): void {
    if (this.wal === undefined) return;
    closeSync(this.wal);
    this.wal = undefined;
  }

  /** A failed sync is never retried (see the class comment): the engine gives up, and says so once. */
  private syncFailed(e: Error): Error {
    if (!this.failed) {
      this.failed = new Error(`the SQLite store could not sync its WAL to disk (${e.message}): this scheduler must stop`);
      this.onFailed?.(this.failed);
    }
    return this.failed;
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
