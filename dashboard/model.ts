import type { ArtifactStatus, ArtifactSummary, JobStatus, NodeInfo } from '../protocols/entities.ts';
import type { ArtifactEventItem, MessageOf } from '../protocols/messages.ts';

/**
 * What the dashboard knows, kept current by the pushes (never polled). Plain data with in-place
 * updates and a version number: a push costs O(1) here, and the page redraws at most once per
 * animation frame, whatever the rate of events (3,000 jobs finishing, 1,000 workers joining).
 */

export type ProjectSummary = MessageOf<'network'>['projects'][number];

export interface ProjectLine extends ProjectSummary {
  /** Data sources of the connected workers in this project, summed from the nodes' lines. */
  features: number;
}

export interface SelectedArtifact {
  id: string;
  status: ArtifactStatus | undefined;
  /** Jobs by id, for O(1) updates from jobState events. */
  byId: Map<string, JobStatus>;
  error?: string;
  result?: unknown;
  resultError?: string;
}

export class Model {
  version = 0;
  nodes = new Map<string, NodeInfo>();
  projectNames = new Map<string, ProjectSummary>();
  artifacts = new Map<string, ArtifactSummary>();
  selected: SelectedArtifact | undefined;
  private listeners = new Set<() => void>();
  private scheduled = false;

  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Marks a change; listeners run once on the next frame, however many changes came. */
  changed(): void {
    this.version++;
    if (this.scheduled) return;
    this.scheduled = true;
    const run = () => {
      this.scheduled = false;
      for (const fn of this.listeners) fn();
    };
    if (typeof requestAnimationFrame === 'function') requestAnimationFrame(run);
    else setTimeout(run, 0);
  }

  reset(): void {
    this.nodes.clear();
    this.projectNames.clear();
    this.artifacts.clear();
    this.selected = undefined;
    this.changed();
  }

  applyNetwork(m: MessageOf<'network'>): void {
    this.nodes = new Map(m.nodes.map((n) => [n.id, n]));
    this.projectNames = new Map(m.projects.map((p) => [p.id, p]));
    this.artifacts = new Map(m.artifacts.map((a) => [a.id, a]));
    this.changed();
  }

  applyNetworkEvent(m: MessageOf<'networkEvent'>): void {
    const e = m.event;
    if (e.kind === 'node') this.nodes.set(e.node.id, e.node);
    else if (e.kind === 'artifact') this.artifacts.set(e.artifact.id, e.artifact);
    else this.artifacts.delete(e.artifactId);
    this.changed();
  }

  select(id: string | undefined): void {
    this.selected = id ? { id, status: undefined, byId: new Map() } : undefined;
    this.changed();
  }

  applyStatus(status: ArtifactStatus): void {
    const sel = this.selected;
    if (!sel || sel.id !== status.id) return;
    sel.status = status;
    sel.byId = new Map(status.jobs.map((j) => [j.id, j]));
    this.changed();
  }

  applyArtifactEvent(m: MessageOf<'artifactEvent'>): void {
    const sel = this.selected;
    if (!sel?.status || sel.id !== m.artifactId) return;
    const status = sel.status;
    status.progress = m.progress;
    for (const e of m.events) this.applyEvent(sel, e);
    this.changed();
  }

  /** One transition of the selected artifact or one of its jobs. */
  private applyEvent(sel: SelectedArtifact, e: ArtifactEventItem): void {
    const status = sel.status;
    if (!status) return;
    if (e.kind === 'artifactState') {
      status.state = e.state;
    } else {
      const job = sel.byId.get(e.jobId);
      if (job) {
        job.state = e.state;
        job.attempt = e.attempt;
        if (e.error) job.lastError = e.error;
        if (e.leftOut) job.leftOut = true;
        if (e.state === 'FAILED' && e.nextAttemptAt !== undefined) job.nextAttemptAt = e.nextAttemptAt;
        else delete job.nextAttemptAt;
        if (e.startedAt !== undefined) job.startedAt = e.startedAt;
        if (e.finishedAt !== undefined) job.finishedAt = e.finishedAt;
        else delete job.finishedAt;
      }
    }
  }

  /** Project lines: names from the scheduler, counts summed over the connected nodes' data sources. */
  projectLines(): ProjectLine[] {
    const lines = new Map<string, ProjectLine>();
    for (const p of this.projectNames.values()) lines.set(p.id, { ...p, workers: 0, datasources: 0, rows: 0, features: 0 });
    for (const n of this.nodes.values()) {
      if (!n.connected || !n.sources) continue;
      const seen = new Set<string>();
      for (const src of n.sources) {
        const line = lines.get(src.projectId);
        if (!line) continue;
        if (!seen.has(src.projectId)) {
          seen.add(src.projectId);
          line.workers++;
        }
        line.datasources++;
        line.rows += src.rows;
        line.features = Math.max(line.features, src.features);
      }
    }
    return [...lines.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}
