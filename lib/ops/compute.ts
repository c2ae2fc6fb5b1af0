import { FdlError, isFdlError } from '../errors.ts';
import type { ErrorCode } from '../../protocols/errors.ts';
import { computeCrossValidation, computeEvaluate, computeTrain, computeTrainTest } from './models/index.ts';
import { computeSpin } from './test-ops.ts';

/**
 * The compute halves of operations: the JavaScript-heavy work, run in a pool thread
 * (lib/ops/pool.ts) or inline (`offload` in context.ts). Each takes structured-clonable
 * arguments (plain objects, typed arrays) and an optional AbortSignal (inline only: a pool
 * stops a cancelled task by ending its thread), and touches no data engine, locals or socket.
 */
export const computeTasks = {
  Train: computeTrain,
  TrainTest: computeTrainTest,
  LocalCrossValidation: computeCrossValidation,
  EvaluateModel: computeEvaluate,
  TestSpin: computeSpin,
} as const;

export type ComputeTaskName = keyof typeof computeTasks;

/** What a thread hands back: errors as data, since a thrown FdlError loses its code crossing threads. */
export type ComputeOutcome =
  | { ok: true; value: unknown }
  | { ok: false; error: { code?: ErrorCode; message: string; retryable?: boolean; path?: string } };

/** Runs a task by name and returns its outcome (never throws): the body of a pool thread. */
export async function runComputeTask(task: string, args: unknown): Promise<ComputeOutcome> {
  try {
    const fn = (computeTasks as Record<string, (args: unknown) => unknown>)[task];
    if (fn === undefined) throw new FdlError('INTERNAL', `no compute task ${JSON.stringify(task)}`, { retryable: false });
    return { ok: true, value: await fn(args) };
  } catch (e) {
    if (isFdlError(e)) {
      return { ok: false, error: { code: e.code, message: e.message, retryable: e.retryable, ...(e.path === undefined ? {} : { path: e.path }) } };
    }
    return { ok: false, error: { message: e instanceof Error ? e.message : String(e) } };
  }
}

/** The outcome back into the value or the error it was (an FdlError with its code, or a plain Error). */
export function unwrapOutcome(outcome: ComputeOutcome): unknown {
  if (outcome.ok) return outcome.value;
  const { code, message, retryable, path } = outcome.error;
  if (code === undefined) throw new Error(message);
  throw new FdlError(code, message, { ...(retryable === undefined ? {} : { retryable }), ...(path === undefined ? {} : { path }) });
}
