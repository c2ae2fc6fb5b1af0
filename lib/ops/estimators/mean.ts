import { FdlError } from '../../errors.ts';
import {
  type Ctx,
  drawMask,
  isNumber,
  localsKey,
  type NumberMap,
  numberMap,
  badInput,
  requireData,
  singleInput,
  toRecord,
} from '../context.ts';
import { clampedQuery, sumSensitivity } from './common.ts';
import { allowed, checkDpRequired, dpBounds, dpNoise } from './privacy.ts';

/**
 * Secure per-feature mean over a Sequential chain: two independent masks per feature, one on
 * the running SUM and one on the running COUNT of non-null values (the original had one mask
 * for all sums and counted rows, not values).
 */

export interface MeanRunning {
  sums: NumberMap;
  counts: NumberMap;
}

export interface MeanProduct {
  /** null when no row had a value for the feature. */
  mean: Record<string, number | null>;
  count: NumberMap;
}

function unique(features: readonly string[]): string[] {
  return [...new Set(features)];
}

/** Checks that every feature has a mask-shaped entry; returns them as maps. */
function running(ctx: Ctx<'Mean' | 'MeanFinal'>, input: Record<string, unknown>, features: string[]) {
  const sums = numberMap(ctx, input, 'sums');
  const counts = numberMap(ctx, input, 'counts');
  for (const f of features) {
    if (!sums.has(f) || !counts.has(f)) throw badInput(ctx, `no running sum/count for feature ${JSON.stringify(f)}`);
  }
  return { sums, counts };
}

/** How the masks sit in locals: plain pairs, so that any serializing store keeps them. */
interface StoredMasks {
  sums: Array<[string, number]>;
  counts: Array<[string, number]>;
}

function readMasks(v: unknown): { sums: Map<string, number>; counts: Map<string, number> } | undefined {
  const pairs = (x: unknown): Map<string, number> | undefined =>
    Array.isArray(x) && x.every((p) => Array.isArray(p) && typeof p[0] === 'string' && isNumber(p[1]))
      ? new Map(x as Array<[string, number]>)
      : undefined;
  if (typeof v !== 'object' || v === null) return undefined;
  const sums = pairs((v as StoredMasks).sums);
  const counts = pairs((v as StoredMasks).counts);
  return sums && counts ? { sums, counts } : undefined;
}

/** Initiator. Masks are drawn once per step and iteration: a retried init reuses them. */
export function meanInit(ctx: Ctx<'MeanInit'>): MeanRunning {
  const features = unique(ctx.operation.features);
  const key = localsKey(ctx, 'mean');
  const stored = readMasks(ctx.locals.get(key));
  if (stored !== undefined && features.every((f) => stored.sums.has(f) && stored.counts.has(f))) {
    return {
      sums: toRecord(features.map((f) => [f, stored.sums.get(f) as number])),
      counts: toRecord(features.map((f) => [f, stored.counts.get(f) as number])),
    };
  }
  const sums = new Map(features.map((f) => [f, drawMask(ctx.random)]));
  const counts = new Map(features.map((f) => [f, drawMask(ctx.random)]));
  const value: StoredMasks = { sums: [...sums], counts: [...counts] };
  ctx.locals.set(key, value);
  return { sums: toRecord(sums), counts: toRecord(counts) };
}

/**
 * Worker: adds its SUM and non-null COUNT of each feature; nothing for a feature with fewer
 * values than the minimum group size; with `dp`, the values are clipped to `dp.bounds` and
 * Laplace noise is added to both.
 */
export async function mean(ctx: Ctx<'Mean'>): Promise<MeanRunning> {
  const features = unique(ctx.operation.features);
  const { sums, counts } = running(ctx, singleInput(ctx), features);
  const { dp } = ctx.operation;
  checkDpRequired(ctx, dp);
  const bounds = dp === undefined ? undefined : dpBounds(ctx, dp, features);
  const query = bounds === undefined ? ctx.operation.query : clampedQuery(ctx.operation.query, features, bounds);
  const local = await requireData(ctx).sums(ctx.projectToken, features, query);
  const noise = dp !== undefined && bounds !== undefined ? dpNoise(ctx, dp, sumSensitivity(bounds), features.length, features.length) : undefined;
  const add = features.map((f, i) => {
    const n = local.counts[f] ?? 0;
    const ok = allowed(ctx, n);
    return {
      sum: (ok ? (local.sums[f] ?? 0) : 0) + (noise?.reals[i] ?? 0),
      count: (ok ? n : 0) + (noise?.ints[i] ?? 0),
    };
  });
  return {
    sums: toRecord(features.map((f, i) => [f, (sums.get(f) as number) + (add[i]?.sum ?? 0)])),
    counts: toRecord(features.map((f, i) => [f, (counts.get(f) as number) + (add[i]?.count ?? 0)])),
  };
}

/** Initiator: removes the masks and divides. */
export function meanFinal(ctx: Ctx<'MeanFinal'>): MeanProduct {
  const features = unique(ctx.operation.features);
  const { sums, counts } = running(ctx, singleInput(ctx), features);
  const masks = readMasks(ctx.locals.get(localsKey(ctx, 'mean')));
  const mean: Array<[string, number | null]> = [];
  const count: Array<[string, number]> = [];
  for (const f of features) {
    const ms = masks?.sums.get(f);
    const mc = masks?.counts.get(f);
    if (!isNumber(ms) || !isNumber(mc)) {
      throw new FdlError(
        'INTERNAL',
        `MeanFinal: no mask for feature ${JSON.stringify(f)} (step ${ctx.stepIndex}, iteration ${ctx.iteration}) in locals`,
      );
    }
    const n = (counts.get(f) as number) - mc;
    const s = (sums.get(f) as number) - ms;
    // Only noise (dp) can make a count negative.
    if (!Number.isInteger(n)) throw new FdlError('INTERNAL', `MeanFinal: unmasked count of ${JSON.stringify(f)} is ${n}`);
    count.push([f, n]);
    mean.push([f, n <= 0 ? null : s / n]);
  }
  return { mean: Object.fromEntries(mean), count: toRecord(count) };
}
