import { z } from 'zod';
import { Name, ScalarSchema } from './common.ts';

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

/** Rows a job works on: the union of the worker's data sources bound to the project, filtered. */
export const QuerySchema = z
  .object({
    where: FilterSchema.optional(),
  })
  .strict();
export type Query = z.infer<typeof QuerySchema>;

