import { type Ctx, requireData, toRecord } from '../context.ts';
import { clampedQuery, distinct, sumSensitivity } from './common.ts';
import { addContribution, maskedFinal, maskedInit, type MaskedRunning, readRunning } from './masked.ts';
import { allowed, checkDpRequired, dpBounds, dpNoise } from './privacy.ts';

/**
 * Secure per-feature sum over a Sequential chain, in the exact masked ring of masked.ts.
 * Slots: n = [suppressed, count of f1, count of f2, ...], x = [sum of f1, sum of f2, ...].
 */

const FAMILY = 'sum';

export interface SumProduct {
  sum: Record<string, number>;
  /** Non-null values summed, per feature. */
  count: Record<string, number>;
  /** Contributions left out by the minimum group size (a worker with fewer rows than it for a feature). */
  suppressed: number;
}

const layout = (features: string[]) => ({ ints: 1 + features.length, reals: features.length });

export function sumInit(ctx: Ctx<'SumInit'>): MaskedRunning {
  return maskedInit(ctx, FAMILY, layout(distinct(ctx, ctx.operation.features)));
}

/**
 * A worker's plain contribution to a per-feature sum (Sum, Mean): per feature its non-null
 * count and compensated sum, nothing for a feature with fewer values than the minimum group
 * size (counted in `suppressed`); with `dp`, values clipped to `dp.bounds` and Laplace noise on both.
 */
export async function localSums(
  ctx: Ctx<'Sum' | 'Mean'>,
  features: string[],
): Promise<{ suppressed: number; n: number[]; x: number[] }> {
  const { dp } = ctx.operation;
  checkDpRequired(ctx, dp);
  const bounds = dp === undefined ? undefined : dpBounds(ctx, dp, features);
  const query = bounds === undefined ? ctx.operation.query : clampedQuery(ctx.operation.query, features, bounds);
  const local = await requireData(ctx).sums(ctx.projectToken, features, query);
  let suppressed = 0;
  const n: number[] = [];
  const x: number[] = [];
  for (const f of features) {
    const count = local.counts[f] ?? 0;
    const ok = allowed(ctx, count);
    if (!ok && count > 0) suppressed++;
    n.push(ok ? count : 0);
    x.push(ok ? (local.sums[f] ?? 0) : 0);
  }
  if (dp !== undefined && bounds !== undefined) {
    const noise = dpNoise(ctx, dp, sumSensitivity(bounds), features.length, features.length);
    for (let i = 0; i < features.length; i++) {
      n[i] = (n[i] as number) + (noise.ints[i] as number);
      x[i] = (x[i] as number) + (noise.reals[i] as number);
    }
  }
  return { suppressed, n, x };
}

export async function sum(ctx: Ctx<'Sum'>): Promise<MaskedRunning> {
  const features = distinct(ctx, ctx.operation.features);
  const running = readRunning(ctx, FAMILY, layout(features));
  const { suppressed, n, x } = await localSums(ctx, features);
  return addContribution(running, { n: [suppressed, ...n], x });
}

export function sumFinal(ctx: Ctx<'SumFinal'>): SumProduct {
  const features = distinct(ctx, ctx.operation.features);
  const { plain } = maskedFinal(ctx, FAMILY, layout(features));
  return {
    sum: toRecord(features.map((f, i) => [f, plain.x[i] as number])),
    count: toRecord(features.map((f, i) => [f, plain.n[i + 1] as number])),
    suppressed: plain.n[0] as number,
  };
}
