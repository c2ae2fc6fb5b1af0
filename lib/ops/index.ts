import { FdlError, isFdlError } from '../errors.ts';
import type { HandlerMap, OpContext } from './context.ts';
import { estimatorHandlers } from './estimators/index.ts';
import { modelHandlers } from './models/index.ts';
import { basicHandlers } from './test-ops.ts';

export type { Compute, Ctx, HandlerMap, Locals, OpContext, PrivacyBudget, PrivacySettings } from './context.ts';
export type {
  CountProduct,
  CovarianceProduct,
  GroupCountProduct,
  GroupMeanProduct,
  HistogramProduct,
  MaskedRunning,
  MeanProduct,
  MinMaxProduct,
  QuantileEstimate,
  QuantilesProduct,
  SumProduct,
  VarianceProduct,
} from './estimators/index.ts';
export { DEFAULT_MIN_GROUP_SIZE, FileBudgetLedger } from './estimators/index.ts';
export type { NoopProduct } from './test-ops.ts';

/**
 * Every operation kind's handler, one family per module. Typed as the full map: an operation
 * added to protocols/operations/ without a handler here does not compile.
 */
const handlers: HandlerMap = { ...basicHandlers, ...estimatorHandlers, ...modelHandlers };

/**
 * Runs one operation; returns its product (a plain msgpack-able object). Errors are FdlErrors
 * whose `path`, when set, is relative to the job (e.g. "operation.query.where.and[0].feature").
 */
export async function runOperation(ctx: OpContext): Promise<unknown> {
  try {
    const handler = handlers[ctx.operation.kind] as ((ctx: OpContext) => unknown) | undefined;
    if (!handler) {
      throw new FdlError('OPERATION_FAILED', `unknown operation kind ${JSON.stringify(ctx.operation.kind)}`, {
        retryable: false,
      });
    }
    return await handler(ctx);
  } catch (e) {
    if (isFdlError(e)) {
      if (e.path === undefined || e.path.startsWith('operation')) throw e;
      throw new FdlError(e.code, e.message, { path: `operation.${e.path}`, retryable: e.retryable, cause: e });
    }
    throw new FdlError('OPERATION_FAILED', `${ctx.operation.kind}: ${e instanceof Error ? e.message : String(e)}`, {
      cause: e,
    });
  }
}
