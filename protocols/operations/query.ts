import { z } from 'zod';
import { Features, Name, ScalarSchema } from './common.ts';
import { TransformerStageSchemas } from './transformers.ts';

export const ComparisonOps = ['<', '<=', '>', '>=', '==', '!='] as const;
export const FilterOps = [...ComparisonOps, 'in', 'not in', 'is null', 'not null', 'between'] as const;

export const FilterConditionSchema = z
  .object({
    /** A feature of the project's data; checked against the data source schema on the worker. */
    feature: Name,
    op: z.enum(FilterOps),
    /** A scalar for comparisons, a list for `in`/`not in`, `[low, high]` for `between`, absent for null tests. */
    value: z.union([ScalarSchema, z.array(ScalarSchema).max(10_000)]).optional(),
  })
  .strict();
export type FilterCondition = z.infer<typeof FilterConditionSchema>;

export type Filter = FilterCondition | { and: Filter[] } | { or: Filter[] };
export const FilterSchema: z.ZodType<Filter> = z.lazy(() =>
  z.union([
    FilterConditionSchema,
    z.object({ and: z.array(FilterSchema).min(1).max(256) }).strict(),
    z.object({ or: z.array(FilterSchema).min(1).max(256) }).strict(),
  ]),
);

/** Functions of a derived column's expression; arithmetic is in DOUBLE, a result that is not finite is null. */
export const ExprFns = ['+', '-', '*', '/', 'neg', 'abs', 'sqrt', 'log', 'exp', 'pow', 'min', 'max', 'round', 'floor', 'ceil'] as const;
export type ExprFn = (typeof ExprFns)[number];

/**
 * A derived column's value: a number, a feature, or a function of expressions. A tree of data,
 * never SQL text: the worker compiles it with quoted identifiers and bound parameters.
 */
export type Expr = number | { feature: string } | { fn: ExprFn; args: Expr[] };
export const ExprSchema: z.ZodType<Expr> = z.lazy(() =>
  z.union([
    z.number().finite(),
    z.object({ feature: Name }).strict(),
    z.object({ fn: z.enum(ExprFns), args: z.array(ExprSchema).min(1).max(16) }).strict(),
  ]),
);

/** Column utilities: keep the rows matching a filter, keep or drop features, rename, derive. */
export const ColumnStageSchemas = [
  z.object({ kind: z.literal('Filter'), where: FilterSchema }).strict(),
  z.object({ kind: z.literal('Select'), features: Features }).strict(),
  z.object({ kind: z.literal('Drop'), features: Features }).strict(),
  z
    .object({
      kind: z.literal('Rename'),
      renames: z.array(z.object({ from: Name, to: Name }).strict()).min(1).max(4_096),
    })
    .strict(),
  /** Adds the column `name` (or replaces it when it exists) computed by `expr`. */
  z.object({ kind: z.literal('Derive'), name: Name, expr: ExprSchema }).strict(),
] as const;

/** One stage of a query's pipeline: a column utility or a transformer. */
export const QueryStageSchema = z.discriminatedUnion('kind', [...ColumnStageSchemas, ...TransformerStageSchemas]);
export type QueryStage = z.infer<typeof QueryStageSchema>;
export type QueryStageKind = QueryStage['kind'];

/** At most this many stages in one query. */
export const MAX_QUERY_STAGES = 64;

/**
 * Rows a job works on: the union of the worker's data sources bound to the project, filtered by
 * `where`, then rewritten by each of `stages` in order.
 */
export const QuerySchema = z
  .object({
    where: FilterSchema.optional(),
    stages: z.array(QueryStageSchema).max(MAX_QUERY_STAGES).optional(),
  })
  .strict();
export type Query = z.infer<typeof QuerySchema>;
