/**
 * Group commit: what the scheduler tells anyone waits until the state behind it is on disk,
 * and one durable commit covers every change made meanwhile.
 *
 * On both engines the store's writes gather in ONE open transaction (sqlite-engine.ts,
 * postgres.ts): the first write after a barrier begins it, and a *barrier* is its COMMIT made
 * durable (SQLite: the COMMIT, then an fdatasync of the WAL; PostgreSQL: `synchronous_commit =
 * on`). A message to a peer is an acknowledgement of the state that led to it (an accepted
 * artifact, an assignment whose inputs were completed, a result), so it goes out only after a
 * barrier. The barrier waits for the cascade of actor hops that follow one event (a report: the
 * resource, the job's COMPLETED, the next job's SCHEDULED) to go quiet, so a round costs one or two
 * commits instead of one per transition. A write nobody waits for still gets a barrier soon
 * (`soon`, called by the engine when it begins a transaction): an open transaction never idles,
 * holding SQLite's write lock or a PostgreSQL session. State nobody was told about may be lost by
 * a kill or a power cut; the scheduler then redoes it.
 *
 * When the store can split a barrier (SQLite: `commit` and `sync`), the sync runs off the event
 * loop: the COMMIT ends the transaction at once, the loop goes on (reports are handled, the next
 * transaction begins), and what waited for that barrier is released only when its sync is done.
 * Syncs are ordered: one at a time, each covering every commit made before it began, and the
 * messages of a later barrier never go out before those of an earlier one; a barrier that comes
 * due while a sync runs commits when it ends, with whatever else came meanwhile. A failed sync
 * releases nothing, ever (the engine has given up and the node stops: sqlite-engine.ts).
 */

export interface Durable {
  /** A counter that moves with every change (and every transaction begun). */
  changes(): number;
  /** Makes every change so far durable before it returns (throws when it cannot). */
  barrier(): void;
  /**
   * A barrier in two halves (both or neither): `commit` ends the open transaction without making
   * it durable (throws when it cannot; the next barrier tries again), and `sync(done)` makes every
   * commit so far durable off the event loop, then calls `done` (with an error: never durable).
   */
  commit?(): void;
  sync?(done: (e?: Error) => void): void;
}

/** Turns with no change before the barrier runs: a report's cascade is a few actor hops long. */
const QUIET_TURNS = 3;
/** A busy scheduler still syncs at least this often (in event-loop turns). */
const MAX_TURNS = 64;
/** After a failed barrier (disk full, I/O error), the next try waits this long. */
const RETRY_MS = 200;
/**
 * A write nobody waits for is committed within this long (`soon`). Not at once: in a round, the
 * cascade that nobody hears of (reports stored, the initiator's Finalize assigned in-process) is
 * then covered by the next cascade's barrier, one fsync per round instead of two.
 */
export const LAZY_BARRIER_MS = 100;

/**
 * How long a `hold` may keep the barrier waiting: an in-process job quicker than this rides in the
 * commit of the cascade that started it; a slower one does not make every other peer wait for it.
 */
export const HOLD_MAX_MS = 5;

/** What waits for the sync of commit `gen` (or of a later one). */
interface Pending {
  gen: number;
  fns: Array<() => void>;
}

export class GroupCommit {
  private readonly waiting: Array<() => void> = [];
  /** Callbacks for the next barrier that do not ask for one (`atNextBarrier`). */
  private readonly riders: Array<() => void> = [];
  /** Committed, not yet durable: released in order as syncs complete (`sync` stores only). */
  private readonly pending: Pending[] = [];
  /** Holds taken and not yet released (see `hold`). */
  private holds = 0;
  /** `changes()` when the last barrier committed. */
  private committedAt: number;
  /** Commits made, and how many of them are durable. */
  private commits = 0;
  private synced = 0;
  private syncing = false;
  /** A barrier came due while a sync ran: it commits when that sync ends (see `flush`). */
  private deferred = false;
  /** A sync failed: nothing that waits is ever released (the engine gave up; the node stops). */
  private broken: unknown;
  private scheduled = false;
  private lazy: NodeJS.Timeout | undefined;
  /** The store is closing: a tick or retry still queued must not touch it. */
  private closed = false;
  /** Barriers run: for the bench and tests (it is the count of commits, each made durable by one fsync or fewer). */
  barriers = 0;

  constructor(
    private readonly store: Durable,
    private readonly onError: (e: unknown) => void,
    /** How long a hold lasts at most (tests set it). */
    private readonly holdMaxMs = HOLD_MAX_MS,
  ) {
    this.committedAt = store.changes();
  }

  /** Whether the store syncs off the event loop (see the file's comment). */
  private get split(): boolean {
    return this.store.commit !== undefined && this.store.sync !== undefined;
  }

  /** Nothing uncommitted and nothing waiting for a barrier: a message now needs no barrier of its own. */
  private committed(): boolean {
    return this.waiting.length === 0 && this.store.changes() === this.committedAt;
  }

  /** Runs `fn` once every change made so far is durable: now, when nothing is pending. */
  afterDurable(fn: () => void): void {
    if (this.committed()) {
      if (this.pending.length === 0 && this.synced === this.commits && !this.broken) fn();
      else this.release([fn]); // it rides the sync under way
      return;
    }
    this.waiting.push(fn);
    this.schedule();
  }

