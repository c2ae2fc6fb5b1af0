import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import {
  DEFAULT_RETRY_POLICY,
  type RetryPolicy,
  type RetryPolicyField,
  RetryPolicyFields,
  RetryPolicySchema,
  retryPolicyConflicts,
} from '../protocols/entities.ts';
import { formatPath } from '../protocols/errors.ts';
import { DEFAULT_HEAP_GROWING_PERCENT } from './heap.ts';
import { DEFAULT_PROGRESS_INTERVAL_MS } from './transport/defaults.ts';
import { DEFAULT_HOLDER_WAIT_MS, MAX_HOLDER_WAIT_MS } from './plan/defaults.ts';
import { type ConnectionLimits, DEFAULT_CONNECTION_LIMITS } from './transport/admission.ts';
import {
  DEFAULT_ARTIFACTS_IN_FLIGHT_PER_WORKBENCH,
  DEFAULT_FINISHED_ARTIFACT_RETENTION_MS,
  DEFAULT_IDLE_IN_TRANSACTION_MS,
  DEFAULT_INLINE_RESOURCE_MAX_BYTES,
  DEFAULT_LEASE_MS,
  DEFAULT_MAX_RESOURCE_BYTES,
  DEFAULT_RETENTION_SWEEP_INTERVAL_MS,
} from './store/defaults.ts';
import {
  DEFAULT_CHUNK_BYTES,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEFAULT_STREAM_THRESHOLD_BYTES,
  FRAME_OVERHEAD_BYTES,
  DEFAULT_RATE_LIMIT_BURST,
  DEFAULT_RATE_LIMIT_DISCONNECT_MS,
  DEFAULT_RATE_LIMIT_FRAMES_PER_SECOND,
} from './transport/defaults.ts';

/** A node's YAML configuration. Keys are snake_case, as in Ferdelance's config files. */

/** The config's `retry` keys: the fields of the one RetryPolicy, spelled snake_case (mapped here only). */
const RETRY_KEYS = {
  maxAttempts: 'max_attempts',
  initialIntervalMs: 'initial_interval_ms',
  backoffCoefficient: 'backoff_coefficient',
  maxIntervalMs: 'max_interval_ms',
  jitter: 'jitter',
  attemptTimeoutMs: 'attempt_timeout_ms',
  workerGraceMs: 'worker_grace_ms',
} as const satisfies Record<RetryPolicyField, string>;
type RetrySection = { [K in RetryPolicyField as (typeof RETRY_KEYS)[K]]?: RetryPolicy[K] };
const retryFields = Object.entries(RETRY_KEYS) as Array<[RetryPolicyField, string]>;

/** The scheduler's defaults as its config sets them (DEFAULT_RETRY_POLICY for the rest). */
function retryPolicyOfSection(section: RetrySection): RetryPolicy {
  const out: Record<string, unknown> = { ...DEFAULT_RETRY_POLICY };
  for (const [field, key] of retryFields) {
    const v = (section as Record<string, unknown>)[key];
    if (v !== undefined) out[field] = v;
  }
  return out as RetryPolicy;
}

/**
 * Defaults for every artifact's retry policy (a workbench may override per artifact): the
 * fields, bounds and cross-field rules of RetryPolicySchema, so a section that validates starts.
 */
const RetrySectionSchema = z
  .object(Object.fromEntries(retryFields.map(([field, key]) => [key, RetryPolicyFields[field].optional()])))
  .strict()
  .superRefine((section, ctx) => {
    const policy = retryPolicyOfSection(section as RetrySection);
    for (const c of retryPolicyConflicts(policy, (f) => `retry.${RETRY_KEYS[f]}`)) {
      ctx.addIssue({ code: 'custom', path: [RETRY_KEYS[c.field]], message: c.message });
    }
  })
  .default({}) as unknown as z.ZodDefault<z.ZodType<RetrySection>>;

/**
 * A PostgreSQL URL (`postgres://` or `postgresql://`, with a host and a database). A problem is
 * reported without the URL itself: it holds a password.
 */
