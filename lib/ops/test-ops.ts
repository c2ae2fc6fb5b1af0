import type { HandlerMap } from './context.ts';
import { FdlError } from '../errors.ts';
import type { Ctx, OpContext } from './context.ts';

/** Test aids: the product of a pass-through op is how many inputs it got. */
export interface NoopProduct {
  products: number;
}

export function noop(ctx: OpContext): NoopProduct {
  return { products: ctx.inputs.length };
}

/** Fails (retryably) while the attempt number is <= failAttempts. */
export function testFail(ctx: Ctx<'TestFail'>): NoopProduct {
  if (ctx.attempt <= ctx.operation.failAttempts) {
    throw new FdlError(
      'OPERATION_FAILED',
      `TestFail: attempt ${ctx.attempt} fails (fails while attempt <= ${ctx.operation.failAttempts})`,
      { retryable: true },
    );
  }
  return noop(ctx);
}

export async function testSleep(ctx: Ctx<'TestSleep'>): Promise<NoopProduct> {
  await new Promise((r) => setTimeout(r, ctx.operation.ms));
  return noop(ctx);
}

export const basicHandlers = {
  Noop: noop,
  TestFail: testFail,
  TestSleep: testSleep,
} satisfies Partial<HandlerMap>;
