export { bindArtifact, MAX_JOBS, type Plan, type PlanContext, type PlannedJob, predecessors, quorumToleratesAbsence } from './bind.ts';
export { checkFeatures } from './validate.ts';
