import { type Ctx, toRecord } from '../context.ts';
import { unique } from './common.ts';
import { addContribution, maskedFinal, maskedInit, type MaskedRunning, readRunning } from './masked.ts';
import { localSums } from './sum.ts';

/**
 * Secure per-feature mean over a Sequential chain, in the exact masked ring of masked.ts: per
 * feature an independent mask on the running SUM and one on the running COUNT of non-null
 * values (the original had one mask for all sums and counted rows, not values).
 * Slots, for feature i of F: n = [count_i...], x = [sum_i...].
 */

const FAMILY = 'mean';

export interface MeanProduct {
  /** null when no row had a value for the feature. */
  mean: Record<string, number | null>;
  count: Record<string, number>;
}

const layout = (features: string[]) => ({ ints: features.length, reals: features.length });

/** Initiator. Masks are drawn once per step and iteration: a retried init reuses them. */
export function meanInit(ctx: Ctx<'MeanInit'>): MaskedRunning {
  return maskedInit(ctx, FAMILY, layout(unique(ctx.operation.features)));
}

/**
 * Worker: adds its compensated SUM and non-null COUNT of each feature (sum.ts's `localSums`):
 * nothing for a feature with fewer values than the minimum group size; with `dp`, the values are
 * clipped to `dp.bounds` and Laplace noise is added to both.
 */
export async function mean(ctx: Ctx<'Mean'>): Promise<MaskedRunning> {
  const features = unique(ctx.operation.features);
  const running = readRunning(ctx, FAMILY, layout(features));
  const { n, x } = await localSums(ctx, features);
  return addContribution(running, { n, x });
}

/** Initiator: removes the masks and divides. Only noise (dp) can make a count 0 or negative: its mean is null. */
export function meanFinal(ctx: Ctx<'MeanFinal'>): MeanProduct {
  const features = unique(ctx.operation.features);
  const { plain } = maskedFinal(ctx, FAMILY, layout(features));
  const count = features.map((f, i): [string, number] => [f, plain.n[i] as number]);
  const means = features.map((f, i): [string, number | null] => {
    const c = plain.n[i] as number;
    return [f, c <= 0 ? null : (plain.x[i] as number) / c];
  });
  return { mean: Object.fromEntries(means), count: toRecord(count) };
}
