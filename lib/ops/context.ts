import type { Operation, Scalar } from '../../protocols/entities.ts';
import type { DataEngine } from '../data/engine.ts';
import { FdlError } from '../errors.ts';
import type { ComputeTaskName } from './compute.ts';

/** Private state of this node, per artifact (the initiator's masks live here and never leave the node). */
export interface Locals {
  get(key: string): unknown;
  set(key: string, value: unknown): void;
  /**
   * `size` secret bytes that are a function of the node's durable secret, the artifact and `key`
   * alone (the same on every call, after any restart, on every replica): what a value drawn once
   * and kept would be, without the durable write. Absent on a node without such a secret.
   */
  derive?(key: string, size: number): Uint8Array;
}

export interface OpContext {
  operation: Operation;
  attempt: number;
  artifactId: string;
  stepIndex: number;
  iteration: number;
  projectToken: string;
  /** Decoded products of the predecessor jobs, in order. */
  inputs: unknown[];
  /** Undefined on the initiator (the scheduler's data-less worker). */
  data: DataEngine | undefined;
  locals: Locals;
  /** [0, 1), injectable for tests. Not for secrets: masks and noise draw on `randomBytes`. */
  random: () => number;
  /**
   * The node's privacy settings (from its config, `privacy:`). Absent: the safe defaults, a
   * minimum group size of 5 and no differential-privacy budget ledger (see lib/ops/estimators/privacy.ts).
   */
  privacy?: PrivacySettings;
  /** Cryptographic random bytes for masks and noise; node:crypto's randomBytes when absent (tests inject). */
  randomBytes?: (size: number) => Uint8Array;
  /** Aborted when the job is cancelled: an operation stops at its next check (between epochs, trees, slices). */
  signal?: AbortSignal;
  /**
   * Where the JavaScript-heavy part of an operation runs (lib/ops/pool.ts: a pool of worker
   * threads). Absent: inline, on this thread. Data reads stay on this thread (the DataEngine lives here).
   */
  compute?: Compute;
  /** A folder of this node for large products written as files (lib/ops/file-blob.ts); absent: none may be made. */
  scratch?: string;
}

/** Runs a compute task (lib/ops/compute.ts) by name, elsewhere; rejects when `signal` aborts. */
export interface Compute {
  run(task: ComputeTaskName, args: unknown, signal?: AbortSignal): Promise<unknown>;
}

/**
 * Runs the CPU-bound part of an operation: on `ctx.compute` when there is one, else inline with
 * `fn` (the same function the thread runs: `computeTasks[task]`). Only structured-clonable
 * values (plain objects, typed arrays) go in and come out.
 */
export async function offload<A, R>(
  ctx: OpContext,
  task: ComputeTaskName,
  fn: (args: A, signal?: AbortSignal) => R | Promise<R>,
  args: A,
): Promise<R> {
  ctx.signal?.throwIfAborted();
  if (ctx.compute === undefined) return await fn(args, ctx.signal);
  return (await ctx.compute.run(task, args, ctx.signal)) as R;
}

/** What a node tells its operations about privacy (docs/OPERATIONS.md, "Privacy"). */
export interface PrivacySettings {
  /** A group, bin or whole contribution with fewer rows than this is not contributed. */
  minGroupSize: number;
  /** Differential privacy: the per-project epsilon ledger. Absent: noise is added when asked, with no budget cap. */
  budget?: PrivacyBudget;
  /** Refuse estimators that do not ask for differential-privacy noise. */
  requireDp?: boolean;
}

/** A per-project privacy budget (epsilon), tracked by each worker; lib/ops/estimators/privacy.ts has the file-backed one. */
export interface PrivacyBudget {
  /**
   * Spends `epsilon` of the project's budget under `key` (one per job: a retry with the same key
   * spends nothing more); throws a non-retryable error, spending nothing, when it would go past the budget.
   */
  charge(projectToken: string, key: string, epsilon: number): void;
  /** What is left of the project's budget. */
  remaining(projectToken: string): number;
}

export type OpOf<K extends Operation['kind']> = Extract<Operation, { kind: K }>;

/** The context narrowed to one operation kind. */
export type Ctx<K extends Operation['kind']> = OpContext & { operation: OpOf<K> };

/** A record of numbers, keyed by arbitrary strings: built with fromEntries so that a key
 * such as `__proto__` is an own property, never the prototype. */
export type NumberMap = Record<string, number>;

/** The locals key of a Sequential step's masks: its init and its final share step and iteration. */
export function localsKey(ctx: OpContext, family: string): string {
  return `${family}:${ctx.stepIndex}/${ctx.iteration}`;
}

export function requireData(ctx: OpContext): DataEngine {
  if (ctx.data === undefined) {
    throw new FdlError('DATA_UNAVAILABLE', `${ctx.operation.kind} needs local data and this node has none`, {
      retryable: false,
    });
  }
  return ctx.data;
}

/** The one input of a chain link; anything else is a plan error (retrying cannot fix it). */
export function singleInput(ctx: OpContext): Record<string, unknown> {
  if (ctx.inputs.length !== 1) {
    throw new FdlError('OPERATION_FAILED', `${ctx.operation.kind} needs exactly 1 input, got ${ctx.inputs.length}`, {
      retryable: false,
    });
  }
  const input = ctx.inputs[0];
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new FdlError('OPERATION_FAILED', `${ctx.operation.kind}: its input is not an object`, { retryable: false });
  }
  return input as Record<string, unknown>;
}

export function badInput(ctx: OpContext, what: string): FdlError {
  return new FdlError('OPERATION_FAILED', `${ctx.operation.kind}: malformed input: ${what}`, { retryable: false });
}

export function isNumber(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x);
}

/** Reads `input[field]` as a map whose values are all finite numbers. */
export function numberMap(ctx: OpContext, input: Record<string, unknown>, field: string): Map<string, number> {
  const m = input[field];
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw badInput(ctx, `"${field}" is not a map`);
  const out = new Map<string, number>();
  for (const [k, v] of Object.entries(m)) {
    if (!isNumber(v)) throw badInput(ctx, `"${field}" has a value that is not a finite number`);
    out.set(k, v);
  }
  return out;
}

export function toRecord(m: Iterable<[string, number]>): NumberMap {
  return Object.fromEntries(m);
}

/** One value of a group key, normalized: a bigint and a number of the same value, 0 and -0, are one key. */
export function normalizeScalar(v: unknown): Scalar {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new FdlError('BAD_QUERY', 'a group key value must be a finite number');
    return Object.is(v, -0) ? 0 : v;
  }
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (v instanceof Date) return v.toISOString();
  throw new FdlError('BAD_QUERY', `a group key value must be a scalar, not ${typeof v}`);
}

export function keyJson(tuple: readonly unknown[]): string {
  return JSON.stringify(tuple.map(normalizeScalar));
}

/** One handler per operation kind; lib/ops/index.ts checks at compile time that none is missing. */
export type HandlerMap = { [K in Operation['kind']]: (ctx: Ctx<K>) => unknown };
