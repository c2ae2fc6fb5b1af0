import { FdlError } from '../../errors.ts';
import { badInput, type Ctx, drawMask, isNumber, localsKey, requireData, singleInput } from '../context.ts';
import { allowed, checkDpRequired, dpNoise } from './privacy.ts';

/**
 * Secure count over a Sequential chain: the initiator starts the running total at a random
 * mask m, each worker adds its row count, the initiator subtracts m. A worker only ever sees
 * m + (the counts of the workers before it).
 */

export interface CountProduct {
  count: number;
}

/** Initiator. The mask is drawn once per step and iteration: a retried init reuses it. */
export function countInit(ctx: Ctx<'CountInit'>): CountProduct {
  const key = localsKey(ctx, 'count');
  let mask = ctx.locals.get(key);
  if (!isNumber(mask)) {
    mask = drawMask(ctx.random);
    ctx.locals.set(key, mask);
  }
  return { count: mask as number };
}

/**
 * Worker: adds the count of its rows (filtered by the query) to the running total; nothing when
 * it has fewer rows than the minimum group size; plus integer Laplace noise when `dp` is set.
 */
export async function count(ctx: Ctx<'Count'>): Promise<CountProduct> {
  const input = singleInput(ctx);
  if (!isNumber(input.count)) throw badInput(ctx, '"count" is not a finite number');
  const { dp } = ctx.operation;
  checkDpRequired(ctx, dp);
  const rows = await requireData(ctx).count(ctx.projectToken, ctx.operation.query);
  let local = allowed(ctx, rows) ? rows : 0;
  if (dp !== undefined) local += dpNoise(ctx, dp, 1, 1, 0).ints[0] as number;
  return { count: input.count + local };
}

/** Initiator: removes the mask. */
export function countFinal(ctx: Ctx<'CountFinal'>): CountProduct {
  const input = singleInput(ctx);
  if (!isNumber(input.count)) throw badInput(ctx, '"count" is not a finite number');
  const mask = ctx.locals.get(localsKey(ctx, 'count'));
  if (!isNumber(mask)) {
    throw new FdlError('INTERNAL', `CountFinal: no mask for step ${ctx.stepIndex}, iteration ${ctx.iteration} in locals`);
  }
  return { count: input.count - mask };
}
