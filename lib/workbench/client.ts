import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { decodeValue } from '../../protocols/codec.ts';
import {
  type ArtifactSpecInput,
  ArtifactSpecSchema,
  type ArtifactStatus,
  type ArtifactSummary,
  Features,
  type NodeInfo,
  type ProjectInfo,
  type Provenance,
  type Query,
  type Step,
} from '../../protocols/entities.ts';
import { formatPath } from '../../protocols/errors.ts';
import type { ArtifactEventItem, Message, MessageOf, MessageType } from '../../protocols/messages.ts';
import { PROTOCOL_VERSION } from '../../protocols/version.ts';
import { FdlError } from '../errors.ts';
import { Client } from '../transport/client.ts';
import { type Downloaded, Downloads } from '../transport/downloads.ts';
import { DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_SUBMIT_TIMEOUT_MS } from '../transport/defaults.ts';
import { Requester } from '../transport/requester.ts';
import { checkArg } from './args.ts';
import { estimators } from './builders.ts';

/**
 * One transition of an artifact or of one of its jobs, as a handle emits it. On the wire a push
 * carries several (`artifactEvent.events`, protocol 6); the handle emits them one by one, in order,
 * each with the push's `progress`.
 */
export type ArtifactEvent = Omit<MessageOf<'artifactEvent'>, 'events'> & { event: ArtifactEventItem };
/** A decoded result with the provenance the scheduler gave it (absent from a scheduler that gives none). */
export type WithProvenance<T> = T & { readonly provenance?: Provenance };

/** A result as downloaded: the decoded value, its provenance, the sha256 of its bytes. */
export interface ResultWithProvenance<T = unknown> {
  value: T;
  provenance: Provenance | undefined;
  sha256: string;
}
export type ProjectSummary = Omit<ProjectInfo, 'features'>;

const TERMINAL = new Set(['COMPLETED', 'ERROR', 'CANCELLED']);
/**
 * Events a handle keeps for its first 'event' listener (the newest, when more came first): a
 * listener attached right after `submit` resolves still sees the events read before it could be.
 */
export const HANDLE_EARLY_EVENTS = 1_000;
const DISCONNECTED = 'the connection to the scheduler closed';
const NOT_CONNECTED = 'not connected to the scheduler';

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new FdlError('INTERNAL', message)), ms);
    t.unref();
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/**
 * A submitted artifact, followed by the events the scheduler pushes (no polling).
 * Emits 'event' (ArtifactEvent) for every job or artifact state change. Events that arrive before
 * the first 'event' listener is attached are kept (up to HANDLE_EARLY_EVENTS, the newest) and
 * given to it, in order, right after it is attached; later listeners get the events from then on.
 * `status` is the live view, current as events are applied: each event replaces its job's entry
 * in `status.jobs` (an entry is never edited, the array is).
 */
export class ArtifactHandle extends EventEmitter<{ event: [ArtifactEvent] }> {
  /** Events for the first 'event' listener, until it is attached (then undefined for good). */
  private early: ArtifactEvent[] | undefined = [];
  /** Where each job is in `status.jobs`, for the array `indexed` (a new status means a new index). */
  private readonly jobAt = new Map<string, number>();
  private indexed: ArtifactStatus['jobs'] | undefined;
  private settled: Promise<ArtifactStatus>;
  private resolveSettled!: (s: ArtifactStatus) => void;
  /** Someone awaits `result()`: the COMPLETED event starts the download (see `push`). */
  private awaitingResult = false;
  /** The download started with the final status's request, for the `result()` that awaits it. */
  private download: Promise<unknown> | undefined;

  constructor(
    private readonly wb: Workbench,
    public status: ArtifactStatus,
  ) {
    super();
    this.settled = new Promise((resolve) => {
      this.resolveSettled = resolve;
    });
    if (TERMINAL.has(status.state)) this.resolveSettled(status);
    // 'newListener' comes before the listener is added: the early events follow once it is.
    (this as EventEmitter).on('newListener', (name: string | symbol) => {
      if (name === 'event' && this.early) queueMicrotask(() => this.replay());
    });
  }

  get id(): string {
    return this.status.id;
  }

  /** @internal A push from the scheduler: its transitions, one by one. */
  pushAll(m: MessageOf<'artifactEvent'>): void {
    for (const event of m.events) this.push({ type: 'artifactEvent', artifactId: m.artifactId, progress: m.progress, event });
  }

