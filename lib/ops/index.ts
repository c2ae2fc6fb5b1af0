import type { Operation } from '../../protocols/entities.ts';
import { FdlError, isFdlError } from '../errors.ts';
import type { Ctx, OpContext } from './context.ts';
import { count, countFinal, countInit } from './estimators/count.ts';
import { groupCount, groupCountFinal, groupCountInit } from './estimators/group-count.ts';
import { mean, meanFinal, meanInit } from './estimators/mean.ts';
import { noop, testFail, testSleep } from './test-ops.ts';

export type { Ctx, Locals, OpContext } from './context.ts';
export type { CountProduct } from './estimators/count.ts';
export type { GroupCountProduct, GroupCountRunning } from './estimators/group-count.ts';
export type { MeanProduct, MeanRunning } from './estimators/mean.ts';
export type { NoopProduct } from './test-ops.ts';

/**
 * Runs one operation; returns its product (a plain msgpack-able object). Errors are FdlErrors
 * whose `path`, when set, is relative to the job (e.g. "operation.query.where.and[0].feature").
 */
export async function runOperation(ctx: OpContext): Promise<unknown> {
  try {
    return await dispatch(ctx);
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

async function dispatch(ctx: OpContext): Promise<unknown> {
  const op: Operation = ctx.operation;
  // Each case narrows ctx to its kind: `as Ctx<K>` only restates what the switch proved.
  switch (op.kind) {
    case 'Noop':
      return noop(ctx);
    case 'TestFail':
      return testFail(ctx as Ctx<'TestFail'>);
    case 'TestSleep':
      return testSleep(ctx as Ctx<'TestSleep'>);
    case 'CountInit':
      return countInit(ctx as Ctx<'CountInit'>);
    case 'Count':
      return count(ctx as Ctx<'Count'>);
    case 'CountFinal':
      return countFinal(ctx as Ctx<'CountFinal'>);
    case 'MeanInit':
      return meanInit(ctx as Ctx<'MeanInit'>);
    case 'Mean':
      return mean(ctx as Ctx<'Mean'>);
    case 'MeanFinal':
      return meanFinal(ctx as Ctx<'MeanFinal'>);
    case 'GroupCountInit':
      return groupCountInit(ctx as Ctx<'GroupCountInit'>);
    case 'GroupCount':
      return groupCount(ctx as Ctx<'GroupCount'>);
    case 'GroupCountFinal':
      return groupCountFinal(ctx as Ctx<'GroupCountFinal'>);
    default: {
      const never: never = op;
      throw new FdlError('OPERATION_FAILED', `unknown operation kind ${JSON.stringify((never as { kind?: unknown }).kind)}`, {
        retryable: false,
      });
    }
  }
}
