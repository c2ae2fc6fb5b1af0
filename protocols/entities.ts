import { z } from 'zod';
import { WireErrorSchema } from './errors.ts';
import { Id, Name, OperationSchema, ScalarSchema } from './operations/index.ts';

// Queries, filters and operations live in protocols/operations/ (one file per family).
export * from './operations/index.ts';

// ---------------------------------------------------------------- steps and distributions

export const DistributionSchema = z
  .object({
    /** Arrange: all to all. Collect: many to one. Distribute: one to many. DirectToNext: i-th to i-th. */
    kind: z.enum(['Arrange', 'Collect', 'Distribute', 'DirectToNext']),
    /** Seal resources for the receiving node (issue: security). */
    encryption: z.boolean().default(false),
  })
  .strict();
export type Distribution = z.infer<typeof DistributionSchema>;

const OnInitiator = (kind: 'Initialize' | 'Finalize') =>
  z
    .object({ kind: z.literal(kind), operation: OperationSchema, distribution: DistributionSchema.optional() })
    .strict();

export const ParallelStepSchema = z
  .object({
    kind: z.literal('Parallel'),
    operation: OperationSchema,
    distribution: DistributionSchema.optional(),
    /**
     * Dropout tolerance: how many workers must succeed (a count, or a percentage like "60%").
     * The others may run out of attempts and the artifact goes on without their products.
     * Absent: every worker is required.
     */
    quorum: z.union([z.number().int().min(1), z.string().regex(/^(100|[1-9]?[0-9])(\.[0-9]+)?%$/, 'a percentage like "60%"')]).optional(),
  })
  .strict();
export const SequentialStepSchema = z
  .object({
    kind: z.literal('Sequential'),
    /** Runs on the initiator before the chain. */
    init: OperationSchema,
    /** Runs on each worker in turn; each gets the product of the one before. */
    operation: OperationSchema,
    /** Runs on the initiator after the last worker. */
    final: OperationSchema,
    /** Seal the running value for the next node at every link of the chain (the scheduler relays it unread). */
    encryption: z.boolean().optional(),
    distribution: DistributionSchema.optional(),
  })
  .strict();
export const RoundRobinStepSchema = z
  .object({ kind: z.literal('RoundRobin'), operation: OperationSchema, distribution: DistributionSchema.optional() })
  .strict();

export const SimpleStepSchema = z.discriminatedUnion('kind', [
  OnInitiator('Initialize'),
  ParallelStepSchema,
  SequentialStepSchema,
  RoundRobinStepSchema,
  OnInitiator('Finalize'),
]);
export type SimpleStep = z.infer<typeof SimpleStepSchema>;

export const IterateStepSchema = z
  .object({
    kind: z.literal('Iterate'),
    iterations: z.number().int().min(1).max(10_000),
    steps: z.array(SimpleStepSchema).min(1).max(64),
  })
  .strict();

export const StepSchema = z.discriminatedUnion('kind', [
  OnInitiator('Initialize'),
  ParallelStepSchema,
  SequentialStepSchema,
  RoundRobinStepSchema,
  OnInitiator('Finalize'),
  IterateStepSchema,
]);
export type Step = z.infer<typeof StepSchema>;
export type StepKind = Step['kind'];

// ---------------------------------------------------------------- artifact

/**
 * The retry policy, defined once: each field's bounds here, its default in
 * `DEFAULT_RETRY_POLICY`, the rules between fields in `retryPolicyConflicts`. The wire policy,
 * the overrides of an artifact and the scheduler's `retry:` config section all derive from these.
 */