const PostgresUrl = z.string().superRefine((text, ctx) => {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'not a URL (want postgres://user:password@host:port/database)' });
    return;
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    ctx.addIssue({ code: 'custom', message: `scheme ${url.protocol.replace(/:$/, '')} is not postgres or postgresql (SQLite, the default, needs no url)` });
  } else if (!url.hostname || url.pathname.length <= 1) {
    ctx.addIssue({ code: 'custom', message: 'want postgres://user:password@host:port/database (a host and a database name)' });
  }
});

const NodeName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'letters, digits, "_", "." or "-", at most 64, starting with a letter or digit');

const SchedulerUrl = z.string().regex(/^wss?:\/\/.+/, 'a ws:// or wss:// URL');

export const NodeConfigSchema = z
  .object({
    mode: z.enum(['scheduler', 'worker', 'standalone']),
    /** The node's id in the network: unique, stable. */
    name: NodeName,
    /** Where the node keeps its state; relative paths are relative to the config file. */
    workdir: z.string().min(1).default('./workdir'),
    /** Scheduler and standalone: where to listen. */
    listen: z
      .object({ host: z.string().min(1).default('127.0.0.1'), port: z.number().int().min(0).max(65535).default(1456) })
      .strict()
      .default({ host: '127.0.0.1', port: 1456 }),
    /**
     * Worker: the scheduler to dial (workers open no port): `url`, or `urls` for an active
     * scheduler and its standby (tried in turn; docs/DEPLOY.md).
     */
    scheduler: z
      .object({
        url: SchedulerUrl.optional(),
        urls: z.array(SchedulerUrl).min(1).optional(),
        /** Needed at the first join only (the node's key is pinned then). */
        join_token: z.string().min(8).max(512).optional(),
        /** A CA certificate (PEM file) to trust for wss://, e.g. a self-signed scheduler certificate. */
        ca: z.string().min(1).optional(),
      })
      .strict()
      .optional(),
    /** Scheduler and standalone: join tokens accepted from the config (more with `fdl tokens create`). */
    join_tokens: z.array(z.string().min(8).max(512)).default([]),
    /** Scheduler and standalone: workbench tokens from the config; `projects` (names) limits what each sees. */
    workbench_tokens: z
      .array(z.object({ token: z.string().min(8).max(512), projects: z.array(z.string().min(1)).optional() }).strict())
      .default([]),
    /** Scheduler and standalone: serve wss:// with this certificate and key (PEM files). */
    tls: z.object({ cert: z.string().min(1), key: z.string().min(1) }).strict().optional(),
    /** Allow plain ws:// beyond loopback. Only for networks you trust in so many words. */
    insecure: z.boolean().default(false),
    /** Scheduler and standalone: the projects this network serves. */
    projects: z
      .array(z.object({ name: z.string().min(1).max(256), token: z.string().min(8).max(512) }).strict())
      .default([]),
    /** Worker and standalone: local data files, each bound to the tokens of the projects that may use it. */
    datasources: z
      .array(
        z
          .object({
            name: z.string().min(1).max(256),
            path: z.string().min(1),
            format: z.enum(['csv', 'tsv', 'parquet']).optional(),
            projects: z.array(z.string().min(8).max(512)).min(1),
          })
          .strict(),
      )
      .default([]),
    /** Defaults for every artifact's retry policy (a workbench may override per artifact). */
    retry: RetrySectionSchema,
    /**
     * Worker and standalone: the privacy rules this node applies to what it contributes
     * (docs/OPERATIONS.md, "Privacy").
     */
    privacy: z
      .object({
        /** A group, bin or feature with fewer rows than this is not contributed. */
        min_group_size: z.number().int().min(1).max(1_000_000).default(5),
        /** Differential privacy. Absent: noise is added when a query asks for it, with no budget cap. */
        dp: z
          .object({
            /** Each project's total epsilon on this node; queries past it are refused. */
            budget_per_project: z.number().min(0).max(1_000_000),
            /** Refuse estimators that do not ask for noise. */
            required: z.boolean().default(false),
          })
          .strict()
          .optional(),
      })
      .strict()
      .default({ min_group_size: 5 }),
    /**
     * Worker and standalone: the threads that run the JavaScript-heavy half of operations (model
     * training, cross-validation), off the event loop that keeps heartbeats and status flowing
     * (lib/ops/pool.ts). `threads` absent: one per core but one, at least 1; 0: run them inline, on
     * the main thread (tests, debugging).
     */
    compute: z
      .object({ threads: z.number().int().min(0).max(256).optional() })
      .strict()
      .default({}),
    /**
     * Scheduler and standalone: how long a finished artifact (COMPLETED, ERROR, CANCELLED) is kept,
     * its rows, result files and the initiator's masks; then a sweep deletes it.
     */
    retention: z
      .object({
        finished_artifacts_ms: z.number().int().min(0).default(DEFAULT_FINISHED_ARTIFACT_RETENTION_MS),
        /** How often the sweep runs (it also runs at every start). */
        sweep_interval_ms: z.number().int().min(100).default(DEFAULT_RETENTION_SWEEP_INTERVAL_MS),
      })
      .strict()
      .default({ finished_artifacts_ms: DEFAULT_FINISHED_ARTIFACT_RETENTION_MS, sweep_interval_ms: DEFAULT_RETENTION_SWEEP_INTERVAL_MS }),
    /**
     * Scheduler and standalone: how artifacts are bound to the holders of a project's data. A plan
     * needs every known holder (every worker that announced a data source for the project, until
     * it announces none or `fdl nodes forget` forgets it); a submit while one is away waits up to
     * `holder_wait_ms` for it, then fails with HOLDERS_MISSING naming the missing ones.
     */
    plan: z
      .object({ holder_wait_ms: z.number().int().min(0).max(MAX_HOLDER_WAIT_MS).default(DEFAULT_HOLDER_WAIT_MS) })
      .strict()
      .default({ holder_wait_ms: DEFAULT_HOLDER_WAIT_MS }),
    /** Scheduler and standalone: fair use of the scheduler between workbench tokens. */
    quotas: z
      .object({
        /** Artifacts one workbench token may have SCHEDULED or RUNNING; a submit past it gets QUOTA_EXCEEDED. */
        artifacts_in_flight_per_workbench: z.number().int().min(1).max(1_000_000).default(DEFAULT_ARTIFACTS_IN_FLIGHT_PER_WORKBENCH),
      })
      .strict()
      .default({ artifacts_in_flight_per_workbench: DEFAULT_ARTIFACTS_IN_FLIGHT_PER_WORKBENCH }),
    /**
     * Scheduler on a PostgreSQL store (store.url): the lease that makes one of several
     * schedulers on the store the active one (lib/store/lease.ts, docs/DEPLOY.md). Every
     * scheduler on PostgreSQL takes it, so a second one started by mistake waits as a standby.
     */
    ha: z
      .object({
        /** How long the active scheduler holds the lease without renewing it (renewed every third of it, and at every commit). */
        lease_ms: z.number().int().min(500).max(600_000).default(DEFAULT_LEASE_MS),
      })
      .strict()
      .default({ lease_ms: DEFAULT_LEASE_MS }),
    /** Scheduler and standalone: how the store keeps resource bytes. */
    store: z
      .object({
        /**
         * The scheduler's database: unset, SQLite in the work directory (the default); a
         * `postgres://user:password@host:port/database` URL, PostgreSQL (lib/store/postgres.ts),
         * where every replica of the scheduler finds everything it needs.
         */
        url: PostgresUrl.optional(),
        /** PostgreSQL: a session idle this long inside its open transaction is ended by the server (its locks freed). */
        idle_in_transaction_ms: z.number().int().min(1000).max(3_600_000).default(DEFAULT_IDLE_IN_TRANSACTION_MS),
        /**
         * Resources up to this size are rows of the database (written and fsynced with their
         * row); larger ones are files under `resources/`. 0: every resource a file.
         */
        inline_resource_max_bytes: z.number().int().min(0).max(16 * 1024 * 1024).default(DEFAULT_INLINE_RESOURCE_MAX_BYTES),
        /** A product larger than this is refused with RESOURCE_TOO_LARGE (naming both sizes): its job fails. */
        max_resource_bytes: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).default(DEFAULT_MAX_RESOURCE_BYTES),
      })
      .strict()
      .default({
        inline_resource_max_bytes: DEFAULT_INLINE_RESOURCE_MAX_BYTES,
        max_resource_bytes: DEFAULT_MAX_RESOURCE_BYTES,
        idle_in_transaction_ms: DEFAULT_IDLE_IN_TRANSACTION_MS,
      }),
    /**
     * Every node: a resource over `threshold_bytes` moves in chunks of `chunk_bytes` with
     * back-pressure (docs/PROTOCOL.md, "Streamed resources"); up to it, in one frame. Both must
     * leave a frame's overhead under max_payload_bytes.
     */
    streaming: z
      .object({
        threshold_bytes: z.number().int().min(1024).default(DEFAULT_STREAM_THRESHOLD_BYTES),
        chunk_bytes: z.number().int().min(1024).default(DEFAULT_CHUNK_BYTES),
      })
      .strict()
      .default({ threshold_bytes: DEFAULT_STREAM_THRESHOLD_BYTES, chunk_bytes: DEFAULT_CHUNK_BYTES }),
    allow_resource_download: z.boolean().default(true),
    /** Scheduler and standalone: serve the dashboard page (`/`) on the listening port; it reads everything with a workbench token. */
    dashboard: z.boolean().default(true),
    /**
     * Scheduler and standalone: how far V8 lets the heap grow past what its last major GC kept,
     * in percent (lib/heap.ts); 0: V8's own sizing, which under load lets it reach ~3× the live heap.
     */
    heap_growing_percent: z.number().int().min(0).max(1000).default(DEFAULT_HEAP_GROWING_PERCENT),
    /**
     * Scheduler and standalone: the least time between two progress pushes of one artifact, in ms
     * (docs/PROTOCOL.md, "Progress pushes"); 0 pushes after every barrier. A final state goes at once.
     */
    progress_interval_ms: z.number().int().min(0).max(60_000).default(DEFAULT_PROGRESS_INTERVAL_MS),
    max_payload_bytes: z.number().int().min(1024).default(DEFAULT_MAX_PAYLOAD_BYTES),
    heartbeat_ms: z.number().int().min(100).default(DEFAULT_HEARTBEAT_INTERVAL_MS),
    /** Scheduler and standalone: per-connection frame rate; above it a peer is slowed, then disconnected. */
    rate_limit: z
      .object({
        frames_per_second: z.number().int().min(1).default(DEFAULT_RATE_LIMIT_FRAMES_PER_SECOND),
        burst: z.number().int().min(1).default(DEFAULT_RATE_LIMIT_BURST),
        disconnect_after_ms: z.number().int().min(0).default(DEFAULT_RATE_LIMIT_DISCONNECT_MS),
      })
      .strict()
      .default({
        frames_per_second: DEFAULT_RATE_LIMIT_FRAMES_PER_SECOND,
        burst: DEFAULT_RATE_LIMIT_BURST,
        disconnect_after_ms: DEFAULT_RATE_LIMIT_DISCONNECT_MS,
      }),
    /**
     * Scheduler and standalone: what the scheduler admits (docs/SECURITY.md, "Limits"). A peer
     * over a cap gets `error` TOO_MANY_CONNECTIONS and a close (1013); one that sends more than
     * `pre_auth_max_bytes` before its hello, FRAME_TOO_LARGE and a close (1009).
     */
    connection_limits: z
      .object({
        max_connections: z.number().int().min(1).default(DEFAULT_CONNECTION_LIMITS.maxConnections),
        max_connections_per_address: z.number().int().min(1).default(DEFAULT_CONNECTION_LIMITS.maxConnectionsPerAddress),
        /** Connections whose hello has not been accepted yet. */
        max_unauthenticated: z.number().int().min(1).default(DEFAULT_CONNECTION_LIMITS.maxUnauthenticated),
        max_unauthenticated_per_address: z.number().int().min(1).default(DEFAULT_CONNECTION_LIMITS.maxUnauthenticatedPerAddress),
        /** Bytes a connection may send before its hello is accepted (the hello must fit). */
        pre_auth_max_bytes: z.number().int().min(16 * 1024).default(DEFAULT_CONNECTION_LIMITS.preAuthMaxBytes),
        hello_timeout_ms: z.number().int().min(100).default(DEFAULT_CONNECTION_LIMITS.helloTimeoutMs),
        /** Bytes of frames being received over all peers; above it, peers wait to be read. */
        max_in_flight_bytes: z.number().int().min(1024 * 1024).default(DEFAULT_CONNECTION_LIMITS.maxInFlightBytes),
        /** A workbench session with no data frame either way for this long is closed. */
        workbench_idle_timeout_ms: z.number().int().min(1000).default(DEFAULT_CONNECTION_LIMITS.workbenchIdleTimeoutMs),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/**
 * What each mode needs. Checked on the raw document (not after the schema), so a file with
 * a wrong type elsewhere still gets every problem reported in one go.
 */
function modeProblems(raw: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const mode = raw.mode;
  const nonEmpty = (v: unknown) => Array.isArray(v) && v.length > 0;
  if (mode === 'worker') {
    const { url, urls } = (raw.scheduler as { url?: unknown; urls?: unknown } | undefined) ?? {};
    if (url === undefined && urls === undefined) problems.push('scheduler.url: a worker needs the url of its scheduler (or scheduler.urls)');
    if (url !== undefined && urls !== undefined) problems.push('scheduler.urls: give url or urls, not both');
    if (!nonEmpty(raw.datasources)) problems.push('datasources: a worker needs at least one data source');
  } else if (mode === 'scheduler' || mode === 'standalone') {
    if (!nonEmpty(raw.projects)) problems.push(`projects: a ${mode} needs at least one project`);
  }
  return problems;
}

export type NodeConfig = z.infer<typeof NodeConfigSchema>;

/** Worker: the schedulers it dials, in order (`scheduler.url` or `scheduler.urls`). */
export function schedulerUrlsOf(config: NodeConfig): string[] {
  const s = config.scheduler;
  return s?.urls ?? (s?.url ? [s.url] : []);
}

/** The config's `retry` section as the scheduler's default RetryPolicy. */
export function retryPolicyOf(config: NodeConfig): RetryPolicy {
  return RetryPolicySchema.parse(retryPolicyOfSection(config.retry));
}

/** The config's `connection_limits`, as the transport takes them. */
export function connectionLimitsOf(config: NodeConfig): ConnectionLimits {
  const c = config.connection_limits;
  return {
    maxConnections: c.max_connections,
    maxConnectionsPerAddress: c.max_connections_per_address,
    maxUnauthenticated: c.max_unauthenticated,
    maxUnauthenticatedPerAddress: c.max_unauthenticated_per_address,
    preAuthMaxBytes: c.pre_auth_max_bytes,
    helloTimeoutMs: c.hello_timeout_ms,
    maxInFlightBytes: c.max_in_flight_bytes,
    workbenchIdleTimeoutMs: c.workbench_idle_timeout_ms,
  };
}

/** A config error for a person: which file, which field, what was expected. Never a stack trace. */
export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`${file}: invalid configuration\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Replaces `${NAME}` in every string with the environment variable; a missing one is an error. */
function substitute(value: unknown, path: string, env: NodeJS.ProcessEnv, problems: string[]): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
      const v = env[name];
      if (v === undefined) {
        problems.push(`${path || '(root)'}: environment variable ${name} is not set`);
        return '';
      }
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => substitute(v, `${path}[${i}]`, env, problems));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, substitute(v, path ? `${path}.${k}` : k, env, problems)]),
    );
  }
  return value;
}

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** Plain ws:// beyond loopback sends tokens and results in clear text: refused unless `insecure: true`. */
function plainTextProblems(c: NodeConfig): string[] {
  if (c.insecure) return [];
  if (c.mode !== 'worker' && !c.tls && !isLoopback(c.listen.host)) {
    return [`listen.host: ${c.listen.host} is not loopback; configure tls (cert, key) for wss://, or set insecure: true`];
  }
  if (c.mode === 'worker' && c.scheduler) {
    return schedulerUrlsOf(c).flatMap((u) => {
      const url = new URL(u);
      return url.protocol === 'ws:' && !isLoopback(url.hostname)
        ? [`scheduler.url: plain ws:// to ${url.hostname} is not loopback; use wss://, or set insecure: true`]
        : [];
    });
  }
  return [];
}

/**
 * The streaming sizes the file does not set follow a smaller max_payload_bytes down, so a config
 * that sets only max_payload_bytes starts; sizes it sets are left for `streamingProblems` to judge.
 */
function fitStreaming(c: NodeConfig, given: unknown): void {
  const room = c.max_payload_bytes - FRAME_OVERHEAD_BYTES;
  const set = (given !== null && typeof given === 'object' ? given : {}) as Record<string, unknown>;
  for (const k of ['threshold_bytes', 'chunk_bytes'] as const) {
    if (set[k] === undefined) c.streaming[k] = Math.max(1024, Math.min(c.streaming[k], room));
  }
}

/** A chunk, or a resource sent in one frame, must fit a frame with room for its other fields. */
function streamingProblems(c: NodeConfig): string[] {
  const room = c.max_payload_bytes - FRAME_OVERHEAD_BYTES;
  if (room < 1024) {
    return [`max_payload_bytes: ${c.max_payload_bytes} leaves no room for a resource's bytes in a frame (at least ${FRAME_OVERHEAD_BYTES + 1024})`];
  }
  return (['threshold_bytes', 'chunk_bytes'] as const)
    .filter((k) => c.streaming[k] > room)
    .map((k) => `streaming.${k}: ${c.streaming[k]} does not fit a frame of max_payload_bytes ${c.max_payload_bytes} (at most ${room})`);
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const path = formatPath(issue.path);
  return `${path || '(root)'}: ${issue.message}`;
}

/** Parses a config text; relative paths resolve against `baseDir`. */
export function parseConfig(text: string, file: string, baseDir: string, env: NodeJS.ProcessEnv = process.env): NodeConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new ConfigError(file, [`not valid YAML: ${(e as Error).message.split('\n')[0]}`]);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(file, ['(root): expected a mapping of settings (mode, name, ...)']);
  }
  const problems: string[] = [];
  const substituted = substitute(raw, '', env, problems);
  if (problems.length > 0) throw new ConfigError(file, problems);
  const parsed = NodeConfigSchema.safeParse(substituted);
  const all = [
    ...(parsed.success ? [] : parsed.error.issues.map(describeIssue)),
    ...modeProblems(substituted as Record<string, unknown>),
  ];
  if (!parsed.success || all.length > 0) throw new ConfigError(file, all);
  const config = parsed.data;
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  config.workdir = abs(config.workdir);
  for (const ds of config.datasources) ds.path = abs(ds.path);
  if (config.tls) config.tls = { cert: abs(config.tls.cert), key: abs(config.tls.key) };
  if (config.scheduler?.ca) config.scheduler.ca = abs(config.scheduler.ca);
  fitStreaming(config, (substituted as { streaming?: unknown }).streaming);
  const plain = [...plainTextProblems(config), ...streamingProblems(config)];
  if (plain.length > 0) throw new ConfigError(file, plain);
  return config;
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): NodeConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(file, [`cannot read the file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`]);
  }
  return parseConfig(text, file, dirname(resolve(file)), env);
}
