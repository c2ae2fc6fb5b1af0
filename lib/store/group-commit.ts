/**
 * Group commit: what the scheduler tells anyone waits until the state behind it is on disk,
 * and one durable commit covers every change made meanwhile.
 *
 * On both engines the store's writes gather in ONE open transaction (sqlite-engine.ts,
 * postgres.ts): the first write after a barrier begins it, and a *barrier* is its COMMIT (SQLite:
 * `synchronous = FULL`, an fsync of the WAL; PostgreSQL: `synchronous_commit = on`). A message to
 * a peer is an acknowledgement of the state that led to it (an accepted artifact, an assignment
 * whose inputs were completed, a result), so it goes out only after a barrier. The barrier waits
 * for the cascade of actor hops that follow one event (a report: the resource, the job's
 * COMPLETED, the next job's SCHEDULED) to go quiet, so a round costs one or two commits instead
 * of one per transition. A write nobody waits for still gets a barrier soon (`soon`, called by
 * the engine when it begins a transaction): an open transaction never idles, holding SQLite's
 * write lock or a PostgreSQL session. State nobody was told about may be lost by a kill or a
 * power cut; the scheduler then redoes it.
 */

export interface Durable {
  /** A counter that moves with every change (and every transaction begun). */
  changes(): number;
  /** Makes every change so far durable (throws when it cannot). */
  barrier(): void;
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

export class GroupCommit {
  private readonly waiting: Array<() => void> = [];
  /** Callbacks for the next barrier that do not ask for one (`atNextBarrier`). */
  private readonly riders: Array<() => void> = [];
  /** Holds taken and not yet released (see `hold`). */
  private holds = 0;
  private durableAt: number;
  private scheduled = false;
  private lazy: NodeJS.Timeout | undefined;
  /** The store is closing: a tick or retry still queued must not touch it. */
  private closed = false;
  /** Barriers run: for the bench and tests (it is the count of commits, each one fsync). */
  barriers = 0;

  constructor(
    private readonly store: Durable,
    private readonly onError: (e: unknown) => void,
    /** How long a hold lasts at most (tests set it). */
    private readonly holdMaxMs = HOLD_MAX_MS,
  ) {
    this.durableAt = store.changes();
  }

  /** Runs `fn` once every change made so far is durable: now, when nothing is pending. */
  afterDurable(fn: () => void): void {
    if (this.waiting.length === 0 && this.store.changes() === this.durableAt) {
      fn();
      return;
    }
    this.waiting.push(fn);
    this.schedule();
  }

  /**
   * Runs `fn` after the next barrier, without asking for one: it rides on the barrier some waiting
   * message brings, or on the lazy one (LAZY_BARRIER_MS). With nothing uncommitted, on the next
   * turn. For what promises nothing and gains from going in one batch (progress pushes): waiting
   * with `afterDurable` would bring a barrier of its own early, one fsync more per round.
   */
  atNextBarrier(fn: () => void): void {
    if (this.store.changes() === this.durableAt && this.waiting.length === 0) {
      setImmediate(fn);
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
      if (!this.closed && this.store.changes() !== this.durableAt) this.schedule();
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

  /** At shutdown: makes everything durable, runs what waited, and does nothing after. */
  close(): void {
    this.flush();
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
      this.flush();
    };
    setImmediate(tick);
  }

  private flush(): void {
    if (this.closed) return;
    if (this.store.changes() !== this.durableAt) {
      try {
        this.store.barrier();
        this.barriers++;
      } catch (e) {
        // Nothing that waits may go out before its state is durable: keep it, and try again.
        this.onError(e);
        if (!this.scheduled) {
          this.scheduled = true;
          setTimeout(() => {
            this.scheduled = false;
            this.flush();
          }, RETRY_MS).unref();
        }
        return;
      }
      this.durableAt = this.store.changes();
    }
    const ready = this.waiting.splice(0);
    for (const fn of ready) fn();
    const riders = this.riders.splice(0);
    for (const fn of riders) fn();
  }
}
