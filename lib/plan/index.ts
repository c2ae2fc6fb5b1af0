export { bindArtifact, MAX_JOBS, type Plan, type PlanContext, type PlannedJob, predecessors } from './bind.ts';
export { checkFeatures } from './validate.ts';
