import cliProgress from 'cli-progress';
import type { Provenance } from '../../protocols/entities.ts';

/**
 * A result's provenance in one line: which holders and rows it covers, what was left out, the
 * seeds, the artifact's hash and the software.
 */
export function provenanceLine(p: Provenance): string {
  const covered = `${p.included.length} of ${p.workers.length} holders (${p.included.join(', ') || 'none'}), ${p.rows} rows`;
  const left = p.leftOut.map((id) => `${id} (${p.workers.find((w) => w.nodeId === id)?.leftOutJobs ?? 0} jobs)`);
  const seeds = [p.seeds.model.length > 0 ? `model ${p.seeds.model.join(',')}` : '', p.seeds.split.length > 0 ? `split ${p.seeds.split.join(',')}` : '']
    .filter(Boolean)
    .join(', ');
  return [
    `provenance: ${covered}`,
    p.complete ? 'complete' : `LEFT OUT: ${left.join(', ')}`,
    ...(seeds ? [`seeds ${seeds}`] : []),
    `artifact sha256 ${p.artifactSha256.slice(0, 16)}`,
    `${p.software.name} ${p.software.version} (protocol ${p.software.protocolVersion})`,
  ].join('; ');
}

/** A plain aligned table on stdout. */
export function printTable(headers: string[], rows: string[][]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  process.stdout.write(`${line(headers)}\n`);
  for (const r of rows) process.stdout.write(`${line(r)}\n`);
}

export interface Progress {
  update(completed: number, total: number): void;
  stop(): void;
}

/** Job progress on stderr: a bar on a terminal, a line per change otherwise (logs, CI). */
/** Whether a plain-text progress line marks `completed` after `last`: every change up to 20 jobs, else every 5 % and the end. */
export function shouldMark(last: number, completed: number, total: number): boolean {
  if (completed === last) return false;
  if (last < 0 || completed >= total || total <= 20) return true;
  const bucket = (n: number) => Math.floor((n * 20) / total);
  return bucket(completed) !== bucket(last);
}

export function progressBar(total: number, label = 'jobs'): Progress {
  if (!process.stderr.isTTY) {
    // Not a terminal (a log, CI): one line per artifact, each step appended as it happens; at
    // most ~20 marks (every 5 %) however many jobs, so a 10,000-job run is one readable line.
    let last = -1;
    process.stderr.write(`  ${label}`);
    return {
      update: (completed, t) => {
        if (!shouldMark(last, completed, t)) return;
        last = completed;
        process.stderr.write(` ${completed}/${t}`);
      },
      stop: () => process.stderr.write('\n'),
    };
  }
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: `  ${label} [{bar}] {value}/{total}`, hideCursor: true, clearOnComplete: true },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  return {
    update: (completed, t) => {
      bar.setTotal(t);
      bar.update(completed);
    },
    stop: () => bar.stop(),
  };
}
