import { openSqlite, type SqliteDatabase } from './sqlite.ts';

/**
 * Opening the scheduler's SQLite file: pragmas, an integrity check, and the schema migrations.
 * A damaged or too-new file stops the node with one line (`StoreCheckError`), before any actor
 * reads a row from it.
 */

/** A store that cannot be used as it is: one line for the operator, and the node exits 2 (as for a bad config). */
export class StoreCheckError extends Error {
  /** Damage that `--init-store` may set aside (not, e.g., a schema newer than this fdl). */
  readonly replaceable: boolean;

  constructor(message: string, opts: { replaceable: boolean }) {
    super(message);
    this.name = 'StoreCheckError';
    this.replaceable = opts.replaceable;
  }
}

interface Migration {
  version: number;
  /** What it changes, for the log and for the next reader of this list. */
  why: string;
  /** SQLite's DDL (empty: a step for PostgreSQL only). */
  sql: string;
  /** PostgreSQL's DDL when it is not `sql` made portable by `postgresDdl`. */
  pg?: string;
}

/**
 * The schema, as an ordered list: each step is applied once, in order, in one transaction at
 * open, and `PRAGMA user_version` records the last one. Never edit a shipped step: append one.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    why: 'the schema as it was before versioning',
    sql: `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS nodes (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, last_seen INTEGER NOT NULL,
  projects_json TEXT NOT NULL, sign_key TEXT, box_key TEXT, join_token_id TEXT,
  connected INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, label TEXT,
  projects_json TEXT, created_at INTEGER NOT NULL, revoked_at INTEGER);
CREATE TABLE IF NOT EXISTS artifacts (
  id TEXT PRIMARY KEY, project_id TEXT NOT NULL, project_token TEXT NOT NULL, name TEXT,
  spec_json TEXT NOT NULL, policy_json TEXT NOT NULL, state TEXT NOT NULL, error_json TEXT,
  result_resource_id TEXT, exits_json TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, artifact_id TEXT NOT NULL, idx INTEGER NOT NULL, worker TEXT NOT NULL,
  step_index INTEGER NOT NULL, iteration INTEGER NOT NULL, role TEXT NOT NULL, operation_json TEXT NOT NULL,
  state TEXT NOT NULL, attempt INTEGER NOT NULL, last_error_json TEXT, result_resource_id TEXT,
  next_attempt_at INTEGER, left_out INTEGER NOT NULL DEFAULT 0, quorum_json TEXT, seal INTEGER NOT NULL DEFAULT 0,
  locks_json TEXT NOT NULL, UNIQUE (artifact_id, idx));
CREATE TABLE IF NOT EXISTS resources (
  id TEXT PRIMARY KEY, artifact_id TEXT NOT NULL, job_id TEXT NOT NULL, producer TEXT NOT NULL,
  size INTEGER NOT NULL, sha256 TEXT NOT NULL, location TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_by_artifact ON jobs (artifact_id, idx);
CREATE INDEX IF NOT EXISTS artifacts_by_state ON artifacts (state);
`,
  },
  {
    version: 2,
    why: 'retention and per-workbench quotas: who submitted an artifact, and indices to find finished and in-flight ones',
    sql: `
ALTER TABLE artifacts ADD COLUMN submitter_token_id TEXT;
CREATE INDEX artifacts_in_flight_by_submitter ON artifacts (submitter_token_id) WHERE state IN ('SCHEDULED', 'RUNNING');
CREATE INDEX artifacts_finished_by_time ON artifacts (updated_at) WHERE state IN ('COMPLETED', 'ERROR', 'CANCELLED');
CREATE INDEX artifacts_by_creation ON artifacts (created_at);
CREATE INDEX resources_by_artifact ON resources (artifact_id);
`,
  },
  {
    version: 3,
    why: 'small resources kept in the database: one commit (and the group fsync) instead of a file, its fsync and its folder fsync',
    sql: `
CREATE TABLE resource_bytes (id TEXT PRIMARY KEY, bytes BLOB NOT NULL);
`,
  },
  {
    version: 4,
    why: "a result covers every known holder of the project's data, or says what it left out: the holders by project, the rows each job read, the holders a plan bound, the provenance of a completed artifact",
    sql: `
CREATE TABLE holders (project_id TEXT NOT NULL, node_id TEXT NOT NULL, PRIMARY KEY (project_id, node_id)) WITHOUT ROWID;
CREATE INDEX holders_by_node ON holders (node_id);
ALTER TABLE jobs ADD COLUMN rows INTEGER;
ALTER TABLE artifacts ADD COLUMN workers_json TEXT;
ALTER TABLE artifacts ADD COLUMN absent_json TEXT;
ALTER TABLE artifacts ADD COLUMN provenance_json TEXT;
`,
  },
  {
    version: 5,
    why: "a timeline of jobs per worker: when a job's latest attempt started running and when it stopped (completed, failed or out of attempts)",
    sql: `
ALTER TABLE jobs ADD COLUMN started_at INTEGER;
ALTER TABLE jobs ADD COLUMN finished_at INTEGER;
`,
  },
  {
    version: 6,
    why: 'on PostgreSQL everything a second scheduler replica needs is in the database: large resources as chunk rows, the initiator\'s locals (its identity is a meta row); SQLite keeps files beside the database',
    sql: '',
    pg: `
CREATE TABLE resource_chunks (resource_id TEXT NOT NULL, seq INTEGER NOT NULL, bytes BYTEA NOT NULL, PRIMARY KEY (resource_id, seq));
CREATE TABLE locals (artifact_id TEXT PRIMARY KEY, bytes BYTEA NOT NULL);
`,
  },
  {
    version: 7,
    why: "jobs_by_artifact repeated the index of the jobs table's own UNIQUE (artifact_id, idx): every job inserted wrote both",
    sql: `
DROP INDEX IF EXISTS jobs_by_artifact;
`,
  },
  {
    version: 8,
    why: "a small resource's bytes in its own row (location 'row'): one INSERT and one table per product, where resource_bytes took a second INSERT, a savepoint around the two, and two more B-trees (its table and its key) dirtied per commit; rows written before stay in resource_bytes and are read there",
    sql: `
ALTER TABLE resources ADD COLUMN bytes BLOB;
`,
  },
];

/**
 * A step's DDL for PostgreSQL: its own, or SQLite's with the types PostgreSQL spells otherwise.
 * INTEGER becomes BIGINT (epoch-ms timestamps overflow PostgreSQL's 32-bit integer; the bridge
 * reads int8 back as a JS number), BLOB becomes BYTEA, and WITHOUT ROWID (a SQLite storage
 * choice) goes.
 */
