import { stop } from 'nact';
import {
  type ArtifactSpec,
  type ProjectData,
  type ResourceRef,
  RetryPolicySchema,
  type RetryPolicy,
} from '../protocols/entities.ts';
import { formatPath, type WireError, wireError } from '../protocols/errors.ts';
import type { Message, MessageOf, WorkbenchRequest } from '../protocols/messages.ts';
import { PROTOCOL_VERSION } from '../protocols/version.ts';
import { FdlError, toWireError } from '../lib/errors.ts';
import { type Ref, send, spawnActor } from '../lib/kit/actors.ts';
import type { Logger } from '../lib/log.ts';
import { bindArtifact, checkFeatures, quorumToleratesAbsence } from '../lib/plan/index.ts';
import { DEFAULT_HOLDER_WAIT_MS } from '../lib/plan/defaults.ts';
import { DEFAULT_PROGRESS_INTERVAL_MS } from '../lib/transport/defaults.ts';
import { aggregateProject } from '../lib/projects.ts';
import { type WorkbenchScope, inScope } from '../lib/security/auth.ts';
import { fingerprint } from '../lib/security/identity.ts';
import { rmSync } from 'node:fs';
import { DEFAULT_ARTIFACT_LIST_LIMIT, RETENTION_SWEEP_BATCH } from '../lib/store/defaults.ts';
import { artifactStatus, artifactSummary } from '../lib/store/status.ts';
import { timeOrderedUuid } from '../lib/store/ids.ts';
import { FINISHED_STATES, type Store, type StoredArtifact, type StoredJob, type StoredNode, type StoredProject } from '../lib/store/store.ts';
import type { UploadOffer, UploadResult, Uploads } from '../lib/store/uploads.ts';
import { tooLarge } from '../lib/transport/stream.ts';
import { type SupervisorMsg, type SupervisorReport, spawnArtifactSupervisor } from './artifact-supervisor.ts';
import type { JobMsg } from './job.ts';
import { Listings, ProjectListing, scopedProjects, scopedStatus } from './listings.ts';
import type { ReportMsg } from './report-routes.ts';
import { spawnWatchers } from './watchers.ts';

/**
 * Scheduler: the root of a scheduler node. Owns who is connected (workers, workbenches,
 * the local initiator), the subscriptions of workbenches to artifacts, and one
 * ArtifactSupervisor per unfinished artifact. Answers workbench requests, turns a
 * submitted artifact into a durable job DAG, and routes worker reports to supervisors.
 */

/** A peer as the scheduler sees it: something to send messages to. */
export interface PeerHandle {
  sessionId: string;
  /** `reportsTo`: with an `assignJob`, the JobActor the peer's reports on that attempt go to (report-routes.ts). */
  send(message: Message, reportsTo?: Ref<ReportMsg>): void;
  close(code: number, reason: string): void;
  /**
   * Sends `header` (a resourceData or result without data), then the file's bytes from `offset`
   * as resourceChunks with back-pressure. Absent (the in-process initiator): resources go whole.
   */
  stream?(header: Message, body: StreamBody): void;
}

/** What a supervisor and its JobActors hold of a node: where to send to it (each keeps its own, from the news it gets). */
export type NodePeer = Pick<PeerHandle, 'send'>;

/** A streamed resource's bytes: a file of the store, sent from an offset. */
export interface StreamBody {
  sha256: string;
  file: string;
  size: number;
  offset: number;
}

export type SchedulerMsg =
  | { kind: 'resume' }
  /** A worker whose hello passed authentication (lib/security/auth.ts). */
  | { kind: 'workerJoined'; peer: PeerHandle; hello: MessageOf<'workerHello'>; joinTokenId: string | undefined }
  | { kind: 'workbenchJoined'; peer: PeerHandle; scope: WorkbenchScope }
  /** Timer: close the sessions of tokens revoked since the last check. */
  | { kind: 'checkRevocations' }
  /** Timer (and once at start): delete finished artifacts older than the retention. */
  | { kind: 'sweepFinished' }
  /** Timer: a submit waiting for away holders has waited `holderWaitMs`. */
  | { kind: 'holderWaitOver'; pendingId: number }
  | { kind: 'fromWorker'; peer: PeerHandle; nodeId: string; message: Message }
  | { kind: 'fromWorkbench'; peer: PeerHandle; message: WorkbenchRequest }
  | { kind: 'peerLeft'; peer: PeerHandle; nodeId?: string }
  /** A streamed product arrived whole and checked (`path`), or was given up (`error`); from the connection that read its last chunk. */
  | { kind: 'uploadEnded'; sha256: string; size: number; offers: UploadOffer[]; path?: string; error?: WireError }
  /** The initiator's product that is a file (lib/ops/file-blob.ts): copied into the store. */
  | { kind: 'localProduct'; report: MessageOf<'productOffer'>; file: string }
  /** Metrics and test seam: how many artifacts the scheduler keeps per-artifact entries for, and the submits waiting for holders. */
  | { kind: 'countEntries'; replyTo(counts: { subscriptions: number; supervisors: number; pending: number }): void }
  | SupervisorReport;

