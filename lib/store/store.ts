import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type {
  ArtifactSpec,
  ArtifactState,
  ArtifactStatus,
  JobState,
  JobStatus,
  Operation,
  ProjectData,
  Provenance,
  ResourceRef,
  RetryPolicy,
} from '../../protocols/entities.ts';
import type { WireError } from '../../protocols/errors.ts';
import type { Plan } from '../plan/index.ts';
import { FdlError } from '../errors.ts';
import { BlobStore, checkedBytes } from './blobs.ts';
import { CHUNKS_LOCATION, ResourceChunks } from './chunks.ts';
import { GroupCommit } from './group-commit.ts';
import { timeOrderedUuid } from './ids.ts';
import type { Engine, EngineStatement } from './engine.ts';
import { PostgresEngine, type PostgresOptions } from './postgres.ts';
import { SqliteEngine } from './sqlite-engine.ts';
import { DEFAULT_INLINE_RESOURCE_MAX_BYTES } from './defaults.ts';

/** The store's files inside a scheduler's work directory. */
export const DATABASE_FILE = 'scheduler.sqlite';
export const RESOURCES_DIR = 'resources';
/** The `location` of a small resource whose bytes are in its own row (`resources.bytes`, schema 8). */
const ROW_LOCATION = 'row';
/** The `location` of a small resource written before schema 8: its bytes are in the `resource_bytes` table. */
const INLINE_LOCATION = 'inline';

/**
 * The scheduler's durable state: projects, nodes, artifacts, jobs, locks and resources.
 * The rows are in SQLite (WAL) or PostgreSQL (lib/store/engine.ts). Small resources are rows;
 * large ones are files beside the SQLite file, or chunk rows in PostgreSQL (lib/store/chunks.ts).
 * Every state change goes through here before the actors act on it, so a restarted
 * scheduler resumes from exactly what was decided.
 */

export interface StoredArtifact {
  id: string;
  projectId: string;
  projectToken: string;
  name: string | undefined;
  spec: ArtifactSpec;
  policy: RetryPolicy;
  state: ArtifactState;
  error: ArtifactStatus['error'];
  resultResourceId: string | undefined;
  exits: number[];
  createdAt: number;
  updatedAt: number;
  /** The workbench token that submitted it (its quota counts it); undefined for artifacts stored before quotas. */
  submitterTokenId: string | undefined;
  /** The data holders the plan bound, sorted (undefined for artifacts stored before holders were kept). */
  workers: string[] | undefined;
  /** Of those, the ones away at submit (a quorum let it go on without them). */
  absent: string[];
  /** Set when it COMPLETED. */
  provenance: Provenance | undefined;
}

/** The states an artifact never leaves: retention may delete it, a workbench may delete it. */
export const FINISHED_STATES: readonly ArtifactState[] = ['COMPLETED', 'ERROR', 'CANCELLED'];
const FINISHED_SQL = FINISHED_STATES.map((st) => `'${st}'`).join(', ');

export interface StoredJob {
  id: string;
  artifactId: string;
  index: number;
  worker: string;
  stepIndex: number;
  iteration: number;
  role: string;
  operation: Operation;
  state: JobState;
  attempt: number;
  lastError: WireError | undefined;
  resultResourceId: string | undefined;
  /** When a FAILED job's next attempt is due. */
  nextAttemptAt: number | undefined;
  /** Out of attempts, but its step's quorum lets the artifact go on without it. */
  leftOut: boolean;
  /** The job's Parallel step may finish without some workers: `required` of the jobs in `group`. */
  quorum: { group: string; required: number } | undefined;
  /** Seal the product for the nodes of the jobs it unlocks. */
  seal: boolean;
  /** Indices of the jobs this job unlocks. */
  locks: number[];
  /** Rows of its node's data that the completed attempt read, as its report said. */
  rows?: number | undefined;
  /** When its latest attempt started running (ms since the epoch). */
  startedAt?: number | undefined;
  /** When it last stopped: COMPLETED, FAILED or ERROR (unset while an attempt runs). */
  finishedAt?: number | undefined;
}

export interface StoredProject {
  id: string;
  name: string;
}

export interface StoredNode {
  id: string;
  name: string;
  role: 'scheduler' | 'worker';
  lastSeen: number;
  projects: ProjectData[];
  /** Pinned at the first join: the node's Ed25519 and X25519 public keys. */
  signKey?: string;
  boxKey?: string;
}

export type TokenKind = 'join' | 'workbench';

export interface StoredToken {
  id: string;
  kind: TokenKind;
  label: string | undefined;
  /** Project ids a workbench token may see; undefined: all of them. */
  projects: string[] | undefined;
  createdAt: number;
  revokedAt: number | undefined;
}


export function hashToken(token: string): string {
  return createHash('sha256').update(`fdl-token:${token}`).digest('hex');
}

/** Bounds of Store.status's kept statuses: artifacts, and their jobs in all (a larger status is read each time). */
const STATUS_CACHE_ENTRIES = 256;
const STATUS_CACHE_JOBS = 20_000;

/** Freezes a plain value and everything in it (a kept status: a reader that changed it would change it for all). */
function deepFreeze(value: unknown): void {
  if (value === null || typeof value !== 'object' || Object.isFrozen(value)) return;
  Object.freeze(value);
  for (const v of Object.values(value)) deepFreeze(v);
}

const json = (v: unknown) => (v === undefined ? null : JSON.stringify(v));
const parse = <T>(s: string | null): T | undefined => (s === null ? undefined : (JSON.parse(s) as T));

interface JobRow {
  id: string;
  artifact_id: string;
  idx: number;
  worker: string;
  step_index: number;
  iteration: number;
  role: string;
  operation_json: string;
  state: JobState;
  attempt: number;
  last_error_json: string | null;
  result_resource_id: string | null;
  next_attempt_at: number | null;
  left_out: number;
  quorum_json: string | null;
  seal: number;
  locks_json: string;
  rows: number | null;
  started_at: number | null;
  finished_at: number | null;
}

interface ArtifactRow {
  id: string;
  project_id: string;
  project_token: string;
  name: string | null;
  spec_json: string;
  policy_json: string;
  state: ArtifactState;
  error_json: string | null;
  result_resource_id: string | null;
  exits_json: string;
  created_at: number;
  updated_at: number;
  submitter_token_id: string | null;
  workers_json: string | null;
  absent_json: string | null;
  provenance_json: string | null;
}

