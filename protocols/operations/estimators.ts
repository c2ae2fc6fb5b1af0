import { z } from 'zod';
import { Features, ScalarSchema } from './common.ts';
import { QuerySchema } from './query.ts';

/** A group key domain: the list of possible values of each `by` feature, in `by` order. */
const Domain = z.array(z.array(ScalarSchema).min(1).max(1_024)).min(1).max(8);
const Finite = z.number().finite();

/**
 * Differential privacy for one estimate: each worker adds Laplace noise of scale
 * sensitivity / epsilon to its contribution and charges epsilon to the project's budget on
 * that worker. `bounds` (one [low, high] per feature) clip the values of a noisy sum and
 * set its sensitivity.
 */
export const DpSchema = z
  .object({
    epsilon: z.number().positive().max(1_000),
    bounds: z.array(z.tuple([Finite, Finite])).max(4_096).optional(),
  })
  .strict();
export type DpRequest = z.infer<typeof DpSchema>;

/** Equal-width bins over [lo, hi] (the last bin includes hi); values outside are counted apart. */
export const BinsSchema = z
  .object({ lo: Finite, hi: Finite, count: z.number().int().min(1).max(100_000) })
  .strict()
  .refine((b) => b.lo < b.hi, 'bins need lo < hi');
export type Bins = z.infer<typeof BinsSchema>;
const BinsPerFeature = z.array(BinsSchema).min(1).max(4_096);

/** Quantile levels in [0, 1]. */
const Levels = z.array(z.number().min(0).max(1)).min(1).max(1_000);

const seq = <K extends string, S extends z.ZodRawShape, W extends z.ZodRawShape, F extends z.ZodRawShape>(
  kind: K,
  init: S,
  worker: W,
  final: F,
) =>
  [
    z.object({ kind: z.literal(`${kind}Init` as `${K}Init`), ...init }).strict(),
    z.object({ kind: z.literal(kind), ...worker, query: QuerySchema.optional() }).strict(),
    z.object({ kind: z.literal(`${kind}Final` as `${K}Final`), ...final }).strict(),
  ] as const;

/**
 * Estimators: each is a Sequential step (init on the initiator, one op per worker in turn,
 * final on the initiator); only masked aggregates travel between them. What each worker
 * computes, what leaves it and how it is merged: docs/OPERATIONS.md.
 */
export const EstimatorOperationSchemas = [
  z.object({ kind: z.literal('CountInit') }).strict(),
  z.object({ kind: z.literal('Count'), query: QuerySchema.optional(), dp: DpSchema.optional() }).strict(),
  z.object({ kind: z.literal('CountFinal') }).strict(),
  z.object({ kind: z.literal('MeanInit'), features: Features }).strict(),
  z.object({ kind: z.literal('Mean'), features: Features, query: QuerySchema.optional(), dp: DpSchema.optional() }).strict(),
  z.object({ kind: z.literal('MeanFinal'), features: Features }).strict(),
  z.object({ kind: z.literal('GroupCountInit'), by: Features.max(8), domain: Domain }).strict(),
  z.object({ kind: z.literal('GroupCount'), by: Features.max(8), query: QuerySchema.optional(), dp: DpSchema.optional() }).strict(),
  z.object({ kind: z.literal('GroupCountFinal'), by: Features.max(8) }).strict(),
  ...seq('Sum', { features: Features }, { features: Features, dp: DpSchema.optional() }, { features: Features }),
  ...seq(
    'Variance',
    { features: Features },
    {
      features: Features,
      /** Per feature, a value near its mean (e.g. from the metadata): keeps the merge exact for data far from 0. */
      shift: z.array(Finite).max(4_096).optional(),
    },
    {
      features: Features,
      /** The divisor is count - ddof: 1 (default) for the sample variance, 0 for the population's. */
      ddof: z.union([z.literal(0), z.literal(1)]).optional(),
    },
  ),
  ...seq(
    'GroupMean',
    { by: Features.max(8), domain: Domain, features: Features },
    { by: Features.max(8), features: Features, dp: DpSchema.optional() },
    { by: Features.max(8), features: Features },
  ),
  ...seq('MinMax', { features: Features }, { features: Features }, { features: Features }),
  ...seq(
    'Histogram',
    { features: Features, bins: BinsPerFeature },
    { features: Features, bins: BinsPerFeature, dp: DpSchema.optional() },
    { features: Features, bins: BinsPerFeature },
  ),
  ...seq(
    'Quantiles',
    { features: Features, bins: BinsPerFeature },
    { features: Features, bins: BinsPerFeature, dp: DpSchema.optional() },
    { features: Features, bins: BinsPerFeature, q: Levels },
  ),
  ...seq(
    'Covariance',
    { features: Features.max(64) },
    { features: Features.max(64), shift: z.array(Finite).max(64).optional() },
    { features: Features.max(64), ddof: z.union([z.literal(0), z.literal(1)]).optional() },
  ),
] as const;