  /** @internal */
  push(event: ArtifactEvent): void {
    this.status = { ...this.status, progress: event.progress };
    const e = event.event;
    if (e.kind === 'jobState') {
      // Keep the per-job view current, so a script can look at `status.jobs` at any time: the
      // job's entry found by its id in O(1) (an Iterate of 300 rounds has ~900 jobs).
      const jobs = this.status.jobs;
      const at = this.jobIndex(e.jobId);
      const j = at === undefined ? undefined : jobs[at];
      if (at !== undefined && j) {
        const next = { ...j, state: e.state, attempt: e.attempt };
        if (e.error) next.lastError = e.error;
        if (e.leftOut) next.leftOut = true;
        // As the store keeps it: a FAILED job's next attempt, cleared by any other transition.
        if (e.nextAttemptAt === undefined) delete next.nextAttemptAt;
        else next.nextAttemptAt = e.nextAttemptAt;
        if (e.startedAt !== undefined) next.startedAt = e.startedAt;
        if (e.finishedAt === undefined) delete next.finishedAt;
        else next.finishedAt = e.finishedAt;
        jobs[at] = next;
      }
    }
    this.emitEvent(event);
    if (e.kind === 'artifactState') {
      this.status = { ...this.status, state: e.state };
      if (TERMINAL.has(e.state)) {
        if (this.awaitingResult) this.startDownload();
        if (e.updatedAt !== undefined) {
          // The final status: its jobs as the pushes before left them, its own fields from this event.
          const final: ArtifactStatus = { ...this.status, updatedAt: e.updatedAt };
          if (e.error) final.error = e.error;
          if (e.resultResourceId) final.resultResourceId = e.resultResourceId;
          if (e.provenance) final.provenance = e.provenance;
          this.status = final;
          this.resolveSettled(final);
          return;
        }
        void this.wb.status(this.id).then(
          (s) => {
            this.status = s;
            this.resolveSettled(s);
          },
          () => this.resolveSettled(this.status),
        );
      }
    }
  }

  /** The position of a job in `status.jobs`; the index is built again when the status is replaced. */
  private jobIndex(jobId: string): number | undefined {
    const jobs = this.status.jobs;
    if (this.indexed !== jobs) {
      this.jobAt.clear();
      for (let i = 0; i < jobs.length; i++) this.jobAt.set((jobs[i] as ArtifactStatus['jobs'][number]).id, i);
      this.indexed = jobs;
    }
    return this.jobAt.get(jobId);
  }

  /** Emits, or keeps the event for the first listener while there is none. */
  private emitEvent(event: ArtifactEvent): void {
    if (this.early) {
      if (this.listenerCount('event') === 0) {
        this.early.push(event);
        // Amortized: the oldest are dropped in one splice once twice the bound is reached.
        if (this.early.length >= 2 * HANDLE_EARLY_EVENTS) this.early.splice(0, this.early.length - HANDLE_EARLY_EVENTS);
        return;
      }
      // A listener was attached in this same turn, its replay not yet run: what came first goes first.
      this.replay();
    }
    this.emit('event', event);
  }

  /** Gives the kept events to the listeners attached since, once; from then on events go straight out. */
  private replay(): void {
    const early = this.early;
    if (!early || this.listenerCount('event') === 0) return; // none attached, or removed already
    this.early = undefined;
    for (const e of early.slice(-HANDLE_EARLY_EVENTS)) this.emit('event', e);
  }

  /** @internal A status fetched after a reconnection or a cancel: emit what changed. */
  catchUp(status: ArtifactStatus): void {
    const changed = status.state !== this.status.state;
    this.status = status;
    if (changed) {
      const event: ArtifactEventItem = { kind: 'artifactState', state: status.state };
      if (TERMINAL.has(status.state)) {
        // Fetched just now: final, so nothing to ask for again.
        event.updatedAt = status.updatedAt;
        if (status.error) event.error = status.error;
        if (status.resultResourceId) event.resultResourceId = status.resultResourceId;
        if (status.provenance) event.provenance = status.provenance;
      }
      this.push({ type: 'artifactEvent', artifactId: this.id, progress: status.progress, event });
    }
  }

  cancel(): Promise<ArtifactStatus> {
    return this.wb.cancel(this.id);
  }