export class Store {
  readonly blobs: BlobStore;
  /** PostgreSQL: large resources are chunk rows (`resources/` holds checked copies of them, a cache). */
  private readonly chunks: ResourceChunks | undefined;
  /** The temporary folder of a PostgreSQL store opened without a work dir, removed at close. */
  private readonly cacheDir: string | undefined;
  /** The database it runs on (lib/store/engine.ts): SQLite, or PostgreSQL when a URL is given. */
  readonly db: Engine;
  private readonly statements = new Map<string, EngineStatement>();
  private readonly durable: GroupCommit | undefined;
  /** Up to this size, a resource's bytes are a row of the database rather than a file. */
  inlineResourceMaxBytes = DEFAULT_INLINE_RESOURCE_MAX_BYTES;

  /**
   * `workdir` undefined: everything in memory (tests). Opening checks the file's integrity and
   * migrates its schema (lib/store/db.ts); whether it is the store this work directory has held
   * is `openSchedulerStore`'s question (lib/store/network.ts).
   */
  constructor(workdir: string | undefined, opts: { url?: string | undefined } & PostgresOptions = {}) {
    if (workdir) mkdirSync(workdir, { recursive: true });
    this.db = opts.url ? new PostgresEngine(opts.url, opts) : new SqliteEngine(workdir ? join(workdir, DATABASE_FILE) : undefined);
    // PostgreSQL's cache of large resources is files: in the work dir, or a temporary folder (tests).
    this.cacheDir = workdir || !opts.url ? undefined : mkdtempSync(join(tmpdir(), 'fdl-resource-cache-'));
    const blobDir = workdir ?? this.cacheDir;
    this.blobs = new BlobStore(blobDir ? join(blobDir, RESOURCES_DIR) : undefined);
    this.chunks = this.db.kind === 'postgres' ? new ResourceChunks(this.db) : undefined;
    // Nothing is committed but by a barrier (one open transaction between them, on both
    // engines): a store on disk always has a group commit, and a write nobody waits for still
    // gets its barrier soon (an open transaction never idles). In memory: no barriers at all.
    const engine = this.db;
    // SQLite splits a barrier (its COMMIT, then the WAL's fdatasync off the event loop); PostgreSQL does not.
    const split = engine.commit && engine.sync ? { commit: () => engine.commit?.(), sync: (done: (e?: Error) => void) => engine.sync?.(done) } : {};
    const durable =
      workdir || opts.url
        ? new GroupCommit({ changes: () => this.changes(), barrier: () => this.barrier(), ...split }, (e) => this.onBarrierError(e))
        : undefined;
    this.durable = durable;
    if (durable) this.db.onPending = () => durable.soon();
  }

  close(): void {
    if (!this.db.open) return;
    this.durable?.close();
    this.db.close();
    if (this.cacheDir) rmSync(this.cacheDir, { recursive: true, force: true });
  }

  /**
   * Runs `fn` (a send to a peer) once every change made so far is durable: see group-commit.ts.
   * Everything the scheduler tells anyone goes through here.
   */
  afterDurable(fn: () => void): void {
    if (!this.db.open) return; // shutting down: nothing more goes out
    if (this.durable) this.durable.afterDurable(fn);
    else fn();
  }

  /**
   * Runs `fn` after the next barrier without asking for one (group-commit.ts, `atNextBarrier`):
   * for what promises nothing and is better sent in one batch. In memory: on the next turn.
   */
  atNextBarrier(fn: () => void): void {
    if (!this.db.open) return;
    if (this.durable) this.durable.atNextBarrier(fn);
    else setImmediate(fn);
  }

  /** Keeps the next barrier waiting for in-process work of the cascade under way: see GroupCommit.hold. */
  hold(): () => void {
    return this.durable ? this.durable.hold() : () => {};
  }

  /** How many barriers (fsyncs of the rows) ran: the bench's and tests' view of group commit. */
  get barriers(): number {
    return this.durable?.barriers ?? 0;
  }

  /**
   * Called when a barrier fails (disk full, I/O error): what waits for it is held, not sent. A
   * failed sync of SQLite's WAL is final (the engine's `onFailed` stops the node); a failed COMMIT
   * is tried again.
   */
  onBarrierError: (e: unknown) => void = () => {};

  /** A counter that moves with every write (the engine's). */
  changes(): number {
    return this.db.changes();
  }

  /**
   * Makes every write so far durable before it returns: on SQLite the COMMIT and an fdatasync of
   * the WAL on this thread, on PostgreSQL the COMMIT. For what must be durable before the caller
   * goes on (a CLI printing a token, the network's stamp); the scheduler's messages wait with
   * `afterDurable` instead, whose sync leaves the event loop.
   */
  barrier(): void {
    this.db.barrier();
  }

  /**
   * A prepared statement per SQL text, made once: preparing on every call cost more than most
   * of the statements themselves (~40 per artifact on the hot path).
   */
  private sql(text: string): EngineStatement {
    let statement = this.statements.get(text);
    if (!statement) {
      statement = this.db.prepare(text);
      this.statements.set(text, statement);
    }
    return statement;
  }

  /** The scheduler's own node id: made once, kept for ever. */
  schedulerId(preferred: string): string {
    const row = this.sql('SELECT value FROM meta WHERE key = ?').get('schedulerId') as
      | { value: string }
      | undefined;
    if (row) return row.value;
    this.sql('INSERT INTO meta (key, value) VALUES (?, ?)').run('schedulerId', preferred);
    return preferred;
  }

  /** The network this store belongs to, stamped once at its first start (lib/store/network.ts). */
  network(): { networkId: string; createdAt: string } | undefined {
    const rows = this.sql(`SELECT key, value FROM meta WHERE key IN ('networkId', 'networkCreatedAt')`).all() as Array<{
      key: string;
      value: string;
    }>;
    const value = (key: string) => rows.find((r) => r.key === key)?.value;
    const networkId = value('networkId');
    return networkId ? { networkId, createdAt: value('networkCreatedAt') ?? '' } : undefined;
  }

  /**
   * Stamps the network once; returns the one stamped (an earlier stamp wins). Committed at once:
   * the work directory's marker (network.json), written next, must never name a stamp a kill lost.
   */
  stampNetwork(networkId: string, createdAt: string): { networkId: string; createdAt: string } {
    const insert = this.sql('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING');
    this.db.transaction(
      () => {
        if (this.network()) return;
        insert.run('networkId', networkId);
        insert.run('networkCreatedAt', createdAt);
      },
      { immediate: true },
    );
    this.db.barrier();
    return this.network() as { networkId: string; createdAt: string };
  }

