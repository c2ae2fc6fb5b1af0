import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { Cluster, type ClusterOptions, EXAMPLE_DATA } from '../../lib/sim/cluster.ts';
import type { ArtifactHandle, JobState, Workbench } from '../../lib/workbench.ts';

export const SHARDS = ['california_housing.MedInc1.csv', 'california_housing.MedInc2.csv'].map((f) => join(EXAMPLE_DATA, f));
export const VALIDATION = join(EXAMPLE_DATA, 'california_housing.validation.csv');

/**
 * How long a test waits for an event before it fails, naming what it waited for.
 *
 * The rules every test here follows (the suite must pass on a loaded machine and under
 * `npm run test:slow`, where the tests get a quarter of one core):
 * - never sleep to let something happen: wait for the event itself (a pushed jobState, a node
 *   shown connected, a log line) with `waitFor`/`waitForJob`/`waitForLog`/`within`;
 * - a bound is a safety net that turns a hang into a message, never an assertion: it is
 *   generous (this default), and no assertion compares elapsed time;
 * - an operation a test must interrupt (cancel, kill) lasts much longer than the test
 *   (`LONG_SLEEP_MS`), and the test waits for it to be RUNNING before interrupting;
 * - a grace time or attempt timeout the scheduler applies is either generous, or the test
 *   waits for the condition it needs before acting.
 */
export const WAIT_MS = 90_000;

/**
 * The tap timeout of a file that starts node processes (set with `t.setTimeout` at its top);
 * package.json's 120 s stays for the others. Under `npm run test:slow` (a quarter of one core,
 * shared by tap's two jobs) such a file runs 6 to 10 times longer than on an idle machine: each
 * node process alone spends ~2 s of CPU transpiling at start. Not a fix for any race.
 */
export const PROCESS_FILE_TIMEOUT_MS = 900_000;

/** A TestSleep that outlasts any test: a cancel or a kill always meets it running. */
export const LONG_SLEEP_MS = 10 * 60_000;

/** A cluster in a temporary folder, torn down (processes stopped, folder removed) with the test. */
export async function testCluster(
  t: Test,
  name: string,
  opts: Partial<ClusterOptions> & Pick<ClusterOptions, 'workers'>,
): Promise<{ cluster: Cluster; wb: Workbench; token: string; dir: string }> {
  const token = randomBytes(16).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), `fdl-${name}-`));
  // Info lines on: tests wait for what the nodes log (CI runs with FDL_LOG_LEVEL=warn for its own output).
  const cluster = await Cluster.start({ dir, projectName: 'california', projectToken: token, ...opts, env: { FDL_LOG_LEVEL: 'info', ...opts.env } });
  const wb = await cluster.connect();
  t.teardown(async () => {
    wb.close();
    await cluster.stop();
    if (!process.env.FDL_KEEP_TEST_DIRS) rmSync(dir, { recursive: true, force: true });
  });
  return { cluster, wb, token, dir };
}

/**
 * Pacing only (spreading load in time), never to let something happen: for that, wait for
 * the event with `waitFor` and friends.
 */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface WaitOptions {
  /** What is awaited, as the failure message says it: "timed out after 90 s waiting for <what>". */
  what: string;
  /** The safety bound (default `WAIT_MS`). */
  timeoutMs?: number;
}

const timedOut = (o: WaitOptions) => new Error(`timed out after ${Math.round((o.timeoutMs ?? WAIT_MS) / 1000)} s waiting for ${o.what}`);

/** Settles as `p` does, or fails with a message naming what was awaited after the bound. */
export function within<T>(p: Promise<T>, o: WaitOptions): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(timedOut(o)), o.timeoutMs ?? WAIT_MS);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/** Polls `check` (every 50 ms) until it holds; fails with a message naming `what` after the bound. */
export async function waitFor(check: () => boolean | Promise<boolean>, o: WaitOptions): Promise<void> {
  const deadline = Date.now() + (o.timeoutMs ?? WAIT_MS);
  while (!(await check())) {
    if (Date.now() > deadline) throw timedOut(o);
    await sleep(50);
  }
}

/** `waitFor` with positional arguments (older tests). */
export function until(check: () => boolean | Promise<boolean>, timeoutMs = WAIT_MS, what = 'condition'): Promise<void> {
  return waitFor(check, { timeoutMs, what });
}

/**
 * Resolves when a job of the artifact reaches `state` (from the pushed events, or already in
 * the handle's status): a job of `worker` if given, of `operation` if given.
 */
export function waitForJob(
  handle: ArtifactHandle,
  match: { state: JobState; worker?: string; operation?: string },
  o: Partial<WaitOptions> = {},
): Promise<void> {
  const what = o.what ?? `a ${match.operation ?? ''} job${match.worker ? ` of ${match.worker}` : ''} of ${handle.id} to be ${match.state}`;
  const hit = () =>
    handle.status.jobs.some(
      (j) => j.state === match.state && (!match.worker || j.worker === match.worker) && (!match.operation || j.operation === match.operation),
    );
  let listener: (() => void) | undefined;
  const reached = new Promise<void>((resolve) => {
    listener = () => {
      if (hit()) resolve();
    };
    handle.on('event', listener);
    listener();
  });
  return within(reached, { what, ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}) }).finally(() => {
    if (listener) handle.off('event', listener);
  });
}

/** How many lines of a log file match `pattern` now (0 when the file does not exist yet). */
export function countLog(file: string, pattern: RegExp): number {
  if (!existsSync(file)) return 0;
  return readFileSync(file, 'utf8').split('\n').filter((l) => pattern.test(l)).length;
}

/** Waits until at least `count` lines of a log file (a node's `<dir>/<name>.log`) match `pattern`. */
export function waitForLog(file: string, pattern: RegExp, o: Partial<WaitOptions> & { count?: number } = {}): Promise<void> {
  const count = o.count ?? 1;
  return waitFor(() => countLog(file, pattern) >= count, {
    what: o.what ?? `${count} line(s) matching ${pattern} in ${file}`,
    ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}),
  });
}
