import type { JobStatus } from '../protocols/entities.ts';

/**
 * The job DAG laid out in columns, one per step (and per round of an Iterate, and per operation
 * of a Sequential step: its init, its chain of workers, its final), in job order. The plan is
 * already layered this way (a job's locks only point forward), so a layout library would only
 * rediscover the columns; what it cannot do for us is stay readable at 3,000 jobs, which the
 * collapsed lanes do: a column of more than COLLAPSE_AT jobs is drawn as one box with its counts
 * per state, and its edges as one edge per pair of columns.
 */

export const COLLAPSE_AT = 50;
export const COL_W = 170;
export const COL_GAP = 70;
export const NODE_H = 28;
export const NODE_GAP = 8;
export const LANE_H = 150;
export const TOP = 34;

export interface Column {
  key: string;
  label: string;
  x: number;
  jobs: JobStatus[];
  collapsed: boolean;
  height: number;
}

export interface Placed {
  job: JobStatus;
  column: number;
  y: number;
}

export interface Edge {
  key: string;
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  /** Both ends in one column (a Sequential chain): drawn as an arc beside it. */
  same: boolean;
}

export interface Layout {
  columns: Column[];
  placed: Map<number, Placed>;
  edges: Edge[];
  width: number;
  height: number;
}

/** Edges drawn one by one up to this many; past it, one per pair of columns. */
const MAX_JOB_EDGES = 4000;

export function layoutDag(jobs: readonly JobStatus[]): Layout {
  const groups = new Map<string, JobStatus[]>();
  for (const j of jobs) {
    const key = `${j.iteration}/${j.stepIndex}/${j.operation}`;
    let g = groups.get(key);
    if (!g) {
      g = [];
      groups.set(key, g);
    }
    g.push(j);
  }
  const ordered = [...groups.entries()].sort((a, b) => (a[1][0]?.index ?? 0) - (b[1][0]?.index ?? 0));
  const columns: Column[] = [];
  const placed = new Map<number, Placed>();
  ordered.forEach(([key, g], i) => {
    const collapsed = g.length > COLLAPSE_AT;
    const first = g[0] as JobStatus;
    const label = `${first.iteration > 0 ? `round ${first.iteration} · ` : ''}step ${first.stepIndex} · ${first.operation}`;
    const height = collapsed ? LANE_H : g.length * (NODE_H + NODE_GAP) - NODE_GAP;
    columns.push({ key, label, x: 10 + i * (COL_W + COL_GAP), jobs: g, collapsed, height });
    g.forEach((job, k) => {
      placed.set(job.index, { job, column: i, y: TOP + (collapsed ? 0 : k * (NODE_H + NODE_GAP)) });
    });
  });

  const edges: Edge[] = [];
  const colEdges = new Set<string>();
  let jobEdges = 0;
  for (const j of jobs) jobEdges += j.locks?.length ?? 0;
  const perJob = jobEdges <= MAX_JOB_EDGES;
  for (const j of jobs) {
    const from = placed.get(j.index);
    if (!from) continue;
    for (const l of j.locks ?? []) {
      const to = placed.get(l);
      if (!to) continue;
      const a = columns[from.column] as Column;
      const b = columns[to.column] as Column;
      const same = from.column === to.column;
      const fy = a.collapsed ? TOP + LANE_H / 2 : from.y + NODE_H / 2;
      const ty = b.collapsed ? TOP + LANE_H / 2 : to.y + NODE_H / 2;
      if (perJob && !a.collapsed && !b.collapsed) {
        edges.push({ key: `${j.index}-${l}`, x1: a.x + COL_W, y1: fy, x2: same ? b.x + COL_W : b.x, y2: ty, same });
        continue;
      }
      // A chain inside a collapsed lane (a Sequential step's workers) is not drawn: its lane says it.
      if (same) continue;
      // Aggregated: one edge per (column or job) pair, so a lane of 1,000 jobs draws a handful.
      const fromKey = a.collapsed || !perJob ? `c${from.column}` : `j${j.index}`;
      const toKey = b.collapsed || !perJob ? `c${to.column}` : `j${l}`;
      const key = `${fromKey}-${toKey}`;
      if (colEdges.has(key)) continue;
      colEdges.add(key);
      const y1 = perJob ? fy : TOP + Math.min(a.height, LANE_H) / 2;
      const y2 = perJob ? ty : TOP + Math.min(b.height, LANE_H) / 2;
      edges.push({ key, x1: a.x + COL_W, y1, x2: same ? b.x + COL_W : b.x, y2, same });
    }
  }
  const width = columns.length * (COL_W + COL_GAP) + 20;
  const height = TOP + Math.max(NODE_H, ...columns.map((c) => c.height)) + 20;
  return { columns, placed, edges, width, height };
}

export const JOB_STATES = ['WAITING', 'SCHEDULED', 'RUNNING', 'COMPLETED', 'FAILED', 'ERROR'] as const;

/** Jobs of a column per state, for a collapsed lane's bar. */
export function countStates(jobs: readonly JobStatus[]): Record<(typeof JOB_STATES)[number], number> {
  const c = { WAITING: 0, SCHEDULED: 0, RUNNING: 0, COMPLETED: 0, FAILED: 0, ERROR: 0 };
  for (const j of jobs) c[j.state]++;
  return c;
}
