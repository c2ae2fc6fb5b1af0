import type { Bins } from '../../../protocols/entities.ts';
import { binWidth } from '../../data/engine.ts';
import { FdlError } from '../../errors.ts';
import { type Ctx, requireData } from '../context.ts';
import { distinct, record } from './common.ts';
import { addContribution, maskedFinal, maskedInit, type MaskedRunning, readRunning } from './masked.ts';
import { allowed, checkDpRequired, dpNoise } from './privacy.ts';

/**
 * Federated histograms, and approximate quantiles read off them, over a Sequential chain in
 * the exact masked ring. Each feature has equal-width bins over [lo, hi] (from the metadata's
 * min and max, or a MinMax estimate); a worker adds, per feature, its counts of values below
 * lo, in each bin, and above hi.
 *
 * Histogram: a bin (or the below/above count) with fewer rows than the minimum group size is
 * not contributed by that worker, so every released bin is 0 or at least k.
 * Quantiles: the histogram never leaves the initiator; only the quantiles are released. A
 * worker contributes all its bins for a feature when it has at least k values of it (nothing
 * otherwise), so the bound below holds. The q-quantile is the value of rank r = ceil(q N)
 * (1-based; the inverted empirical CDF, `quantile_disc` in SQL); the initiator finds the bin
 * holding rank r and interpolates inside it. Stated error: the true value lies in that bin,
 * [low, high], so |estimate - true| <= the bin width (hi - lo) / count. With noise (dp) the
 * counts are noisy and the bound no longer holds.
 *
 * Slots: n = [suppressed, then per feature: below, bin 0 .. bin count-1, above].
 */

const HISTOGRAM = 'histogram';
const QUANTILES = 'quantiles';

export interface HistogramProduct {
  histograms: Array<{ feature: string; edges: number[]; counts: number[]; below: number; above: number }>;
  suppressed: number;
}

export interface QuantileEstimate {
  q: number;
  /** null when rank r falls below lo or above hi (then low/high bound it on one side), or there is no value. */
  value: number | null;
  low: number | null;
  high: number | null;
}

export interface QuantilesProduct {
  quantiles: Record<string, QuantileEstimate[]>;
  /** Per feature: the bin width, a bound on |estimate - exact quantile|. */
  errorBound: Record<string, number>;
  count: Record<string, number>;
  suppressed: number;
}

function checkBins(features: string[], bins: readonly Bins[]): void {
  if (bins.length !== features.length) {
    throw new FdlError('BAD_QUERY', `${bins.length} bin specs for ${features.length} features`, { path: 'operation.bins', retryable: false });
  }
  for (const [i, b] of bins.entries()) {
    if (!(b.lo < b.hi) || !Number.isFinite(binWidth(b)) || binWidth(b) <= 0) {
      throw new FdlError('BAD_QUERY', 'bins need finite lo < hi', { path: `operation.bins[${i}]`, retryable: false });
    }
  }
}

const layout = (bins: readonly Bins[]) => ({ ints: 1 + bins.reduce((a, b) => a + b.count + 2, 0), reals: 0 });

/** The n + 1 edges of a feature's bins. */
export function binEdges(b: Bins): number[] {
  const w = binWidth(b);
  return Array.from({ length: b.count + 1 }, (_, i) => (i === b.count ? b.hi : b.lo + i * w));
}

/** The 1-based rank of the q-quantile among N values: the smallest r >= qN (at least 1). */
export function quantileRank(q: number, N: number): number {
  // q * N can land a hair above an integer (0.1 * 30 = 3.0000000000000004): round that off first.
  const qn = q * N;
  const nearest = Math.round(qn);
  const r = Math.abs(qn - nearest) <= 1e-9 * Math.max(1, qn) ? nearest : Math.ceil(qn);
  return Math.min(N, Math.max(1, r));
}

function init(ctx: Ctx<'HistogramInit' | 'QuantilesInit'>, family: string): MaskedRunning {
  const features = distinct(ctx, ctx.operation.features);
  checkBins(features, ctx.operation.bins);
  return maskedInit(ctx, family, layout(ctx.operation.bins));
}

