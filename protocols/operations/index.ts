import { z } from 'zod';
import { EstimatorOperationSchemas } from './estimators.ts';
import { ModelOperationSchemas } from './models.ts';

export { Features, Id, Name, type Scalar, ScalarSchema } from './common.ts';
export * from './query.ts';
export * from './transformers.ts';
export { type Bins, BinsSchema, type DpRequest, DpSchema } from './estimators.ts';

/** Operations every node understands, whatever the catalog: plumbing and test aids. */
export const BasicOperationSchemas = [
  z.object({ kind: z.literal('Noop') }).strict(),
  /** Test aid: throws while the attempt number is <= `failAttempts`. */
  z.object({ kind: z.literal('TestFail'), failAttempts: z.number().int().min(0).max(100) }).strict(),
  /** Test aid: waits `ms` milliseconds, then passes its input on. */
  z.object({ kind: z.literal('TestSleep'), ms: z.number().int().min(0).max(600_000) }).strict(),
  /** Test aid: keeps a CPU busy for `ms` milliseconds (JavaScript, no timer), then passes its input on. */
  z.object({ kind: z.literal('TestSpin'), ms: z.number().int().min(0).max(600_000) }).strict(),
  /**
   * Test aid: a binary product of `bytes` pseudo-random bytes (AES-CTR keyed by `seed`: the same
   * seed gives the same bytes, so a rerun resumes an upload by content hash). Given a binary
   * input of that length, it passes that input on instead.
   */
  z.object({ kind: z.literal('TestBlob'), bytes: z.number().int().min(0).max(0xffff_ffff), seed: z.number().int().min(0).max(2 ** 31) }).strict(),
] as const;

/** The work of one job, discriminated by `kind`. */
export const OperationSchema = z.discriminatedUnion('kind', [
  ...BasicOperationSchemas,
  ...EstimatorOperationSchemas,
  ...ModelOperationSchemas,
]);
export type Operation = z.infer<typeof OperationSchema>;
export type OperationKind = Operation['kind'];
