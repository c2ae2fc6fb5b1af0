import pg from 'pg';
import type { Logger } from '../log.ts';
import { StoreCheckError } from './db.ts';
import type { Params } from './engine.ts';
import { redactUrl } from './postgres.ts';

/**
 * Which of several schedulers on one PostgreSQL store is the active one: a lease, one row
 * (holder, epoch, expires_at) in the database, with PostgreSQL's clock (`clock_timestamp()`) as
 * the only clock, so the nodes' clocks never matter.
 *
 * - A standby polls the row with an ordinary async client and takes it once it has lapsed, in
 *   one UPDATE that also moves the epoch on. Only then does it open the store and start, exactly
 *   as a restarted scheduler does (lib/node.ts).
 * - The active one renews it on a timer (a third of the lease), and **fences every commit**: the
 *   store runs `fence` inside its open transaction just before COMMIT (PostgresEngine's
 *   `beforeCommit`), one UPDATE that extends the lease only if this process still holds it, at
 *   its epoch. No row means another scheduler took over while this one was frozen or cut off:
 *   the transaction is rolled back (none of its writes lands), and the process stops at once
 *   (fail-stop; its supervisor restarts it, and it comes back as a standby).
 * - A lease that lapsed but that nobody took (holder and epoch unchanged) is still this process's:
 *   the fence and the renewal extend it. Refusing it would stop, for nothing, a scheduler that
 *   stalled past its lease with no standby there to take over (a loaded machine, a slow database):
 *   what makes the fence safe is the epoch, not the expiry, since PostgreSQL orders the two writes
 *   of the row (below). The expiry only decides when a standby may take over.
 *
 * Why a frozen leader cannot write: every write of the store waits in the one open transaction
 * until a barrier commits it, and the barrier's first statement is the fence. The fence's UPDATE
 * and a standby's takeover both write the one lease row, so PostgreSQL orders them: a takeover
 * that committed first leaves the fence no row (the epoch moved on); a fence that came first pushed
 * expires_at on, and the takeover's WHERE, evaluated again on the row the fence committed, no
 * longer holds. Messages to peers wait for the barrier (group-commit.ts).
 */