  /** Resolves with the final status when COMPLETED; rejects with the cause on ERROR or CANCELLED. */
  async done(): Promise<ArtifactStatus> {
    const s = await this.settled;
    if (s.state === 'COMPLETED') return s;
    const e = s.error;
    const where = e ? ` (job ${e.jobId ?? '?'} on ${e.worker ?? '?'})` : '';
    throw new FdlError(e?.error.code ?? 'INTERNAL', `artifact ${s.id} ended ${s.state}${where}: ${e?.error.message ?? ''}`);
  }

  /**
   * Waits for completion, then downloads and decodes the result; its `provenance` (what it
   * covers: workers, rows, left-out jobs, seeds, hashes, software) is a non-enumerable property
   * of the result object (`result.provenance`), so the value compares and prints as before.
   */
  async result<T = unknown>(): Promise<WithProvenance<T>> {
    this.awaitingResult = true;
    this.startDownload();
    await this.done();
    const early = this.download;
    this.download = undefined; // each caller gets a value of its own
    return (await (early ?? this.wb.result(this.id))) as WithProvenance<T>;
  }

  /**
   * Once COMPLETED was pushed, the result is asked for with the final status, not after its
   * reply: one round trip to the result where there were two.
   */
  private startDownload(): void {
    if (this.status.state !== 'COMPLETED' || this.download) return;
    this.download = this.wb.result(this.id);
    this.download.catch(() => {}); // its failure is result()'s to report
  }

  /** What the result covers, once COMPLETED (the status's `provenance`). */
  get provenance(): Provenance | undefined {
    return this.status.provenance;
  }
}

/** A project opened by its token: its aggregated data, and shortcuts to the estimators. */
export class Project {
  constructor(
    private readonly wb: Workbench,
    readonly token: string,
    readonly info: ProjectInfo,
  ) {}

  /** Names of the numeric features, in the order the metadata lists them. */
  numericFeatures(): string[] {
    return this.info.features.filter((f) => f.dtype === 'numeric').map((f) => f.name);
  }

  submit(stepsOrSpec: Step[] | ArtifactSpecInput): Promise<ArtifactHandle> {
    return this.wb.submit(this.token, Array.isArray(stepsOrSpec) ? { steps: stepsOrSpec } : stepsOrSpec);
  }

  /** Async so that a refused argument (the builders check them: a filter given as the query...) is a rejection. */
  async count(query?: Query): Promise<ArtifactHandle> {
    return this.submit({ name: 'count', steps: [estimators.count(query)] });
  }

  async mean(features: string[] = this.numericFeatures(), query?: Query): Promise<ArtifactHandle> {
    return this.submit({ name: 'mean', steps: [estimators.mean(features, query)] });
  }

  /** Group counts over features with a known, small set of values (see the project's metadata). */
  async groupCount(by: string[], query?: Query): Promise<ArtifactHandle> {
    checkArg('groupCount', 'by', Features, by);
    const domain = by.map((name) => {
      const f = this.info.features.find((x) => x.name === name);
      if (!f) throw new FdlError('BAD_QUERY', `the project has no feature "${name}"`);
      if (!f.categories) {
        throw new FdlError('BAD_QUERY', `feature "${name}" has too many distinct values to group by`);
      }
      return f.categories;
    });
    return this.submit({ name: 'groupCount', steps: [estimators.groupCount(by, domain, query)] });
  }
}

export interface ConnectOptions {
  /** The workbench token given by the scheduler's operator (`fdl tokens create --kind workbench`). */
  token: string;
  /** A CA certificate (PEM) to trust for wss:// (a self-signed scheduler). */
  ca?: string | Buffer;
  name?: string;
  /** Dial again when the connection drops (default true): requests wait, artifacts are followed again. */
  reconnect?: boolean;
  /** Bound on each request's wait for its reply. */
  requestTimeoutMs?: number;
  /**
   * Told when the session is lost (false) and when it is back, welcomed again (true): e.g. to
   * give up after a while without the scheduler (`fdl submit --wait --timeout`).
   */
  onConnectionChange?: (connected: boolean) => void;
}

/** The researcher's connection to a scheduler. */
export class Workbench {
  private readonly requester = new Requester();
  private readonly handles = new Map<string, ArtifactHandle>();
  private client!: Client;
  private welcomes = 0;
  private isReady = false;
  private ready: Promise<void> = Promise.resolve();
  private markReady: (() => void) | undefined;
  private sessionError: FdlError | undefined;
  private closing = false;
  /** Streamed results being received (chunks are written as they are read). */
  private downloads: Downloads | undefined;
  /** A folder of this process for streamed results that `result()` decodes (removed by `close`). */
  private scratch: string | undefined;