async function contribute(ctx: Ctx<'Histogram' | 'Quantiles'>, family: string): Promise<MaskedRunning> {
  const features = distinct(ctx, ctx.operation.features);
  const { bins, dp } = ctx.operation;
  checkBins(features, bins);
  const running = readRunning(ctx, family, layout(bins));
  checkDpRequired(ctx, dp);
  const data = requireData(ctx);
  const n: number[] = [0];
  for (const [i, f] of features.entries()) {
    const b = bins[i] as Bins;
    const h = await data.histogram(ctx.projectToken, f, { lo: b.lo, hi: b.hi, count: b.count }, ctx.operation.query);
    const slots = [h.below, ...h.counts, h.above];
    if (family === HISTOGRAM) {
      for (const c of slots) {
        const ok = allowed(ctx, c);
        if (!ok && c > 0) n[0] = (n[0] as number) + 1;
        n.push(ok ? c : 0);
      }
    } else {
      const total = slots.reduce((a, c) => a + c, 0);
      const ok = allowed(ctx, total);
      if (!ok && total > 0) n[0] = (n[0] as number) + 1;
      for (const c of slots) n.push(ok ? c : 0);
    }
  }
  if (dp !== undefined) {
    // A row falls in one slot per feature.
    const noise = dpNoise(ctx, dp, features.length, n.length - 1, 0);
    for (let i = 1; i < n.length; i++) n[i] = (n[i] as number) + (noise.ints[i - 1] as number);
  }
  return addContribution(running, { n, x: [] });
}

/** Per feature: below, counts, above (noise can make a count negative: it is read as 0). */
function unpack(features: string[], bins: readonly Bins[], n: number[]): Array<{ below: number; counts: number[]; above: number }> {
  let at = 1;
  return features.map((_, i) => {
    const b = bins[i] as Bins;
    const slots = n.slice(at, at + b.count + 2).map((c) => Math.max(0, c));
    at += b.count + 2;
    return { below: slots[0] as number, counts: slots.slice(1, -1), above: slots.at(-1) as number };
  });
}

export const histogramInit = (ctx: Ctx<'HistogramInit'>) => init(ctx, HISTOGRAM);
export const histogram = (ctx: Ctx<'Histogram'>) => contribute(ctx, HISTOGRAM);
export const quantilesInit = (ctx: Ctx<'QuantilesInit'>) => init(ctx, QUANTILES);
export const quantiles = (ctx: Ctx<'Quantiles'>) => contribute(ctx, QUANTILES);

export function histogramFinal(ctx: Ctx<'HistogramFinal'>): HistogramProduct {
  const features = distinct(ctx, ctx.operation.features);
  checkBins(features, ctx.operation.bins);
  const { plain } = maskedFinal(ctx, HISTOGRAM, layout(ctx.operation.bins));
  const per = unpack(features, ctx.operation.bins, plain.n);
  return {
    histograms: features.map((feature, i) => ({ feature, edges: binEdges(ctx.operation.bins[i] as Bins), ...(per[i] as { below: number; counts: number[]; above: number }) })),
    suppressed: plain.n[0] as number,
  };
}

/** The q-quantile of a histogram (see the top of this file). */
export function quantileOf(q: number, b: Bins, h: { below: number; counts: number[]; above: number }): QuantileEstimate {
  const N = h.below + h.counts.reduce((a, c) => a + c, 0) + h.above;
  if (N === 0) return { q, value: null, low: null, high: null };
  const r = quantileRank(q, N);
  if (r <= h.below) return { q, value: null, low: null, high: b.lo };
  const edges = binEdges(b);
  let before = h.below;
  for (const [i, c] of h.counts.entries()) {
    if (before + c >= r) {
      const low = edges[i] as number;
      const high = edges[i + 1] as number;
      // Linear inside the bin, rank r at the middle of its 1/c share.
      return { q, value: low + ((high - low) * (r - before - 0.5)) / c, low, high };
    }
    before += c;
  }
  return { q, value: null, low: b.hi, high: null };
}

export function quantilesFinal(ctx: Ctx<'QuantilesFinal'>): QuantilesProduct {
  const features = distinct(ctx, ctx.operation.features);
  const { bins, q } = ctx.operation;
  checkBins(features, bins);
  const { plain } = maskedFinal(ctx, QUANTILES, layout(bins));
  const per = unpack(features, bins, plain.n);
  return {
    quantiles: record(
      features,
      features.map((_, i) => q.map((level) => quantileOf(level, bins[i] as Bins, per[i] as { below: number; counts: number[]; above: number }))),
    ),
    errorBound: record(
      features,
      bins.map((b) => binWidth(b)),
    ),
    count: record(
      features,
      per.map((h) => h.below + h.counts.reduce((a, c) => a + c, 0) + h.above),
    ),
    suppressed: plain.n[0] as number,
  };
}
