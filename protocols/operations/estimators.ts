import { z } from 'zod';
import { Features, ScalarSchema } from './common.ts';
import { QuerySchema } from './query.ts';

/** A group key domain: the list of possible values of each `by` feature, in `by` order. */
const Domain = z.array(z.array(ScalarSchema).min(1).max(1_024)).min(1).max(8);

/**
 * Estimators: each is a Sequential step (init on the initiator, one op per worker in turn,
 * final on the initiator); only masked aggregates travel between them.
 */
export const EstimatorOperationSchemas = [
  z.object({ kind: z.literal('CountInit') }).strict(),
  z.object({ kind: z.literal('Count'), query: QuerySchema.optional() }).strict(),
  z.object({ kind: z.literal('CountFinal') }).strict(),
  z.object({ kind: z.literal('MeanInit'), features: Features }).strict(),
  z.object({ kind: z.literal('Mean'), features: Features, query: QuerySchema.optional() }).strict(),
  z.object({ kind: z.literal('MeanFinal'), features: Features }).strict(),
  z.object({ kind: z.literal('GroupCountInit'), by: Features.max(8), domain: Domain }).strict(),
  z.object({ kind: z.literal('GroupCount'), by: Features.max(8), query: QuerySchema.optional() }).strict(),
  z.object({ kind: z.literal('GroupCountFinal'), by: Features.max(8) }).strict(),
] as const;
