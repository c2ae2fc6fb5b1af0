import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { type ArtifactStatus, ArtifactStates } from '../protocols/entities.ts';
import { formatPath } from '../protocols/errors.ts';
import { isFdlError } from './errors.ts';
import { packagePath } from './paths.ts';
import type { RunningNode } from './node.ts';
import type { ConnectOptions, Workbench } from './workbench.ts';
import { printTable, progressBar, provenanceLine } from './cli/output.ts';
import { AbsenceWatch, DEFAULT_RECONNECT_TIMEOUT_S, OutcomeUnknownError, parseTimeoutSeconds } from './cli/wait.ts';

/**
 * The `fdl` command. Errors end as one clear line on stderr and a non-zero exit, never a stack trace.
 *
 * Start time: a command loads only what it uses. The node (actors, store, DuckDB), the config
 * loader and the logger are imported inside the commands that run a node or open a store, and
 * the workbench library when a command connects: `fdl --help` loads commander and little else,
 * and a command that asks the scheduler something loads the workbench client only
 * (docs/PERFORMANCE.md, "CLI start").
 */

const DEFAULT_URL = process.env.FDL_URL ?? 'ws://127.0.0.1:1456';
/** `fdl artifacts list`: how many by default, and the most the scheduler lists at once (the wire schema's bound). */
const DEFAULT_LIST_LIMIT = 100;
const MAX_LIST_LIMIT = 10_000;

class UsageError extends Error {}

/** The issues of a zod error, known by its shape (never instanceof: zod may be loaded twice). */
function zodIssues(e: unknown): Array<{ path: PropertyKey[]; message: string }> | undefined {
  if (e === null || typeof e !== 'object' || (e as { name?: unknown }).name !== 'ZodError') return undefined;
  const issues = (e as { issues?: unknown }).issues;
  return Array.isArray(issues) ? issues : undefined;
}

/** An error of one of our classes, known by its name (the class's module may not be loaded). */
const named = (e: unknown, name: string): e is Error => e instanceof Error && e.name === name;

function fail(e: unknown): never {
  if (named(e, 'ConfigError')) {
    process.stderr.write(`${e.message}\n`);
    process.exit(2);
  }
  // A value refused after the config validated (a gap between the config and the schema it
  // feeds): one line per problem, like a bad config, never zod's dump.
  const issues = zodIssues(e);
  if (issues) {
    for (const i of issues) process.stderr.write(`fdl: ${formatPath(i.path ?? []) || '(root)'}: ${i.message}\n`);
    process.exit(2);
  }
  if (e instanceof OutcomeUnknownError) {
    process.stderr.write(`fdl: ${e.message}\n`);
    process.exit(1);
  }
  // A store that must not be used as it is: like a bad config, the operator has to act (exit 2).
  if (e instanceof UsageError || named(e, 'StoreCheckError')) {
    process.stderr.write(`fdl: ${e.message}\n`);
    process.exit(2);
  }
  if (isFdlError(e)) {
    process.stderr.write(`fdl: ${e.code}: ${e.message}${e.path ? ` (at ${e.path})` : ''}\n`);
    process.exit(1);
  }
  process.stderr.write(`fdl: ${e instanceof Error ? e.message : String(e)}\n`);
  if (process.env.FDL_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  process.exit(1);
}

interface ClientOpts {
  url: string;
  token?: string;
  ca?: string;
}

async function withWorkbench<T>(opts: ClientOpts, fn: (wb: Workbench) => Promise<T>, connect: Partial<ConnectOptions> = {}): Promise<T> {
  if (!opts.token) throw new UsageError('a workbench token is needed: --token TOKEN or FDL_TOKEN (ask the operator: fdl tokens create --kind workbench)');
  let ca: Buffer | undefined;
  if (opts.ca) {
    try {
      ca = readFileSync(opts.ca);
    } catch (e) {
      throw new UsageError(`cannot read the CA certificate ${opts.ca}: ${(e as Error).message}`);
    }
  }
  const { Workbench } = await import('./workbench.ts');
  const wb = await Workbench.connect(urlsOf(opts.url), { token: opts.token, name: 'fdl-cli', reconnect: false, ...(ca ? { ca } : {}), ...connect });
  try {
    return await fn(wb);
  } finally {
    wb.close();
  }
}

/** `--url` / FDL_URL: one scheduler, or several separated by commas (an active one and its standby). */
function urlsOf(list: string): string[] {
  const urls = list.split(',').map((u) => u.trim()).filter(Boolean);
  const bad = urls.find((u) => !/^wss?:\/\/./.test(u));
  if (urls.length === 0 || bad !== undefined) {
    throw new UsageError(`--url: ${JSON.stringify(bad ?? list)} is not a ws:// or wss:// URL (several: separate them with commas)`);
  }
  return urls;
}

/** Options from the command line, else from the environment. */
function withEnv(opts: ClientOpts): ClientOpts {
  const out: ClientOpts = { url: opts.url };
  const token = opts.token ?? process.env.FDL_TOKEN;
  const ca = opts.ca ?? process.env.FDL_CA;
  if (token) out.token = token;
  if (ca) out.ca = ca;
  return out;
}

function printStatus(s: ArtifactStatus, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
    return;
  }
  process.stdout.write(`artifact ${s.id}${s.name ? ` (${s.name})` : ''}: ${s.state}, ${s.progress.completed}/${s.progress.total} jobs\n`);
  if (s.error) {
    const where = s.error.jobId ? ` (job ${s.error.jobId} on ${s.error.worker ?? '?'})` : '';
    process.stdout.write(`error${where}: ${s.error.error.code}: ${s.error.error.message}\n`);
  }
  const leftOut = s.jobs.filter((j) => j.leftOut).map((j) => j.worker);
  if (leftOut.length > 0) process.stdout.write(`left out under the quorum: ${[...new Set(leftOut)].join(', ')}\n`);
  if (s.provenance) process.stdout.write(`${provenanceLine(s.provenance)}\n`);
  printTable(
    ['job', 'worker', 'operation', 'state', 'attempt', 'next try', 'last error'],
    s.jobs.map((j) => [
      j.id,
      j.worker,
      j.operation,
      j.leftOut ? `${j.state} (left out)` : j.state,
      String(j.attempt),
      j.nextAttemptAt ? new Date(j.nextAttemptAt).toISOString() : '',
      j.lastError ? `${j.lastError.code}: ${j.lastError.message}` : '',
    ]),
  );
}

