import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { type Ref, start, stop } from 'nact';
import type { ProjectData } from '../protocols/entities.ts';
import type { Message, MessageOf } from '../protocols/messages.ts';
import { encode } from '../protocols/codec.ts';
import { PROTOCOL_VERSION } from '../protocols/version.ts';
// The composition root: the one module of lib/ that builds actors (see docs/ARCHITECTURE.md).
import { spawnConnection } from '../actors/connection.ts';
import { ProjectListing } from '../actors/listings.ts';
import { type PeerHandle, type SchedulerMsg, spawnScheduler } from '../actors/scheduler.ts';
import { ReportRoutes, isWorkerReport } from '../actors/report-routes.ts';
import { type WorkerMsg, spawnWorker } from '../actors/worker.ts';
import { sizeHeap } from './heap.ts';
import { ConfigError, connectionLimitsOf, type NodeConfig, retryPolicyOf, schedulerUrlsOf } from './config.ts';
import { readSegmentedHead } from './security/seal.ts';
import { handshakeMessage, identityOf, loadOrCreateIdentity, localsSecret, newIdentityText, signWith } from './security/identity.ts';
import { DataEngine } from './data/engine.ts';
import { send, shardOf, spawnActor } from './kit/actors.ts';
import { createLogger, type Logger } from './log.ts';
import { FileBudgetLedger, type PrivacySettings } from './ops/index.ts';
import { type ComputeHandle, computePool, defaultComputeThreads, shareCompute } from './ops/pool.ts';
import { LOCALS_DIR, LocalsStore } from './store/locals.ts';
import { Lease } from './store/lease.ts';
import { sha256Hex } from './store/blobs.ts';
import { openSchedulerStore } from './store/network.ts';
import { type PostgresEngine, redactUrl } from './store/postgres.ts';
import { DATABASE_FILE } from './store/store.ts';
import { Client } from './transport/client.ts';
import { dashboardHandler, dashboardUrl } from './dashboard/serve.ts';
import { Downloads } from './transport/downloads.ts';
import { bufferSource, fileSource, OfferedResources, sha256OfFile } from './transport/stream.ts';
import { Uploads } from './store/uploads.ts';
import { FdlError } from './errors.ts';
import { type RunningServer, startServer } from './transport/server.ts';

export interface RunningNode {
  name: string;
  mode: NodeConfig['mode'];
  /** Scheduler and standalone: the URL workers and workbenches dial. */
  url?: string;
  stop(): Promise<void>;
}

/** Connections are spread over this many parents: nact copies a parent's children map on every message. */
const CONNECTION_SHARDS = 32;
/** A node's folder for streamed resources: `in` (downloads, resumable), `out` (products written as files). */
const SPOOL_DIR = 'spool';
/** How often the scheduler looks for revoked tokens, to close their sessions. */
const REVOCATION_CHECK_MS = 1_000;

function readPem(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ConfigError(path, [`${field}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`]);
  }
}

/** The privacy rules a node applies to what it contributes (`privacy:` in its config). */
function privacyOf(config: NodeConfig): PrivacySettings {
  const { min_group_size, dp } = config.privacy;
  const privacy: PrivacySettings = { minGroupSize: min_group_size };
  if (dp) {
    privacy.budget = new FileBudgetLedger(join(config.workdir, 'privacy-budget.json'), dp.budget_per_project);
    privacy.requireDp = dp.required;
  }
  return privacy;
}

interface OpenedData {
  data: DataEngine | undefined;
  projects: ProjectData[];
  /** The threads for operations' heavy half (config `compute`); none without data, or with 0 threads. */
  compute: ComputeHandle | undefined;
}

/** `shared`: the pool of the process's workers (startWorkerHost); absent, the node makes its own from its config. */
async function openData(config: NodeConfig, log: Logger, shared?: ComputeHandle | null): Promise<OpenedData> {
  if (config.datasources.length === 0) {
    await shared?.close();
    return { data: undefined, projects: [], compute: undefined };
  }
  const data = await DataEngine.open(config.datasources);
  const projects = await data.metadata();
  for (const p of projects) {
    log.info(
      { datasources: p.datasources.map((d) => ({ name: d.name, rows: d.rows, features: d.features.length })) },
      'data sources ready',
    );
  }
  const compute = shared === undefined ? computePool(config.compute.threads ?? defaultComputeThreads()) : (shared ?? undefined);
  log.info(
    { threads: compute?.threads ?? 0, shared: shared !== undefined },
    compute ? 'compute pool ready' : 'operations run inline (compute.threads: 0)',
  );
  return { data, projects, compute };
}

