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

const operationUnion = z.discriminatedUnion('kind', [...BasicOperationSchemas, ...EstimatorOperationSchemas, ...ModelOperationSchemas]);
/**
 * The type of OperationSchema under a name: the .d.ts of the build (dist/) then writes
 * `OperationSchemaType` wherever a schema holds an operation, instead of repeating its full
 * type each time (every step schema holds one, and the message union would pass the length
 * tsc can write).
 */
export interface OperationSchemaType extends OperationUnionType {}
type OperationUnionType = typeof operationUnion;

/** The work of one job, discriminated by `kind`. */
export const OperationSchema: OperationSchemaType = operationUnion;
export type Operation = z.infer<typeof OperationSchema>;
export type OperationKind = Operation['kind'];
