import { z } from 'zod';
import {
  ArtifactSpecSchema,
  ArtifactStateSchema,
  ArtifactStatusSchema,
  ArtifactSummarySchema,
  JobStateSchema,
  NodeInfoSchema,
  OperationSchema,
  ProjectDataSchema,
  ProjectInfoSchema,
  ProvenanceSchema,
  ResourceRefSchema,
} from './entities.ts';
import { WireErrorSchema } from './errors.ts';

// Every frame is one msgpack map with a string `type`; this file is the whole list.
// Requests carry `reqId`, chosen by the sender and increasing; the reply carries it back.

const Id = z.string().min(1).max(128);
const ReqId = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const Sha256 = z.string().regex(/^[0-9a-f]{64}$/);
/** A byte count or position in a resource. */
const ByteCount = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
// msgpack bin decodes to a Buffer (a Uint8Array); typed as the base type so any view fits.
export const Bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, { message: 'expected binary data' });
const msg = <T extends string, S extends z.ZodRawShape>(type: T, shape: S) =>
  z.object({ type: z.literal(type), ...shape }).strict();

// ---------------------------------------------------------------- handshake (any peer)

const PublicKey = z.string().min(16).max(256).regex(/^[A-Za-z0-9+/=]+$/, 'a base64 SPKI key');

/** scheduler -> peer, the first frame on every connection: a fresh nonce the worker signs to join. */
export const ChallengeSchema = msg('challenge', {
  protocolVersion: z.number().int(),
  schedulerId: Id,
  nonce: Bytes,
});
/** worker -> scheduler, answer to `challenge`. */
export const WorkerHelloSchema = msg('workerHello', {
  protocolVersion: z.number().int(),
  nodeId: Id,
  name: z.string().max(256),
  /** Ed25519 public key (SPKI DER, base64): pinned to `nodeId` at the first join. */
  signKey: PublicKey,
  /** X25519 public key (SPKI DER, base64): resources sealed for this node use it. */
  boxKey: PublicKey,
  /** Needed at the first join of a node id (issued by `fdl tokens create --kind join`). */
  joinToken: z.string().min(8).max(512).optional(),
  /** Ed25519 signature of sha256("fdl-join-v1\0" schedulerId "\0" nodeId "\0" nonce "\0" boxKey). */
  signature: Bytes,
  /** The worker's data, per project token: metadata only, never rows. */
  projects: z.array(ProjectDataSchema).max(256),
  /** Attempts this worker is running from before a reconnect: `(jobId, attempt)`. The scheduler re-sends every other in-flight assignment. */
  holding: z.array(z.object({ jobId: Id, attempt: z.number().int().min(1) }).strict()).max(100_000),
});
/** workbench -> scheduler, answer to `challenge`. */
export const WorkbenchHelloSchema = msg('workbenchHello', {
  protocolVersion: z.number().int(),
  /** A workbench token (`fdl tokens create --kind workbench`); it decides which projects are visible. */
  token: z.string().min(8).max(512),
  name: z.string().max(256).optional(),
});
/** scheduler -> peer, reply to a hello. */
export const WelcomeSchema = msg('welcome', {
  protocolVersion: z.number().int(),
  schedulerId: Id,
  sessionId: Id,
});
/** any -> any: a request failed or a frame was refused. `reqId` names the request when known. */
export const ErrorMessageSchema = msg('error', { reqId: ReqId.optional(), error: WireErrorSchema });

// ---------------------------------------------------------------- scheduler <-> worker

/** scheduler -> worker: run one attempt of a job. Delivered twice, it runs once and is reported again. */
/** An input of an assignment: a resource reference, with its bytes when they are small. */
export const AssignedInputSchema = ResourceRefSchema.extend({ data: Bytes.optional() }).strict();
export type AssignedInput = z.infer<typeof AssignedInputSchema>;

export const AssignJobSchema = msg('assignJob', {
  artifactId: Id,
  jobId: Id,
  attempt: z.number().int().min(1),
  projectToken: z.string().min(1).max(512),
  /** Which step of the artifact, and which round of an Iterate, the job belongs to. */
  stepIndex: z.number().int().min(0),
  iteration: z.number().int().min(0),
  operation: OperationSchema,
  /**
   * The products of the jobs this job waits on. A small one carries its bytes (`data`, checked
   * against `sha256` like a fetched one); the others are fetched with `fetchResource`.
   */
  inputs: z.array(AssignedInputSchema).max(100_000),
  /** When the outgoing distribution asks for encryption: seal the product for these nodes only. */
  sealFor: z.array(z.object({ nodeId: Id, boxKey: PublicKey }).strict()).max(100_000).optional(),
});
/** scheduler -> worker: stop a job (artifact cancelled or failed); no report is expected. */
export const CancelJobSchema = msg('cancelJob', { jobId: Id, attempt: z.number().int().min(1) });
/**
 * A worker says an attempt runs (`jobStarted`) only when its operation is still running this long
 * after it began: a round of short jobs costs one frame each way per worker, not two back.
 */