export interface SchedulerProps {
  store: Store;
  log: Logger;
  schedulerId: string;
  /** Artifact policy defaults of this node (overridden per artifact). */
  policy: RetryPolicy;
  allowResourceDownload: boolean;
  /** The in-process WorkerActor (initiator), reached by local dispatch; its data if standalone. */
  initiator: { peer: PeerHandle; name: string; projects: ProjectData[] };
  /** The scheduler node's own public keys (the initiator receives sealed resources too). */
  identity: { signKey: string; boxKey: string };
  /** Finished artifacts are deleted this long after they finished. */
  retentionMs: number;
  /** Artifacts one workbench token may have SCHEDULED or RUNNING. */
  artifactsInFlightPerWorkbench: number;
  /** How long a submit waits for away holders of the project's data (default DEFAULT_HOLDER_WAIT_MS). */
  holderWaitMs?: number;
  /** The initiator's locals (masks of Sequential estimators), deleted with their artifact. */
  locals: { delete(artifactId: string): void };
  /** Streamed products being received (fed chunks by the connections). */
  uploads: Uploads;
  /** Resources over `thresholdBytes` are streamed; over `maxResourceBytes` a product is refused. */
  streaming: { thresholdBytes: number; maxResourceBytes: number };
  /** The least time between two progress pushes of one artifact (default DEFAULT_PROGRESS_INTERVAL_MS; 0: every barrier). */
  progressIntervalMs?: number;
  /** Where the Scheduler publishes the project listing for the Connections (one of its own when absent). */
  projectListing?: ProjectListing;
  now?: () => number;
}

interface ConnectedWorker {
  peer: PeerHandle;
  name: string;
  projects: ProjectData[];
  joinTokenId?: string | undefined;
}

interface WorkbenchSession {
  peer: PeerHandle;
  scope: WorkbenchScope;
}

/** A submit waiting for known holders of its project's data that are away. */
interface PendingSubmit {
  message: MessageOf<'submitArtifact'>;
  peer: PeerHandle;
  scope: WorkbenchScope;
  project: StoredProject;
  /** The holders it waits for, as of the last look. */
  missing: string[];
  timer: NodeJS.Timeout;
}

/** How a submit can be bound now (see `planHolders`). */
type HolderPlan =
  | { kind: 'none' }
  | { kind: 'wait'; missing: string[] }
  | { kind: 'bind'; present: Array<{ nodeId: string; data: ProjectData }>; workers: string[]; absent: string[] };

interface SchedulerState {
  workers: Map<string, ConnectedWorker>;
  workbenches: Map<string, WorkbenchSession>;
  lastRevocationCheck: number;
  supervisors: Map<string, Ref<SupervisorMsg>>;
  /** Submits waiting for away holders, by a number of their own. */
  pending: Map<number, PendingSubmit>;
}

/** How many missing holders a HOLDERS_MISSING message names (the rest are counted). */
const MISSING_NAMED = 20;
const noWorkers = () => wireError('NO_WORKERS', 'no worker has announced data for this project');

const artifactOfJob = (jobId: string) => jobId.slice(0, Math.max(0, jobId.lastIndexOf('.')));
const indexOfJob = (jobId: string) => Number(jobId.slice(jobId.lastIndexOf('.') + 1));

