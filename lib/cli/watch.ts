import type { ArtifactStatus, JobState, JobStatus } from '../../protocols/entities.ts';

/**
 * `fdl status ID --watch`: the progress of an artifact's DAG, one line per step (per iteration of
 * an Iterate step), redrawn from the events the scheduler pushes. Pure functions of a status, so
 * the rendering is tested without a terminal.
 */

/** How a job's state is counted on its step's line. */
const BUCKET: Record<JobState, 'done' | 'running' | 'failed' | 'waiting'> = {
  COMPLETED: 'done',
  SCHEDULED: 'running',
  RUNNING: 'running',
  FAILED: 'failed', // waiting for its next attempt
  ERROR: 'failed', // out of attempts
  WAITING: 'waiting',
};

/** One step of the DAG (one iteration of it, for an Iterate step), with its jobs counted by state. */
export interface StepProgress {
  step: number;
  iteration: number;
  operation: string;
  jobs: number;
  done: number;
  running: number;
  failed: number;
  waiting: number;
  /** Attempts started over the step's jobs (a job retried twice counts 3). */
  attempts: number;
  /** Jobs left out under a quorum (counted in `failed`). */
  leftOut: number;
}

/** The steps of a status, in DAG order (iteration, then step), with their counts. */
export function stepProgress(jobs: readonly JobStatus[]): StepProgress[] {
  const steps = new Map<string, StepProgress>();
  for (const j of jobs) {
    const key = `${j.iteration}:${j.stepIndex}`;
    let s = steps.get(key);
    if (!s) {
      s = { step: j.stepIndex, iteration: j.iteration, operation: j.operation, jobs: 0, done: 0, running: 0, failed: 0, waiting: 0, attempts: 0, leftOut: 0 };
      steps.set(key, s);
    }
    s.jobs++;
    s[BUCKET[j.state]]++;
    s.attempts += j.attempt;
    if (j.leftOut) s.leftOut++;
    // A step runs one operation per job kind (init/chain/final of a Sequential differ): name them all.
    if (!s.operation.split('/').includes(j.operation)) s.operation = `${s.operation}/${j.operation}`;
  }
  return [...steps.values()].sort((a, b) => a.iteration - b.iteration || a.step - b.step);
}

/** The lines of the view: a header, one line per step, and the error when there is one. */
export function renderProgress(s: ArtifactStatus): string[] {
  const steps = stepProgress(s.jobs);
  const iterated = steps.some((p) => p.iteration > 0);
  const label = (p: StepProgress) => `step ${p.step + 1}${iterated ? ` round ${p.iteration + 1}` : ''}`;
  const lw = Math.max(0, ...steps.map((p) => label(p).length));
  const ow = Math.max(0, ...steps.map((p) => p.operation.length));
  const lines = [`artifact ${s.id}${s.name ? ` (${s.name})` : ''}: ${s.state}, ${s.progress.completed}/${s.progress.total} jobs`];
  for (const p of steps) {
    const bar = `${'#'.repeat(p.done)}${'>'.repeat(p.running)}${'x'.repeat(p.failed)}${'.'.repeat(p.waiting)}`;
    lines.push(
      `  ${label(p).padEnd(lw)}  ${p.operation.padEnd(ow)}  [${bar.length <= 40 ? bar : `${p.done}/${p.jobs}`}]  done ${p.done}/${p.jobs}, running ${p.running}, failed ${p.failed}${p.leftOut ? ` (${p.leftOut} left out)` : ''}, waiting ${p.waiting}; attempts ${p.attempts}`,
    );
  }
  if (s.error) {
    const where = s.error.jobId ? ` (job ${s.error.jobId} on ${s.error.worker ?? '?'})` : '';
    lines.push(`error${where}: ${s.error.error.code}: ${s.error.error.message}`);
  }
  return lines;
}

/** The view as one JSON line (for `--watch --json`: one line per change). */
export function progressJson(s: ArtifactStatus): string {
  return JSON.stringify({ id: s.id, state: s.state, progress: s.progress, steps: stepProgress(s.jobs), ...(s.error ? { error: s.error } : {}) });
}

/**
 * Draws successive views: on a terminal each one replaces the last (cursor up, clear to the end);
 * elsewhere (a pipe, a log) a view is written only when it differs from the one before.
 */
export class ProgressView {
  private drawn: string[] = [];

  constructor(
    private readonly out: NodeJS.WritableStream & { isTTY?: boolean },
    private readonly json = false,
  ) {}

  draw(s: ArtifactStatus): void {
    const lines = this.json ? [progressJson(s)] : renderProgress(s);
    if (lines.join('\n') === this.drawn.join('\n')) return;
    const redraw = !this.json && this.out.isTTY && this.drawn.length > 0 ? `\x1b[${this.drawn.length}F\x1b[J` : this.json || this.out.isTTY || this.drawn.length === 0 ? '' : '\n';
    this.out.write(`${redraw}${lines.join('\n')}\n`);
    this.drawn = lines;
  }
}
