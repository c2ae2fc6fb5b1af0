import type {
  Distribution,
  Filter,
  FilterCondition,
  Operation,
  Query,
  Scalar,
  SimpleStep,
  Step,
} from '../../protocols/entities.ts';

/** Builders for the wire forms, so a script reads like the computation it asks for. */

export const where = (feature: string, op: FilterCondition['op'], value?: Scalar | Scalar[]): FilterCondition =>
  value === undefined ? { feature, op } : { feature, op, value };
export const and = (...filters: Filter[]): Filter => ({ and: filters });
export const or = (...filters: Filter[]): Filter => ({ or: filters });
export const query = (filter?: Filter): Query => (filter ? { where: filter } : {});

const dist = (kind: Distribution['kind'], encryption = false): Distribution => ({ kind, encryption });
export const distributions = {
  arrange: (encryption?: boolean) => dist('Arrange', encryption),
  collect: (encryption?: boolean) => dist('Collect', encryption),
  distribute: (encryption?: boolean) => dist('Distribute', encryption),
  directToNext: (encryption?: boolean) => dist('DirectToNext', encryption),
};

const withDist = <T extends object>(step: T, distribution?: Distribution) =>
  distribution ? { ...step, distribution } : step;

export const steps = {
  initialize: (operation: Operation, distribution?: Distribution): Step =>
    withDist({ kind: 'Initialize' as const, operation }, distribution),
  parallel: (operation: Operation, distribution?: Distribution): Step =>
    withDist({ kind: 'Parallel' as const, operation }, distribution),
  sequential: (init: Operation, operation: Operation, final: Operation, distribution?: Distribution): Step =>
    withDist({ kind: 'Sequential' as const, init, operation, final }, distribution),
  roundRobin: (operation: Operation, distribution?: Distribution): Step =>
    withDist({ kind: 'RoundRobin' as const, operation }, distribution),
  finalize: (operation: Operation, distribution?: Distribution): Step =>
    withDist({ kind: 'Finalize' as const, operation }, distribution),
  iterate: (iterations: number, inner: SimpleStep[]): Step => ({ kind: 'Iterate', iterations, steps: inner }),
};

const withQuery = <T extends object>(op: T, q?: Query) => (q?.where ? { ...op, query: q } : op);

/**
 * Federated estimators, each one Sequential step (initiator -> every worker in turn ->
 * initiator) whose running value is masked by the initiator: workers see only masked sums.
 */
export const estimators = {
  count: (q?: Query): Step =>
    steps.sequential({ kind: 'CountInit' }, withQuery({ kind: 'Count' as const }, q), { kind: 'CountFinal' }),
  mean: (features: string[], q?: Query): Step =>
    steps.sequential(
      { kind: 'MeanInit', features },
      withQuery({ kind: 'Mean' as const, features }, q),
      { kind: 'MeanFinal', features },
    ),
  /** `domain`: the possible values of each `by` feature (from the project's metadata). */
  groupCount: (by: string[], domain: Scalar[][], q?: Query): Step =>
    steps.sequential(
      { kind: 'GroupCountInit', by, domain },
      withQuery({ kind: 'GroupCount' as const, by }, q),
      { kind: 'GroupCountFinal', by },
    ),
};
