import type { ArtifactStatus, ArtifactSummary } from '../../protocols/entities.ts';
import { FINISHED_STATES, jobStatus, type StoredArtifact, type StoredJob } from './store.ts';

/** The status a workbench sees, built from the durable rows (the single source of truth). */
export function artifactStatus(artifact: StoredArtifact, jobs: StoredJob[]): ArtifactStatus {
  const status: ArtifactStatus = {
    id: artifact.id,
    projectId: artifact.projectId,
    state: artifact.state,
    // Left-out jobs (quorum) count as done, as in the pushed events.
    progress: { completed: jobs.filter((j) => j.state === 'COMPLETED' || j.leftOut).length, total: jobs.length },
    jobs: jobs.map(jobStatus),
    createdAt: artifact.createdAt,
    updatedAt: artifact.updatedAt,
  };
  if (artifact.name !== undefined) status.name = artifact.name;
  if (artifact.error) status.error = artifact.error;
  if (artifact.resultResourceId) status.resultResourceId = artifact.resultResourceId;
  if (artifact.provenance) status.provenance = artifact.provenance;
  return status;
}

/** An artifact's line in a listing: no jobs, and when it finished. */
export function artifactSummary(artifact: StoredArtifact): ArtifactSummary {
  const summary: ArtifactSummary = {
    id: artifact.id,
    projectId: artifact.projectId,
    state: artifact.state,
    createdAt: artifact.createdAt,
    updatedAt: artifact.updatedAt,
  };
  if (artifact.name !== undefined) summary.name = artifact.name;
  // A finished artifact's row changes no more: its last change is when it finished.
  if (FINISHED_STATES.includes(artifact.state)) summary.finishedAt = artifact.updatedAt;
  return summary;
}