export const STARTED_NOTICE_MS = 100;
/**
 * worker -> scheduler: the attempt's operation is still running `STARTED_NOTICE_MS` after it
 * began (a shorter one goes straight to its report, which says how long it ran).
 */
export const JobStartedSchema = msg('jobStarted', { jobId: Id, attempt: z.number().int().min(1) });
/**
 * Rows of this node's data for the project that the attempt read (the union of its data sources
 * bound to the assignment's projectToken, before the query); absent when it read none.
 */
const RowsRead = z.number().int().min(0);
/** How long the operation ran, in ms (from its inputs being in to its product), as the worker measured it. */
const RanMs = z.number().min(0).max(Number.MAX_SAFE_INTEGER);
/** worker -> scheduler: the attempt succeeded; `data` is its product (up to the stream threshold), checked against `sha256`. */
export const JobCompletedSchema = msg('jobCompleted', {
  jobId: Id,
  attempt: z.number().int().min(1),
  sha256: Sha256,
  data: Bytes,
  rows: RowsRead.optional(),
  ranMs: RanMs.optional(),
});
/** worker -> scheduler: the attempt failed. */
export const JobFailedSchema = msg('jobFailed', {
  jobId: Id,
  attempt: z.number().int().min(1),
  error: WireErrorSchema,
});
/**
 * worker -> scheduler: the attempt succeeded with a product over the stream threshold. The
 * scheduler answers `resourceWant` (the offset it already holds of these bytes) or an `error`
 * (RESOURCE_TOO_LARGE names the size and the limit, and fails the attempt); the bytes follow as
 * `resourceChunk`s, and their arrival, checked whole against `sha256`, completes the attempt.
 * Sent again (a reconnect, a repeated assignment), it resumes where the scheduler's copy ends.
 * Exactly one of `sha256` and `upload`: an offer that names `upload` instead (a name the producer
 * drew) streams its bytes under that name and says their sha256 at the end (`productDigest`).
 */
export const ProductOfferSchema = msg('productOffer', {
  jobId: Id,
  attempt: z.number().int().min(1),
  /** The bytes' sha256, known before the first chunk. */
  sha256: Sha256.optional(),
  /** Instead of `sha256`: the name of the upload (64 hex digits, drawn at random), its sha256 to come in `productDigest`. */
  upload: Sha256.optional(),
  size: ByteCount,
  /** As in `jobCompleted`. */
  rows: RowsRead.optional(),
  /** As in `jobCompleted`. */
  ranMs: RanMs.optional(),
}).refine((m) => (m.sha256 === undefined) !== (m.upload === undefined), { message: 'a productOffer names exactly one of sha256 and upload' });
/**
 * worker -> scheduler: the sha256 of the bytes of an offer that named an `upload`, sent when the
 * producer has read them all (after the last chunk, and again whenever it is asked from the end).
 * The scheduler completes the attempt only when every byte is in and their sha256 is this one.
 */
export const ProductDigestSchema = msg('productDigest', {
  jobId: Id,
  attempt: z.number().int().min(1),
  upload: Sha256,
  sha256: Sha256,
});
/**
 * scheduler -> worker: send the resource `sha256` from `offset` (what the scheduler holds; a refused
 * chunk is asked again this way). For an offer that named an `upload`, `sha256` is that name.
 */
export const ResourceWantSchema = msg('resourceWant', { sha256: Sha256, offset: ByteCount });
/**
 * Either way: bytes [offset, offset + data.length) of the streamed resource whose whole sha256 is
 * `resource`; `crc32` (zlib's CRC-32 of `data`) is checked on arrival and a chunk failing it is
 * refused (CHUNK_CORRUPT) and asked again. The receiver writes chunks to disk as they arrive.
 */
export const ResourceChunkSchema = msg('resourceChunk', {
  resource: Sha256,
  offset: ByteCount,
  crc32: z.number().int().min(0).max(0xffff_ffff),
  data: Bytes,
});
/** worker -> scheduler: send me the bytes of a resource addressed to one of my jobs (from `offset`: a resumed download). */
export const FetchResourceSchema = msg('fetchResource', { reqId: ReqId, resourceId: Id, offset: ByteCount.optional() });
/**
 * scheduler -> worker, reply to fetchResource: `data` is the whole resource when it is small;
 * otherwise it is absent and the bytes from `offset` follow as `resourceChunk`s.
 */
export const ResourceDataSchema = msg('resourceData', {
  reqId: ReqId,
  resourceId: Id,
  sha256: Sha256,
  size: ByteCount,
  offset: ByteCount.optional(),
  data: Bytes.optional(),
});