export interface StartOptions {
  /**
   * Scheduler and standalone (`fdl node --init-store`): a work directory whose store is missing,
   * empty, damaged or from another network starts a new network, its old files kept aside.
   * Without it such a node refuses to start (lib/store/network.ts).
   */
  initStore?: boolean;
  /** Worker: the compute pool it shares with the other workers of its process (startWorkerHost); null: none (inline). */
  compute?: ComputeHandle | null;
}

/** Holds of in-process jobs kept at once (each also ends by itself within GroupCommit's HOLD_MAX_MS). */
const MAX_HELD = 64;

export async function startNode(config: NodeConfig, log: Logger = createLogger(config.name), opts: StartOptions = {}): Promise<RunningNode> {
  mkdirSync(config.workdir, { recursive: true });
  return config.mode === 'worker' ? startWorkerNode(config, log, opts.compute) : startSchedulerNode(config, log, opts);
}

/**
 * A scheduler on PostgreSQL that must not go on exits with this code (fail-stop): it lost its
 * lease (`fenced: …`), or its store gave up an open transaction (`the store gave up: …`). Its
 * supervisor starts it again; it comes back as a standby, or takes the lease if it is free.
 */
export const FAIL_STOP_EXIT_CODE = 3;

/**
 * On PostgreSQL, before anything else is opened: wait as a standby until this process holds the
 * lease (lib/store/lease.ts). Losing it later ends the process at once, with one line.
 */
