import type { HandlerMap } from './context.ts';
import { FdlError } from '../errors.ts';
import { type Ctx, type OpContext, offload } from './context.ts';

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
  const { signal } = ctx;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', stop);
      resolve();
    }, ctx.operation.ms);
    function stop() {
      clearTimeout(timer);
      reject(signal?.reason);
    }
    signal?.addEventListener('abort', stop, { once: true });
  });
  return noop(ctx);
}

/** CPU work a TestSpin does between two checks of its signal (inline it also lets the loop run then). */
const SPIN_SLICE_MS = 20;

/** Keeps the CPU busy for `ms` milliseconds in JavaScript: the stand-in for a long training. */
export async function testSpin(ctx: Ctx<'TestSpin'>): Promise<NoopProduct> {
  await offload(ctx, 'TestSpin', computeSpin, { ms: ctx.operation.ms });
  return noop(ctx);
}

/** The compute half of TestSpin: returns how many spin iterations it made. */
export async function computeSpin(a: { ms: number }, signal?: AbortSignal): Promise<number> {
  const end = performance.now() + a.ms;
  let spins = 0;
  for (let now = performance.now(); now < end; now = performance.now()) {
    const slice = Math.min(end, now + SPIN_SLICE_MS);
    while (performance.now() < slice) spins++;
    await new Promise((r) => setImmediate(r));
    signal?.throwIfAborted();
  }
  return spins;
}

export const basicHandlers = {
  Noop: noop,
  TestFail: testFail,
  TestSleep: testSleep,
  TestSpin: testSpin,
} satisfies Partial<HandlerMap>;