  /**
   * The scheduler's identity (its private keys, as identity.json holds them) kept in the store,
   * made by `create` at the first start: on PostgreSQL every replica is the same scheduler, so
   * products sealed for the initiator open on whichever runs. Committed at once: two replicas
   * starting together agree on the first one stored.
   */
  sharedIdentity(create: () => string): string {
    const read = () => this.sql(`SELECT value FROM meta WHERE key = 'identity'`).value<string>();
    const found = read();
    if (found !== undefined) return found;
    this.sql(`INSERT INTO meta (key, value) VALUES ('identity', ?) ON CONFLICT DO NOTHING`).run(create());
    this.db.barrier();
    return read() as string;
  }

  // ------------------------------------------------------------ the initiator's locals (PostgreSQL: lib/store/locals.ts)

  readLocals(artifactId: string): Uint8Array | undefined {
    return this.sql('SELECT bytes FROM locals WHERE artifact_id = ?').value<Buffer>(artifactId);
  }

  writeLocals(artifactId: string, bytes: Uint8Array): void {
    this.sql('INSERT INTO locals (artifact_id, bytes) VALUES (?, ?) ON CONFLICT (artifact_id) DO UPDATE SET bytes = excluded.bytes').run(
      artifactId,
      bytes,
    );
  }

  deleteLocals(artifactId: string): void {
    this.sql('DELETE FROM locals WHERE artifact_id = ?').run(artifactId);
  }

  /** True while no table holds a row: a file that never served a network. */
  isBlank(): boolean {
    const tables = ['meta', 'projects', 'tokens', 'nodes', 'artifacts'];
    return tables.every((t) => this.sql(`SELECT 1 FROM ${t} LIMIT 1`).get() === undefined);
  }

  // ------------------------------------------------------------ projects

  /** Idempotent: a project named in the config is created once and keeps its id. */
  ensureProject(name: string, token: string): StoredProject {
    this.projects = undefined;
    const hash = hashToken(token);
    const byHash = this.sql('SELECT id, name FROM projects WHERE token_hash = ?').get(hash) as
      | StoredProject
      | undefined;
    if (byHash) return byHash;
    const byName = this.sql('SELECT id FROM projects WHERE name = ?').get(name) as { id: string } | undefined;
    if (byName) {
      this.sql('UPDATE projects SET token_hash = ? WHERE id = ?').run(hash, byName.id);
      return { id: byName.id, name };
    }
    const id = `p-${randomUUID()}`;
    this.sql('INSERT INTO projects (id, name, token_hash) VALUES (?, ?, ?)').run(id, name, hash);
    return { id, name };
  }

  projectByToken(token: string): StoredProject | undefined {
    return this.sql('SELECT id, name FROM projects WHERE token_hash = ?').get(hashToken(token)) as
      | StoredProject
      | undefined;
  }

  /** Every project by name, frozen and kept until the next `ensureProject` (the only writer of projects: the config's, at start). */
  listProjects(): readonly StoredProject[] {
    if (this.projects) return this.projects;
    const projects = this.sql('SELECT id, name FROM projects ORDER BY name').all() as StoredProject[];
    deepFreeze(projects);
    this.projects = projects;
    return projects;
  }
  /** What listProjects read last, while no project changed (a workbench lists them at every `fdl projects`, the dashboard on every change). */
  private projects: readonly StoredProject[] | undefined;

  // ------------------------------------------------------------ nodes

  /** A node that joined: it is connected from now on (until `nodeLeft`). */
  upsertNode(node: StoredNode): void {
    this
      .sql(
        `INSERT INTO nodes (id, name, role, last_seen, projects_json, connected) VALUES (?, ?, ?, ?, ?, 1)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role, last_seen = excluded.last_seen,
         projects_json = excluded.projects_json, connected = 1`,
      )
      .run(node.id, node.name, node.role, node.lastSeen, JSON.stringify(node.projects));
  }

  nodeLeft(id: string, at: number): void {
    this.sql('UPDATE nodes SET last_seen = ?, connected = 0 WHERE id = ?').run(at, id);
  }

  /** At a scheduler's start: no worker is connected yet; those that were are marked seen now. */
  workersSeenAtStart(at: number): void {
    this.sql(`UPDATE nodes SET last_seen = ?, connected = 0 WHERE connected = 1 AND role = 'worker'`).run(at);
  }

  /** What a node announced at its last join, by key (undefined: never seen). */
  nodeProjects(id: string): ProjectData[] | undefined {
    const r = this.sql('SELECT projects_json FROM nodes WHERE id = ?').get(id) as { projects_json: string } | undefined;
    return r ? (JSON.parse(r.projects_json) as ProjectData[]) : undefined;
  }

  // ------------------------------------------------------------ holders of each project's data

  /**
   * A node's join: it holds data for exactly these projects now. A project it no longer lists
   * (with a data source) forgets it as a holder; a new one adds it. One transaction.
   */
  setHoldings(nodeId: string, projectIds: readonly string[]): void {
    this.db.transaction(() => {
      const ids = JSON.stringify([...projectIds]);
      this.sql(`DELETE FROM holders WHERE node_id = ? AND project_id NOT IN (${this.db.dialect.jsonValues})`).run(nodeId, ids);
      const insert = this.sql('INSERT INTO holders (project_id, node_id) VALUES (?, ?) ON CONFLICT DO NOTHING');
      for (const p of projectIds) insert.run(p, nodeId);
    });
  }

  /** The known holders of a project's data (connected or not), sorted: read by key. */
  holdersOf(projectId: string): string[] {
    return (this.sql('SELECT node_id FROM holders WHERE project_id = ? ORDER BY node_id').all(projectId) as Array<{ node_id: string }>).map(
      (r) => r.node_id,
    );
  }

  /**
   * The operator's `fdl nodes forget`: the node holds no project's data any more (it left for
   * good); plans stop waiting for it. Its pinned keys stay: joining again with a data source
   * for a project makes it a holder again. Returns how many projects it held.
   */
  forgetHolder(nodeId: string): number {
    return this.sql('DELETE FROM holders WHERE node_id = ?').run(nodeId).changes;
  }

  /**
   * Once per store: the holders of a store written before they were kept, from what each worker
   * announced at its last join (a scheduler upgraded across a restart must not forget them).
   */
  backfillHolders(): void {
    if (this.sql(`SELECT 1 FROM meta WHERE key = 'holdersBackfilled'`).get()) return;
    this.db.transaction(() => {
      const rows = this.sql(`SELECT id, projects_json FROM nodes WHERE role = 'worker'`).all() as Array<{ id: string; projects_json: string }>;
      for (const r of rows) {
        const held = (JSON.parse(r.projects_json) as ProjectData[])
          .filter((p) => p.datasources.length > 0)
          .map((p) => this.projectByToken(p.token)?.id)
          .filter((id): id is string => id !== undefined);
        for (const p of held) this.sql('INSERT INTO holders (project_id, node_id) VALUES (?, ?) ON CONFLICT DO NOTHING').run(p, r.id);
      }
      this.sql(`INSERT INTO meta (key, value) VALUES ('holdersBackfilled', '1')`).run();
    });
  }

