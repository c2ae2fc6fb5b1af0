import { execFile, spawn } from 'node:child_process';
import { FDL_BIN } from '../../lib/sim/cluster.ts';
import { type WaitOptions, within } from './cluster.ts';

export interface FdlRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * A safety bound on one `fdl` command, not an assertion: generous (a command transpiles at
 * start, and `fdl demo` starts three nodes), and a command that hits it fails its test with a
 * message saying so.
 */
export const FDL_RUN_TIMEOUT_MS = 300_000;

/** Runs `fdl ARGS` as a user would (a separate process), with `env` added to the environment. */
export function runFdl(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = FDL_RUN_TIMEOUT_MS): Promise<FdlRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [FDL_BIN, ...args], { env: { ...process.env, ...env }, timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const killed = err && (err as { killed?: boolean }).killed;
      resolve({
        code: err ? ((err as { code?: number }).code ?? 1) : 0,
        stdout,
        stderr: killed ? `${stderr}\n[test] fdl ${args.join(' ')} was killed after ${timeoutMs / 1000} s without ending\n` : stderr,
      });
    });
  });
}

/** A running `fdl` command: its output so far, a wait on its stderr, and its end. */
export interface FdlProcess {
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the first match of `pattern` on its stderr (or fails naming it, after the bound). */
  stderrMatch(pattern: RegExp, o?: Partial<WaitOptions>): Promise<RegExpMatchArray>;
  /** The same on its stdout. */
  stdoutMatch(pattern: RegExp, o?: Partial<WaitOptions>): Promise<RegExpMatchArray>;
  /** Resolves when it has ended. */
  ended: Promise<FdlRun>;
  /** Sends it a signal (SIGTERM: a node shuts down and exits 0). */
  kill(signal?: NodeJS.Signals): void;
}

/** Starts `fdl ARGS` and returns at once, for a test that acts while the command runs. */
export function startFdl(args: string[], env: NodeJS.ProcessEnv = {}): FdlProcess {
  const child = spawn(process.execPath, [FDL_BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => {
    out += b.toString();
    child.emit('stdout-data');
  });
  child.stderr.on('data', (b: Buffer) => {
    err += b.toString();
    child.emit('stderr-data');
  });
  const guard = setTimeout(() => child.kill('SIGKILL'), FDL_RUN_TIMEOUT_MS);
  const ended = new Promise<FdlRun>((resolve) => {
    child.once('close', (code, signal) => {
      clearTimeout(guard);
      resolve({ code: code ?? 1, stdout: out, stderr: signal ? `${err}\n[test] fdl ${args.join(' ')} ended by ${signal}\n` : err });
    });
  });
  /** The first match of `pattern` on one of its streams, as it is written (or a failure naming it, after the bound). */
  const match = (stream: 'stdout' | 'stderr', text: () => string, pattern: RegExp, o: Partial<WaitOptions>) =>
    within(
      new Promise<RegExpMatchArray>((resolve, reject) => {
        const check = () => {
          const m = text().match(pattern);
          if (m) {
            child.off(`${stream}-data`, check);
            resolve(m);
          }
        };
        child.on(`${stream}-data`, check);
        check();
        void ended.then(() => reject(new Error(`fdl ${args.join(' ')} ended before printing ${pattern} on ${stream}: ${text()}`)));
      }),
      { what: o.what ?? `${pattern} on the ${stream} of fdl ${args.join(' ')}`, ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}) },
    );
  return {
    stdout: () => out,
    stderr: () => err,
    stderrMatch: (pattern, o = {}) => match('stderr', () => err, pattern, o),
    stdoutMatch: (pattern, o = {}) => match('stdout', () => out, pattern, o),
    ended,
    kill: (signal = 'SIGTERM') => {
      child.kill(signal);
    },
  };
}
