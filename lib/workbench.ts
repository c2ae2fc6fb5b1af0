/**
 * The workbench library: what a researcher imports.
 *
 *   const wb = await Workbench.connect('ws://127.0.0.1:1456');
 *   const project = await wb.project(token);
 *   const mean = await (await project.mean(['MedInc'])).result();
 */
export {
  ArtifactHandle,
  type ArtifactEvent,
  type ConnectOptions,
  Project,
  type ProjectSummary,
  type ResultWithProvenance,
  type WithProvenance,
  Workbench,
} from './workbench/client.ts';
export {
  and,
  type BinSpec,
  binsFromMetadata,
  categoriesOf,
  columns,
  distributions,
  estimators,
  expr,
  extract,
  fitQuery,
  or,
  type ProjectLike,
  QueryBuilder,
  type QueryLike,
  query,
  steps,
  toQuery,
  transformers,
  where,
} from './workbench/builders.ts';
export type {
  ArtifactSpecInput,
  ArtifactState,
  ArtifactStatus,
  ArtifactSummary,
  DpRequest,
  Expr,
  Filter,
  JobState,
  JobStatus,
  NodeInfo,
  Operation,
  ProjectInfo,
  Provenance,
  Query,
  QueryStage,
  Step,
} from '../protocols/entities.ts';
export type {
  CountProduct,
  CovarianceProduct,
  GroupCountProduct,
  GroupMeanProduct,
  HistogramProduct,
  MeanProduct,
  MinMaxProduct,
  QuantileEstimate,
  QuantilesProduct,
  SumProduct,
  VarianceProduct,
} from './ops/index.ts';
export * from './workbench/models.ts';