  /**
   * Runs `fn` after the next barrier, without asking for one: it rides on the barrier some waiting
   * message brings, or on the lazy one (LAZY_BARRIER_MS). With nothing uncommitted, on the next
   * turn (or when the sync under way ends). For what promises nothing and gains from going in one
   * batch (progress pushes): waiting with `afterDurable` would bring a barrier of its own early,
   * one fsync more per round.
   */
  atNextBarrier(fn: () => void): void {
    if (this.committed()) {
      if (this.pending.length === 0 && this.synced === this.commits && !this.broken) setImmediate(fn);
      else this.release([fn]);
      return;
    }
    this.riders.push(fn);
    this.soon();
  }

  /**
   * A barrier within LAZY_BARRIER_MS, though nobody waits for one yet (a message waiting brings it
   * sooner): writes are committed only by barriers, and an open transaction must not idle
   * (SQLite: it holds the write lock; PostgreSQL: the server ends an idle one).
   */
  soon(): void {
    if (this.closed || this.lazy) return;
    this.lazy = setTimeout(() => {
      this.lazy = undefined;
      if (!this.closed && this.store.changes() !== this.committedAt) this.schedule();
    }, LAZY_BARRIER_MS);
    // The process may end without it: what no barrier covered is given up, as by a kill (Store.close runs one).
    this.lazy.unref();
  }

  /**
   * Work of this process that continues the cascade under way without a store write for a few
   * turns (the initiator running a job it was handed in-process: an init, a Finalize): until it
   * is released, or HOLD_MAX_MS at most, no turn counts as quiet, so the cascade that follows
   * (its product stored, the next job assigned) shares the barrier instead of needing its own. A
   * barrier still runs within MAX_TURNS turns. The release is idempotent.
   */
  hold(): () => void {
    this.holds++;
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      this.holds--;
      clearTimeout(timer);
    };
    const timer = setTimeout(release, this.holdMaxMs);
    timer.unref();
    return release;
  }

  /**
   * At shutdown: makes everything durable on this thread (the sync under way, if any, is not
   * waited for: this barrier covers it), runs what waited, and does nothing after.
   */
  close(): void {
    this.flush(true);
    this.closed = true;
    clearTimeout(this.lazy);
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    let last = this.store.changes();
    let quiet = 0;
    let turns = 0;
    const tick = () => {
      if (this.closed) return;
      const now = this.store.changes();
      quiet = now === last && this.holds === 0 ? quiet + 1 : 0;
      last = now;
      if (quiet < QUIET_TURNS && ++turns < MAX_TURNS) {
        setImmediate(tick);
        return;
      }
      this.scheduled = false;
      this.flush(false);
    };
    setImmediate(tick);
  }

  /**
   * The barrier: commits what is uncommitted, and hands what waited for it to the sync that will
   * cover it. `now` (and stores that cannot split a barrier): durable before it returns.
   */
  private flush(now: boolean): void {
    if (this.closed || this.broken) return;
    if (!now && this.syncing) {
      // Its messages could not go out before the sync under way ends anyway (syncs are ordered),
      // so the commit waits for it too: every cascade that goes quiet meanwhile joins this one
      // commit (one WAL append, each page written once) instead of one commit each.
      this.deferred = true;
      return;
    }
    const wholeBarrier = now || !this.split;
    const uncommitted = this.store.changes() !== this.committedAt;
    if (uncommitted || (wholeBarrier && this.synced < this.commits)) {
      try {
        if (wholeBarrier) this.store.barrier();
        else this.store.commit?.();
      } catch (e) {
        // Nothing that waits may go out before its state is durable: keep it, and try again.
        this.onError(e);
        if (!this.scheduled && !this.broken) {
          this.scheduled = true;
          setTimeout(() => {
            this.scheduled = false;
            this.flush(false);
          }, RETRY_MS).unref();
        }
        return;
      }
      if (uncommitted) {
        this.barriers++;
        this.commits++;
        this.committedAt = this.store.changes();
      }
      if (wholeBarrier) this.durable(this.commits);
    }
    this.release([...this.waiting.splice(0), ...this.riders.splice(0)]);
  }

  /** `fns` go out once the latest commit is durable, after everything that waited before them. */
  private release(fns: Array<() => void>): void {
    if (this.pending.length === 0 && this.synced === this.commits) {
      for (const fn of fns) fn();
      return;
    }
    const last = this.pending[this.pending.length - 1];
    if (last?.gen === this.commits) last.fns.push(...fns);
    else this.pending.push({ gen: this.commits, fns });
    this.startSync();
  }

  /** One sync at a time, each covering every commit made before it began. */
  private startSync(): void {
    if (this.syncing || this.broken || this.closed || this.synced === this.commits || !this.store.sync) return;
    this.syncing = true;
    const target = this.commits;
    this.store.sync((e) => {
      this.syncing = false;
      if (this.closed) return; // close() made everything durable and released it
      if (e) {
        this.broken = e;
        this.onError(e);
        return;
      }
      this.durable(target);
      if (this.deferred) {
        this.deferred = false;
        this.flush(false);
      }
      this.startSync(); // the commits made while it ran
    });
  }

  /** Commits up to `gen` are durable: what waited for them goes out, in order. */
  private durable(gen: number): void {
    if (gen > this.synced) this.synced = gen;
    while (this.pending.length > 0 && (this.pending[0] as Pending).gen <= this.synced) {
      for (const fn of (this.pending.shift() as Pending).fns) fn();
    }
  }
}
