import type { JobState, JobStatus } from '../protocols/entities.ts';

/**
 * The timeline of an artifact's jobs per worker: one row per worker, a bar per job from when its
 * latest attempt started running (`startedAt`) to when it stopped (`finishedAt`; a running one
 * reaches `now`), coloured by its state. Positions are fractions of the span of all bars, so the
 * page draws them with percentages at any width. A pure function of the jobs: O(jobs).
 */

export interface TimelineBar {
  jobId: string;
  index: number;
  operation: string;
  state: JobState;
  attempt: number;
  start: number;
  end: number;
  /** Left edge and width as fractions (0..1) of the span. */
  left: number;
  width: number;
}

export interface TimelineRow {
  worker: string;
  bars: TimelineBar[];
}

export interface Timeline {
  /** The earliest start and the latest end of the bars (ms since the epoch); 0 when there is none. */
  from: number;
  to: number;
  rows: TimelineRow[];
}

/** The narrowest bar drawn, as a fraction of the span: a job of a few ms stays visible. */
export const MIN_BAR = 0.004;

export function layoutTimeline(jobs: readonly JobStatus[], now: number): Timeline {
  const spans: Array<{ job: JobStatus; start: number; end: number }> = [];
  for (const job of jobs) {
    const start = job.startedAt ?? job.finishedAt;
    if (start === undefined) continue; // never ran: nothing to draw
    const end = job.finishedAt ?? (job.state === 'RUNNING' ? Math.max(start, now) : start);
    spans.push({ job, start, end: Math.max(start, end) });
  }
  if (spans.length === 0) return { from: 0, to: 0, rows: [] };
  let from = Number.POSITIVE_INFINITY;
  let to = Number.NEGATIVE_INFINITY;
  for (const s of spans) {
    from = Math.min(from, s.start);
    to = Math.max(to, s.end);
  }
  const span = Math.max(1, to - from);
  const rows = new Map<string, TimelineBar[]>();
  for (const { job, start, end } of spans) {
    const width = Math.min(1, Math.max(MIN_BAR, (end - start) / span));
    // A bar that starts at the very end (an attempt just started) is moved in, to stay visible.
    const left = Math.min((start - from) / span, 1 - width);
    const bar: TimelineBar = {
      jobId: job.id,
      index: job.index,
      operation: job.operation,
      state: job.state,
      attempt: job.attempt,
      start,
      end,
      left,
      width,
    };
    const list = rows.get(job.worker);
    if (list) list.push(bar);
    else rows.set(job.worker, [bar]);
  }
  // Workers in the order of their first start; bars in time order.
  const ordered = [...rows].map(([worker, bars]) => ({ worker, bars: bars.sort((a, b) => a.start - b.start || a.index - b.index) }));
  ordered.sort((a, b) => (a.bars[0]?.start ?? 0) - (b.bars[0]?.start ?? 0) || (a.worker < b.worker ? -1 : 1));
  return { from, to, rows: ordered };
}