// ---------------------------------------------------------------- workbench -> scheduler requests

export const ListNodesSchema = msg('listNodes', { reqId: ReqId });
export const ListProjectsSchema = msg('listProjects', { reqId: ReqId });
export const GetProjectSchema = msg('getProject', { reqId: ReqId, projectToken: z.string().min(1).max(512) });
export const SubmitArtifactSchema = msg('submitArtifact', {
  reqId: ReqId,
  projectToken: z.string().min(1).max(512),
  artifact: ArtifactSpecSchema,
});
export const GetStatusSchema = msg('getStatus', { reqId: ReqId, artifactId: Id });
/** The result's bytes; `offset`: from there (a resumed download of a streamed result). */
export const GetResultSchema = msg('getResult', { reqId: ReqId, artifactId: Id, offset: ByteCount.optional() });
/** Stop an artifact's jobs on every worker; replied with its status (CANCELLED, or its end state if it had ended). */
export const CancelArtifactSchema = msg('cancelArtifact', { reqId: ReqId, artifactId: Id });
/** Ask for `artifactEvent` pushes about one artifact; replied with its current status. */
export const SubscribeSchema = msg('subscribe', {
  reqId: ReqId,
  artifactId: Id,
  /** Also give each job's `locks` (the DAG's edges) in the reply, to draw the graph. */
  locks: z.boolean().optional(),
});
/**
 * Ask for `networkEvent` pushes (nodes joining and leaving, artifacts submitted, progressing,
 * ending, deleted) of the session's scope from now on; replied with `network`, the picture now.
 */
export const WatchNetworkSchema = msg('watchNetwork', {
  reqId: ReqId,
  /** At most this many artifacts in the reply, newest first (default 100). */
  limit: z.number().int().min(1).max(10_000).optional(),
});
/** The artifacts of the session's projects, newest first; replied with `artifactList`. */
export const ListArtifactsSchema = msg('listArtifacts', {
  reqId: ReqId,
  /** At most this many (default 100). */
  limit: z.number().int().min(1).max(10_000).optional(),
});
/** Delete a finished artifact now (rows, result files, the initiator's masks); replied with `artifactDeleted`. */
export const DeleteArtifactSchema = msg('deleteArtifact', { reqId: ReqId, artifactId: Id });

// ---------------------------------------------------------------- scheduler -> workbench replies and pushes

export const NodeListSchema = msg('nodeList', { reqId: ReqId, nodes: z.array(NodeInfoSchema) });
export const ProjectListSchema = msg('projectList', {
  reqId: ReqId,
  projects: z.array(ProjectInfoSchema.omit({ features: true })),
});
export const ProjectSchema = msg('project', { reqId: ReqId, project: ProjectInfoSchema });
export const ArtifactAcceptedSchema = msg('artifactAccepted', { reqId: ReqId, status: ArtifactStatusSchema });
export const StatusSchema = msg('status', { reqId: ReqId, status: ArtifactStatusSchema });
export const ArtifactListSchema = msg('artifactList', { reqId: ReqId, artifacts: z.array(ArtifactSummarySchema) });
export const ArtifactDeletedSchema = msg('artifactDeleted', { reqId: ReqId, artifactId: Id });
export const ResultSchema = msg('result', {
  reqId: ReqId,
  artifactId: Id,
  resourceId: Id,
  sha256: Sha256,
  size: ByteCount,
  /** Streamed (no `data`): the offset the chunks start at. */
  offset: ByteCount.optional(),
  /** msgpack of the final product (a statistic's object, a model's parameters); absent over the stream threshold: `resourceChunk`s follow. */
  data: Bytes.optional(),
  /** What the result covers and how it was made (the artifact status's `provenance`). */
  provenance: ProvenanceSchema.optional(),
});

export const NetworkSchema = msg('network', {
  reqId: ReqId,
  nodes: z.array(NodeInfoSchema),
  projects: z.array(ProjectInfoSchema.omit({ features: true })),
  /** Newest first, each with its `progress`. */
  artifacts: z.array(ArtifactSummarySchema),
});
/** scheduler -> a workbench that sent `watchNetwork`: one node or artifact changed. */
export const NetworkEventSchema = msg('networkEvent', {
  event: z.discriminatedUnion('kind', [
    /** A worker joined or left: its whole line, as `nodeList` shows it. */
    z.object({ kind: z.literal('node'), node: NodeInfoSchema }).strict(),
    /** An artifact was submitted, changed state, or had one more job done: its whole line. */
    z.object({ kind: z.literal('artifact'), artifact: ArtifactSummarySchema }).strict(),
    z.object({ kind: z.literal('artifactDeleted'), artifactId: Id }).strict(),
  ]),
});

