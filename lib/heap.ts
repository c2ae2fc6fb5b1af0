import { setFlagsFromString } from 'node:v8';

/**
 * How far V8 lets the old generation grow past what the last major GC kept, in percent, in a
 * process that runs the scheduler (`heap_growing_percent` in the config; 0: V8's own sizing).
 *
 * The scheduler's live heap is small (~45–60 MiB with 1,000 workers connected) and its garbage
 * is short-lived, but V8 sizes the old generation to the allocation rate: under back-to-back
 * 1,001-job artifacts it let the heap grow to 3× the live heap between major GCs (RSS 250–340
 * MiB). A fixed 30% keeps the scheduler at 171–183 MiB under that load (50%: 179–210 MiB, too
 * close to the 200 MiB goal), for ~7× the major GCs and ~0.01–0.03 ms more CPU per job:
 * docs/PERFORMANCE.md ("The scheduler's memory") has the figures. Node refuses this V8 flag in NODE_OPTIONS; set here, it applies from the
 * next GC on.
 */
export const DEFAULT_HEAP_GROWING_PERCENT = 30;

/** Applies `heap_growing_percent` to this process (0 leaves V8's own sizing). */
export function sizeHeap(growingPercent: number): void {
  if (growingPercent > 0) setFlagsFromString(`--heap-growing-percent=${growingPercent}`);
}