  private constructor(
    /** The schedulers this workbench dials in turn: one, or an active one and its standby. */
    readonly urls: readonly string[],
    private readonly opts: ConnectOptions,
  ) {}

  /**
   * `url`: one scheduler, or several (an active one and its standby, docs/DEPLOY.md): a refused
   * dial or a lost connection moves on to the next, so the workbench follows a failover.
   */
  static async connect(url: string | readonly string[], opts: ConnectOptions): Promise<Workbench> {
    const urls = typeof url === 'string' ? [url] : url;
    const wb = new Workbench(urls, opts);
    await wb.open();
    return wb;
  }

  private async open(): Promise<void> {
    let firstWelcome!: () => void;
    let refuse!: (e: Error) => void;
    const welcomed = new Promise<void>((resolve, reject) => {
      firstWelcome = resolve;
      refuse = reject;
    });
    this.newReadyPromise();
    this.client = new Client({
      urls: this.urls,
      reconnect: this.opts.reconnect ?? true,
      failFirstDial: true,
      ...(this.opts.ca ? { ca: typeof this.opts.ca === 'string' ? Buffer.from(this.opts.ca) : this.opts.ca } : {}),
      onOpen: () => {
        // The scheduler speaks first (a challenge); the hello answers it.
      },
      onMessage: (m) => {
        if (m.type === 'challenge') {
          const hello: MessageOf<'workbenchHello'> = { type: 'workbenchHello', protocolVersion: PROTOCOL_VERSION, token: this.opts.token };
          if (this.opts.name) hello.name = this.opts.name;
          this.client.send(hello);
        } else if (this.downloads?.onMessage(m) || m.type === 'resourceChunk') {
          // A result download's reply or chunk, written as it is read (a stray chunk is dropped).
        } else if (m.type === 'welcome') {
          this.client.established();
          this.downloads?.reconnected();
          const again = this.welcomes++ > 0;
          this.sessionError = undefined;
          this.markReady?.();
          firstWelcome();
          if (again) {
            this.opts.onConnectionChange?.(true);
            void this.resubscribe();
          }
        } else if (m.type === 'artifactEvent') this.handles.get(m.artifactId)?.pushAll(m);
        else if (m.type === 'status') {
          // Applied as it is read, like the acceptance below: events that follow it in the same
          // read are newer, and a continuation applying this snapshot after them would undo them.
          this.handles.get(m.status.id)?.catchUp(m.status);
          this.requester.settle(m);
        } else if (m.type === 'artifactAccepted') {
          // The handle exists before the next frame is read: the scheduler may send the
          // artifact's first events right behind its acceptance, in the same read from the socket,
          // and they are dispatched before any promise continuation (submit's) could run.
          const fresh = !this.handles.has(m.status.id);
          if (fresh) this.handles.set(m.status.id, new ArtifactHandle(this, m.status));
          if (!this.requester.settle(m) && fresh) this.handles.delete(m.status.id);
        }
        else if (!this.requester.settle(m) && m.type === 'error') {
          // An error about the session itself (a refused hello, a revoked token): say it on every later request.
          this.sessionError = new FdlError(m.error.code, m.error.message);
          // Dialing again with a refused token would only be refused again.
          if (m.error.code === 'AUTH_FAILED') this.client.close();
          refuse(this.sessionError);
        }
      },
      onClose: () => {
        if (this.welcomes > 0 && !this.closing) this.opts.onConnectionChange?.(false);
        this.newReadyPromise();
        this.requester.failAll(DISCONNECTED);
        if (!(this.opts.reconnect ?? true)) this.sessionError ??= new FdlError('INTERNAL', DISCONNECTED);
        refuse(new Error('the scheduler closed the connection'));
      },
    });
    await this.client.start();
    await welcomed;
  }

  /** The scheduler of the open connection (else the one dialed next). */
  get url(): string {
    return this.client.url;
  }

  private newReadyPromise(): void {
    if (this.markReady && this.isReady === false) return;
    this.isReady = false;
    this.ready = new Promise<void>((resolve) => {
      this.markReady = () => {
        this.isReady = true;
        resolve();
      };
    });
  }

