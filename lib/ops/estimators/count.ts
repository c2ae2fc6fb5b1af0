import { type Ctx, requireData } from '../context.ts';
import { addContribution, maskedFinal, maskedInit, type MaskedRunning, readRunning } from './masked.ts';
import { allowed, checkDpRequired, dpNoise } from './privacy.ts';

/**
 * Secure count over a Sequential chain, in the exact masked ring of masked.ts: the initiator
 * starts the running total at a uniform random mask, each worker adds its row count, the
 * initiator subtracts the mask. A worker only ever sees a uniformly random value.
 * Slots: n = [rows], x = [].
 */

const FAMILY = 'count';
const LAYOUT = { ints: 1, reals: 0 };

export interface CountProduct {
  count: number;
}

export function countInit(ctx: Ctx<'CountInit'>): MaskedRunning {
  return maskedInit(ctx, FAMILY, LAYOUT);
}

/**
 * Worker: adds the count of its rows (filtered by the query) to the running total; nothing when
 * it has fewer rows than the minimum group size; plus integer Laplace noise when `dp` is set.
 */
export async function count(ctx: Ctx<'Count'>): Promise<MaskedRunning> {
  const running = readRunning(ctx, FAMILY, LAYOUT);
  const { dp } = ctx.operation;
  checkDpRequired(ctx, dp);
  const rows = await requireData(ctx).count(ctx.projectToken, ctx.operation.query);
  let local = allowed(ctx, rows) ? rows : 0;
  if (dp !== undefined) local += dpNoise(ctx, dp, 1, 1, 0).ints[0] as number;
  return addContribution(running, { n: [local], x: [] });
}

/** Initiator: removes the mask. */
export function countFinal(ctx: Ctx<'CountFinal'>): CountProduct {
  const { plain } = maskedFinal(ctx, FAMILY, LAYOUT);
  return { count: plain.n[0] as number };
}
