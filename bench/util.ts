import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Shared helpers of the benchmarks: medians, formatting, and cleanup that runs even on error. */

const TICK_MS = 1000 / 100; // USER_HZ: 100 on Linux

/** The user + system CPU a process has spent, in ms (10 ms ticks), from /proc/<pid>/stat: Linux only. */
export function processCpuMs(pid: number): number {
  // Fields after the command name (which may hold spaces, in parentheses): utime is the 14th field.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Spread of the repeats, as (max - min) / median: how far to trust a figure on a noisy machine. */
export function spread(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  return (Math.max(...xs) - Math.min(...xs)) / median(xs);
}

/** 1234567 -> "1.23M", 45678 -> "45.7k". */
export function rate(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)}M`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)}k`;
  return x.toFixed(0);
}

export function ms(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x < 0.01) return `${(x * 1000).toFixed(2)} µs`;
  if (x < 10) return `${x.toFixed(2)} ms`;
  return `${x.toFixed(1)} ms`;
}

export function ratio(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x >= 100) return `${x.toFixed(0)}x`;
  if (x >= 0.1) return `${x.toFixed(2)}x`;
  return `${x.toPrecision(2)}x`;
}

export const now = (): number => performance.now();

/** One line of the final table. */
export interface Row {
  figure: string;
  value: string;
  baseline?: string;
  ratio?: string;
  note?: string;
}

export function table(rows: readonly Row[]): string {
  const head: Row = { figure: 'figure', value: 'value (median)', baseline: 'baseline', ratio: 'ratio', note: '' };
  const all = [head, ...rows];
  const w = (k: keyof Row) => Math.max(...all.map((r) => (r[k] ?? '').length));
  const wf = w('figure');
  const wv = w('value');
  const wb = w('baseline');
  const wr = w('ratio');
  const line = (r: Row) =>
    `${r.figure.padEnd(wf)}  ${r.value.padStart(wv)}  ${(r.baseline ?? '').padStart(wb)}  ${(r.ratio ?? '').padStart(wr)}  ${r.note ?? ''}`.trimEnd();
  const sep = '-'.repeat(wf + wv + wb + wr + 6);
  return [line(head), sep, ...rows.map(line)].join('\n');
}

/**
 * Cleanup actions, run last-in first-out exactly once: at the end, on error, and on
 * SIGINT/SIGTERM. Each action is bounded so that a stuck one cannot hold the exit.
 */
export class Cleanup {
  private readonly actions: Array<{ name: string; fn: () => unknown }> = [];
  private running: Promise<void> | undefined;

  add(name: string, fn: () => unknown): void {
    this.actions.push({ name, fn });
  }

  /** A fresh temp directory, removed at cleanup. */
  tempDir(prefix: string): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    this.add(`rm ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  run(): Promise<void> {
    this.running ??= (async () => {
      while (this.actions.length > 0) {
        const a = this.actions.pop();
        if (!a) break;
        try {
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([
            Promise.resolve().then(a.fn),
            new Promise((resolve) => {
              timer = setTimeout(() => {
                process.stderr.write(`bench: cleanup "${a.name}" took over 20 s; going on\n`);
                resolve(undefined);
              }, 20_000);
            }),
          ]);
          if (timer) clearTimeout(timer);
        } catch (e) {
          process.stderr.write(`bench: cleanup "${a.name}" failed: ${(e as Error).message}\n`);
        }
      }
    })();
    return this.running;
  }
}

/** What a process has spent so far: CPU (user + system) and read/write syscalls (Linux: /proc). */
export interface ProcessCost {
  cpuMs: number;
  reads: number;
  writes: number;
}

export function processCost(pid: number): ProcessCost {
  const io = Object.fromEntries(
    readFileSync(`/proc/${pid}/io`, 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(': ') as [string, string]),
  );
  return {
    cpuMs: processCpuMs(pid),
    reads: Number(io.syscr),
    writes: Number(io.syscw),
  };
}

/** Each process's cost since `before`, per `unit` (`count` of them), as a table. */
export function costsTable(processes: ReadonlyArray<{ name: string; pid: number }>, before: ReadonlyMap<string, ProcessCost>, count: number, unit: string): string {
  const lines = [`process       CPU ms/${unit}   read syscalls/${unit}   write syscalls/${unit}`];
  for (const p of processes) {
    const a = before.get(p.name) as ProcessCost;
    const b = processCost(p.pid);
    lines.push(
      `${p.name.padEnd(12)}  ${((b.cpuMs - a.cpuMs) / count).toFixed(3).padStart(12)}   ${((b.reads - a.reads) / count).toFixed(1).padStart(19)}   ${((b.writes - a.writes) / count).toFixed(1).padStart(20)}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