async function takeLease(config: NodeConfig, url: string, log: Logger): Promise<Lease> {
  const holder = `${config.name}@${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  const lease = await Lease.acquire({
    url,
    holder,
    leaseMs: config.ha.lease_ms,
    log,
    onLost: (e) => {
      log.fatal({ holder, epoch: e.epoch }, `fenced: ${e.message}; exiting`);
      process.exit(FAIL_STOP_EXIT_CODE);
    },
  });
  log.info({ holder, epoch: lease.epoch, leaseMs: config.ha.lease_ms }, 'active: this scheduler holds the lease; starting');
  return lease;
}

async function startSchedulerNode(config: NodeConfig, log: Logger, opts: StartOptions): Promise<RunningNode> {
  sizeHeap(config.heap_growing_percent);
  const lease = config.store.url ? await takeLease(config, config.store.url, log) : undefined;
  // The store first: a damaged one stops the node before anything else is opened or made.
  let openedStore: ReturnType<typeof openSchedulerStore>;
  try {
    openedStore = openSchedulerStore(config.workdir, {
      initStore: opts.initStore ?? false,
      url: config.store.url,
      idleInTransactionMs: config.store.idle_in_transaction_ms,
    });
  } catch (e) {
    await lease?.release();
    throw e;
  }
  const { store, network, replaced } = openedStore;
  if (store.db.kind === 'postgres') {
    const engine = store.db as PostgresEngine;
    // Every commit from now on is fenced by the lease: a scheduler that lost it lands nothing more.
    if (lease) engine.beforeCommit = () => lease.fence(engine);
  }
  // Both engines keep one open transaction between barriers: one given up is writes lost.
  store.db.onFailed = (e) => {
    log.fatal({ err: e.message }, 'the store gave up its open transaction; exiting');
    process.exit(FAIL_STOP_EXIT_CODE);
  };
  if (replaced) log.warn({ problem: replaced.problem, oldFilesIn: replaced.folder, networkId: network.networkId }, 'started a new network (--init-store)');
  else if (opts.initStore) log.warn('--init-store ignored: the store is healthy and is this work directory\'s own');
  let opened: OpenedData;
  try {
    opened = await openData(config, log);
  } catch (e) {
    store.close();
    await lease?.release();
    throw e;
  }
  const { data, projects, compute } = opened;
  // On PostgreSQL the identity lives in the store (every replica is the same scheduler); on SQLite, beside it.
  const identity =
    store.db.kind === 'postgres' ? identityOf(store.sharedIdentity(newIdentityText), 'the store') : loadOrCreateIdentity(config.workdir);
  store.inlineResourceMaxBytes = config.store.inline_resource_max_bytes;
  store.onBarrierError = (e) => log.error({ err: e }, 'the store cannot make its changes durable; holding every message until it can');
  const byName = new Map(config.projects.map((p) => [p.name, store.ensureProject(p.name, p.token).id]));
  for (const token of config.join_tokens) store.ensureToken('join', token, { label: 'config' }, Date.now());
  for (const [i, w] of config.workbench_tokens.entries()) {
    const ids = w.projects?.map((name) => {
      const id = byName.get(name);
      if (!id) throw new ConfigError(config.name, [`workbench_tokens[${i}].projects: no project named ${JSON.stringify(name)}`]);
      return id;
    });
    store.ensureToken('workbench', w.token, ids ? { label: 'config', projects: ids } : { label: 'config' }, Date.now());
  }
  const schedulerId = store.schedulerId(config.name);
  const system = start();
  // On PostgreSQL the initiator's locals are rows of the store, where every replica finds them.
  // Its masks are derived from the identity's secret (durable already, and the same on every
  // replica): a Sequential estimator's init writes nothing, and no fsync waits for it.
  const secret = localsSecret(identity);
  const locals =
    store.db.kind === 'postgres' ? new LocalsStore(undefined, store, secret) : new LocalsStore(join(config.workdir, LOCALS_DIR), undefined, secret);
  const uploads = new Uploads(store.blobs.incoming);
  const { threshold_bytes: thresholdBytes, chunk_bytes: chunkBytes } = config.streaming;

  // The scheduler and its initiator address each other; refs are bound once both exist.
  let scheduler: Ref<SchedulerMsg> | undefined;
  let initiator: Ref<WorkerMsg> | undefined;
  // A job handed to the initiator in-process continues the cascade that assigned it: the store's
  // next barrier waits for its report (GroupCommit.hold, a few ms at most), so that a Sequential
  // chain's init, its product and the next job's assignment ride in the commit that accepted the
  // artifact, instead of the barrier running while the init runs and the next assignment waiting
  // for a second one. Any report of the initiator releases what it holds (a hold also ends by itself).
  const held: Array<() => void> = [];
  const releaseHeld = () => {
    for (const release of held.splice(0)) release();
  };
  // The initiator's reports on the attempts assigned to it go straight to their JobActors, as a
  // worker's do over its Connection (actors/report-routes.ts).
  const initiatorRoutes = new ReportRoutes();
  const initiatorPeer: PeerHandle = {
    sessionId: 'initiator',
    send: (message, reportsTo) => {
      if (!initiator) return;
      initiatorRoutes.sending(message, reportsTo);
      if (message.type === 'assignJob') {
        if (held.length >= MAX_HELD) releaseHeld();
        held.push(store.hold());
      }
      send(initiator, { kind: 'inbound', message });
    },
    close: () => {},
  };
  const toScheduler = (message: Message) => {
    if (message.type === 'jobCompleted' || message.type === 'jobFailed' || message.type === 'productOffer') releaseHeld();
    if (isWorkerReport(message) && initiatorRoutes.route(schedulerId, message)) return;
    send(scheduler as Ref<SchedulerMsg>, { kind: 'fromWorker', peer: initiatorPeer, nodeId: schedulerId, message });
  };
  initiator = spawnWorker(system, {
    name: schedulerId,
    log: log.child({ actor: 'initiator' }),
    data,
    locals,
    identity: { nodeId: schedulerId, boxPrivate: identity.boxPrivate },
    privacy: privacyOf(config),
    ...(compute ? { compute } : {}),
    sendToScheduler: (message) => {
      if (!scheduler) return false;
      toScheduler(message);
      return true;
    },
    scratch: join(config.workdir, SPOOL_DIR, 'out'),
    // In the scheduler's process: large inputs are the store's own files, large products go to
    // the store without a socket (a file is copied, bytes ride in the report).
    large: {
      thresholdBytes,
      dir: join(config.workdir, SPOOL_DIR, 'out'),
      sealIntoFile: true,
      fetch: async (ref) => {
        const body = store.resourceBody(ref.id);
        if (!body) throw new FdlError('UNKNOWN_RESOURCE', `no resource ${ref.id}`);
        if (body.bytes) return { bytes: body.bytes };
        const file = body.file as string;
        // The store checked the sha256 as the bytes came in and fsynced the file before its row. A
        // plain file is hashed again here (its operation reads it as it is); a sealed one is not:
        // opening it authenticates every segment, its head and its length (AES-GCM, lib/security/
        // seal.ts), so a byte changed at rest fails there, naming the segment, without a third
        // SHA-256 pass over the file.
        if (!readSegmentedHead(file) && sha256OfFile(file) !== body.ref.sha256) {
          throw new FdlError('CHECKSUM_MISMATCH', `resource ${ref.id} in the store does not match its sha256`);
        }
        return { path: file };
      },
      send: (offer, body) => {
        if (!scheduler) return;
        if ('file' in body) {
          releaseHeld();
          send(scheduler, { kind: 'localProduct', report: offer, file: body.file });
        }
        else if ('source' in body) log.error({ jobId: offer.jobId }, 'a product to stream reached the initiator, which seals into files');
        else {
          const report: MessageOf<'jobCompleted'> = { type: 'jobCompleted', jobId: offer.jobId, attempt: offer.attempt, sha256: offer.sha256 ?? sha256Hex(body.bytes), data: body.bytes };
          if (offer.ranMs !== undefined) report.ranMs = offer.ranMs;
          toScheduler(report);
        }
      },
    },
  });
  // Published by the Scheduler, read by every Connection (actors/listings.ts).
  const projectListing = new ProjectListing();
  scheduler = spawnScheduler(system, {
    projectListing,
    store,
    log,
    schedulerId,
    policy: retryPolicyOf(config),
    allowResourceDownload: config.allow_resource_download,
    initiator: { peer: initiatorPeer, name: config.name, projects },
    identity: { signKey: identity.signKey, boxKey: identity.boxKey },
    retentionMs: config.retention.finished_artifacts_ms,
    artifactsInFlightPerWorkbench: config.quotas.artifacts_in_flight_per_workbench,
    holderWaitMs: config.plan.holder_wait_ms,
    locals,
    uploads,
    streaming: { thresholdBytes, maxResourceBytes: config.store.max_resource_bytes },
    progressIntervalMs: config.progress_interval_ms,
  });
  send(scheduler, { kind: 'resume' });
  send(scheduler, { kind: 'sweepFinished' });
  const schedulerRef0 = scheduler;
  const revocations = setInterval(() => send(schedulerRef0, { kind: 'checkRevocations' }), REVOCATION_CHECK_MS);
  revocations.unref();
  const retentionSweep = setInterval(() => send(schedulerRef0, { kind: 'sweepFinished' }), config.retention.sweep_interval_ms);
  retentionSweep.unref();

  const shards = Array.from({ length: CONNECTION_SHARDS }, (_, i) =>
    spawnActor<null, never>(system, `connections-${i}`, (s) => s, { log, initialState: () => null }),
  );
  const schedulerRef = scheduler;
  let server: RunningServer;
  try {
    server = await startServer({
      host: config.listen.host,
      port: config.listen.port,
      ...(config.tls ? { tls: { cert: readPem(config.tls.cert, 'tls.cert'), key: readPem(config.tls.key, 'tls.key') } } : {}),
      maxPayloadBytes: config.max_payload_bytes,
      heartbeatMs: config.heartbeat_ms,
      rateLimit: {
        framesPerSecond: config.rate_limit.frames_per_second,
        burst: config.rate_limit.burst,
        disconnectAfterMs: config.rate_limit.disconnect_after_ms,
      },
      limits: connectionLimitsOf(config),
      ...(config.dashboard ? { http: dashboardHandler() } : {}),
      onConnection: (peer) => {
        const shard = shards[shardOf(peer.id, CONNECTION_SHARDS)] as Ref<unknown>;
        spawnConnection(shard, { peer, scheduler: schedulerRef, log, store, schedulerId, uploads, chunkBytes, projectListing });
      },
    });
  } catch (e) {
    clearInterval(revocations);
    clearInterval(retentionSweep);
    stop(system);
    store.close();
    await lease?.release();
    await data?.close();
    await compute?.close();
    throw e;
  }
  const dashboard = config.dashboard ? dashboardUrl(server.url) : undefined;
  // The store's URL without its password: which database this scheduler runs on.
  const storeAt = config.store.url ? redactUrl(config.store.url) : join(config.workdir, DATABASE_FILE);
  log.info({ url: server.url, dashboard, schedulerId, mode: config.mode, fingerprint: identity.fingerprint, store: storeAt }, 'scheduler listening');
  return {
    name: config.name,
    mode: config.mode,
    url: server.url,
    stop: async () => {
      clearInterval(revocations);
      clearInterval(retentionSweep);
      await server.close();
      stop(system);
      store.close();
      // After the last commit: a standby may take over at once.
      await lease?.release();
      await data?.close();
      await compute?.close();
    },
  };
}

/**
 * Several workers in one process (`fdl node --config a.yaml --config b.yaml ...`), as the
 * simulation packs them (lib/sim/simulate.ts). Each is the very worker `startNode` builds from
 * its own config: its own actor system, DuckDB instance, work directory and keys, socket and
 * logger; they share nothing mutable but the process. If one cannot start, the others stop.
 */
export async function startWorkerHost(configs: NodeConfig[], logOf: (config: NodeConfig) => Logger): Promise<RunningNode[]> {
  // Several workers of one process share one compute pool, as large as the largest any of them asks for.
  const threads = configs.length > 1 ? Math.max(...configs.map((c) => c.compute.threads ?? defaultComputeThreads())) : undefined;
  const pools = threads === undefined ? [] : shareCompute(computePool(threads), configs.length);
  const started = await Promise.allSettled(
    configs.map((c, i) => startNode(c, logOf(c), threads === undefined ? {} : { compute: pools[i] ?? null })),
  );
  const nodes = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await Promise.allSettled(pools.map((p) => p.close()));
    throw failed.reason;
  }
  return nodes;
}

/**
 * Fault injection for tests and the chaos run, from FDL_FAULTS (comma-separated):
 * `corrupt-product-once` (flip a byte of the first product, keeping its sha256),
 * `truncate-report-once` (send the first completion report cut in half),
 * `cut-socket-every=MS` (drop the connection every MS milliseconds, as a network cut),
 * `cut-upload-once=BYTES` / `cut-download-once=BYTES` (drop it once, when that many bytes of a
 * streamed product have been sent / of a streamed input received),
 * `corrupt-download-once=BYTES` (flip a byte of the first chunk of a streamed input received once
 * that many bytes have come, below its crc32 check).
 */
export function parseFaults(spec: string | undefined): {
  corruptOnce: boolean;
  truncateOnce: boolean;
  cutEveryMs: number | undefined;
  cutUploadAt: number | undefined;
  cutDownloadAt: number | undefined;
  corruptDownloadAt: number | undefined;
} {
  const parts = new Set((spec ?? '').split(',').map((p) => p.trim()).filter(Boolean));
  const numberOf = (name: string) => {
    const part = [...parts].find((p) => p.startsWith(`${name}=`));
    return part ? Number(part.split('=')[1]) : undefined;
  };
  return {
    corruptOnce: parts.has('corrupt-product-once'),
    truncateOnce: parts.has('truncate-report-once'),
    cutEveryMs: numberOf('cut-socket-every'),
    cutUploadAt: numberOf('cut-upload-once'),
    cutDownloadAt: numberOf('cut-download-once'),
    corruptDownloadAt: numberOf('corrupt-download-once'),
  };
}

/**
 * A fault that cuts the link once, when `limit` bytes have been counted (undefined: never). It
 * answers true for the bytes that must not pass: from the one that crossed the limit until the cut
 * has run. Why: the cut (a terminate, on the next turn) waited behind the stream itself under load,
 * whose write callbacks chain without giving the loop a turn, and a whole 100 MB upload could cross
 * before it ran (the resume the fault is for never happened); traffic held back meanwhile makes the
 * cut land at `limit` whatever the load.
 */
function cutOnceAt(limit: number | undefined, cut: () => void, log: Logger): (bytes: number) => boolean {
  let seen = 0;
  let done = limit === undefined;
  let cutting = false;
  return (bytes) => {
    if (cutting) return true;
    if (done) return false;
    seen += bytes;
    if (seen < (limit as number)) return false;
    done = true;
    cutting = true;
    log.warn({ bytes: seen }, 'fault injection: cutting the connection mid-stream');
    setImmediate(() => {
      cutting = false;
      cut();
    });
    return true;
  };
}

async function startWorkerNode(config: NodeConfig, log: Logger, sharedCompute?: ComputeHandle | null): Promise<RunningNode> {
  const { data, projects, compute } = await openData(config, log, sharedCompute);
  const identity = loadOrCreateIdentity(config.workdir);
  log.info({ fingerprint: identity.fingerprint }, 'node identity');
  const system = start();
  const urls = schedulerUrlsOf(config);
  let client: Client | undefined;
  const running = new Set<string>();
  const faults = parseFaults(process.env.FDL_FAULTS);
  let tampered = false;
  const tamper = (report: MessageOf<'jobCompleted'>): MessageOf<'jobCompleted'> | undefined => {
    if (tampered || !(faults.corruptOnce || faults.truncateOnce)) return report;
    tampered = true;
    if (faults.corruptOnce) {
      const data = Uint8Array.from(report.data);
      data[data.length - 1] = (data[data.length - 1] ?? 0) ^ 0xff;
      log.warn({ jobId: report.jobId }, 'fault injection: corrupting a product');
      return { ...report, data };
    }
    const bytes = encode(report);
    log.warn({ jobId: report.jobId }, 'fault injection: truncating a report frame');
    client?.sendRaw(bytes.subarray(0, Math.floor(bytes.length / 2)));
    return undefined;
  };
  // Large resources: inputs stream into spool/in (a partial file is resumed), products are
  // offered and streamed from memory or from their file; finished files of an earlier run go.
  const { threshold_bytes: thresholdBytes, chunk_bytes: chunkBytes } = config.streaming;
  const spool = join(config.workdir, SPOOL_DIR);
  rmSync(join(spool, 'out'), { recursive: true, force: true });
  for (const f of existsSync(join(spool, 'in')) ? readdirSync(join(spool, 'in')) : []) {
    // Finished inputs (`.bin`) and finished openings (`.open`); partial ones are resumed.
    if (f.endsWith('.bin') || f.endsWith('.open')) rmSync(join(spool, 'in', f), { force: true });
  }
  const downloads = new Downloads(join(spool, 'in'), (m) => client?.send(m) ?? false, {
    onRefused: (message) => log.warn({ error: message }, 'a chunk was refused; asking again'),
    onResume: (offset) => log.info({ offset }, 'download resumed from offset'),
  });
  const uploadCut = cutOnceAt(faults.cutUploadAt, () => client?.cut(), log);
  const downloadCut = cutOnceAt(faults.cutDownloadAt, () => client?.cut(), log);
  let corruptDownloadIn = faults.corruptDownloadAt;
  const corruptDownload = (chunk: MessageOf<'resourceChunk'>) => {
    if (corruptDownloadIn === undefined) return;
    corruptDownloadIn -= chunk.data.byteLength;
    if (corruptDownloadIn > 0) return;
    corruptDownloadIn = undefined;
    log.warn({ offset: chunk.offset }, 'fault injection: corrupting a downloaded chunk');
    chunk.data[0] = (chunk.data[0] ?? 0) ^ 0xff;
  };
  const offered = new OfferedResources(
    {
      // A frame held back by the fault is as if the link were down: the scheduler asks again.
      sendFrame: (frame, cb) => (uploadCut(frame.byteLength) ? false : (client?.sendFrame(frame, cb) ?? false)),
    },
    chunkBytes,
  );
  const worker = spawnWorker(system, {
    name: config.name,
    log,
    data,
    locals: new LocalsStore(join(config.workdir, LOCALS_DIR)),
    sendToScheduler: (message) => client?.send(message) ?? false,
    scratch: join(spool, 'out'),
    large: {
      thresholdBytes,
      dir: join(spool, 'out'),
      sealIntoFile: false,
      fetch: async (ref, open) => {
        const build = (reqId: number, offset: number): Message => ({ type: 'fetchResource', reqId, resourceId: ref.id, ...(offset > 0 ? { offset } : {}) });
        const got = await downloads.fetch(build, { sha256: ref.sha256, open });
        if (got.resumedFrom > 0) log.info({ resourceId: ref.id, offset: got.resumedFrom }, 'input download resumed from offset');
        return got.opened ? { path: got.path, opened: true } : { path: got.path };
      },
      send: (offer, body) => {
        const source = 'file' in body ? fileSource(body.file, offer.size) : 'source' in body ? body.source : bufferSource(body.bytes);
        const upload = offer.upload;
        // Offered by an upload name: its sha256, made as its chunks were read, follows the last one.
        const whole = upload && source.digest
          ? () => client?.send({ type: 'productDigest', jobId: offer.jobId, attempt: offer.attempt, upload, sha256: (source.digest as () => string)() })
          : undefined;
        offered.add((offer.sha256 ?? upload) as string, source, whole);
        client?.send(offer);
      },
    },
    running,
    tamper,
    identity: { nodeId: config.name, boxPrivate: identity.boxPrivate },
    privacy: privacyOf(config),
    ...(compute ? { compute } : {}),
  });
  const joinToken = config.scheduler?.join_token;
  client = new Client({
    urls,
    reconnect: true,
    maxPayloadBytes: config.max_payload_bytes,
    heartbeatMs: config.heartbeat_ms,
    ...(config.scheduler?.ca ? { ca: readPem(config.scheduler.ca, 'scheduler.ca') } : {}),
    onOpen: () => {
      // The scheduler speaks first: its challenge carries the nonce our hello signs.
    },
    onMessage: (message) => {
      if (message.type === 'error' && message.error.code === 'PROTOCOL_VERSION_MISMATCH') {
        log.error({ error: message.error }, 'the scheduler speaks another protocol version');
        return;
      }
      if (message.type === 'challenge') {
        // Announce the attempts still running here, so the scheduler re-sends only what we lack.
        const holding = [...running].map((key) => {
          const at = key.lastIndexOf('#');
          return { jobId: key.slice(0, at), attempt: Number(key.slice(at + 1)) };
        });
        const signature = signWith(identity, handshakeMessage(message.schedulerId, config.name, message.nonce, identity.boxKey));
        const hello: Message = {
          type: 'workerHello',
          protocolVersion: PROTOCOL_VERSION,
          nodeId: config.name,
          name: config.name,
          signKey: identity.signKey,
          boxKey: identity.boxKey,
          signature,
          projects,
          holding,
        };
        if (joinToken) hello.joinToken = joinToken;
        client?.send(hello);
        return;
      }
      if (message.type === 'welcome') {
        client?.established();
        log.info({ scheduler: message.schedulerId, url: client?.url }, 'joined the scheduler');
        // Downloads cut by the lost link ask again from what they hold.
        downloads.reconnected();
        return;
      }
      if (message.type === 'resourceWant') {
        const sender = offered.want(message.sha256, message.offset);
        if (sender) log.info({ sha256: message.sha256, offset: message.offset }, 'sending a streamed product from offset');
        else log.warn({ sha256: message.sha256 }, 'the scheduler asked for a product this worker no longer holds');
        return;
      }
      if (message.type === 'resourceChunk') {
        // Dropped by the fault: as if it never arrived (the download resumes from what it holds).
        if (downloadCut(message.data.byteLength)) return;
        corruptDownload(message);
      }
      if (downloads.onMessage(message)) return;
      if (message.type === 'error' && message.reqId === undefined) {
        log.error({ error: message.error }, 'the scheduler refused a message');
      }
      send(worker, { kind: 'inbound', message });
    },
    onClose: (code, reason) => log.warn({ code, reason }, 'lost the scheduler; reconnecting'),
    onRetry: (err, delayMs, url) => log.warn({ err: err.message, url, delayMs }, 'cannot reach the scheduler; retrying'),
  });
  await client.start();
  const cutter = faults.cutEveryMs
    ? setInterval(() => {
        log.warn('fault injection: cutting the connection');
        client?.cut();
      }, faults.cutEveryMs)
    : undefined;
  return {
    name: config.name,
    mode: config.mode,
    stop: async () => {
      if (cutter) clearInterval(cutter);
      client?.close();
      stop(system);
      await data?.close();
      await compute?.close();
    },
  };
}