/** The version in package.json (read at start: a few hundred bytes). */
function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(packagePath('package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export function buildProgram(): Command {
  const program = new Command('fdl')
    .description('Federated analytics and learning: run statistics and train models on data that stays with its holders')
    .version(packageVersion())
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  const urlOption = () => new Option('--url <url>', 'the scheduler to talk to; an active one and its standby: a,b (env FDL_URL)').default(DEFAULT_URL);


  program
    .command('node')
    .description('run a node (scheduler, worker or standalone) from its YAML config; several worker configs run in one process (as `fdl simulate` packs them)')
    .requiredOption('-c, --config <file>', 'the node configuration (YAML); repeat it to host several workers in one process', (v: string, prev: string[] = []) => [...prev, v])
    .option(
      '--init-store',
      "scheduler: start a new network where the work directory's store is missing, empty or damaged (the old files are kept aside); it forgets every artifact and pinned node key",
    )
    .action(async (opts: { config: string[]; initStore?: boolean }) => {
      const [{ loadConfig }, { createLogger, installProcessHandlers }, { startNode, startWorkerHost }] = await Promise.all([
        import('./config.ts'),
        import('./log.ts'),
        import('./node.ts'),
      ]);
      const configs = opts.config.map((file) => ({ file, config: loadConfig(file) }));
      const [first] = configs;
      if (!first) throw new UsageError('--config FILE is needed');
      if (configs.length > 1) {
        const notWorker = configs.find((c) => c.config.mode !== 'worker');
        if (notWorker) throw new UsageError(`several --config run several workers in one process; ${notWorker.file} is a ${notWorker.config.mode}'s config`);
        if (opts.initStore) throw new UsageError("--init-store is for a scheduler's store; these are workers' configs");
      }
      const { config } = first;
      if (opts.initStore && config.mode === 'worker') throw new UsageError(`--init-store is for a scheduler's store; ${first.file} is a worker's config`);
      const log = createLogger(configs.length > 1 ? `worker-host-${process.pid}` : config.name);
      installProcessHandlers(log);
      let nodes: RunningNode[];
      if (configs.length > 1) {
        nodes = await startWorkerHost(
          configs.map((c) => c.config),
          (c) => createLogger(c.name),
        );
        process.stdout.write(`${JSON.stringify({ event: 'started', names: nodes.map((n) => n.name) })}\n`);
      } else {
        const node = await startNode(config, log, { initStore: opts.initStore ?? false });
        nodes = [node];
        if (node.url) process.stdout.write(`${JSON.stringify({ event: 'listening', url: node.url, name: node.name })}\n`);
        else process.stdout.write(`${JSON.stringify({ event: 'started', name: node.name })}\n`);
      }
      let stopping = false;
      const shutdown = (signal: string) => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, 'shutting down');
        Promise.all(nodes.map((n) => n.stop())).then(
          () => process.exit(0),
          (e) => {
            log.error({ err: e }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));
    });

  const tokens = program.command('tokens').description("manage join and workbench tokens (the operator, on the scheduler's machine)");
  const openStore = async (configFile: string) => {
    const [{ loadConfig }, { openSchedulerStore }] = await Promise.all([import('./config.ts'), import('./store/network.ts')]);
    const config = loadConfig(configFile);
    if (config.mode === 'worker') throw new UsageError(`${configFile} is a worker's config: tokens live on the scheduler`);
    return { config, store: openSchedulerStore(config.workdir, { url: config.store.url }).store };
  };
  tokens
    .command('create')
    .description('issue a token; it is printed once and stored hashed')
    .requiredOption('-c, --config <file>', "the scheduler's configuration")
    .addOption(new Option('--kind <kind>', 'join (for workers) or workbench (for researchers)').choices(['join', 'workbench']).makeOptionMandatory())
    .option('--project <name...>', 'workbench tokens: the projects it may see (default: all)')
    .option('--label <text>', 'a note to recognize it by')
    .option('--json', 'print JSON: id, kind and the token')
    .action(async (opts: { config: string; kind: 'join' | 'workbench'; project?: string[]; label?: string; json?: boolean }) => {
      const { store } = await openStore(opts.config);
      try {
        const known = new Map(store.listProjects().map((p) => [p.name, p.id]));
        const projects = opts.project?.map((name) => {
          const id = known.get(name);
          if (!id) throw new UsageError(`no project named ${JSON.stringify(name)} (known: ${[...known.keys()].join(', ')})`);
          return id;
        });
        const created = store.createToken(opts.kind, { ...(opts.label ? { label: opts.label } : {}), ...(projects ? { projects } : {}) }, Date.now());
        store.barrier(); // committed before it is shown: a token printed is a token stored
        process.stdout.write(opts.json ? `${JSON.stringify({ id: created.id, kind: opts.kind, token: created.token })}\n` : `${created.token}\n`);
        process.stderr.write(`token ${created.id} (${opts.kind}) created; it is shown only now\n`);
      } finally {
        store.close();
      }
    });
  tokens
    .command('list')
    .description('the tokens (ids, kinds, scopes), never their text')
    .requiredOption('-c, --config <file>', "the scheduler's configuration")
    .option('--json', 'print JSON')
    .action(async (opts: { config: string; json?: boolean }) => {
      const { store } = await openStore(opts.config);
      try {
        const names = new Map(store.listProjects().map((p) => [p.id, p.name]));
        if (opts.json) {
          const list = store.listTokens().map((t) => ({ ...t, ...(t.projects ? { projectNames: t.projects.map((id) => names.get(id) ?? id) } : {}) }));
          return void process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        }
        printTable(
          ['id', 'kind', 'label', 'projects', 'created', 'revoked'],
          store.listTokens().map((t) => [
            t.id,
            t.kind,
            t.label ?? '',
            t.projects ? t.projects.map((id) => names.get(id) ?? id).join(',') : t.kind === 'workbench' ? '(all)' : '',
            new Date(t.createdAt).toISOString(),
            t.revokedAt ? new Date(t.revokedAt).toISOString() : '',
          ]),
        );
      } finally {
        store.close();
      }
    });
  tokens
    .command('revoke')
    .description('revoke a token (by id or text): its sessions are closed within a second')
    .requiredOption('-c, --config <file>', "the scheduler's configuration")
    .argument('<token>', 'the token id (from fdl tokens list) or its text')
    .option('--json', 'print JSON')
    .action(async (token: string, opts: { config: string; json?: boolean }) => {
      const { store } = await openStore(opts.config);
      try {
        if (!store.revokeToken(token, Date.now())) throw new UsageError(`no live token ${token}`);
        store.barrier();
        process.stdout.write(opts.json ? `${JSON.stringify({ revoked: true })}\n` : 'revoked\n');
      } finally {
        store.close();
      }
    });

  const nodes = program.command('nodes');
  nodes
    .command('forget')
    .description(
      "the operator, on the scheduler's machine: a worker left the network for good; plans stop waiting for it as a holder of any project's data (it becomes one again if it joins with data)",
    )
    .requiredOption('-c, --config <file>', "the scheduler's configuration")
    .argument('<id>', 'the node id (fdl nodes)')
    .option('--json', 'print { forgot, projects } as JSON')
    .action(async (id: string, opts: { config: string; json?: boolean }) => {
      const { store } = await openStore(opts.config);
      try {
        const held = store.forgetHolder(id);
        if (held === 0) throw new UsageError(`node ${id} holds no project's data (fdl nodes lists the nodes)`);
        store.barrier();
        process.stdout.write(opts.json ? `${JSON.stringify({ forgot: id, projects: held })}\n` : `forgot ${id} as a holder of ${held} project(s)\n`);
      } finally {
        store.close();
      }
    });
  nodes
    .command('list', { isDefault: true })
    .description('list the nodes known to the scheduler')
    .addOption(urlOption())
    .addOption(new Option('--token <token>', 'the workbench token (env FDL_TOKEN)'))
    .addOption(new Option('--ca <file>', 'a CA certificate to trust for wss:// (env FDL_CA)'))
    .option('--json', 'print JSON')
    .action(async (opts: ClientOpts & { json?: boolean }) => {
      const nodes = await withWorkbench(withEnv(opts), (wb) => wb.nodes());
      if (opts.json) return void process.stdout.write(`${JSON.stringify(nodes, null, 2)}\n`);
      printTable(
        ['id', 'role', 'connected', 'datasources', 'last seen', 'fingerprint'],
        nodes.map((n) => [
          n.id,
          n.role,
          n.connected ? 'yes' : 'no',
          String(n.datasources),
          new Date(n.lastSeen).toISOString(),
          n.fingerprint ?? '',
        ]),
      );
    });

  program
    .command('projects')
    .description('list the projects of the scheduler')
    .addOption(urlOption())
    .addOption(new Option('--token <token>', 'the workbench token (env FDL_TOKEN)'))
    .addOption(new Option('--ca <file>', 'a CA certificate to trust for wss:// (env FDL_CA)'))
    .option('--json', 'print JSON')
    .action(async (opts: ClientOpts & { json?: boolean }) => {
      const projects = await withWorkbench(withEnv(opts), (wb) => wb.projects());
      if (opts.json) return void process.stdout.write(`${JSON.stringify(projects, null, 2)}\n`);
      printTable(
        ['id', 'name', 'workers', 'datasources', 'rows'],
        projects.map((p) => [p.id, p.name, String(p.workers), String(p.datasources), String(p.rows)]),
      );
    });

  program
    .command('datasources')
    .description("the aggregated schema of a project's data: features, types and per-feature aggregates")
    .requiredOption('--project <token>', 'the project token')
    .addOption(urlOption())
    .addOption(new Option('--token <token>', 'the workbench token (env FDL_TOKEN)'))
    .addOption(new Option('--ca <file>', 'a CA certificate to trust for wss:// (env FDL_CA)'))
    .option('--json', 'print JSON')
    .action(async (opts: ClientOpts & { project: string; json?: boolean }) => {
      const project = await withWorkbench(withEnv(opts), (wb) => wb.project(opts.project));
      const info = project.info;
      if (opts.json) return void process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
      process.stdout.write(`project ${info.name} (${info.id}): ${info.workers} workers, ${info.datasources} data sources, ${info.rows} rows\n`);
      const fmt = (v: number | null) => (v === null ? '' : Number(v.toPrecision(6)).toString());
      printTable(
        ['feature', 'type', 'rows', 'missing', 'min', 'mean', 'max', 'categories'],
        info.features.map((f) => [
          f.name,
          f.dtype,
          String(f.rows),
          String(f.missing),
          fmt(f.min),
          fmt(f.mean),
          fmt(f.max),
          f.categories ? f.categories.map((c) => JSON.stringify(c)).join(' ') : '',
        ]),
      );
    });

  program
    .command('submit')
    .description('submit an artifact (JSON or YAML file in the wire form of docs/PROTOCOL.md)')
    .argument('<file>', 'the artifact file')
    .requiredOption('--project <token>', 'the project token')
    .option('--wait', 'wait for the end, showing progress, and print the result')
    .option(
      '--timeout <seconds>',
      `with --wait: give up (exit 1) when the scheduler is gone this long (default ${DEFAULT_RECONNECT_TIMEOUT_S}); a scheduler back sooner is followed`,
    )
    .option('--json', 'print JSON')
    .addOption(urlOption())
    .addOption(new Option('--token <token>', 'the workbench token (env FDL_TOKEN)'))
    .addOption(new Option('--ca <file>', 'a CA certificate to trust for wss:// (env FDL_CA)'))
    .action(async (file: string, opts: ClientOpts & { project: string; wait?: boolean; json?: boolean; timeout?: string }) => {
      let spec: unknown;
      const { readSpecFile } = await import('./cli/spec.ts');
      try {
        spec = readSpecFile(file);
      } catch (e) {
        throw new UsageError(`cannot read ${file}: ${(e as Error).message}`);
      }
      const timeoutS = opts.timeout === undefined ? DEFAULT_RECONNECT_TIMEOUT_S : parseTimeoutSeconds(opts.timeout);
      // While waiting, a lost scheduler is dialled again and the artifact followed again (its
      // state caught up); gone longer than the timeout, the outcome is unknown: exit 1.
      let id: string | undefined;
      const url = withEnv(opts).url;
      const absence = new AbsenceWatch(
        timeoutS * 1000,
        () => `lost the scheduler at ${url} and it was not back within ${timeoutS} s: the outcome of artifact ${id ?? '(not yet accepted)'} is unknown (ask again: fdl status ${id ?? 'ID'})`,
      );
      const connect: Partial<ConnectOptions> = opts.wait ? { reconnect: true, onConnectionChange: absence.change } : {};
      try {
        await withWorkbench(
          withEnv(opts),
          async (wb) => {
            const handle = await wb.submit(opts.project, spec as never);
            id = handle.id;
            if (!opts.wait) {
              process.stdout.write(opts.json ? `${JSON.stringify({ id: handle.id })}\n` : `${handle.id}\n`);
              return;
            }
            process.stderr.write(`submitted ${handle.id}\n`);
            const bar = progressBar(handle.status.progress.total);
            handle.on('event', (e) => bar.update(e.progress.completed, e.progress.total));
            try {
              await absence.race(handle.done());
            } finally {
              bar.stop();
            }
            const { value: result, provenance } = await absence.race(wb.resultWithProvenance(handle.id));
            process.stdout.write(`${JSON.stringify(opts.json ? { id: handle.id, result, provenance } : result, null, 2)}\n`);
            if (!opts.json && provenance) process.stderr.write(`${provenanceLine(provenance)}\n`);
          },
          connect,
        );
      } finally {
        absence.stop();
      }
    });

  program
    .command('status')
    .description('the state of an artifact and of each of its jobs')
    .argument('<id>', 'the artifact id')
    .option('--watch', "redraw the DAG's progress (each step's jobs done, running, failed, waiting; attempts) as the scheduler pushes it, until the end; exit 1 unless it COMPLETED")
    .option('--timeout <seconds>', `with --watch: give up (exit 1) when the scheduler is gone this long (default ${DEFAULT_RECONNECT_TIMEOUT_S})`)
    .addOption(urlOption())
    .addOption(new Option('--token <token>', 'the workbench token (env FDL_TOKEN)'))
    .addOption(new Option('--ca <file>', 'a CA certificate to trust for wss:// (env FDL_CA)'))
    .option('--json', 'print JSON (with --watch: one line per change)')
    .action(async (id: string, opts: ClientOpts & { json?: boolean; watch?: boolean; timeout?: string }) => {
      if (!opts.watch) return printStatus(await withWorkbench(withEnv(opts), (wb) => wb.status(id)), opts.json ?? false);
      const { ProgressView } = await import('./cli/watch.ts');
      const timeoutS = opts.timeout === undefined ? DEFAULT_RECONNECT_TIMEOUT_S : parseTimeoutSeconds(opts.timeout);
      const url = withEnv(opts).url;
      const absence = new AbsenceWatch(
        timeoutS * 1000,
        () => `lost the scheduler at ${url} and it was not back within ${timeoutS} s: the outcome of artifact ${id} is unknown (ask again: fdl status ${id})`,
      );
      const view = new ProgressView(process.stdout, opts.json ?? false);
      try {
        await withWorkbench(
          withEnv(opts),
          async (wb) => {
            // Pushed events (subscribe), never polling: each one redraws the view.
            const handle = await wb.watch(id);
            view.draw(handle.status);
            handle.on('event', () => view.draw(handle.status));
            try {
              await absence.race(handle.done());
            } finally {
              view.draw(handle.status);
            }
          },
          { reconnect: true, onConnectionChange: absence.change },
        );
      } finally {
        absence.stop();
      }
    });

  program
    .command('cancel')
    .description("stop an artifact's jobs on every worker")
    .argument('<id>', 'the artifact id')
    .addOption(urlOption())
    .addOption(new Option('--token <token>', 'the workbench token (env FDL_TOKEN)'))
    .addOption(new Option('--ca <file>', 'a CA certificate to trust for wss:// (env FDL_CA)'))
    .option('--json', 'print JSON')
    .action(async (id: string, opts: ClientOpts & { json?: boolean }) => {
      printStatus(await withWorkbench(withEnv(opts), (wb) => wb.cancel(id)), opts.json ?? false);
    });

  program
    .command('result')
    .description("download an artifact's result (JSON on stdout; a provenance line on stderr: the holders and rows it covers, what was left out, seeds, hash, software)")
    .argument('<id>', 'the artifact id')
    .addOption(urlOption())
    .addOption(new Option('--token <token>', 'the workbench token (env FDL_TOKEN)'))
    .addOption(new Option('--ca <file>', 'a CA certificate to trust for wss:// (env FDL_CA)'))
    .option('--json', 'print { id, result, provenance } as one JSON document')
    .option('--out <file>', 'write the result as stored (msgpack) to this file, streamed (any size), checked against its sha256')
    .action(async (id: string, opts: ClientOpts & { json?: boolean; out?: string }) => {
      const out = opts.out;
      if (out) {
        const got = await withWorkbench(withEnv(opts), (wb) => wb.resultToFile(id, out));
        process.stdout.write(`${JSON.stringify({ file: got.path, bytes: got.size, sha256: got.sha256, provenance: got.provenance })}\n`);
        return;
      }
      const { value: result, provenance } = await withWorkbench(withEnv(opts), (wb) => wb.resultWithProvenance(id));
      if (opts.json) return void process.stdout.write(`${JSON.stringify({ id, result, provenance }, null, 2)}\n`);
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      if (provenance) process.stderr.write(`${provenanceLine(provenance)}\n`);
    });

  const artifacts = program.command('artifacts').description('the artifacts of your projects: list them, delete finished ones');
  artifacts
    .command('list', { isDefault: true })
    .description('the artifacts of the projects your token sees, newest first (the default: fdl artifacts)')
    .option('--project <name>', "only this project's (its name or id)")
    .addOption(new Option('--state <state>', 'only those in this state').choices(ArtifactStates))
    // The bound (1 to 10000) is the wire schema's: the scheduler names it if it is crossed.
    .option(`--limit <n>`, `at most this many (default ${DEFAULT_LIST_LIMIT})`, (v) => {
      const n = Number(v);
      if (!Number.isInteger(n)) throw new InvalidArgumentError('expected a whole number');
      return n;
    })
    .addOption(urlOption())
    .addOption(new Option('--token <token>', 'the workbench token (env FDL_TOKEN)'))
    .addOption(new Option('--ca <file>', 'a CA certificate to trust for wss:// (env FDL_CA)'))
    .option('--json', 'print JSON')
    .action(async (opts: ClientOpts & { limit?: number; json?: boolean; project?: string; state?: string }) => {
      const filtered = opts.project !== undefined || opts.state !== undefined;
      const limit = opts.limit ?? DEFAULT_LIST_LIMIT;
      const { all, names } = await withWorkbench(withEnv(opts), async (wb) => ({
        // Filtered here: the scheduler lists the newest; a filter looks through up to its maximum.
        all: await wb.artifacts({ limit: filtered ? MAX_LIST_LIMIT : limit }),
        names: new Map((await wb.projects()).map((p) => [p.id, p.name])),
      }));
      if (opts.project !== undefined && ![...names].some(([pid, name]) => pid === opts.project || name === opts.project)) {
        throw new UsageError(`no project ${JSON.stringify(opts.project)} among those your token sees (${[...names.values()].join(', ')})`);
      }
      const list = all
        .filter((a) => opts.project === undefined || a.projectId === opts.project || names.get(a.projectId) === opts.project)
        .filter((a) => opts.state === undefined || a.state === opts.state)
        .slice(0, limit);
      if (opts.json) return void process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      const time = (ms: number | undefined) => (ms === undefined ? '' : new Date(ms).toISOString());
      printTable(
        ['id', 'name', 'state', 'project', 'submitted', 'finished'],
        list.map((a) => [a.id, a.name ?? '', a.state, names.get(a.projectId) ?? a.projectId, time(a.createdAt), time(a.finishedAt)]),
      );
    });
  artifacts
    .command('delete')
    .description('delete a finished artifact now: its results, files and rows (a running one: fdl cancel first)')
    .argument('<id>', 'the artifact id')
    .addOption(urlOption())
    .addOption(new Option('--token <token>', 'the workbench token (env FDL_TOKEN)'))
    .addOption(new Option('--ca <file>', 'a CA certificate to trust for wss:// (env FDL_CA)'))
    .option('--json', 'print JSON')
    .action(async (id: string, opts: ClientOpts & { json?: boolean }) => {
      await withWorkbench(withEnv(opts), (wb) => wb.deleteArtifact(id));
      process.stdout.write(opts.json ? `${JSON.stringify({ deleted: id })}\n` : `deleted ${id}\n`);
    });

  program
    .command('demo')
    .description('start a scheduler and two workers on loopback with the California shards, run federated statistics, compare with the central figures')
    .option('--json', 'print the results as one JSON document')
    .option('--keep', 'keep the temporary folder (configs, work directories, logs)')
    .option('--dashboard', 'then keep the cluster running and print the dashboard URL and its token, until Ctrl-C (SIGINT or SIGTERM stops every process)')
    .action(async (opts: { json?: boolean; keep?: boolean; dashboard?: boolean }) => {
      const { runDemo } = await import('./demo.ts');
      const code = await runDemo({ json: opts.json ?? false, keep: opts.keep ?? false, dashboard: opts.dashboard ?? false });
      process.exit(code);
    });

  const positiveInt = (what: string) => (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${what} must be a whole number of at least 1`);
    return n;
  };
  program
    .command('simulate')
    .description('start a scheduler and N workers on this machine over the real protocol, packed several per process, run a federated mean (and FedAvg rounds) and compare with the central figures')
    .requiredOption('--workers <n>', 'how many workers', positiveInt('--workers'))
    .option('--processes <n>', 'processes hosting the workers (default: 2 per core, at most 50 workers each)', positiveInt('--processes'))
    .addOption(new Option('--data <dir>', 'split the CSV files of DIR across the workers (by file, or by rows when fewer files than workers)').conflicts('synthetic'))
    .option('--synthetic <rows>', 'generate ROWS rows per worker (seeded): x1, x2, x3 and a 0/1 label y (the default, 100 rows)', positiveInt('--synthetic'))
    .option('--rounds <r>', 'also train a logistic regression by FedAvg for R rounds', positiveInt('--rounds'))
    .option('--label <name>', 'the 0/1 label for --rounds (synthetic data: y)')
    .option('--json', 'print the results as one JSON document')
    .option('--keep', 'keep the temporary folder (configs, shards, work directories, logs)')
    .action(async (opts: { workers: number; processes?: number; data?: string; synthetic?: number; rounds?: number; label?: string; json?: boolean; keep?: boolean }) => {
      const { runSimulate } = await import('./sim/simulate.ts');
      const code = await runSimulate({
        workers: opts.workers,
        rounds: opts.rounds ?? 0,
        json: opts.json ?? false,
        keep: opts.keep ?? false,
        ...(opts.processes === undefined ? {} : { processes: opts.processes }),
        ...(opts.data === undefined ? {} : { data: opts.data }),
        ...(opts.synthetic === undefined ? {} : { synthetic: opts.synthetic }),
        ...(opts.label === undefined ? {} : { label: opts.label }),
      });
      process.exit(code);
    });

  return program;
}

// A command whose work is left pending on a connection that is gone would otherwise end with
// exit 0 and nothing printed when the event loop empties: say so, and fail.
let finished = false;
process.once('beforeExit', () => {
  if (finished) return;
  process.stderr.write('fdl: the connection to the scheduler ended before the command could tell its outcome\n');
  process.exit(1);
});

buildProgram()
  .parseAsync(process.argv)
  .then(
    () => {
      finished = true;
    },
    (e: unknown) => fail(e),
  );
