import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { stringify } from 'yaml';
import { packagePath } from '../paths.ts';
import { type ConnectOptions, Workbench } from '../workbench/client.ts';

/**
 * Simulation mode: a scheduler and N workers as real processes on loopback, each with its
 * own YAML config, work directory and log file in `dir`. Used by the demo, the end-to-end
 * and fault tests, and the benchmarks.
 */

export const FDL_BIN = packagePath('bin', 'fdl.js');
export const EXAMPLE_DATA = packagePath('examples', 'data/');
/**
 * Bound on waiting for nodes to be up. Generous: it turns a node that never comes up into a
 * message, and must not fire on a loaded machine (each node process transpiles at start).
 */
export const DEFAULT_START_TIMEOUT_MS = 120_000;

/**
 * A loopback port free at the call: for a node that must be dialed before it listens (a standby
 * scheduler), and as a URL nothing answers once it is returned.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (address && typeof address === 'object' ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export interface WorkerSpec {
  name: string;
  /** Data files (absolute paths), all bound to the cluster's project. */
  files: string[];
  extra?: Record<string, unknown>;
  /** Extra environment of this worker's process (e.g. FDL_FAULTS). */
  env?: NodeJS.ProcessEnv;
}

export interface ClusterOptions {
  dir: string;
  projectName: string;
  projectToken: string;
  workers: WorkerSpec[];
  /** Extra scheduler settings (e.g. retry, heartbeat_ms). */
  scheduler?: Record<string, unknown>;
  /** Scheduler mode: 'standalone' lets it hold data itself too. */
  schedulerFiles?: string[];
  env?: NodeJS.ProcessEnv;
  /** More projects on the scheduler (no worker data unless a worker's `extra` binds it). */
  projects?: Array<{ name: string; token: string }>;
  /** More workbench tokens, with their project scopes (names). */
  workbenchTokens?: Array<{ token: string; projects?: string[] }>;
  /** Serve wss:// with this certificate and key; workers and workbenches trust `ca`. */
  tls?: { cert: string; key: string; ca: string };
  /** Bound on waiting for every node to be up. */
  startTimeoutMs?: number;
  /**
   * Workers packed per process (default 1: a process each). Above 1, each process hosts that
   * many workers (`fdl node --config a.yaml --config b.yaml ...`), each still with its own
   * config, work directory, keys and socket. Signals then reach the whole process.
   */
  workersPerProcess?: number;
  /** Called while waiting for the workers, with how many are connected. */
  onWorkersUp?(connected: number, total: number): void;
  /**
   * Two schedulers on one PostgreSQL store (docs/DEPLOY.md): `scheduler-a` starts first and is
   * active, `scheduler-b` waits as its standby (it listens only once it holds the lease); workers
   * and workbenches are given both URLs. Without it, one scheduler named `scheduler`.
   */
  ha?: { storeUrl: string; leaseMs?: number };
}

/** The schedulers of a cluster with `ha`, in the order they start. */
export const HA_SCHEDULERS = ['scheduler-a', 'scheduler-b'] as const;

interface NodeProcess {
  name: string;
  config: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

export class Cluster {
  /** The scheduler's URL (with `ha`: scheduler-a's). */
  url = '';
  /** Every scheduler's URL: the one, or with `ha` scheduler-a's and scheduler-b's (fixed before they start). */
  urls: string[] = [];
  /** A join token every worker of the cluster uses, and a workbench token that sees everything. */
  readonly joinToken = `fdl_j_${randomBytes(18).toString('base64url')}`;
  readonly workbenchToken = `fdl_w_${randomBytes(18).toString('base64url')}`;
  private readonly nodes = new Map<string, NodeProcess>();
  /** The process that hosts each packed worker (`host-<i>`); a worker of its own is its process. */
  private readonly hostOf = new Map<string, string>();

  private constructor(readonly opts: ClusterOptions) {}

