import type { Spread } from '../../data/engine.ts';
import { type Ctx, requireData } from '../context.ts';
import { distinct, perFeature, record } from './common.ts';
import { addContribution, maskedFinal, maskedInit, type MaskedRunning, readRunning } from './masked.ts';
import { allowed, checkDpRequired } from './privacy.ts';

/**
 * Secure variance and standard deviation over a Sequential chain, merged exactly.
 *
 * Worker i sends, per feature, its count n_i, its sum S_i, its shifted sum D_i = sum(x - c),
 * its sum of squared deviations about its own mean M2_i (`DataEngine.spread`: from compensated
 * sums of D_i and of (x - c)^2 when c is within 256 local standard deviations of the local mean,
 * otherwise DuckDB's streaming variance about the local mean; either within 1e-10 relative) and
 * T_i = D_i^2 / n_i. The initiator gets the totals and
 *
 *   M2 = sum M2_i + (sum T_i - D^2 / n)        (Chan et al.'s parallel merge)
 *
 * The masked sums are exact (masked.ts); the only cancellation is in (sum T_i - D^2/n), whose
 * terms are about n (mean - c)^2: with the shift c near the mean (a value from the metadata is
 * enough) it is negligible, and without one (c = 0) the relative error is about
 * 1e-16 (mean/std)^2, below 1e-9 unless the mean is 30,000 standard deviations from 0.
 *
 * Slots: n = [suppressed, n_f...], x = [S_f..., D_f..., M2_f..., T_f...].
 */

const FAMILY = 'variance';

export interface VarianceProduct {
  mean: Record<string, number | null>;
  /** Divided by count - ddof; null when count <= ddof. */
  variance: Record<string, number | null>;
  std: Record<string, number | null>;
  count: Record<string, number>;
  ddof: 0 | 1;
  suppressed: number;
}

const layout = (features: string[]) => ({ ints: 1 + features.length, reals: 4 * features.length });

export function varianceInit(ctx: Ctx<'VarianceInit'>): MaskedRunning {
  return maskedInit(ctx, FAMILY, layout(distinct(ctx, ctx.operation.features)));
}

export async function variance(ctx: Ctx<'Variance'>): Promise<MaskedRunning> {
  const features = distinct(ctx, ctx.operation.features);
  const running = readRunning(ctx, FAMILY, layout(features));
  checkDpRequired(ctx, undefined);
  const shifts = perFeature(ctx, ctx.operation.shift, features, 'shift');
  const local = await requireData(ctx).spread(ctx.projectToken, features, ctx.operation.query, shifts);
  const F = features.length;
  const n = new Array<number>(1 + F).fill(0);
  const x = new Array<number>(4 * F).fill(0);
  for (const [i, f] of features.entries()) {
    const m = local[f] as Spread;
    if (!allowed(ctx, m.n)) {
      if (m.n > 0) n[0] = (n[0] as number) + 1;
      continue;
    }
    n[1 + i] = m.n;
    x[i] = m.sum;
    x[F + i] = m.shifted;
    x[2 * F + i] = m.m2;
    x[3 * F + i] = (m.shifted * m.shifted) / m.n;
  }
  return addContribution(running, { n, x });
}

export function varianceFinal(ctx: Ctx<'VarianceFinal'>): VarianceProduct {
  const features = distinct(ctx, ctx.operation.features);
  const ddof = ctx.operation.ddof ?? 1;
  const { plain } = maskedFinal(ctx, FAMILY, layout(features));
  const F = features.length;
  const mean: Array<number | null> = [];
  const vars: Array<number | null> = [];
  const counts: number[] = [];
  for (const i of features.keys()) {
    const n = plain.n[1 + i] as number;
    const S = plain.x[i] as number;
    const D = plain.x[F + i] as number;
    const M2 = Math.max(0, (plain.x[2 * F + i] as number) + ((plain.x[3 * F + i] as number) - (n > 0 ? (D * D) / n : 0)));
    counts.push(n);
    mean.push(n > 0 ? S / n : null);
    vars.push(n - ddof > 0 ? M2 / (n - ddof) : null);
  }
  const out: VarianceProduct = {
    mean: record(features, mean),
    variance: record(features, vars),
    std: record(features, vars.map((v) => (v === null ? null : Math.sqrt(v)))),
    count: record(features, counts),
    ddof,
    suppressed: plain.n[0] as number,
  };
  return out;
}