  /** After a reconnection: follow every unfinished artifact again, and catch up on what was missed. */
  private async resubscribe(): Promise<void> {
    for (const handle of this.handles.values()) {
      if (TERMINAL.has(handle.status.state)) continue;
      try {
        // The reply's status reaches the handle as it is read (see onMessage).
        await this.ask((reqId) => ({ type: 'subscribe', reqId, artifactId: handle.id }), 'status');
      } catch {
        // the next reconnection tries again
      }
    }
  }

  /** Idempotent requests wait out a reconnection and are sent again; a submit is never sent twice. */
  private async ask<K extends MessageType>(
    build: (reqId: number) => Message,
    expect: K,
    idempotent = true,
    timeoutMs = this.opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
  ): Promise<MessageOf<K>> {
    const deadline = Date.now() + timeoutMs;
    const reconnect = this.opts.reconnect ?? true;
    for (;;) {
      // A session error that another dial may cure (RATE_LIMITED, TOO_MANY_CONNECTIONS) is waited
      // out like any lost connection, and named if the wait runs out; the others are said at once.
      const cured = reconnect && this.sessionError?.retryable === true;
      if (this.sessionError && (this.sessionError.code === 'AUTH_FAILED' || (!this.isReady && !cured))) throw this.sessionError;
      if (!this.isReady) {
        const why = this.sessionError ? ` (${this.sessionError.message})` : '';
        await withTimeout(this.ready, Math.max(0, deadline - Date.now()), `no connection to ${this.urls.join(', ')}${why}`);
      }
      try {
        const reply = await this.requester.request(build, (m) => this.client.send(m), Math.max(1, deadline - Date.now()));
        if (reply.type !== expect) throw new FdlError('INTERNAL', `expected ${expect}, got ${reply.type}`);
        return reply as never;
      } catch (e) {
        const notSent = e instanceof Error && e.message === NOT_CONNECTED;
        const lost = notSent || (e instanceof Error && e.message === DISCONNECTED);
        // The socket is closing (the scheduler sent its close frame, or our heartbeat cut it) and its
        // close event is not in yet. Wait for the next welcome: asking again at once would loop on
        // promise continuations alone, never giving the event loop the close it waits for, until
        // the deadline (the process frozen meanwhile, then "not connected").
        if (notSent && this.isReady) this.newReadyPromise();
        if (!lost || !idempotent || !reconnect || Date.now() >= deadline) {
          if (notSent && !idempotent) throw new FdlError('INTERNAL', `${NOT_CONNECTED} (the connection is closing); the request was not sent`);
          throw e;
        }
      }
    }
  }

  async nodes(): Promise<NodeInfo[]> {
    return (await this.ask((reqId) => ({ type: 'listNodes', reqId }), 'nodeList')).nodes;
  }

  async projects(): Promise<ProjectSummary[]> {
    return (await this.ask((reqId) => ({ type: 'listProjects', reqId }), 'projectList')).projects;
  }

  async project(token: string): Promise<Project> {
    const { project } = await this.ask((reqId) => ({ type: 'getProject', reqId, projectToken: token }), 'project');
    return new Project(this, token, project);
  }