export const RetryPolicyFields = {
  /** Counts the first attempt: 3 means one try and two retries. At least 1; there is no "unlimited". */
  maxAttempts: z.number().int().min(1).max(100),
  /** Wait before the first retry. */
  initialIntervalMs: z.number().int().min(0).max(3_600_000),
  /** Each further retry waits this many times longer... */
  backoffCoefficient: z.number().min(1).max(10),
  /** ...up to this cap. */
  maxIntervalMs: z.number().int().min(0).max(3_600_000),
  /** Fraction of each wait drawn at random (0: none, 1: anywhere in [0, wait]), so retries don't move in lockstep. */
  jitter: z.number().min(0).max(1),
  /** Bound on one attempt of one job, from assignment to report (Temporal's startToClose). */
  attemptTimeoutMs: z.number().int().min(100).max(86_400_000),
  /** How long a job waits for its lost worker to come back before the attempt counts as failed. */
  workerGraceMs: z.number().int().min(0).max(86_400_000),
};
export type RetryPolicyField = keyof typeof RetryPolicyFields;
export type RetryPolicy = { [K in RetryPolicyField]: z.infer<(typeof RetryPolicyFields)[K]> };

/** The scheduler's policy when its config sets nothing. */
export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  maxAttempts: 3,
  initialIntervalMs: 500,
  backoffCoefficient: 2,
  maxIntervalMs: 30_000,
  jitter: 0.2,
  attemptTimeoutMs: 600_000,
  workerGraceMs: 30_000,
});

/**
 * The rules between fields of a complete policy, each a problem of one field; `name` spells a
 * field as the reader wrote it (`maxIntervalMs` on the wire, `retry.max_interval_ms` in a config).
 */
export function retryPolicyConflicts(
  p: RetryPolicy,
  name: (field: RetryPolicyField) => string = (f) => f,
): Array<{ field: RetryPolicyField; message: string }> {
  const out: Array<{ field: RetryPolicyField; message: string }> = [];
  // A value out of its own bounds is reported as such, not again as a conflict.
  const valid = (...fields: RetryPolicyField[]) => fields.every((f) => RetryPolicyFields[f].safeParse(p[f]).success);
  if (valid('initialIntervalMs', 'maxIntervalMs') && p.initialIntervalMs > p.maxIntervalMs) {
    out.push({ field: 'initialIntervalMs', message: `${p.initialIntervalMs} must not exceed ${name('maxIntervalMs')} (${p.maxIntervalMs})` });
  }
  return out;
}

const withDefaults = Object.fromEntries(
  Object.entries(RetryPolicyFields).map(([k, f]) => [k, f.default(DEFAULT_RETRY_POLICY[k as RetryPolicyField])]),
) as { [K in RetryPolicyField]: z.ZodDefault<(typeof RetryPolicyFields)[K]> };

export const RetryPolicySchema = z
  .object(withDefaults)
  .strict()
  .superRefine((p, ctx) => {
    for (const c of retryPolicyConflicts(p)) ctx.addIssue({ code: 'custom', path: [c.field], message: c.message });
  });

/** The policy fields a workbench may set; the rest come from the scheduler's defaults. */
export const RetryPolicyOverridesSchema = z.object(RetryPolicyFields).partial().strict();

/** What a workbench submits: the wire form of an Artifact (also the `fdl submit` file format). */
export const ArtifactSpecSchema = z
  .object({
    name: z.string().max(256).optional(),
    steps: z.array(StepSchema).min(1).max(256),
    /** Overrides of the scheduler's default retry policy, field by field. */
    policy: RetryPolicyOverridesSchema.optional(),
  })
  .strict();
export type ArtifactSpec = z.infer<typeof ArtifactSpecSchema>;
export type ArtifactSpecInput = z.input<typeof ArtifactSpecSchema>;

export const ArtifactStates = ['SCHEDULED', 'RUNNING', 'COMPLETED', 'ERROR', 'CANCELLED'] as const;
export const ArtifactStateSchema = z.enum(ArtifactStates);
export type ArtifactState = z.infer<typeof ArtifactStateSchema>;

export const JobStates = ['WAITING', 'SCHEDULED', 'RUNNING', 'COMPLETED', 'FAILED', 'ERROR'] as const;
export const JobStateSchema = z.enum(JobStates);
export type JobState = z.infer<typeof JobStateSchema>;