export function postgresDdl(m: Migration): string {
  return m.pg ?? m.sql.replace(/\bINTEGER\b/g, 'BIGINT').replace(/\bBLOB\b/g, 'BYTEA').replace(/\s+WITHOUT ROWID/g, '');
}

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

/** What to tell an operator whose store is damaged: both ways out. */
export const DAMAGED_ADVICE = 'restore it from a backup, or start a new network with fdl node --init-store';

/** Opens (creating if need be) the store's database; `file` undefined: in memory (tests). */
export function openDatabase(file: string | undefined): SqliteDatabase {
  const db = openSqlite(file);
  try {
    if (file) {
      db.pragma('journal_mode = WAL');
      // NORMAL: a commit writes its WAL frames and syncs nothing; the store syncs the WAL itself
      // after each commit (sqlite-engine.ts: `barrier()` on the caller's thread, or the group
      // commit's `sync` in libuv's threadpool, which keeps the fsync off the event loop), and
      // nothing waiting on a barrier goes out before that sync. SQLite still syncs what the
      // format needs at NORMAL: the WAL before a checkpoint copies it into the database file, the
      // database file after, and a restarted WAL's header before its first frame.
      db.pragma('synchronous = NORMAL');
      // The operator's `fdl tokens` opens the same file while the scheduler runs.
      db.pragma('busy_timeout = 5000');
      // Statement journals and transient tables in memory: on a file they are a temporary file
      // made and unlinked per statement that needs one (~6 syscalls per artifact, strace).
      db.pragma('temp_store = MEMORY');
      checkIntegrity(db, file);
    }
    migrate(db, file ?? ':memory:');
    return db;
  } catch (e) {
    db.close();
    if (e instanceof StoreCheckError) throw e;
    // SQLite's own refusals ("file is not a database", "database disk image is malformed").
    throw new StoreCheckError(`${file ?? ':memory:'} cannot be read (${(e as Error).message}): ${DAMAGED_ADVICE}`, { replaceable: true });
  }
}

/**
 * `quick_check` reads every page and checks each b-tree (not the indices against their
 * tables, which `integrity_check` adds at many times the cost): a damaged page is found now,
 * not when a query happens to reach it.
 */
function checkIntegrity(db: SqliteDatabase, file: string): void {
  const rows = db.pragma<{ quick_check: string }>('quick_check(3)');
  const problems = rows.map((r) => r.quick_check).filter((p) => p !== 'ok');
  if (problems.length > 0) {
    throw new StoreCheckError(`${file} is damaged (PRAGMA quick_check: ${problems.join('; ').replace(/\s+/g, ' ')}): ${DAMAGED_ADVICE}`, {
      replaceable: true,
    });
  }
}

/** Brings the schema to SCHEMA_VERSION in one transaction: all of it or nothing. */
function migrate(db: SqliteDatabase, file: string): void {
  db.transaction(() => {
    let version = db.pragmaValue<number>('user_version') ?? 0;
    // A store written before versioning has the tables of version 1 and user_version 0.
    if (version === 0 && db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'artifacts'`).get()) version = 1;
    if (version > SCHEMA_VERSION) {
      throw new StoreCheckError(`${file} has schema version ${version}, newer than this fdl knows (${SCHEMA_VERSION}): run a newer fdl`, {
        replaceable: false,
      });
    }
    for (const m of MIGRATIONS) if (m.version > version && m.sql) db.exec(m.sql);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
    // IMMEDIATE: two processes opening one file (the node and `fdl tokens`) never migrate it twice.
  }).immediate();
}