/** The table and its one row. Created here (not by the store's migrations): a standby reads it before it opens the store. */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS scheduler_lease (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  holder TEXT,
  epoch BIGINT NOT NULL DEFAULT 0,
  expires_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity');
INSERT INTO scheduler_lease (id) VALUES (1) ON CONFLICT (id) DO NOTHING;`;

/** Serializes the schema of replicas starting at once (any constant of our own, not the store's). */
const SCHEMA_LOCK = 0x66646c02;

const UNTIL = `clock_timestamp() + CAST($2 AS double precision) * interval '1 millisecond'`;

/** Takes a lapsed lease: the epoch moves on, so the last holder's fence fails from now on. */
const ACQUIRE = `UPDATE scheduler_lease SET holder = $1, epoch = epoch + 1, expires_at = ${UNTIL}
  WHERE id = 1 AND expires_at < clock_timestamp() RETURNING epoch`;

/** Extends the lease only while this holder still has it, at its epoch (lapsed or not: nobody took it). */
const RENEW = `UPDATE scheduler_lease SET expires_at = ${UNTIL.replace('$2', '$3')}
  WHERE id = 1 AND holder = $1 AND epoch = $2`;

/**
 * The same, with the store's `?` placeholders: the fence, run inside the store's open transaction.
 * Run as a read (`get`, for its RETURNING): one round trip, with no savepoint around it, because a
 * failure here fails the barrier and gives the whole transaction up anyway.
 */
export const FENCE_SQL = `UPDATE scheduler_lease SET expires_at = clock_timestamp() + CAST(? AS double precision) * interval '1 millisecond'
  WHERE id = 1 AND holder = ? AND epoch = ? RETURNING epoch`;

/** Ends the lease at a clean shutdown, so a standby takes over at its next look instead of after the lease. */
const RELEASE = `UPDATE scheduler_lease SET expires_at = '-infinity' WHERE id = 1 AND holder = $1 AND epoch = $2`;

const READ = `SELECT holder, epoch, GREATEST(0, EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000) AS remaining_ms
  FROM scheduler_lease WHERE id = 1`;

/** This process lost the lease: it must not write, nor acknowledge anything to a peer, again. */
export class FencedError extends Error {
  constructor(
    message: string,
    /** The epoch the fenced process held the lease at. */
    readonly epoch: number,
  ) {
    super(message);
    this.name = 'FencedError';
  }
}

/** The store's side of the fence: a statement run in its open transaction (PostgresEngine). */
export interface FenceRunner {
  prepare(sql: string): { get(...params: Params): unknown };
}

export interface LeaseOptions {
  /** The PostgreSQL store's URL. */
  url: string;
  /** Who asks: unique per process (a restarted process is a new holder). */
  holder: string;
  leaseMs: number;
  log: Logger;
  /** Called once when the lease is lost (a failed fence or renewal): the node logs one line and exits. */
  onLost(error: FencedError): void;
  /** A standby's look at the lease at most this often (default a quarter of the lease). */
  pollMs?: number;
}

interface LeaseRow {
  holder: string | null;
  epoch: string;
  remaining_ms: string;
}

/** A connection of the lease's own: statements bounded, so a lock or a dead server cannot hang a look. */
async function connect(url: string, leaseMs: number): Promise<pg.Client> {
  const bound = Math.max(1_000, leaseMs);
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: bound,
    statement_timeout: bound,
    lock_timeout: bound,
    application_name: 'fdl-lease',
  });
  client.on('error', () => {
    // A dropped connection fails the next query, which is handled there.
  });
  await client.connect();
  return client;
}

async function ensureSchema(client: pg.Client): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(`SELECT pg_advisory_xact_lock(${SCHEMA_LOCK})`);
    await client.query(SCHEMA);
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  }
}

/** SQLSTATEs that no wait will mend: authentication (28000, 28P01), no such database (3D000) or role rights (42501). */
const CONFIG_ERRORS = new Set(['28000', '28P01', '3D000', '42501']);

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class Lease {
  private renewal: NodeJS.Timeout | undefined;
  private lastRenewed = performance.now();
  private lost = false;
  private renewing = false;

  private constructor(
    private readonly opts: LeaseOptions,
    private client: pg.Client | undefined,
    /** The epoch this process holds the lease at: every fence checks it. */
    readonly epoch: number,
  ) {}

  /**
   * Waits, as a standby, until this process holds the lease; then renews it on a timer. Logs
   * once that it is a standby and who is active, and again when the active one changes. A
   * standby has nothing open but this connection: SIGTERM simply ends it.
   */
  static async acquire(opts: LeaseOptions): Promise<Lease> {
    const pollMs = opts.pollMs ?? Math.max(50, Math.floor(opts.leaseMs / 4));
    let client: pg.Client | undefined;
    let told = '';
    for (;;) {
      let waitMs = pollMs;
      try {
        if (!client) {
          client = await connect(opts.url, opts.leaseMs);
          await ensureSchema(client);
        }
        const got = await client.query<{ epoch: string }>(ACQUIRE, [opts.holder, opts.leaseMs]);
        const row = got.rows[0];
        if (row) {
          const lease = new Lease(opts, client, Number(row.epoch));
          lease.startRenewal();
          return lease;
        }
        const now = (await client.query<LeaseRow>(READ)).rows[0];
        const active = `${now?.holder ?? '?'}#${now?.epoch ?? '?'}`;
        if (active !== told) {
          told = active;
          opts.log.info({ active: now?.holder, epoch: Number(now?.epoch), leaseMs: opts.leaseMs }, 'standby: another scheduler is active; waiting for its lease to lapse');
        }
        // Look again soon after it would lapse, and at least every pollMs (it may be released).
        waitMs = Math.min(pollMs, Math.max(10, Math.ceil(Number(now?.remaining_ms ?? 0)) + 10));
      } catch (e) {
        // A wrong password or database name is the config's: one line and exit 2, as for a store
        // that cannot be opened. A server that is down or restarting is waited for.
        const code = (e as { code?: unknown }).code;
        if (typeof code === 'string' && CONFIG_ERRORS.has(code)) {
          await client?.end().catch(() => {});
          throw new StoreCheckError(`the PostgreSQL store at ${redactUrl(opts.url)} refuses this scheduler: ${(e as Error).message}`, { replaceable: false });
        }
        opts.log.warn({ err: (e as Error).message }, 'standby: cannot read the lease in the store; trying again');
        await client?.end().catch(() => {});
        client = undefined;
      }
      await pause(waitMs);
    }
  }

  /**
   * The fence, for the store's `beforeCommit`: extends the lease in the open transaction, or
   * throws FencedError (the store then rolls the transaction back) after telling `onLost`.
   */
  fence(db: FenceRunner): void {
    if (this.lost) throw new FencedError(this.describe('a commit after the lease was lost'), this.epoch);
    const row = db.prepare(FENCE_SQL).get(this.opts.leaseMs, this.opts.holder, this.epoch);
    if (row !== undefined) {
      this.lastRenewed = performance.now();
      return;
    }
    throw this.lose('a commit found the lease taken over');
  }

  /** At a clean shutdown: a standby may take over at once. */
  async release(): Promise<void> {
    this.stopRenewal();
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    try {
      if (!this.lost) await client.query(RELEASE, [this.opts.holder, this.epoch]);
    } catch (e) {
      this.opts.log.warn({ err: (e as Error).message }, 'could not release the lease; a standby takes over when it lapses');
    } finally {
      await client.end().catch(() => {});
    }
  }

  private describe(what: string): string {
    return `${what}: this scheduler (${this.opts.holder}, epoch ${this.epoch}) must not write again`;
  }

  private lose(what: string): FencedError {
    const error = new FencedError(this.describe(what), this.epoch);
    if (!this.lost) {
      this.lost = true;
      this.stopRenewal();
      this.opts.onLost(error);
    }
    return error;
  }

  private startRenewal(): void {
    this.renewal = setInterval(() => void this.renew(), Math.max(10, Math.floor(this.opts.leaseMs / 3)));
    this.renewal.unref();
  }

  private stopRenewal(): void {
    if (this.renewal) clearInterval(this.renewal);
    this.renewal = undefined;
  }

  private async renew(): Promise<void> {
    if (this.renewing || this.lost) return;
    this.renewing = true;
    const started = performance.now();
    try {
      this.client ??= await connect(this.opts.url, this.opts.leaseMs);
      const r = await this.client.query(RENEW, [this.opts.holder, this.epoch, this.opts.leaseMs]);
      if (r.rowCount === 1) this.lastRenewed = Math.max(this.lastRenewed, started);
      else this.lose('the renewal found the lease taken over');
    } catch (e) {
      await this.client?.end().catch(() => {});
      this.client = undefined;
      // Not known to be lost, but not known to be held either: past a whole lease without a
      // renewal, a standby may have taken over, so stop (fail-stop) rather than guess.
      if (performance.now() - this.lastRenewed >= this.opts.leaseMs) {
        this.lose(`no renewal for a whole lease (${(e as Error).message})`);
      } else this.opts.log.warn({ err: (e as Error).message }, 'cannot renew the lease; trying again');
    } finally {
      this.renewing = false;
    }
  }
}
