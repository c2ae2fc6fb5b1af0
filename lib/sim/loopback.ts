import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { progressBar } from '../cli/output.ts';
import type { ArtifactHandle, Workbench } from '../workbench.ts';
import { Cluster, type ClusterOptions } from './cluster.ts';

/**
 * The frame of a command that runs a cluster on loopback in a temporary folder (`fdl demo`,
 * `fdl simulate`): notes on stderr (none with --json), every process stopped at the end, the
 * folder removed unless --keep or a failure (then its logs are kept and named).
 */

export interface LoopbackRun {
  dir: string;
  /** The project token of the run. */
  token: string;
  say(s: string): void;
  /** Starts the cluster in `dir` with the run's project; it is stopped when the run ends. */
  start(opts: Omit<ClusterOptions, 'dir' | 'projectToken'>): Promise<Cluster>;
  /** A workbench on the started cluster, closed when the run ends. */
  workbench(name: string): Promise<Workbench>;
  /**
   * Resolves when the run is asked to stop (SIGINT or SIGTERM), with the signal; rejects if the
   * scheduler's process ends first. For a run that keeps its cluster up (`fdl demo --dashboard`).
   */
  untilStopped(): Promise<NodeJS.Signals>;
}

/** The exit code of a run ended by a signal before its body finished (as a shell reports it). */
const SIGNAL_CODES: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 130, SIGTERM: 143 };

export async function onLoopback(name: string, opts: { json: boolean; keep: boolean }, body: (run: LoopbackRun) => Promise<number>): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), `fdl-${name}-`));
  const say = (s: string) => {
    if (!opts.json) process.stderr.write(`${s}\n`);
  };
  let keep = opts.keep;
  let cluster: Cluster | undefined;
  const workbenches: Workbench[] = [];
  // SIGINT (Ctrl-C) or SIGTERM at any time stops every process and removes the folder (unless
  // --keep), like the end of the run; a second one while stopping leaves at once.
  let stopping = false;
  /** The body waits for the signal (untilStopped): then it, not the signal, ends the run. */
  let awaited = false;
  let onSignal: (s: NodeJS.Signals) => void = () => {};
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    onSignal = (signal) => {
      if (stopping) {
        process.stderr.write(`${name}: ${signal} again: leaving without stopping the processes (folder ${dir})\n`);
        process.exit(SIGNAL_CODES[signal] ?? 1);
      }
      stopping = true;
      resolve(signal);
    };
  });
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const run: LoopbackRun = {
    dir,
    token: randomBytes(24).toString('hex'),
    say,
    start: async (o) => {
      cluster = await Cluster.start({ ...o, dir, projectToken: run.token });
      return cluster;
    },
    workbench: async (wbName) => {
      if (!cluster) throw new Error('no cluster started');
      const wb = await cluster.connect(wbName);
      workbenches.push(wb);
      return wb;
    },
    untilStopped: () => {
      awaited = true;
      const scheduler = cluster?.exited('scheduler');
      if (!scheduler) return signalled;
      return Promise.race([
        signalled,
        scheduler.then((code) => {
          throw new Error(`the scheduler's process ended (exit ${code})`);
        }),
      ]);
    },
  };
  try {
    // A signal during the body ends the run there (its pending work is dropped when the command exits).
    const interrupted = signalled.then((s) => (awaited ? new Promise<number>(() => {}) : (SIGNAL_CODES[s] ?? 1)));
    return await Promise.race([body(run), interrupted]);
  } catch (e) {
    process.stderr.write(`${name} failed: ${e instanceof Error ? e.message : String(e)}\n(logs are in ${dir})\n`);
    keep = true;
    return 1;
  } finally {
    for (const wb of workbenches) wb.close();
    const codes = await cluster?.stop();
    if (codes) {
      const failed = Object.entries(codes).filter(([, c]) => c !== 0);
      say(failed.length === 0 ? `${Object.keys(codes).length} processes stopped` : `processes stopped: ${failed.map(([n, c]) => `${n}=${c}`).join(' ')}`);
    }
    if (keep) say(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Waits for an artifact's result, with its progress on stderr (none with --json). */
export async function follow<T>(label: string, handle: ArtifactHandle, json: boolean): Promise<T> {
  const bar = json ? undefined : progressBar(handle.status.progress.total, label.padEnd(18));
  handle.on('event', (e) => bar?.update(e.progress.completed, e.progress.total));
  try {
    return await handle.result<T>();
  } finally {
    bar?.stop();
  }
}