  listNodes(): StoredNode[] {
    return this.nodesOf(this.sql('SELECT * FROM nodes ORDER BY id').all() as NodeRow[]);
  }

  private nodesOf(rows: NodeRow[]): StoredNode[] {
    return rows.map((r) => {
      const n: StoredNode = {
        id: r.id,
        name: r.name,
        role: r.role,
        lastSeen: r.last_seen,
        projects: JSON.parse(r.projects_json) as ProjectData[],
      };
      if (r.sign_key) n.signKey = r.sign_key;
      if (r.box_key) n.boxKey = r.box_key;
      return n;
    });
  }



  /** The keys pinned to a node id, if it ever joined. */
  nodeKeys(id: string): { signKey: string; boxKey: string; joinTokenId: string | undefined } | undefined {
    const r = this.sql('SELECT sign_key, box_key, join_token_id FROM nodes WHERE id = ?').get(id) as
      | { sign_key: string | null; box_key: string | null; join_token_id: string | null }
      | undefined;
    return r?.sign_key && r.box_key ? { signKey: r.sign_key, boxKey: r.box_key, joinTokenId: r.join_token_id ?? undefined } : undefined;
  }

  /** Pins a node's keys (first join only: a pinned key is never replaced here). */
  pinNodeKeys(id: string, signKey: string, boxKey: string, joinTokenId: string | undefined): void {
    this
      .sql(
        'UPDATE nodes SET sign_key = COALESCE(sign_key, ?), box_key = COALESCE(box_key, ?), join_token_id = COALESCE(join_token_id, ?) WHERE id = ?',
      )
      .run(signKey, boxKey, joinTokenId ?? null, id);
  }

  isTokenRevoked(id: string): boolean {
    const r = this.sql('SELECT revoked_at FROM tokens WHERE id = ?').get(id) as { revoked_at: number | null } | undefined;
    return r !== undefined && r.revoked_at !== null;
  }

  // ------------------------------------------------------------ tokens (stored hashed)

  /** A new token; its plain text is returned once and never stored. */
  createToken(kind: TokenKind, opts: { label?: string; projects?: string[] }, now: number): { id: string; token: string } {
    const token = `fdl_${kind === 'join' ? 'j' : 'w'}_${randomBytes(24).toString('base64url')}`;
    const id = this.insertToken(kind, token, opts, now);
    return { id, token };
  }

  /** A token named in the config: created once (idempotent), its scope kept up to date. */
  ensureToken(kind: TokenKind, token: string, opts: { label?: string; projects?: string[] }, now: number): string {
    const existing = this.sql('SELECT id FROM tokens WHERE token_hash = ?').get(hashToken(token)) as
      | { id: string }
      | undefined;
    if (existing) {
      this.sql('UPDATE tokens SET projects_json = ? WHERE id = ?').run(json(opts.projects), existing.id);
      return existing.id;
    }
    return this.insertToken(kind, token, opts, now);
  }

