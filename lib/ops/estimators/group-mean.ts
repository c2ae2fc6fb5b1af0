import type { Scalar } from '../../../protocols/entities.ts';
import { FdlError } from '../../errors.ts';
import { type Ctx, keyJson, localsKey, requireData } from '../context.ts';
import { clampedQuery, distinct, record, sumSensitivity } from './common.ts';
import { compareKeys, domainKeys } from './group-count.ts';
import { addContribution, maskedFinal, maskedInit, type MaskedRunning, readRunning } from './masked.ts';
import { allowed, checkDpRequired, dpBounds, dpNoise } from './privacy.ts';

/**
 * Secure per-group mean over a Sequential chain. As with GroupCount, the initiator declares
 * the domain of the group keys and every key of it is masked from the start; each worker adds,
 * per key, its row count and per feature its non-null count and sum. A group (or a feature
 * within it) with fewer rows than the minimum group size is not contributed.
 *
 * Slots, for key j of K and feature f of F: n = [suppressed, then per key: rows, n_f...],
 * x = [per key: sum_f...].
 */

const FAMILY = 'group-mean';

export interface GroupMeanProduct {
  by: string[];
  features: string[];
  /** Sorted by key; groups with no row are left out. */
  groups: Array<{ key: Scalar[]; count: number; mean: Record<string, number | null>; n: Record<string, number> }>;
  suppressed: number;
}

const layout = (keys: number, features: number) => ({ ints: 1 + keys * (1 + features), reals: keys * features });

export function groupMeanInit(ctx: Ctx<'GroupMeanInit'>): MaskedRunning {
  const features = distinct(ctx, ctx.operation.features);
  const keys = domainKeys(ctx.operation.by, ctx.operation.domain);
  ctx.locals.set(localsKey(ctx, `${FAMILY}-keys`), keys);
  return maskedInit(ctx, FAMILY, layout(keys.length, features.length), keys);
}

export async function groupMean(ctx: Ctx<'GroupMean'>): Promise<MaskedRunning> {
  const features = distinct(ctx, ctx.operation.features);
  const input = readRunning(ctx, FAMILY);
  const keys = input.keys ?? [];
  const F = features.length;
  const running = readRunning(ctx, FAMILY, layout(keys.length, F));
  const { dp } = ctx.operation;
  checkDpRequired(ctx, dp);
  const bounds = dp === undefined ? undefined : dpBounds(ctx, dp, features);
  const query = bounds === undefined ? ctx.operation.query : clampedQuery(ctx.operation.query, features, bounds);
  const local = await requireData(ctx).groupStats(ctx.projectToken, ctx.operation.by, features, query);
  const index = new Map(keys.map((k, j) => [k, j]));
  const n = new Array<number>(1 + keys.length * (1 + F)).fill(0);
  const x = new Array<number>(keys.length * F).fill(0);
  for (const g of local) {
    const j = index.get(keyJson(g.key));
    if (j === undefined) {
      // The value itself is not echoed: it is this node's data.
      throw new FdlError('BAD_QUERY', `a group key of (${ctx.operation.by.map((b) => JSON.stringify(b)).join(', ')}) in this node's data is outside the declared domain`, {
        path: 'operation.domain',
        retryable: false,
      });
    }
    if (!allowed(ctx, g.count)) {
      n[0] = (n[0] as number) + 1;
      continue;
    }
    const base = 1 + j * (1 + F);
    n[base] = g.count;
    for (let f = 0; f < F; f++) {
      const nf = g.n[f] ?? 0;
      if (!allowed(ctx, nf)) {
        if (nf > 0) n[0] = (n[0] as number) + 1;
        continue;
      }
      n[base + 1 + f] = nf;
      x[j * F + f] = g.sums[f] ?? 0;
    }
  }
  if (dp !== undefined && bounds !== undefined) {
    // One row is in one group: it moves that group's row count, and each feature's count and clipped sum.
    const noise = dpNoise(ctx, dp, 1 + sumSensitivity(bounds), n.length - 1, x.length);
    for (let i = 1; i < n.length; i++) n[i] = (n[i] as number) + (noise.ints[i - 1] as number);
    for (let i = 0; i < x.length; i++) x[i] = (x[i] as number) + (noise.reals[i] as number);
  }
  return addContribution(running, { n, x });
}

export function groupMeanFinal(ctx: Ctx<'GroupMeanFinal'>): GroupMeanProduct {
  const features = distinct(ctx, ctx.operation.features);
  const keys = ctx.locals.get(localsKey(ctx, `${FAMILY}-keys`));
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string')) {
    throw new FdlError('INTERNAL', `GroupMeanFinal: no group keys for step ${ctx.stepIndex}, iteration ${ctx.iteration} in locals`);
  }
  const F = features.length;
  const { plain } = maskedFinal(ctx, FAMILY, layout(keys.length, F));
  const groups: GroupMeanProduct['groups'] = [];
  for (const [j, k] of (keys as string[]).entries()) {
    const base = 1 + j * (1 + F);
    const count = plain.n[base] as number;
    if (count <= 0) continue;
    const ns = features.map((_, f) => plain.n[base + 1 + f] as number);
    const means = features.map((_, f) => ((ns[f] as number) > 0 ? (plain.x[j * F + f] as number) / (ns[f] as number) : null));
    groups.push({ key: JSON.parse(k) as Scalar[], count, mean: record(features, means), n: record(features, ns) });
  }
  groups.sort((a, b) => compareKeys(a.key, b.key));
  return { by: [...ctx.operation.by], features, groups, suppressed: plain.n[0] as number };
}