/** One transition of an artifact or of one of its jobs (an element of `artifactEvent.events`). */
export const ArtifactEventItemSchema = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('artifactState'),
      state: ArtifactStateSchema,
      /**
       * A final state (COMPLETED, ERROR, CANCELLED) carries what the status has beyond its jobs
       * (protocol 7): with the jobs' transitions pushed before it, the watcher holds the final
       * status without asking for it. Absent on RUNNING.
       */
      updatedAt: z.number().optional(),
      error: ArtifactStatusSchema.shape.error,
      resultResourceId: ArtifactStatusSchema.shape.resultResourceId,
      provenance: ArtifactStatusSchema.shape.provenance,
    })
    .strict(),
  z
    .object({
      kind: z.literal('jobState'),
      jobId: Id,
      worker: Id,
      state: JobStateSchema,
      attempt: z.number().int().min(0),
      error: WireErrorSchema.optional(),
      /** The job ran out of attempts but its step's quorum lets the artifact go on without it. */
      leftOut: z.boolean().optional(),
      /** FAILED: when its next attempt is due (ms since the epoch). */
      nextAttemptAt: z.number().optional(),
      /** As in JobStatus: when its latest attempt started running; when it last stopped (ms since the epoch). */
      startedAt: z.number().optional(),
      finishedAt: z.number().optional(),
    })
    .strict(),
]);
export type ArtifactEventItem = z.infer<typeof ArtifactEventItemSchema>;

/** Most transitions one `artifactEvent` carries; a longer batch goes as several frames, in order. */
export const MAX_EVENTS_PER_FRAME = 1000;

/**
 * scheduler -> a subscribed workbench: the transitions of one artifact since its last push, in
 * order (protocol 6: a batch, where 5 sent one frame per transition). `progress` is as of the last.
 */
export const ArtifactEventSchema = msg('artifactEvent', {
  artifactId: Id,
  progress: z.object({ completed: z.number().int(), total: z.number().int() }).strict(),
  events: z.array(ArtifactEventItemSchema).min(1).max(MAX_EVENTS_PER_FRAME),
});

// ---------------------------------------------------------------- the union

export const MessageSchemas = {
  challenge: ChallengeSchema,
  workerHello: WorkerHelloSchema,
  workbenchHello: WorkbenchHelloSchema,
  welcome: WelcomeSchema,
  error: ErrorMessageSchema,
  assignJob: AssignJobSchema,
  cancelJob: CancelJobSchema,
  jobStarted: JobStartedSchema,
  jobCompleted: JobCompletedSchema,
  jobFailed: JobFailedSchema,
  productOffer: ProductOfferSchema,
  productDigest: ProductDigestSchema,
  resourceWant: ResourceWantSchema,
  resourceChunk: ResourceChunkSchema,
  fetchResource: FetchResourceSchema,
  resourceData: ResourceDataSchema,
  listNodes: ListNodesSchema,
  listProjects: ListProjectsSchema,
  getProject: GetProjectSchema,
  submitArtifact: SubmitArtifactSchema,
  getStatus: GetStatusSchema,
  getResult: GetResultSchema,
  subscribe: SubscribeSchema,
  cancelArtifact: CancelArtifactSchema,
  listArtifacts: ListArtifactsSchema,
  deleteArtifact: DeleteArtifactSchema,
  watchNetwork: WatchNetworkSchema,
  nodeList: NodeListSchema,
  projectList: ProjectListSchema,
  project: ProjectSchema,
  artifactAccepted: ArtifactAcceptedSchema,
  status: StatusSchema,
  artifactList: ArtifactListSchema,
  artifactDeleted: ArtifactDeletedSchema,
  result: ResultSchema,
  artifactEvent: ArtifactEventSchema,
  network: NetworkSchema,
  networkEvent: NetworkEventSchema,
} as const;

export type MessageType = keyof typeof MessageSchemas;
export const MessageTypes = Object.keys(MessageSchemas) as MessageType[];
export type Message = { [K in MessageType]: z.infer<(typeof MessageSchemas)[K]> }[MessageType];
export type MessageOf<K extends MessageType> = z.infer<(typeof MessageSchemas)[K]>;

export type WorkerToScheduler = MessageOf<
  'workerHello' | 'jobStarted' | 'jobCompleted' | 'productOffer' | 'resourceChunk' | 'jobFailed' | 'fetchResource'
>;
export type WorkbenchRequest = MessageOf<
  | 'listNodes'
  | 'listProjects'
  | 'getProject'
  | 'submitArtifact'
  | 'getStatus'
  | 'getResult'
  | 'subscribe'
  | 'cancelArtifact'
  | 'listArtifacts'
  | 'deleteArtifact'
  | 'watchNetwork'
>;
export type SchedulerToWorker = MessageOf<
  'welcome' | 'error' | 'assignJob' | 'cancelJob' | 'resourceData' | 'resourceWant' | 'resourceChunk'
>;