  private insertToken(kind: TokenKind, token: string, opts: { label?: string; projects?: string[] }, now: number): string {
    const id = `t-${randomUUID().slice(0, 8)}`;
    this
      .sql('INSERT INTO tokens (id, kind, token_hash, label, projects_json, created_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(id, kind, hashToken(token), opts.label ?? null, json(opts.projects), now);
    return id;
  }

  /** The live (not revoked) token of this kind with this text. */
  findToken(kind: TokenKind, token: string): StoredToken | undefined {
    const r = this.sql('SELECT * FROM tokens WHERE token_hash = ? AND kind = ? AND revoked_at IS NULL').get(hashToken(token), kind) as
      | TokenRow
      | undefined;
    return r ? toToken(r) : undefined;
  }

  listTokens(): StoredToken[] {
    return (this.sql('SELECT * FROM tokens ORDER BY created_at').all() as TokenRow[]).map(toToken);
  }

  /** Revokes by id or by the token's text; false when there is no such live token. */
  revokeToken(idOrToken: string, now: number): boolean {
    const r = this
      .sql('UPDATE tokens SET revoked_at = ? WHERE (id = ? OR token_hash = ?) AND revoked_at IS NULL')
      .run(now, idOrToken, hashToken(idOrToken));
    return r.changes > 0;
  }

  /** Ids of tokens revoked at or after `since` (the scheduler closes their sessions). */
  revokedSince(since: number): string[] {
    return (this.sql('SELECT id FROM tokens WHERE revoked_at >= ?').all(since) as Array<{ id: string }>).map((r) => r.id);
  }

  // ------------------------------------------------------------ artifacts and jobs

  /**
   * Writes an artifact, its jobs and their locks in one transaction (all of it or nothing), and
   * gives them back as `artifact()` and `jobs()` would read them (made from the very rows written,
   * by the same converters), so the scheduler does not read back every job it has just written
   * (900 rows for an Iterate of 300 rounds).
   */
  createArtifact(input: {
    id: string;
    projectId: string;
    projectToken: string;
    spec: ArtifactSpec;
    policy: RetryPolicy;
    plan: Plan;
    now: number;
    /** The workbench token that submitted it, counted against its quota. */
    submitterTokenId?: string;
    /** The data holders the plan binds, and those of them away at submit. */
    workers?: readonly string[];
    absent?: readonly string[];
  }): { artifact: StoredArtifact; jobs: StoredJob[] } {
    this.statusChanged(input.id);
    const artifact: ArtifactRow = {
      id: input.id,
      project_id: input.projectId,
      project_token: input.projectToken,
      name: input.spec.name ?? null,
      spec_json: JSON.stringify(input.spec),
      policy_json: JSON.stringify(input.policy),
      state: 'SCHEDULED',
      error_json: null,
      result_resource_id: null,
      exits_json: JSON.stringify(input.plan.exits),
      created_at: input.now,
      updated_at: input.now,
      submitter_token_id: input.submitterTokenId ?? null,
      workers_json: json(input.workers),
      absent_json: json(input.absent),
      provenance_json: null,
    };
    const jobs: JobRow[] = input.plan.jobs.map((job) => ({
      id: jobId(input.id, job.index),
      artifact_id: input.id,
      idx: job.index,
      worker: job.worker,
      step_index: job.stepIndex,
      iteration: job.iteration,
      role: job.role,
      operation_json: JSON.stringify(job.operation),
      state: 'WAITING',
      attempt: 0,
      last_error_json: null,
      result_resource_id: null,
      next_attempt_at: null,
      left_out: 0,
      quorum_json: json(job.quorum),
      seal: job.seal ? 1 : 0,
      locks_json: JSON.stringify(job.locks),
      rows: null,
      started_at: null,
      finished_at: null,
    }));
    const insertArtifact = this.sql(
      `INSERT INTO artifacts (id, project_id, project_token, name, spec_json, policy_json, state, exits_json, created_at, updated_at, submitter_token_id,
                              workers_json, absent_json)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const insertJob = this.sql(
      `INSERT INTO jobs (id, artifact_id, idx, worker, step_index, iteration, role, operation_json, state, attempt, quorum_json, seal, locks_json)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.db.transaction(() => {
      const a = artifact;
      insertArtifact.run(a.id, a.project_id, a.project_token, a.name, a.spec_json, a.policy_json, a.state, a.exits_json, a.created_at, a.updated_at, a.submitter_token_id, a.workers_json, a.absent_json);
      for (const j of jobs) {
        insertJob.run(j.id, j.artifact_id, j.idx, j.worker, j.step_index, j.iteration, j.role, j.operation_json, j.state, j.attempt, j.quorum_json, j.seal, j.locks_json);
      }
    });
    return { artifact: toArtifact(artifact), jobs: jobs.map(toJob) };
  }

  artifact(id: string): StoredArtifact | undefined {
    const row = this.sql('SELECT * FROM artifacts WHERE id = ?').get(id) as ArtifactRow | undefined;
    return row ? toArtifact(row) : undefined;
  }

  /** Artifacts a restarted scheduler must resume. */
  unfinishedArtifacts(): StoredArtifact[] {
    const rows = this
      .sql(`SELECT * FROM artifacts WHERE state IN ('SCHEDULED', 'RUNNING') ORDER BY created_at`)
      .all() as ArtifactRow[];
    return rows.map(toArtifact);
  }

  setArtifactState(
    id: string,
    state: ArtifactState,
    now: number,
    extra: { error?: ArtifactStatus['error']; resultResourceId?: string; provenance?: Provenance } = {},
  ): void {
    this.statusChanged(id);
    this
      .sql(
        `UPDATE artifacts SET state = ?, updated_at = ?, error_json = COALESCE(?, error_json),
         result_resource_id = COALESCE(?, result_resource_id), provenance_json = COALESCE(?, provenance_json) WHERE id = ?`,
      )
      .run(state, now, json(extra.error), extra.resultResourceId ?? null, json(extra.provenance), id);
  }

  /** How many artifacts a workbench token has SCHEDULED or RUNNING (its quota). */
  artifactsInFlight(submitterTokenId: string): number {
    const row = this
      .sql(`SELECT COUNT(*) AS n FROM artifacts WHERE submitter_token_id = ? AND state IN ('SCHEDULED', 'RUNNING')`)
      .get(submitterTokenId) as { n: number };
    return row.n;
  }

  /** The newest artifacts first, of the given projects (undefined: of every project). */
  listArtifacts(projects: ReadonlySet<string> | undefined, limit: number): StoredArtifact[] {
    const rows = this
      .sql(
        `SELECT * FROM artifacts WHERE CAST(? AS TEXT) IS NULL OR project_id IN (${this.db.dialect.jsonValues})
         ORDER BY created_at DESC, id LIMIT ?`,
      )
      .all(...Array(2).fill(projects ? JSON.stringify([...projects]) : null), limit) as ArtifactRow[];
    return rows.map(toArtifact);
  }

  /** Jobs done (COMPLETED or left out) and all jobs, of each artifact named (one query over their jobs). */
  progressOf(ids: readonly string[]): Map<string, { completed: number; total: number }> {
    const out = new Map<string, { completed: number; total: number }>();
    if (ids.length === 0) return out;
    const rows = this
      .sql(
        `SELECT artifact_id AS id, COUNT(*) AS total, SUM(CASE WHEN state = 'COMPLETED' OR left_out = 1 THEN 1 ELSE 0 END) AS completed
         FROM jobs WHERE artifact_id IN (${this.db.dialect.jsonValues}) GROUP BY artifact_id`,
      )
      .all(JSON.stringify(ids)) as Array<{ id: string; total: number; completed: number | null }>;
    for (const r of rows) out.set(r.id, { completed: r.completed ?? 0, total: r.total });
    return out;
  }

  /** Each job's `locks` (the indices it unlocks), in job index order: the DAG's edges. */
  locksOf(artifactId: string): number[][] {
    const rows = this.sql('SELECT locks_json FROM jobs WHERE artifact_id = ? ORDER BY idx').all(artifactId) as Array<{ locks_json: string }>;
    return rows.map((r) => JSON.parse(r.locks_json) as number[]);
  }

  /** Ids of finished artifacts whose last change is older than `before`, oldest first. */
  finishedBefore(before: number, limit: number): string[] {
    const rows = this
      .sql(`SELECT id FROM artifacts WHERE state IN (${FINISHED_SQL}) AND updated_at < ? ORDER BY updated_at LIMIT ?`)
      .all(before, limit) as Array<{ id: string }>;
    return rows.map((r) => r.id);
  }

  /**
   * Deletes an artifact's rows (artifact, jobs, resources) in one transaction, then, once that is
   * durable (the next barrier), its resource files. Rows first: a row never points at bytes that
   * are gone, even when a kill loses the uncommitted delete; a crash in between leaves only
   * unreferenced files. False when there was no such artifact.
   */
  deleteArtifact(id: string): boolean {
    this.statusChanged(id);
    const resources = this.sql('SELECT id FROM resources WHERE artifact_id = ?').all(id) as Array<{ id: string }>;
    const deleted = this.db.transaction(() => {
      this.sql('DELETE FROM resource_bytes WHERE id IN (SELECT id FROM resources WHERE artifact_id = ?)').run(id);
      if (this.chunks) this.sql('DELETE FROM resource_chunks WHERE resource_id IN (SELECT id FROM resources WHERE artifact_id = ?)').run(id);
      this.sql('DELETE FROM resources WHERE artifact_id = ?').run(id);
      this.sql('DELETE FROM jobs WHERE artifact_id = ?').run(id);
      return this.sql('DELETE FROM artifacts WHERE id = ?').run(id).changes > 0;
    });
    // Inline bytes and chunks went with their rows.
    if (resources.length > 0) this.afterDurable(() => {
      for (const r of resources) this.blobs.delete(r.id);
    });
    return deleted;
  }

  /** A completed artifact's provenance, by key. */
  provenance(id: string): Provenance | undefined {
    const r = this.sql('SELECT provenance_json FROM artifacts WHERE id = ?').get(id) as { provenance_json: string | null } | undefined;
    return r ? parse<Provenance>(r.provenance_json) : undefined;
  }

  /** What a request about an artifact needs first (scope, state, result): no JSON parsed. */
  artifactHead(id: string): ArtifactHead | undefined {
    const row = this.sql('SELECT id, project_id, state, result_resource_id FROM artifacts WHERE id = ?').get(id) as
      | { id: string; project_id: string; state: ArtifactState; result_resource_id: string | null }
      | undefined;
    return row ? { id: row.id, projectId: row.project_id, state: row.state, resultResourceId: row.result_resource_id ?? undefined } : undefined;
  }

  /** The text of status()'s jobs query, made once (the statement cache is keyed by it). */
  private statusJobsText: string | undefined;
  /**
   * Statuses read since their artifact last changed, deep-frozen and shared by every reader (the
   * codec keeps each one's encoding: protocols/codec.ts). Every write that changes what a status
   * shows drops its artifact's entry (`statusChanged`); oldest first out past the bounds.
   */
  private readonly statuses = new Map<string, ArtifactStatus>();
  private statusJobs = 0;

  /** `id`'s status is no longer what its rows say: read it again next time. */
  private statusChanged(id: string): void {
    const gone = this.statuses.get(id);
    if (!gone) return;
    this.statuses.delete(id);
    this.statusJobs -= gone.jobs.length;
  }

  /**
   * An artifact's status, deep-frozen (copy it to change it), read from its rows the first time
   * after each change and then kept: getStatus is the request a watching workbench (`fdl watch`,
   * the dashboard) sends most, and mostly about an artifact that has not changed since.
   */
  status(id: string): ArtifactStatus | undefined {
    const kept = this.statuses.get(id);
    if (kept) return kept;
    const status = this.readStatus(id);
    if (!status || status.jobs.length > STATUS_CACHE_JOBS) return status;
    deepFreeze(status);
    this.statuses.set(id, status);
    this.statusJobs += status.jobs.length;
    for (const [oldest, s] of this.statuses) {
      if (this.statuses.size <= STATUS_CACHE_ENTRIES && this.statusJobs <= STATUS_CACHE_JOBS) break;
      this.statuses.delete(oldest);
      this.statusJobs -= s.jobs.length;
    }
    return status;
  }

  /**
   * An artifact's status straight from its rows, reading only the columns a status shows (not
   * the artifact's spec, nor each job's operation beyond its kind).
   */
  private readStatus(id: string): ArtifactStatus | undefined {
    const a = this.sql(
      'SELECT id, project_id, name, state, error_json, result_resource_id, provenance_json, created_at, updated_at FROM artifacts WHERE id = ?',
    ).get(id) as
      | Pick<
          ArtifactRow,
          'id' | 'project_id' | 'name' | 'state' | 'error_json' | 'result_resource_id' | 'provenance_json' | 'created_at' | 'updated_at'
        >
      | undefined;
    if (!a) return undefined;
    // The jobs as one JSON array of tuples, built by the database: the binding makes a value of
    // each column of each row it returns (13 per job: most of the read's time), JSON.parse one.
    this.statusJobsText ??= `SELECT ${this.db.dialect.jsonArrayAgg(
      ['id', 'idx', 'worker', 'step_index', 'iteration', this.db.dialect.jsonField('operation_json', 'kind'), 'state', 'attempt', 'last_error_json', 'next_attempt_at', 'left_out', 'started_at', 'finished_at'],
      'idx',
    )} FROM jobs WHERE artifact_id = ?`;
    const tuples = this.sql(this.statusJobsText).value<string>(id);
    const rows = JSON.parse(tuples ?? '[]') as JobStatusTuple[];
    let completed = 0;
    const jobs = rows.map(([jobId, idx, worker, stepIndex, iteration, kind, state, attempt, lastError, nextAttemptAt, leftOut, startedAt, finishedAt]) => {
      if (state === 'COMPLETED' || leftOut === 1) completed++;
      const j: JobStatus = { id: jobId, index: idx, worker, stepIndex, iteration, operation: kind, state, attempt };
      if (lastError !== null) j.lastError = JSON.parse(lastError) as WireError;
      if (nextAttemptAt !== null && state === 'FAILED') j.nextAttemptAt = nextAttemptAt;
      if (leftOut === 1) j.leftOut = true;
      if (startedAt !== null) j.startedAt = startedAt;
      if (finishedAt !== null) j.finishedAt = finishedAt;
      return j;
    });
    // Left-out jobs (quorum) count as done, as in the pushed events.
    const status: ArtifactStatus = {
      id: a.id,
      projectId: a.project_id,
      state: a.state,
      progress: { completed, total: rows.length },
      jobs,
      createdAt: a.created_at,
      updatedAt: a.updated_at,
    };
    if (a.name !== null) status.name = a.name;
    const error = parse<ArtifactStatus['error']>(a.error_json);
    if (error) status.error = error;
    if (a.result_resource_id !== null) status.resultResourceId = a.result_resource_id;
    const provenance = parse<Provenance>(a.provenance_json);
    if (provenance) status.provenance = provenance;
    return status;
  }

  /** One job by key (the hot path never reads a whole artifact to find one job). */
  job(artifactId: string, index: number): StoredJob | undefined {
    const row = this.sql('SELECT * FROM jobs WHERE artifact_id = ? AND idx = ?').get(artifactId, index) as JobRow | undefined;
    return row ? toJob(row) : undefined;
  }

  /** Every job of an artifact, in index order: for a supervisor loading its DAG and for a full status. */
  jobs(artifactId: string): StoredJob[] {
    const rows = this.sql('SELECT * FROM jobs WHERE artifact_id = ? ORDER BY idx').all(artifactId) as JobRow[];
    return rows.map(toJob);
  }

  updateJob(id: string, change: JobChange): void {
    // A job's id is its artifact's id, a dot, its index (jobId).
    this.statusChanged(id.slice(0, id.lastIndexOf('.')));
    this
      .sql(
        `UPDATE jobs SET state = ?, attempt = COALESCE(?, attempt), last_error_json = COALESCE(?, last_error_json),
         result_resource_id = CASE WHEN ? = 1 THEN NULL ELSE COALESCE(?, result_resource_id) END,
         next_attempt_at = ?, left_out = COALESCE(?, left_out), rows = COALESCE(?, rows),
         started_at = COALESCE(?, started_at), finished_at = CASE WHEN CAST(? AS BIGINT) IS NOT NULL AND CAST(? AS BIGINT) IS NULL THEN NULL ELSE COALESCE(?, finished_at) END
         WHERE id = ?`,
      )
      .run(
        change.state,
        change.attempt ?? null,
        json(change.lastError),
        change.clearResult ? 1 : 0,
        change.resultResourceId ?? null,
        change.nextAttemptAt ?? null,
        change.leftOut === undefined ? null : change.leftOut ? 1 : 0,
        change.rows ?? null,
        change.startedAt ?? null,
        change.startedAt ?? null,
        change.finishedAt ?? null,
        change.finishedAt ?? null,
        id,
      );
  }

  // ------------------------------------------------------------ resources

  /**
   * Bytes first (durable: fsynced file and folder), row second: a committed row always points at
   * complete bytes, even after a power cut. A failure of either throws STORE_WRITE_FAILED with
   * its cause; bytes whose row could not be written are removed.
   */
  putResource(meta: Omit<ResourceRef, 'id' | 'size'> & { artifactId: string }, bytes: Uint8Array, now: number): ResourceRef {
    const id = `r-${timeOrderedUuid()}`;
    // Small bytes are a column of their own row, one INSERT (the group commit makes it durable
    // before anyone hears of it); large ones are a file, durable before the row is written. On
    // PostgreSQL large ones are chunk rows, in one transaction with their row.
    const inline = (this.chunks !== undefined || this.blobs.isOnDisk) && bytes.byteLength <= this.inlineResourceMaxBytes;
    const file = !inline && !this.chunks;
    const location = inline ? ROW_LOCATION : this.chunks ? CHUNKS_LOCATION : this.blobs.put(id, bytes);
    const insertRow = () =>
      this.sql(
        `INSERT INTO resources (id, artifact_id, job_id, producer, size, sha256, location, created_at, bytes)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(id, meta.artifactId, meta.jobId, meta.producer, bytes.byteLength, meta.sha256, location, now, inline ? bytes : null);
    try {
      if (this.chunks && !inline) {
        const chunks = this.chunks;
        this.db.transaction(() => {
          chunks.putBytes(id, bytes);
          insertRow();
        });
      } else insertRow();
    } catch (e) {
      try {
        if (file) this.blobs.delete(id);
      } catch {
        // An orphan file is harmless (no row points at it); the cause below is what matters.
      }
      throw new FdlError('STORE_WRITE_FAILED', `resource ${id} could not be written: ${(e as Error).message}`, { cause: e });
    }
    return { id, jobId: meta.jobId, producer: meta.producer, size: bytes.byteLength, sha256: meta.sha256 };
  }

  /**
   * A streamed product's bytes (a complete, checked, fsynced file) as a resource: the file is
   * moved into the store (copied when `how` is 'copy': the initiator passing an input on), then
   * the row is written. Failures are STORE_WRITE_FAILED, as for putResource.
   */
  putResourceFile(
    meta: Omit<ResourceRef, 'id'> & { artifactId: string },
    path: string,
    how: 'move' | 'copy',
    now: number,
  ): ResourceRef {
    const id = `r-${timeOrderedUuid()}`;
    if (this.chunks) return this.putResourceChunks(id, meta, path, how, now);
    const location = this.blobs.adopt(id, path, how);
    try {
      this.sql(
        `INSERT INTO resources (id, artifact_id, job_id, producer, size, sha256, location, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(id, meta.artifactId, meta.jobId, meta.producer, meta.size, meta.sha256, location, now);
    } catch (e) {
      this.blobs.delete(id);
      throw new FdlError('STORE_WRITE_FAILED', `resource ${id} could not be written: ${(e as Error).message}`, { cause: e });
    }
    return { id, jobId: meta.jobId, producer: meta.producer, size: meta.size, sha256: meta.sha256 };
  }

  /** putResourceFile on PostgreSQL: the file becomes chunk rows, in one transaction with its row. */
  private putResourceChunks(
    id: string,
    meta: Omit<ResourceRef, 'id'> & { artifactId: string },
    path: string,
    how: 'move' | 'copy',
    now: number,
  ): ResourceRef {
    const chunks = this.chunks as ResourceChunks;
    try {
      this.db.transaction(() => {
        const size = chunks.putFile(id, path);
        if (size !== meta.size) throw new Error(`the file has ${size} bytes, not ${meta.size}`);
        this.sql(
          `INSERT INTO resources (id, artifact_id, job_id, producer, size, sha256, location, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(id, meta.artifactId, meta.jobId, meta.producer, meta.size, meta.sha256, CHUNKS_LOCATION, now);
      });
    } catch (e) {
      throw new FdlError('STORE_WRITE_FAILED', `resource ${id} could not be written: ${(e as Error).message}`, { cause: e });
    }
    if (how === 'move') rmSync(path, { force: true });
    return { id, jobId: meta.jobId, producer: meta.producer, size: meta.size, sha256: meta.sha256 };
  }

  /**
   * Where a resource's bytes are, for a streamed reader: a file (read in chunks, checked whole by
   * its receiver), or the bytes themselves when they are a row or the store is in memory
   * (checked here against their sha256).
   */
  resourceBody(id: string): { ref: ResourceRef & { artifactId: string }; file?: string; bytes?: Uint8Array } | undefined {
    const row = this.resourceRow(id);
    if (!row) return undefined;
    if (row.location === CHUNKS_LOCATION) return { ref: toResourceRef(row), file: this.chunkFile(row) };
    const file = row.location === INLINE_LOCATION || row.location === ROW_LOCATION ? undefined : this.blobs.fileOf(id);
    if (file) return { ref: toResourceRef(row), file };
    return this.bytesOf(row);
  }

  resource(id: string): (ResourceRef & { artifactId: string }) | undefined {
    const row = this.resourceRow(id);
    return row ? toResourceRef(row) : undefined;
  }

  readResource(id: string): { ref: ResourceRef & { artifactId: string }; bytes: Uint8Array } | undefined {
    // One read for the row and its bytes when they are in it (the common case: a small product).
    const row = this.sql('SELECT id, artifact_id, job_id, producer, size, sha256, location, bytes FROM resources WHERE id = ?').get(id) as
      | ResourceRow
      | undefined;
    return row ? this.bytesOf(row) : undefined;
  }

  /** A resource's bytes, whole, checked against its sha256 (a row's, a file's, or the in-memory store's). */
  private bytesOf(row: ResourceRow): { ref: ResourceRef & { artifactId: string }; bytes: Uint8Array } {
    const { id } = row;
    if (row.location === ROW_LOCATION) {
      const bytes = row.bytes === undefined ? (this.sql('SELECT bytes FROM resources WHERE id = ?').value<Uint8Array | null>(id) ?? undefined) : row.bytes;
      return { ref: toResourceRef(row), bytes: checkedBytes(id, bytes ?? undefined, row.sha256) };
    }
    if (row.location === CHUNKS_LOCATION) this.chunkFile(row);
    if (row.location !== INLINE_LOCATION) return { ref: toResourceRef(row), bytes: this.blobs.get(id, row.sha256) };
    const inline = this.sql('SELECT bytes FROM resource_bytes WHERE id = ?').get(id) as { bytes: Buffer } | undefined;
    return { ref: toResourceRef(row), bytes: checkedBytes(id, inline?.bytes, row.sha256) };
  }

  /** A chunked resource as its local cache file, assembled and checked against its sha256 when first read. */
  private chunkFile(row: ResourceRow): string {
    return (this.chunks as ResourceChunks).toFile(row.id, this.blobs.fileOf(row.id) as string, row.sha256, row.size);
  }

  private resourceRow(id: string): ResourceRow | undefined {
    return this.sql('SELECT id, artifact_id, job_id, producer, size, sha256, location FROM resources WHERE id = ?').get(id) as
      | ResourceRow
      | undefined;
  }

}

/** A change to a job row. `nextAttemptAt` is cleared unless given (it only means something while FAILED). */
export interface JobChange {
  state: JobState;
  attempt?: number;
  lastError?: WireError;
  resultResourceId?: string;
  clearResult?: boolean;
  nextAttemptAt?: number;
  leftOut?: boolean;
  /** Rows of its node's data the completed attempt read (its report's `rows`). */
  rows?: number;
  /**
   * An attempt started running: its start, and the job's `finishedAt` is cleared, unless this
   * change also ends it (a short attempt reported without `jobStarted`: both at once).
   */
  startedAt?: number;
  /** The job stopped now (COMPLETED, FAILED, ERROR). */
  finishedAt?: number;
}

export function jobId(artifactId: string, index: number): string {
  return `${artifactId}.${index}`;
}

/** An artifact's identity, scope and outcome, for the checks a request makes before anything else. */
export interface ArtifactHead {
  id: string;
  projectId: string;
  state: ArtifactState;
  resultResourceId: string | undefined;
}

/** A job as `Store.status` reads it: id, idx, worker, step_index, iteration, the operation's kind, state, attempt, last_error_json, next_attempt_at, left_out, started_at, finished_at. */
type JobStatusTuple = [
  string,
  number,
  string,
  number,
  number,
  JobStatus['operation'],
  JobState,
  number,
  string | null,
  number | null,
  number,
  number | null,
  number | null,
];

interface NodeRow {
  id: string;
  name: string;
  role: 'scheduler' | 'worker';
  last_seen: number;
  projects_json: string;
  sign_key: string | null;
  box_key: string | null;
}

interface ResourceRow {
  id: string;
  artifact_id: string;
  job_id: string;
  producer: string;
  size: number;
  sha256: string;
  location: string;
  /** Read only where asked for (readResource): the bytes of a resource kept in its row. */
  bytes?: Uint8Array | null;
}

function toResourceRef(row: ResourceRow): ResourceRef & { artifactId: string } {
  return { id: row.id, artifactId: row.artifact_id, jobId: row.job_id, producer: row.producer, size: row.size, sha256: row.sha256 };
}

interface TokenRow {
  id: string;
  kind: TokenKind;
  label: string | null;
  projects_json: string | null;
  created_at: number;
  revoked_at: number | null;
}

function toToken(r: TokenRow): StoredToken {
  return {
    id: r.id,
    kind: r.kind,
    label: r.label ?? undefined,
    projects: parse<string[]>(r.projects_json),
    createdAt: r.created_at,
    revokedAt: r.revoked_at ?? undefined,
  };
}

function toJob(r: JobRow): StoredJob {
  return {
    id: r.id,
    artifactId: r.artifact_id,
    index: r.idx,
    worker: r.worker,
    stepIndex: r.step_index,
    iteration: r.iteration,
    role: r.role,
    operation: JSON.parse(r.operation_json) as Operation,
    state: r.state,
    attempt: r.attempt,
    lastError: parse<WireError>(r.last_error_json),
    resultResourceId: r.result_resource_id ?? undefined,
    nextAttemptAt: r.next_attempt_at ?? undefined,
    leftOut: r.left_out === 1,
    quorum: parse<{ group: string; required: number }>(r.quorum_json),
    seal: r.seal === 1,
    locks: JSON.parse(r.locks_json) as number[],
    ...(r.rows === null ? {} : { rows: r.rows }),
    ...(r.started_at === null ? {} : { startedAt: r.started_at }),
    ...(r.finished_at === null ? {} : { finishedAt: r.finished_at }),
  };
}

function toArtifact(r: ArtifactRow): StoredArtifact {
  return {
    id: r.id,
    projectId: r.project_id,
    projectToken: r.project_token,
    name: r.name ?? undefined,
    spec: JSON.parse(r.spec_json) as ArtifactSpec,
    policy: JSON.parse(r.policy_json) as RetryPolicy,
    state: r.state,
    error: parse<ArtifactStatus['error']>(r.error_json),
    resultResourceId: r.result_resource_id ?? undefined,
    exits: JSON.parse(r.exits_json) as number[],
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    submitterTokenId: r.submitter_token_id ?? undefined,
    workers: parse<string[]>(r.workers_json),
    absent: parse<string[]>(r.absent_json) ?? [],
    provenance: parse<Provenance>(r.provenance_json),
  };
}

export function jobStatus(j: StoredJob): JobStatus {
  const s: JobStatus = {
    id: j.id,
    index: j.index,
    worker: j.worker,
    stepIndex: j.stepIndex,
    iteration: j.iteration,
    operation: j.operation.kind,
    state: j.state,
    attempt: j.attempt,
  };
  if (j.lastError) s.lastError = j.lastError;
  if (j.nextAttemptAt !== undefined && j.state === 'FAILED') s.nextAttemptAt = j.nextAttemptAt;
  if (j.leftOut) s.leftOut = true;
  if (j.startedAt !== undefined) s.startedAt = j.startedAt;
  if (j.finishedAt !== undefined) s.finishedAt = j.finishedAt;
  return s;
}