  /** Checks the artifact here first (same schema as the scheduler), then submits it. */
  async submit(projectToken: string, spec: ArtifactSpecInput): Promise<ArtifactHandle> {
    const parsed = ArtifactSpecSchema.safeParse(spec);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const path = issue ? formatPath(issue.path) : '';
      throw new FdlError('INVALID_ARTIFACT', `${path ? `${path}: ` : ''}${issue?.message ?? 'invalid artifact'}`, { path });
    }
    const { status } = await this.ask(
      (reqId) => ({ type: 'submitArtifact', reqId, projectToken, artifact: parsed.data }),
      'artifactAccepted',
      false,
      // The scheduler may hold the reply while it waits for away holders (plan.holder_wait_ms).
      Math.max(this.opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_SUBMIT_TIMEOUT_MS),
    );
    const handle = this.handles.get(status.id) ?? new ArtifactHandle(this, status);
    this.handles.set(status.id, handle);
    return handle;
  }

  /** Follows an artifact submitted elsewhere (e.g. by `fdl submit`). */
  async watch(artifactId: string): Promise<ArtifactHandle> {
    const existing = this.handles.get(artifactId);
    if (existing) return existing;
    const handle = new ArtifactHandle(this, await this.status(artifactId));
    this.handles.set(artifactId, handle);
    // The reply's status, and the events right behind it, reach the handle as they are read.
    await this.ask((reqId) => ({ type: 'subscribe', reqId, artifactId }), 'status');
    return handle;
  }

  /** Stops the artifact's jobs on every worker; resolves with its status (CANCELLED, or its end state). */
  async cancel(artifactId: string): Promise<ArtifactStatus> {
    const { status } = await this.ask((reqId) => ({ type: 'cancelArtifact', reqId, artifactId }), 'status');
    return status;
  }

  /** The artifacts of this token's projects, newest first (at most `limit`, default 100). */
  async artifacts(opts: { limit?: number } = {}): Promise<ArtifactSummary[]> {
    const reply = await this.ask((reqId) => ({ type: 'listArtifacts', reqId, ...(opts.limit === undefined ? {} : { limit: opts.limit }) }), 'artifactList');
    return reply.artifacts;
  }

  /**
   * Deletes a finished artifact now (its rows, result files and masks) instead of waiting for
   * the scheduler's retention. A running one is refused with ARTIFACT_NOT_FINISHED: cancel it first.
   */
  async deleteArtifact(artifactId: string): Promise<void> {
    // Not sent again after a reconnection: a second delete would answer UNKNOWN_ARTIFACT for one that worked.
    await this.ask((reqId) => ({ type: 'deleteArtifact', reqId, artifactId }), 'artifactDeleted', false);
    this.handles.delete(artifactId);
  }

  async status(artifactId: string): Promise<ArtifactStatus> {
    return (await this.ask((reqId) => ({ type: 'getStatus', reqId, artifactId }), 'status')).status;
  }

  /**
   * The decoded final resource, checked against its sha256; an object result carries its
   * provenance as the non-enumerable property `provenance` (see `resultWithProvenance`). A
   * streamed (large) one is gathered in a temporary file first, then decoded in memory: for
   * moderate sizes; `resultToFile` keeps any size on disk.
   */
  async result(artifactId: string): Promise<unknown> {
    const { value, provenance } = await this.resultWithProvenance(artifactId);
    if (provenance && value !== null && typeof value === 'object' && Object.isExtensible(value)) {
      Object.defineProperty(value, 'provenance', { value: provenance, enumerable: false });
    }
    return value;
  }

  /** The decoded final resource, checked against its sha256, and what it covers. */
  async resultWithProvenance<T = unknown>(artifactId: string): Promise<ResultWithProvenance<T>> {
    const got = await this.fetchResult(artifactId, join(this.scratchDir(), `${randomUUID()}.msgpack`), true);
    const provenance = got.header?.type === 'result' ? got.header.provenance : undefined;
    if (got.bytes) return { value: decodeValue(got.bytes) as T, provenance, sha256: got.sha256 };
    try {
      return { value: decodeValue(readFileSync(got.path)) as T, provenance, sha256: got.sha256 };
    } finally {
      rmSync(got.path, { force: true });
    }
  }

  /**
   * Writes the result's bytes (msgpack, as stored) to `path`, never whole in memory: a large
   * result streams in chunks to `<path's folder>/<sha256>.part`, each checked, the whole checked
   * against its sha256, then renamed to `path`. A lost connection resumes from what the file
   * holds (asked again with that offset once the session is back).
   */
  async resultToFile(
    artifactId: string,
    path: string,
  ): Promise<{ path: string; sha256: string; size: number; resumedFrom: number; provenance: Provenance | undefined }> {
    const { bytes: _inFile, header, ...got } = await this.fetchResult(artifactId, path, false);
    return { ...got, provenance: header?.type === 'result' ? header.provenance : undefined };
  }

  private async fetchResult(artifactId: string, path: string, inMemory: boolean): Promise<Downloaded> {
    if (!this.isReady) await withTimeout(this.ready, this.opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS, `no connection to ${this.urls.join(', ')}`);
    if (this.sessionError) throw this.sessionError;
    // The partial file of a streamed result lives beside its target (`<path>.<sha256>.part`).
    this.downloads ??= new Downloads(this.scratchDir(), (m) => this.client.send(m), { stallMs: this.opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS });
    const build = (reqId: number, offset: number): Message => ({ type: 'getResult', reqId, artifactId, ...(offset > 0 ? { offset } : {}) });
    return await this.downloads.fetch(build, { target: resolve(path), inMemory });
  }

  private scratchDir(): string {
    this.scratch ??= mkdtempSync(join(tmpdir(), 'fdl-results-'));
    return this.scratch;
  }

  close(): void {
    this.closing = true;
    this.client.close();
    if (this.scratch) rmSync(this.scratch, { recursive: true, force: true });
  }
}