  static async start(opts: ClusterOptions): Promise<Cluster> {
    const cluster = new Cluster(opts);
    mkdirSync(opts.dir, { recursive: true });
    try {
      if (opts.ha) {
        cluster.urls = await Promise.all(HA_SCHEDULERS.map(async () => `ws://127.0.0.1:${await freePort()}`));
        cluster.url = cluster.urls[0] as string;
        await cluster.startScheduler('scheduler-a');
        const standby = cluster.startScheduler('scheduler-b');
        standby.catch(() => {});
        await cluster.waitForStandby('scheduler-b', opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
      } else await cluster.startScheduler();
      const perProcess = Math.max(1, opts.workersPerProcess ?? 1);
      if (perProcess === 1) for (const w of opts.workers) cluster.startWorker(w.name);
      else {
        for (let i = 0; i * perProcess < opts.workers.length; i++) {
          cluster.startHost(`host-${i + 1}`, opts.workers.slice(i * perProcess, (i + 1) * perProcess).map((w) => w.name));
        }
      }
      await cluster.waitForWorkers(opts.workers.map((w) => w.name), opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
    } catch (e) {
      await cluster.stop();
      throw e;
    }
    return cluster;
  }

  private writeConfig(name: string, config: Record<string, unknown>): string {
    const file = join(this.opts.dir, `${name}.yaml`);
    writeFileSync(file, stringify(config));
    return file;
  }

  private launch(name: string, configs: string[], env: NodeJS.ProcessEnv = {}): NodeProcess {
    const log = createWriteStream(join(this.opts.dir, `${name}.log`), { flags: 'a' });
    const child = spawn(process.execPath, [FDL_BIN, 'node', ...configs.flatMap((c) => ['--config', c])], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { FDL_LOG_LEVEL: 'info', ...process.env, ...this.opts.env, ...env },
    });
    child.stderr?.pipe(log);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const node = { name, config: configs.join(','), child, exited };
    this.nodes.set(name, node);
    return node;
  }

  /**
   * Starts (or starts again) a scheduler; resolves with its URL once it listens. With `ha` that
   * is once it holds the lease: a standby's promise waits until it takes over (waitForStandby
   * tells when it waits).
   */
  async startScheduler(name = this.opts.ha ? 'scheduler-a' : 'scheduler'): Promise<string> {
    const ha = this.opts.ha;
    const index = HA_SCHEDULERS.indexOf(name as (typeof HA_SCHEDULERS)[number]);
    if (ha && index < 0) throw new Error(`no scheduler ${name} in this cluster (${HA_SCHEDULERS.join(', ')})`);
    const own = ha ? (this.urls[index] as string) : this.url;
    const port = own ? Number(new URL(own).port) : 0;
    const files = this.opts.schedulerFiles ?? [];
    const config = this.writeConfig(name, {
      mode: files.length > 0 ? 'standalone' : 'scheduler',
      name,
      workdir: join(this.opts.dir, name),
      listen: { host: '127.0.0.1', port },
      projects: [{ name: this.opts.projectName, token: this.opts.projectToken }, ...(this.opts.projects ?? [])],
      join_tokens: [this.joinToken],
      workbench_tokens: [{ token: this.workbenchToken }, ...(this.opts.workbenchTokens ?? [])],
      ...(this.opts.tls ? { tls: { cert: this.opts.tls.cert, key: this.opts.tls.key } } : {}),
      datasources: files.map((path, i) => ({ name: `local-${i + 1}`, path, projects: [this.opts.projectToken] })),
      ...(ha ? { store: { url: ha.storeUrl }, ...(ha.leaseMs ? { ha: { lease_ms: ha.leaseMs } } : {}) } : {}),
      ...this.opts.scheduler,
    });
    // With ha, the cluster reads the schedulers' lease lines (info) from their logs.
    const node = this.launch(name, [config], ha ? { FDL_LOG_LEVEL: 'info' } : {});
    const url = await new Promise<string>((resolve, reject) => {
      const lines = createInterface({ input: node.child.stdout as NodeJS.ReadableStream });
      lines.once('line', (line) => {
        try {
          resolve((JSON.parse(line) as { url: string }).url);
        } catch {
          reject(new Error(`the scheduler printed ${line}`));
        }
      });
      node.exited.then((code) => reject(new Error(`the scheduler ${name} exited with ${code}; see ${join(this.opts.dir, `${name}.log`)}`)));
    });
    if (!ha) this.url = url;
    return url;
  }

  /** Resolves once a scheduler of an `ha` cluster logs that it waits as a standby (or is already active). */
  async waitForStandby(name: string, timeoutMs = DEFAULT_START_TIMEOUT_MS): Promise<void> {
    const log = join(this.opts.dir, `${name}.log`);
    const deadline = Date.now() + timeoutMs;
    const seen = () => {
      try {
        return /standby: another scheduler is active|active: this scheduler holds the lease/.test(readFileSync(log, 'utf8'));
      } catch {
        return false;
      }
    };
    while (!seen()) {
      const p = this.nodes.get(name);
      if (p && p.child.exitCode !== null) throw new Error(`scheduler ${name} exited with ${p.child.exitCode}; see ${log}`);
      if (Date.now() > deadline) throw new Error(`scheduler ${name} did not say it is a standby within ${timeoutMs} ms; see ${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Starts (or starts again) a worker. `env`, when given, replaces the environment of its spec
   * from now on: a worker restarted with `{ env: {} }` runs without the faults it started with,
   * so a fault injected for one test does not come back in the restarted worker of the next.
   */
  startWorker(name: string, opts: { env?: NodeJS.ProcessEnv } = {}): void {
    const spec = this.specOf(name);
    if (this.hostOf.has(name)) throw new Error(`worker ${name} lives in ${this.hostOf.get(name)}: start that process again`);
    if (opts.env) spec.env = opts.env;
    this.launch(name, [this.writeWorkerConfig(spec)], spec.env);
  }

  /** Starts one process hosting the named workers (each with its own config), with the first one's env. */
  startHost(host: string, names: string[]): void {
    const specs = names.map((n) => this.specOf(n));
    for (const n of names) this.hostOf.set(n, host);
    this.launch(host, specs.map((s) => this.writeWorkerConfig(s)), specs[0]?.env);
  }

  private specOf(name: string): WorkerSpec {
    const spec = this.opts.workers.find((w) => w.name === name);
    if (!spec) throw new Error(`no worker ${name} in this cluster`);
    return spec;
  }

  private writeWorkerConfig(spec: WorkerSpec): string {
    const name = spec.name;
    return this.writeConfig(name, {
      mode: 'worker',
      name,
      workdir: join(this.opts.dir, name),
      scheduler: {
        ...(this.opts.ha ? { urls: this.urls } : { url: this.url }),
        join_token: this.joinToken,
        ...(this.opts.tls ? { ca: this.opts.tls.ca } : {}),
      },
      datasources: spec.files.map((path, i) => ({ name: `${name}-${i + 1}`, path, projects: [this.opts.projectToken] })),
      ...spec.extra,
    });
  }

  /** The process a node runs in: its own, or the host of a packed worker. */
  private processOf(name: string): NodeProcess | undefined {
    return this.nodes.get(this.hostOf.get(name) ?? name);
  }

  /** Every process of the cluster (scheduler, workers or hosts), by name, with its pid. */
  processes(): Array<{ name: string; pid: number | undefined }> {
    return [...this.nodes.values()].map((n) => ({ name: n.name, pid: n.child.pid }));
  }

  /** Sends a signal without waiting (SIGKILL, SIGSTOP, SIGCONT ...). */
  kill(name: string, signal: NodeJS.Signals): void {
    this.processOf(name)?.child.kill(signal);
  }

  /** Resolves with the exit code once the node's process has ended. */
  exited(name: string): Promise<number | null> {
    return this.processOf(name)?.exited ?? Promise.resolve(null);
  }

  /** Resolves when each named worker is connected to the scheduler. */
  async waitForWorkers(names: string[], timeoutMs = DEFAULT_START_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const wb = await this.connect('cluster');
    try {
      for (;;) {
        const nodes = await wb.nodes();
        const up = new Set(nodes.filter((n) => n.connected).map((n) => n.id));
        this.opts.onWorkersUp?.(names.filter((n) => up.has(n)).length, names.length);
        if (names.every((n) => up.has(n))) return;
        for (const n of names) {
          const p = this.processOf(n);
          if (p && p.child.exitCode !== null) throw new Error(`worker ${n} exited with ${p.child.exitCode}; see ${join(this.opts.dir, `${p.name}.log`)}`);
        }
        if (Date.now() > deadline) throw new Error(`workers not connected after ${timeoutMs} ms: ${names.filter((n) => !up.has(n)).join(', ')}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      wb.close();
    }
  }

  /** A workbench on this cluster, with its token. */
  connect(name = 'test', opts: Partial<ConnectOptions> = {}): Promise<Workbench> {
    const ca = this.opts.tls ? { ca: readFileSync(this.opts.tls.ca) } : {};
    return Workbench.connect(this.opts.ha ? this.urls : this.url, { token: this.workbenchToken, name, ...ca, ...opts });
  }

  pid(name: string): number | undefined {
    return this.processOf(name)?.child.pid;
  }

  /** Sends a signal and waits for the exit; returns the exit code (null when killed by the signal). */
  async signal(name: string, signal: NodeJS.Signals, timeoutMs = 15_000): Promise<number | null> {
    const node = this.processOf(name);
    if (!node || node.child.exitCode !== null || node.child.signalCode !== null) return node?.child.exitCode ?? null;
    node.child.kill(signal);
    const timer = setTimeout(() => node.child.kill('SIGKILL'), timeoutMs);
    const code = await node.exited;
    clearTimeout(timer);
    return code;
  }

  /** Stops every node with SIGTERM (SIGKILL after a grace time); returns their exit codes. */
  async stop(): Promise<Record<string, number | null>> {
    const codes: Record<string, number | null> = {};
    const isScheduler = (n: string) => n === 'scheduler' || (HA_SCHEDULERS as readonly string[]).includes(n);
    const names = [...this.nodes.keys()].filter((n) => !isScheduler(n));
    await Promise.all(names.map(async (n) => (codes[n] = await this.signal(n, 'SIGTERM'))));
    // A stopped process gets SIGCONT first: a frozen one would not act on SIGTERM.
    for (const n of [...this.nodes.keys()].filter(isScheduler)) {
      this.kill(n, 'SIGCONT');
      codes[n] = await this.signal(n, 'SIGTERM');
    }
    return codes;
  }
}
