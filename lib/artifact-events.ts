import { type ArtifactEventItem, MAX_EVENTS_PER_FRAME } from '../protocols/messages.ts';

/**
 * An artifact's transitions as one push carries them (protocol 6, docs/PROTOCOL.md "Progress
 * pushes"): in order, without a job's SCHEDULED or RUNNING when a later transition of the same
 * job is in the batch (the later one says all a watcher needs: its state, attempt and times).
 * FAILED, ERROR and COMPLETED are never dropped, nor an artifact's state: every retry's cause and
 * every final state reaches the watcher.
 */
export function coalesce(events: readonly ArtifactEventItem[]): ArtifactEventItem[] {
  if (events.length < 2) return [...events];
  const later = new Set<string>();
  const kept: ArtifactEventItem[] = [];
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i] as ArtifactEventItem;
    if (e.kind === 'jobState') {
      const superseded = (e.state === 'SCHEDULED' || e.state === 'RUNNING') && later.has(e.jobId);
      later.add(e.jobId);
      if (superseded) continue;
    }
    kept.push(e);
  }
  return kept.reverse();
}

/** A batch cut into frames of at most MAX_EVENTS_PER_FRAME, in order. */
export function framesOf(events: readonly ArtifactEventItem[]): ArtifactEventItem[][] {
  const frames: ArtifactEventItem[][] = [];
  for (let i = 0; i < events.length; i += MAX_EVENTS_PER_FRAME) frames.push(events.slice(i, i + MAX_EVENTS_PER_FRAME));
  return frames;
}