export function spawnScheduler(parent: Ref<unknown>, props: SchedulerProps): Ref<SchedulerMsg> {
  const { store, log } = props;
  const now = props.now ?? Date.now;

  const holderWaitMs = props.holderWaitMs ?? DEFAULT_HOLDER_WAIT_MS;
  const listings = new Listings(store);
  // Subscriptions, network watchers and the listing lines live in their own actor (actors/watchers.ts).
  const watchers = spawnWatchers(parent, { store, log: log.child({ actor: 'watchers' }), now });
  let nextPendingId = 1;

  /** What a node announced for a token, if it holds data for it (at least one data source). */
  const dataFor = (projects: readonly ProjectData[] | undefined, token: string) => {
    const data = projects?.find((p) => p.token === token);
    return data && data.datasources.length > 0 ? data : undefined;
  };

  /**
   * The known holders of a project's data (from the store, by key: every worker that announced a
   * data source for it, connected or not), split into the connected ones, with their data, and
   * the away ones. Sorted by id.
   */
  const holdersOf = (s: SchedulerState, project: StoredProject, token: string) => {
    const present: Array<{ nodeId: string; data: ProjectData }> = [];
    const away: string[] = [];
    for (const nodeId of store.holdersOf(project.id)) {
      const data = dataFor(s.workers.get(nodeId)?.projects, token);
      if (data) present.push({ nodeId, data });
      else away.push(nodeId);
    }
    return { present, away };
  };

  /**
   * A plan needs every known holder. With holders away, it may go on without them only if every
   * step that runs on the workers is a Parallel step with a quorum that the present holders meet
   * (their jobs are then left out at once, and the result's provenance says so); else it waits.
   */
  const planHolders = (s: SchedulerState, project: StoredProject, token: string, spec: ArtifactSpec): HolderPlan => {
    const { present, away } = holdersOf(s, project, token);
    const workers = [...present.map((h) => h.nodeId), ...away].sort();
    if (workers.length === 0) return { kind: 'none' };
    if (away.length === 0) return { kind: 'bind', present, workers, absent: [] };
    if (present.length > 0 && quorumToleratesAbsence(spec.steps, workers.length, present.length)) {
      return { kind: 'bind', present, workers, absent: away };
    }
    return { kind: 'wait', missing: away };
  };

  /**
   * The names of the features the present holders announce: all a submit checks its steps
   * against. Only names (not `aggregateProject`'s statistics and categories, ~18% of a submit's
   * CPU at 10 workers).
   */
  const featureNames = (present: ReadonlyArray<{ data: ProjectData }>): Set<string> => {
    const names = new Set<string>();
    for (const { data } of present) for (const ds of data.datasources) for (const f of ds.features) names.add(f.name);
    return names;
  };

  /** `loaded`: its rows as the submit just read them (spares the supervisor reading them again). */
  const spawnSupervisor = (s: SchedulerState, self: Ref<SchedulerMsg>, artifactId: string, loaded?: { artifact: StoredArtifact; jobs: StoredJob[] }) => {
    // Who is connected now, as a copy: from here on the supervisor keeps its own, from the
    // workerConnected/workerLost news this actor sends it (no map shared between actors). Only
    // the artifact's own nodes when its rows are at hand (not a copy of every connection).
    const peers = new Map<string, NodePeer>();
    if (loaded) {
      for (const j of loaded.jobs) {
        const peer = s.workers.get(j.worker)?.peer;
        if (peer) peers.set(j.worker, peer);
      }
    } else for (const [nodeId, w] of s.workers) peers.set(nodeId, w.peer);
    const ref = spawnArtifactSupervisor(self, {
      store,
      log: log.child({ artifactId }),
      artifactId,
      scheduler: self as Ref<SupervisorReport>,
      watchers,
      peers,
      ...(loaded ? { loaded } : {}),
      maxResourceBytes: props.streaming.maxResourceBytes,
      progressIntervalMs: props.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS,
      now,
    });
    s.supervisors.set(artifactId, ref);
    send(ref, { kind: 'start' });
  };

  const reply = (peer: PeerHandle, message: Message) => peer.send(message);

  /** The ids of the projects a node announces at least one data source for (unknown tokens ignored). */
  const heldProjects = (projects: readonly ProjectData[]): string[] =>
    projects.filter((p) => p.datasources.length > 0).flatMap((p) => projectOf(p.token)?.id ?? []);

  const projectOf = (token: string) => listings.projectOf(token);

  /**
   * The project of a token, if the session may use it. A scoped session gets FORBIDDEN for an
   * unknown token and for a project outside its scope alike, so it cannot probe which tokens exist.
   */
  const scopedProject = (scope: WorkbenchScope, projectToken: string, peer: PeerHandle, reqId: number) => {
    const project = projectOf(projectToken);
    if (project && inScope(scope, project.id)) return project;
    const error =
      scope.projects === undefined && !project
        ? wireError('UNKNOWN_PROJECT', 'no project has this token')
        : wireError('FORBIDDEN', 'this workbench token does not cover this project token');
    reply(peer, { type: 'error', reqId, error });
    return undefined;
  };
  const replyStatus = (peer: PeerHandle, reqId: number, artifactId: string) => reply(peer, listings.status(reqId, artifactId));
  const fail = (peer: PeerHandle, reqId: number, e: unknown) => {
    const error = toWireError(e);
    reply(peer, { type: 'error', reqId, error });
  };

  const submit = (
    s: SchedulerState,
    self: Ref<SchedulerMsg>,
    m: MessageOf<'submitArtifact'>,
    peer: PeerHandle,
    scope: WorkbenchScope,
  ) => {
    const project = scopedProject(scope, m.projectToken, peer, m.reqId);
    if (!project) return;
    // Fair use: one researcher's burst of submits must not delay everyone else's artifacts.
    let waiting = 0;
    for (const p of s.pending.values()) if (p.scope.tokenId === scope.tokenId) waiting++;
    const inFlight = store.artifactsInFlight(scope.tokenId) + waiting;
    if (inFlight >= props.artifactsInFlightPerWorkbench) {
      const error = wireError(
        'QUOTA_EXCEEDED',
        `this workbench token has ${inFlight} artifacts in flight (SCHEDULED or RUNNING)${waiting > 0 ? ` (${waiting} of them submits waiting for holders)` : ''}, its limit is ${props.artifactsInFlightPerWorkbench} (quotas.artifacts_in_flight_per_workbench): wait for one to finish, or cancel one`,
      );
      reply(peer, { type: 'error', reqId: m.reqId, error });
      return;
    }
    const plan = planHolders(s, project, m.projectToken, m.artifact);
    if (plan.kind === 'none') {
      reply(peer, { type: 'error', reqId: m.reqId, error: noWorkers() });
      return;
    }
    if (plan.kind === 'bind') {
      accept(s, self, m, peer, scope, project, plan);
      return;
    }
    // Known holders are away: wait for them, bounded; every join looks again (see `recheckPending`).
    const pendingId = nextPendingId++;
    const timer = setTimeout(() => send(self, { kind: 'holderWaitOver', pendingId }), holderWaitMs);
    timer.unref();
    s.pending.set(pendingId, { message: m, peer, scope, project, missing: plan.missing, timer });
    log.info({ project: project.name, missing: plan.missing, waitMs: holderWaitMs }, 'submit waits for holders of the project');
  };

  /** Binds and stores an artifact over the holders of `plan`, then answers and starts it. */
  const accept = (
    s: SchedulerState,
    self: Ref<SchedulerMsg>,
    m: MessageOf<'submitArtifact'>,
    peer: PeerHandle,
    scope: WorkbenchScope,
    project: StoredProject,
    plan: Extract<HolderPlan, { kind: 'bind' }>,
  ) => {
    const spec: ArtifactSpec = m.artifact;
    try {
      const merged = RetryPolicySchema.safeParse({ ...props.policy, ...(spec.policy ?? {}) });
      if (!merged.success) {
        const issue = merged.error.issues[0];
        const path = formatPath(['policy', ...(issue?.path ?? [])]);
        throw new FdlError('INVALID_ARTIFACT', `${path}: ${issue?.message ?? 'invalid'} (with this scheduler's defaults)`, { path });
      }
      const policy = merged.data;
      // A feature the project does not have is refused now, naming the step and field.
      checkFeatures(spec.steps, featureNames(plan.present));
      const bound = bindArtifact(spec.steps, { initiator: props.schedulerId, workers: plan.workers });
      // Time-ordered: its rows and its jobs' rows append to their indices (lib/store/ids.ts).
      const id = `a-${timeOrderedUuid()}`;
      const { artifact, jobs } = store.createArtifact({
        id,
        projectId: project.id,
        projectToken: m.projectToken,
        spec,
        policy,
        plan: bound,
        now: now(),
        submitterTokenId: scope.tokenId,
        workers: plan.workers,
        absent: plan.absent,
      });
      log.info({ artifactId: id, jobs: bound.jobs.length, workers: plan.workers.length, absent: plan.absent }, 'artifact accepted');
      reply(peer, { type: 'artifactAccepted', reqId: m.reqId, status: artifactStatus(artifact, jobs) });
      send(watchers, { kind: 'track', summary: { ...artifactSummary(artifact), progress: { completed: 0, total: bound.jobs.length } }, submitter: peer });
      spawnSupervisor(s, self, id, { artifact, jobs });
    } catch (e) {
      fail(peer, m.reqId, e);
    }
  };

  /**
   * Looks again at a waiting submit: binds it when its holders are back (or were forgotten), or,
   * when its wait is over, refuses it naming the holders still away.
   */
  const recheckPending = (s: SchedulerState, self: Ref<SchedulerMsg>, pendingId: number, waitOver: boolean) => {
    const p = s.pending.get(pendingId);
    if (!p) return;
    const plan = planHolders(s, p.project, p.message.projectToken, p.message.artifact);
    if (plan.kind === 'wait' && !waitOver) {
      p.missing = plan.missing;
      return;
    }
    clearTimeout(p.timer);
    s.pending.delete(pendingId);
    if (plan.kind === 'bind') {
      log.info({ project: p.project.name }, 'the holders a submit waited for are back');
      accept(s, self, p.message, p.peer, p.scope, p.project, plan);
    } else if (plan.kind === 'none') {
      reply(p.peer, { type: 'error', reqId: p.message.reqId, error: noWorkers() });
    } else {
      // Named in full up to a point: an error's message is bounded on the wire (10,000 characters).
      const shown = plan.missing.slice(0, MISSING_NAMED);
      const more = plan.missing.length - shown.length;
      const names = `${shown.join(', ')}${more > 0 ? ` and ${more} more` : ''}`;
      log.warn({ project: p.project.name, missing: plan.missing, waitMs: holderWaitMs }, 'submit refused: holders of the project stayed away');
      const error = wireError(
        'HOLDERS_MISSING',
        `${plan.missing.length} known holder(s) of project ${p.project.name}'s data did not connect within ${holderWaitMs} ms: ${names}. ` +
          'A result would leave their data out: try again when they are back, give the Parallel steps a quorum, or (operator) forget a holder that left for good: fdl nodes forget ID',
      );
      reply(p.peer, { type: 'error', reqId: p.message.reqId, error });
    }
  };

  /** A finished artifact's rows, resource files and the initiator's masks; its subscriptions end. */
  const deleteArtifact = (artifactId: string) => {
    const head = store.artifactHead(artifactId);
    store.deleteArtifact(artifactId);
    props.locals.delete(artifactId);
    if (head) send(watchers, { kind: 'artifactDeleted', artifactId, projectId: head.projectId });
  };

  const listNodes = (s: SchedulerState, scope: WorkbenchScope) => listings.nodes(scope, (nodeId) => s.workers.has(nodeId));
  /** The listing every Connection answers from (published here, stale whenever s.workers changes). */
  const projectListing = props.projectListing ?? new ProjectListing();
  const listProjects = (s: SchedulerState, scope: WorkbenchScope) =>
    scopedProjects(
      projectListing.current ??
        projectListing.publish(listings.projectsOf([...s.workers].map(([nodeId, w]): [string, readonly ProjectData[]] => [nodeId, w.projects]))),
      scope,
    );

  /**
   * The head of an artifact the session may see, or undefined once it was told UNKNOWN_ARTIFACT.
   * Not a closure made per request: the build keeps function names, so each closure made costs a
   * defineProperty (~3% of a listProjects round trip's CPU, though only some requests used it).
   */
  const visibleArtifact = (scope: WorkbenchScope, peer: PeerHandle, reqId: number, artifactId: string) => {
    const artifact = store.artifactHead(artifactId);
    if (artifact && inScope(scope, artifact.projectId)) return artifact;
    reply(peer, { type: 'error', reqId, error: wireError('UNKNOWN_ARTIFACT', `no artifact ${artifactId}`) });
    return undefined;
  };

  /** A workbench sees only the projects of its token's scope, and nothing of the others. */
  const onWorkbench = (s: SchedulerState, self: Ref<SchedulerMsg>, m: WorkbenchRequest, peer: PeerHandle) => {
    const scope = s.workbenches.get(peer.sessionId)?.scope;
    if (!scope) {
      reply(peer, { type: 'error', reqId: m.reqId, error: wireError('NOT_AUTHENTICATED', 'no workbench session') });
      return;
    }
    switch (m.type) {
      case 'listNodes':
        reply(peer, { type: 'nodeList', reqId: m.reqId, nodes: listNodes(s, scope) });
        return;
      case 'watchNetwork':
        // The picture now, then every change: the Watchers reply and register the session in one turn.
        send(watchers, { kind: 'watch', peer, scope, reqId: m.reqId, limit: m.limit, nodes: listNodes(s, scope), projects: listProjects(s, scope) });
        return;
      case 'listProjects':
        reply(peer, { type: 'projectList', reqId: m.reqId, projects: listProjects(s, scope) });
        return;
      case 'getProject': {
        const project = scopedProject(scope, m.projectToken, peer, m.reqId);
        if (!project) return;
        // Over every known holder: an away one as it announced itself at its last join (read by key).
        const { present, away } = holdersOf(s, project, m.projectToken);
        const holdings = [...present];
        for (const nodeId of away) {
          const data = dataFor(store.nodeProjects(nodeId), m.projectToken);
          if (data) holdings.push({ nodeId, data });
        }
        reply(peer, { type: 'project', reqId: m.reqId, project: aggregateProject(project, holdings) });
        return;
      }
      case 'submitArtifact':
        submit(s, self, m, peer, scope);
        return;
      case 'getStatus':
        // A socket's Connection answers these as they come; this is for one that reaches here.
        reply(peer, scopedStatus(store, scope, m.reqId, m.artifactId));
        return;
      case 'subscribe': {
        const artifact = visibleArtifact(scope, peer, m.reqId, m.artifactId);
        if (!artifact) return;
        send(watchers, { kind: 'subscribe', peer, reqId: m.reqId, artifactId: m.artifactId, locks: m.locks === true });
        return;
      }
      case 'cancelArtifact': {
        const artifact = visibleArtifact(scope, peer, m.reqId, m.artifactId);
        if (!artifact) return;
        const supervisor = s.supervisors.get(m.artifactId);
        if (supervisor) send(supervisor, { kind: 'cancel', replyTo: { peer, reqId: m.reqId } });
        else replyStatus(peer, m.reqId, m.artifactId);
        return;
      }
      case 'listArtifacts': {
        const artifacts = store.listArtifacts(scope.projects, m.limit ?? DEFAULT_ARTIFACT_LIST_LIMIT).map(artifactSummary);
        reply(peer, { type: 'artifactList', reqId: m.reqId, artifacts });
        return;
      }
      case 'deleteArtifact': {
        const artifact = visibleArtifact(scope, peer, m.reqId, m.artifactId);
        if (!artifact) return;
        // Only a finished artifact: its supervisor wrote the end state and stopped its jobs in one
        // message, so nothing of it writes to the store any more (late reports find no job row).
        if (!FINISHED_STATES.includes(artifact.state)) {
          const error = wireError(
            'ARTIFACT_NOT_FINISHED',
            `artifact ${artifact.id} is ${artifact.state}: cancel it first (fdl cancel ${artifact.id}), then delete it`,
          );
          reply(peer, { type: 'error', reqId: m.reqId, error });
          return;
        }
        deleteArtifact(artifact.id);
        log.info({ artifactId: artifact.id, tokenId: scope.tokenId }, 'artifact deleted by a workbench');
        reply(peer, { type: 'artifactDeleted', reqId: m.reqId, artifactId: artifact.id });
        return;
      }
      case 'getResult': {
        const artifact = visibleArtifact(scope, peer, m.reqId, m.artifactId);
        if (!artifact) return;
        if (!props.allowResourceDownload) {
          reply(peer, {
            type: 'error',
            reqId: m.reqId,
            error: wireError('DOWNLOAD_FORBIDDEN', 'this scheduler does not allow resource downloads'),
          });
          return;
        }
        if (artifact.state !== 'COMPLETED' || !artifact.resultResourceId) {
          const error = wireError('RESULT_NOT_READY', `artifact ${m.artifactId} is ${artifact.state}`);
          // Waiting helps only while it runs.
          error.retryable = artifact.state === 'SCHEDULED' || artifact.state === 'RUNNING';
          reply(peer, { type: 'error', reqId: m.reqId, error });
          return;
        }
        sendResource(s, peer, m.reqId, artifact.resultResourceId, m.offset ?? 0, (r) => {
          const result: MessageOf<'result'> = { type: 'result', reqId: m.reqId, artifactId: artifact.id, ...r };
          const provenance = store.provenance(artifact.id);
          if (provenance) result.provenance = provenance;
          return result;
        });
        return;
      }
    }
  };

  /**
   * A resource's bytes to a peer: whole in the reply when small (or to the in-process
   * initiator), else the reply says their size and the chunks follow from `offset`.
   */
  const sendResource = (
    s: SchedulerState,
    peer: PeerHandle,
    reqId: number,
    resourceId: string,
    offset: number,
    build: (r: { resourceId: string; sha256: string; size: number; offset?: number; data?: Uint8Array }) => Message,
    ref?: ResourceRef & { artifactId: string },
  ) => {
    try {
      const body = store.resourceBody(resourceId);
      if (!body) throw new Error('the resource row is missing');
      const { sha256, size } = body.ref;
      if (body.file && peer.stream && size > props.streaming.thresholdBytes) {
        const from = Math.min(offset, size);
        peer.stream(build({ resourceId, sha256, size, offset: from }), { sha256, file: body.file, size, offset: from });
        return;
      }
      const bytes = body.bytes ?? store.readResource(resourceId)?.bytes;
      if (!bytes) throw new Error('the resource vanished');
      peer.send(build({ resourceId, sha256, size: bytes.byteLength, data: bytes }));
    } catch (e) {
      const error = toWireError(e);
      if (error.code === 'CHECKSUM_MISMATCH' && ref) {
        // The bytes on disk rotted: refuse them, and have the producer make them again.
        log.error({ resourceId: ref.id, jobId: ref.jobId }, 'resource failed its checksum');
        const supervisor = s.supervisors.get(ref.artifactId);
        if (supervisor) send(supervisor, { kind: 'resourceCorrupt', jobIndex: indexOfJob(ref.jobId) });
      }
      reply(peer, { type: 'error', reqId, error });
    }
  };

  /** The error a product over store.max_resource_bytes fails its attempt with (naming both sizes); undefined when it fits. */
  const overLimit = (jobId: string, size: number): WireError | undefined =>
    size > props.streaming.maxResourceBytes ? toWireError(tooLarge(`the product of ${jobId}`, size, props.streaming.maxResourceBytes)) : undefined;

  /** The job of a report, when the report is about its current attempt on that worker. */
  const currentAttempt = (nodeId: string, jobId: string, attempt: number) => {
    const job = store.job(artifactOfJob(jobId), indexOfJob(jobId));
    if (!job || job.worker !== nodeId) return undefined;
    // A stale or repeated report (an old attempt, a job already done) is not stored again.
    if (job.attempt !== attempt || (job.state !== 'SCHEDULED' && job.state !== 'RUNNING')) return undefined;
    return job;
  };

  const failAttempt = (s: SchedulerState, o: UploadOffer, error: WireError) => {
    const supervisor = s.supervisors.get(artifactOfJob(o.jobId));
    if (supervisor) send(supervisor, { kind: 'jobReport', jobIndex: indexOfJob(o.jobId), report: { kind: 'failed', attempt: o.attempt, error } });
  };

  /** Stores a product and reports the attempt completed; a product that cannot be stored fails it with its cause. */
  const storeProduct = (s: SchedulerState, o: UploadOffer, put: () => ResourceRef) => {
    const supervisor = s.supervisors.get(artifactOfJob(o.jobId));
    if (!supervisor) return;
    let report: JobMsg;
    try {
      report = { kind: 'completed', attempt: o.attempt, resource: put(), rows: o.rows, ranMs: o.ranMs };
    } catch (e) {
      // A product that cannot be stored is a failed attempt with its real cause, now (not
      // an attempt timeout much later); it is retried like any other.
      const error = toWireError(e, 'STORE_WRITE_FAILED');
      log.error({ jobId: o.jobId, attempt: o.attempt, error }, 'a reported product could not be stored');
      report = { kind: 'failed', attempt: o.attempt, error };
    }
    send(supervisor, { kind: 'jobReport', jobIndex: indexOfJob(o.jobId), report });
  };

  /** The Scheduler's message for an upload that ended whole ('done') or was given up ('corrupt'). */
  const uploadResult = (name: string, r: Extract<UploadResult, { kind: 'done' | 'corrupt' }>): SchedulerMsg =>
    r.kind === 'done'
      ? { kind: 'uploadEnded', sha256: r.sha256, size: r.size, offers: r.offers, path: r.path }
      : { kind: 'uploadEnded', sha256: name, size: r.size, offers: r.offers, error: r.error };

  /** A streamed product is in (or was given up): each attempt it was offered for completes (or fails). */
  const uploadEnded = (s: SchedulerState, msg: Extract<SchedulerMsg, { kind: 'uploadEnded' }>) => {
    const live = msg.offers.filter((o) => currentAttempt(o.nodeId, o.jobId, o.attempt));
    if (msg.error || !msg.path) {
      log.warn({ sha256: msg.sha256, error: msg.error }, 'a streamed product was given up');
      for (const o of live) failAttempt(s, o, msg.error ?? wireError('INTERNAL', 'the upload ended without its bytes'));
      return;
    }
    const path = msg.path;
    if (live.length === 0) rmSync(path, { force: true });
    live.forEach((o, i) => {
      const meta = { artifactId: artifactOfJob(o.jobId), jobId: o.jobId, producer: o.nodeId, sha256: msg.sha256, size: msg.size };
      // The last taker moves the file into place; any other copies it.
      storeProduct(s, o, () => store.putResourceFile(meta, path, i === live.length - 1 ? 'move' : 'copy', now()));
    });
  };

  const onWorker = (s: SchedulerState, self: Ref<SchedulerMsg>, m: Message, nodeId: string, peer: PeerHandle) => {
    switch (m.type) {
      case 'jobStarted':
      case 'jobFailed':
      case 'jobCompleted': {
        // A report without a route on its peer (report-routes.ts): to the job's owner, which checks it.
        const supervisor = s.supervisors.get(artifactOfJob(m.jobId));
        if (!supervisor) return; // a late report about a finished or unknown artifact
        send(supervisor, { kind: 'jobReport', jobIndex: indexOfJob(m.jobId), report: { kind: 'report', worker: nodeId, message: m } });
        return;
      }
      case 'productOffer': {
        if (!currentAttempt(nodeId, m.jobId, m.attempt)) return; // stale or repeated: nothing to take
        const offer = { jobId: m.jobId, attempt: m.attempt, nodeId, rows: m.rows, ranMs: m.ranMs };
        const error = overLimit(m.jobId, m.size);
        if (error) {
          // Refused before a byte moves: the job fails naming the size (retrying makes the same product).
          log.warn({ jobId: m.jobId, attempt: m.attempt, size: m.size, limit: props.streaming.maxResourceBytes }, 'a product over the resource limit was refused');
          peer.send({ type: 'error', error });
          failAttempt(s, offer, error);
          return;
        }
        // The upload's name: the bytes' sha256, or the name its producer drew (their sha256 comes at the end).
        const name = (m.sha256 ?? m.upload) as string;
        let begun: { offset: number; resumedFrom: number };
        try {
          begun = props.uploads.begin(offer, name, m.size, m.upload !== undefined);
        } catch (e) {
          failAttempt(s, offer, toWireError(e, 'STORE_WRITE_FAILED'));
          return;
        }
        log.info({ jobId: m.jobId, attempt: m.attempt, size: m.size, offset: begun.offset, digestAtEnd: m.upload !== undefined }, 'streamed product offered; asking from offset');
        const whole = begun.offset === m.size ? props.uploads.finishWhole(name) : undefined;
        if (whole && (whole.kind === 'done' || whole.kind === 'corrupt')) {
          send(self, uploadResult(name, whole));
          return;
        }
        // Whole already but its sha256 not named yet: asked from the end, the producer names it.
        peer.send({ type: 'resourceWant', sha256: name, offset: begun.offset });
        return;
      }
      case 'productDigest': {
        if (!currentAttempt(nodeId, m.jobId, m.attempt)) return; // stale or repeated
        const r = props.uploads.digest(nodeId, m.upload, m.sha256);
        if (!r) {
          peer.send({ type: 'error', error: wireError('UNEXPECTED_MESSAGE', `no upload ${m.upload} was offered by ${nodeId}`) });
          return;
        }
        if (r.kind === 'done') {
          // Its last chunk came first (actors/connection.ts logs it when the digest did).
          log.info({ nodeId, sha256: r.sha256, size: r.size, wallMs: Math.round(r.wallMs), cpuMs: Math.round(r.cpuMs) }, 'streamed product received whole');
        }
        if (r.kind === 'done' || r.kind === 'corrupt') send(self, uploadResult(m.upload, r));
        return;
      }
      case 'fetchResource': {
        const ref = store.resource(m.resourceId);
        // A worker may fetch only what is addressed to it: the products of jobs that unlock one of its jobs.
        const producer = ref ? store.job(ref.artifactId, indexOfJob(ref.jobId)) : undefined;
        const allowed =
          producer !== undefined &&
          producer.id === ref?.jobId &&
          producer.locks.some((i) => store.job(ref.artifactId, i)?.worker === nodeId);
        if (!ref || !allowed) {
          reply(peer, { type: 'error', reqId: m.reqId, error: wireError('UNKNOWN_RESOURCE', `no resource ${m.resourceId} for you`) });
          return;
        }
        sendResource(s, peer, m.reqId, m.resourceId, m.offset ?? 0, (r) => ({ type: 'resourceData', reqId: m.reqId, ...r }), ref);
        return;
      }
      default:
        peer.send({
          type: 'error',
          error: wireError('UNEXPECTED_MESSAGE', `a worker may not send ${m.type}`),
        });
    }
  };

  return spawnActor<SchedulerState, SchedulerMsg>(
    parent,
    'scheduler',
    (s, msg, ctx) => {
      switch (msg.kind) {
        case 'resume': {
          store.workersSeenAtStart(now());
          store.backfillHolders();
          store.setHoldings(props.schedulerId, heldProjects(props.initiator.projects));
          store.upsertNode({
            id: props.schedulerId,
            name: props.initiator.name,
            role: 'scheduler',
            lastSeen: now(),
            projects: props.initiator.projects,
          });
          store.pinNodeKeys(props.schedulerId, props.identity.signKey, props.identity.boxKey, undefined);
          projectListing.stale();
          s.workers.set(props.schedulerId, {
            peer: props.initiator.peer,
            name: props.initiator.name,
            projects: props.initiator.projects,
          });
          const unfinished = store.unfinishedArtifacts();
          const progress = store.progressOf(unfinished.map((a) => a.id));
          for (const a of unfinished) {
            log.info({ artifactId: a.id, state: a.state }, 'resuming artifact');
            send(watchers, { kind: 'track', summary: { ...artifactSummary(a), progress: progress.get(a.id) ?? { completed: 0, total: 0 } } });
            spawnSupervisor(s, ctx.self, a.id);
          }
          return s;
        }
        case 'workerJoined': {
          const { hello, peer } = msg;
          if (hello.nodeId === props.schedulerId) {
            peer.send({ type: 'error', error: wireError('UNEXPECTED_MESSAGE', 'node id taken by the scheduler') });
            peer.close(1008, 'node id taken');
            return s;
          }
          // Two first joins of one id may race: only the key that got pinned is let in.
          const before = store.nodeKeys(hello.nodeId);
          const sameKeys = (k: typeof before) => k?.signKey === hello.signKey && k.boxKey === hello.boxKey;
          if (before && !sameKeys(before)) {
            peer.send({ type: 'error', error: wireError('AUTH_FAILED', `node id ${hello.nodeId} is bound to another key`) });
            peer.close(1008, 'authentication failed');
            return s;
          }
          store.upsertNode({ id: hello.nodeId, name: hello.name, role: 'worker', lastSeen: now(), projects: hello.projects });
          store.pinNodeKeys(hello.nodeId, hello.signKey, hello.boxKey, msg.joinTokenId);
          const pinned = store.nodeKeys(hello.nodeId);
          if (!sameKeys(pinned)) {
            peer.send({ type: 'error', error: wireError('AUTH_FAILED', `node id ${hello.nodeId} is bound to another key`) });
            peer.close(1008, 'authentication failed');
            return s;
          }
          // What it holds now: a project it no longer announces forgets it as a holder.
          store.setHoldings(hello.nodeId, heldProjects(hello.projects));
          const previous = s.workers.get(hello.nodeId);
          if (previous && previous.peer.sessionId !== peer.sessionId) previous.peer.close(4000, 'replaced by a new session');
          s.workers.set(hello.nodeId, { peer, name: hello.name, projects: hello.projects, joinTokenId: msg.joinTokenId });
          projectListing.stale();
          peer.send({ type: 'welcome', protocolVersion: PROTOCOL_VERSION, schedulerId: props.schedulerId, sessionId: peer.sessionId });
          const node: StoredNode = { id: hello.nodeId, name: hello.name, role: 'worker', lastSeen: now(), projects: hello.projects, signKey: hello.signKey };
          send(watchers, { kind: 'node', node, connected: true });
          log.info(
            { nodeId: hello.nodeId, name: hello.name, projects: hello.projects.length, fingerprint: fingerprint(hello.signKey) },
            'worker joined',
          );
          const holding = new Set(hello.holding.map((h) => `${h.jobId}#${h.attempt}`));
          for (const ref of s.supervisors.values()) send(ref, { kind: 'workerConnected', nodeId: hello.nodeId, holding, peer });
          // Work of an artifact that ended while the worker was away (cancelled, failed, done
          // without it): the cancel it missed, so it stops computing for nothing.
          for (const h of hello.holding) {
            if (s.supervisors.has(artifactOfJob(h.jobId))) continue;
            log.info({ nodeId: hello.nodeId, jobId: h.jobId, attempt: h.attempt }, 'cancelling work of a finished artifact the worker still holds');
            peer.send({ type: 'cancelJob', jobId: h.jobId, attempt: h.attempt });
          }
          for (const [pendingId, p] of s.pending) if (p.missing.includes(hello.nodeId)) recheckPending(s, ctx.self, pendingId, false);
          return s;
        }
        case 'holderWaitOver':
          recheckPending(s, ctx.self, msg.pendingId, true);
          return s;
        case 'checkRevocations': {
          const revoked = new Set(store.revokedSince(s.lastRevocationCheck - 1000));
          s.lastRevocationCheck = now();
          if (revoked.size === 0) return s;
          for (const w of s.workbenches.values()) {
            if (revoked.has(w.scope.tokenId)) {
              w.peer.send({ type: 'error', error: wireError('AUTH_FAILED', 'the workbench token was revoked') });
              w.peer.close(4001, 'token revoked');
            }
          }
          for (const [nodeId, w] of s.workers) {
            if (w.joinTokenId && revoked.has(w.joinTokenId)) {
              log.warn({ nodeId }, 'join token revoked: closing the session');
              w.peer.send({ type: 'error', error: wireError('AUTH_FAILED', 'the join token of this node was revoked') });
              w.peer.close(4001, 'token revoked');
            }
          }
          return s;
        }
        case 'sweepFinished': {
          const expired = store.finishedBefore(now() - props.retentionMs, RETENTION_SWEEP_BATCH);
          for (const id of expired) deleteArtifact(id);
          if (expired.length > 0) log.info({ deleted: expired.length, retentionMs: props.retentionMs }, 'finished artifacts past their retention deleted');
          const partials = props.uploads.sweep(now() - props.retentionMs);
          if (partials > 0) log.info({ deleted: partials, retentionMs: props.retentionMs }, 'partial uploads untouched for the retention deleted');
          // A full batch: more may be due; go on after the messages already waiting.
          if (expired.length === RETENTION_SWEEP_BATCH) send(ctx.self, { kind: 'sweepFinished' });
          return s;
        }
        case 'workbenchJoined':
          s.workbenches.set(msg.peer.sessionId, { peer: msg.peer, scope: msg.scope });
          msg.peer.send({
            type: 'welcome',
            protocolVersion: PROTOCOL_VERSION,
            schedulerId: props.schedulerId,
            sessionId: msg.peer.sessionId,
          });
          return s;
        case 'peerLeft': {
          if (msg.nodeId) {
            const w = s.workers.get(msg.nodeId);
            if (w && w.peer.sessionId === msg.peer.sessionId) {
              s.workers.delete(msg.nodeId);
              projectListing.stale();
              const left = now();
              store.nodeLeft(msg.nodeId, left);
              const node: StoredNode = { id: msg.nodeId, name: w.name, role: 'worker', lastSeen: left, projects: w.projects };
              const keys = store.nodeKeys(msg.nodeId);
              if (keys) node.signKey = keys.signKey;
              send(watchers, { kind: 'node', node, connected: false });
              log.warn({ nodeId: msg.nodeId }, 'worker left');
              for (const ref of s.supervisors.values()) send(ref, { kind: 'workerLost', nodeId: msg.nodeId });
            }
          }
          s.workbenches.delete(msg.peer.sessionId);
          for (const [pendingId, p] of s.pending) {
            if (p.peer.sessionId !== msg.peer.sessionId) continue;
            clearTimeout(p.timer);
            s.pending.delete(pendingId);
          }
          send(watchers, { kind: 'sessionEnded', sessionId: msg.peer.sessionId });
          return s;
        }
        case 'fromWorker':
          onWorker(s, ctx.self, msg.message, msg.nodeId, msg.peer);
          return s;
        case 'fromWorkbench':
          onWorkbench(s, ctx.self, msg.message, msg.peer);
          return s;
        case 'supervisorFinished': {
          const ref = s.supervisors.get(msg.artifactId);
          if (ref) stop(ref);
          s.supervisors.delete(msg.artifactId);
          // The final artifactState push reached the Watchers before this report reached here.
          send(watchers, { kind: 'untrack', artifactId: msg.artifactId });
          return s;
        }
        case 'uploadEnded':
          uploadEnded(s, msg);
          return s;
        case 'localProduct': {
          const { report } = msg;
          if (!currentAttempt(props.schedulerId, report.jobId, report.attempt)) return s;
          const offer = { jobId: report.jobId, attempt: report.attempt, nodeId: props.schedulerId, ranMs: report.ranMs };
          const tooBig = overLimit(report.jobId, report.size);
          if (tooBig) {
            failAttempt(s, offer, tooBig);
            return s;
          }
          if (!report.sha256) {
            failAttempt(s, offer, wireError('INTERNAL', 'a product of the initiator came without its sha256'));
            return s;
          }
          const meta = { artifactId: artifactOfJob(report.jobId), jobId: report.jobId, producer: props.schedulerId, sha256: report.sha256, size: report.size };
          storeProduct(s, offer, () => store.putResourceFile(meta, msg.file, 'copy', now()));
          return s;
        }
        case 'countEntries':
          send(watchers, { kind: 'countSubscriptions', replyTo: (subscriptions) => msg.replyTo({ subscriptions, supervisors: s.supervisors.size, pending: s.pending.size }) });
          return s;
      }
    },
    {
      log,
      initialState: () => {
        // No worker is known to a fresh state: neither is a listing made from the last one.
        projectListing.stale();
        return {
          workers: new Map(),
          workbenches: new Map(),
          supervisors: new Map(),
          pending: new Map(),
          lastRevocationCheck: now(),
        };
      },
      // The scheduler's maps are live connections, not durable state: resume, don't lose them.
      onCrash: 'resume',
    },
  );
}