export const JobStatusSchema = z
  .object({
    id: Id,
    index: z.number().int().min(0),
    worker: Id,
    stepIndex: z.number().int().min(0),
    iteration: z.number().int().min(0),
    operation: z.string().max(64),
    state: JobStateSchema,
    attempt: z.number().int().min(0),
    lastError: WireErrorSchema.optional(),
    /** When a FAILED job's next attempt is due (ms since the epoch). */
    nextAttemptAt: z.number().optional(),
    /** When its latest attempt started running on its worker (ms since the epoch); absent before any did. */
    startedAt: z.number().optional(),
    /** When it last stopped: COMPLETED, FAILED or ERROR (ms since the epoch); absent while an attempt runs. */
    finishedAt: z.number().optional(),
    /** Set when the job ran out of attempts but its step's quorum let the artifact go on without it. */
    leftOut: z.boolean().optional(),
    /** Indices of the jobs this job unlocks (the DAG's edges): only in the reply to a `subscribe` with `locks: true`. */
    locks: z.array(z.number().int().min(0)).max(100_000).optional(),
  })
  .strict();
export type JobStatus = z.infer<typeof JobStatusSchema>;

/**
 * What a result covers and how it was made, fixed when the artifact completes: the data holders
 * and rows it covers, what a quorum left out, the seeds, the artifact's hash and the software.
 */
export const ProvenanceSchema = z
  .object({
    /** True when no job was left out: the result covers every holder the plan bound (every known holder of the project). */
    complete: z.boolean(),
    /** The data holders the plan bound (every known holder at submit), sorted by node id. */
    workers: z
      .array(
        z
          .object({
            nodeId: Id,
            /**
             * Rows of the node's data for the project that its jobs read (the union of its data sources
             * bound to the project token, before any query), as its job reports said; absent when no
             * completed job of it reported rows.
             */
            rows: z.number().int().min(0).optional(),
            /** Its jobs that completed. */
            completedJobs: z.number().int().min(0),
            /** Its jobs left out under a quorum (no product). */
            leftOutJobs: z.number().int().min(0),
          })
          .strict(),
      )
      .max(100_000),
    /** Node ids of the workers none of whose jobs was left out: the result covers all of their data. */
    included: z.array(Id).max(100_000),
    /** Node ids of the workers at least one of whose jobs was left out. */
    leftOut: z.array(Id).max(100_000),
    /** The rows of the included workers, summed (workers that reported none count 0). */
    rows: z.number().int().min(0),
    /** Ids of the jobs left out under a quorum, in job order. */
    leftOutJobs: z.array(Id).max(100_000),
    /** Seeds in effect (defaults filled in): of the models' training, and of the train/test splits and folds. */
    seeds: z
      .object({
        model: z.array(z.number().int()).max(10_000),
        split: z.array(z.number().int()).max(10_000),
      })
      .strict(),
    /** SHA-256 of the canonical JSON of the artifact as the scheduler accepted it (docs/PROTOCOL.md, "Provenance"). */
    artifactSha256: z.string().regex(/^[0-9a-f]{64}$/),
    /** The scheduler's software when the artifact completed. */
    software: z.object({ name: z.string().max(64), version: z.string().max(64), protocolVersion: z.number().int() }).strict(),
  })
  .strict();
export type Provenance = z.infer<typeof ProvenanceSchema>;

export const ArtifactStatusSchema = z
  .object({
    id: Id,
    name: z.string().max(256).optional(),
    projectId: Id,
    state: ArtifactStateSchema,
    progress: z.object({ completed: z.number().int(), total: z.number().int() }).strict(),
    jobs: z.array(JobStatusSchema),
    /** Set when the artifact is ERROR: which job, on which worker, and why. */
    error: z
      .object({ jobId: Id.optional(), worker: Id.optional(), error: WireErrorSchema })
      .strict()
      .optional(),
    resultResourceId: Id.optional(),
    /** Set when COMPLETED: what the result covers (workers, rows, left-out jobs), seeds, hashes, software. */
    provenance: ProvenanceSchema.optional(),
    createdAt: z.number(),
    updatedAt: z.number(),
  })
  .strict();
export type ArtifactStatus = z.infer<typeof ArtifactStatusSchema>;

