/**
 * The workbench library: what a researcher imports.
 *
 *   const wb = await Workbench.connect('ws://127.0.0.1:1456');
 *   const project = await wb.project(token);
 *   const mean = await (await project.mean(['MedInc'])).result();
 */
export { ArtifactHandle, type ArtifactEvent, type ConnectOptions, Project, type ProjectSummary, Workbench } from './workbench/client.ts';
export { and, distributions, estimators, or, query, steps, where } from './workbench/builders.ts';
export type {
  ArtifactSpecInput,
  ArtifactState,
  ArtifactStatus,
  Filter,
  JobState,
  JobStatus,
  NodeInfo,
  Operation,
  ProjectInfo,
  Query,
  Step,
} from '../protocols/entities.ts';
export type { CountProduct, GroupCountProduct, MeanProduct } from './ops/index.ts';
export * from './workbench/models.ts';