/** One line of an artifact listing: the status without its jobs. */
export const ArtifactSummarySchema = ArtifactStatusSchema.pick({ id: true, name: true, projectId: true, state: true, createdAt: true, updatedAt: true })
  .extend({
    /** When it reached COMPLETED, ERROR or CANCELLED (retention counts from here); absent while it runs. */
    finishedAt: z.number().optional(),
    /** Jobs done / all jobs, as in `artifactEvent`: in `network` and `networkEvent` only. */
    progress: z.object({ completed: z.number().int(), total: z.number().int() }).strict().optional(),
  })
  .strict();
export type ArtifactSummary = z.infer<typeof ArtifactSummarySchema>;

// ---------------------------------------------------------------- resources

export const ResourceRefSchema = z
  .object({
    id: Id,
    /** The job that produced it. */
    jobId: Id,
    producer: Id,
    size: z.number().int().min(0),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
  })
  .strict();
export type ResourceRef = z.infer<typeof ResourceRefSchema>;

// ---------------------------------------------------------------- data metadata (aggregates only)

export const DTypes = ['numeric', 'string', 'boolean', 'datetime', 'other'] as const;

export const FeatureMetaSchema = z
  .object({
    name: Name,
    dtype: z.enum(DTypes),
    /** The engine's own type name (DuckDB), e.g. DOUBLE, BIGINT, VARCHAR. */
    sqlType: z.string().max(128),
    missing: z.number().int().min(0),
    min: z.number().nullable().optional(),
    max: z.number().nullable().optional(),
    mean: z.number().nullable().optional(),
    std: z.number().nullable().optional(),
    /** Distinct values, only for low-cardinality features (the group-by domain). */
    categories: z.array(ScalarSchema).max(1_024).optional(),
  })
  .strict();
export type FeatureMeta = z.infer<typeof FeatureMetaSchema>;

export const DataSourceMetaSchema = z
  .object({
    name: Name,
    rows: z.number().int().min(0),
    features: z.array(FeatureMetaSchema).max(4_096),
  })
  .strict();
export type DataSourceMeta = z.infer<typeof DataSourceMetaSchema>;

/** What a worker announces for one project token: its data sources bound to it. */
export const ProjectDataSchema = z
  .object({ token: z.string().min(1).max(512), datasources: z.array(DataSourceMetaSchema).max(256) })
  .strict();
export type ProjectData = z.infer<typeof ProjectDataSchema>;

export const AggregatedFeatureSchema = z
  .object({
    name: Name,
    dtype: z.enum(DTypes),
    datasources: z.number().int(),
    rows: z.number().int(),
    missing: z.number().int(),
    min: z.number().nullable(),
    max: z.number().nullable(),
    /** Row-weighted over the data sources. */
    mean: z.number().nullable(),
    categories: z.array(ScalarSchema).optional(),
  })
  .strict();
export type AggregatedFeature = z.infer<typeof AggregatedFeatureSchema>;

export const ProjectInfoSchema = z
  .object({
    id: Id,
    name: Name,
    workers: z.number().int(),
    datasources: z.number().int(),
    rows: z.number().int(),
    features: z.array(AggregatedFeatureSchema),
  })
  .strict();
export type ProjectInfo = z.infer<typeof ProjectInfoSchema>;

/** One data source of a node, as a listing shows it: which project, how many rows and features. */
export const NodeSourceSchema = z
  .object({
    projectId: Id,
    name: Name,
    rows: z.number().int().min(0),
    features: z.number().int().min(0),
  })
  .strict();
export type NodeSource = z.infer<typeof NodeSourceSchema>;

export const NodeInfoSchema = z
  .object({
    id: Id,
    name: z.string().max(256),
    role: z.enum(['scheduler', 'worker']),
    connected: z.boolean(),
    lastSeen: z.number(),
    projects: z.number().int(),
    datasources: z.number().int(),
    /** Digest of the node's signing key, to compare out of band. */
    fingerprint: z.string().max(128).optional(),
    /** Its data sources of the projects in the session's scope: aggregates only (rows, feature count). */
    sources: z.array(NodeSourceSchema).max(65_536).optional(),
  })
  .strict();
export type NodeInfo = z.infer<typeof NodeInfoSchema>;
