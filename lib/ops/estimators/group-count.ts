import type { Scalar } from '../../../protocols/entities.ts';
import { FdlError } from '../../errors.ts';
import { badInput, type Ctx, keyJson, localsKey, normalizeScalar, requireData } from '../context.ts';
import { addContribution, maskedFinal, maskedInit, type MaskedRunning, readRunning } from './masked.ts';
import { allowed, checkDpRequired, dpNoise } from './privacy.ts';

/**
 * Secure group count over a Sequential chain, in the exact masked ring of masked.ts. The
 * initiator declares the domain of every `by` feature; every key of their cartesian product gets
 * its own independent mask from the start, so a worker sees the same (masked) key set whatever
 * the data, and a key no worker has comes out as 0 (the original masked only the keys the first
 * worker had, and scalar-masked them all alike). A worker whose data has a key outside the
 * domain refuses to run.
 * Slots: n = [count of key j...] in the order of `keys` (the JSON of each key tuple, public), x = [].
 */

const FAMILY = 'group-count';

export const MAX_GROUP_KEYS = 100_000;

export interface GroupCountProduct {
  by: string[];
  /** Unmasked, sorted by key; groups with no row are left out. */
  groups: Array<{ key: Scalar[]; count: number }>;
}

const layout = (keys: number) => ({ ints: keys, reals: 0 });

/** Every key of the domain's cartesian product, as JSON, in lexicographic order of the domain. */
export function domainKeys(by: readonly string[], domain: readonly (readonly unknown[])[]): string[] {
  if (domain.length !== by.length) {
    throw new FdlError('BAD_QUERY', `the domain has ${domain.length} value lists for ${by.length} "by" features`, {
      path: 'operation.domain',
    });
  }
  const lists = domain.map((values, i) => {
    if (!Array.isArray(values) || values.length === 0) {
      throw new FdlError('BAD_QUERY', `the domain of ${JSON.stringify(by[i])} is empty`, { path: `operation.domain[${i}]` });
    }
    const seen = new Map<string, Scalar>();
    for (const v of values) {
      const n = normalizeScalar(v);
      seen.set(JSON.stringify(n), n);
    }
    return [...seen.values()];
  });
  const size = lists.reduce((acc, l) => acc * l.length, 1);
  if (size > MAX_GROUP_KEYS) {
    throw new FdlError('BAD_QUERY', `the domain has ${size} keys; at most ${MAX_GROUP_KEYS} are allowed`, {
      path: 'operation.domain',
    });
  }
  let tuples: Scalar[][] = [[]];
  for (const l of lists) tuples = tuples.flatMap((t) => l.map((v) => [...t, v]));
  return tuples.map((t) => JSON.stringify(t));
}

/** Initiator. Masks are drawn once per step and iteration: a retried init reuses them. */
export function groupCountInit(ctx: Ctx<'GroupCountInit'>): MaskedRunning {
  const keys = domainKeys(ctx.operation.by, ctx.operation.domain);
  ctx.locals.set(localsKey(ctx, `${FAMILY}-keys`), keys);
  return maskedInit(ctx, FAMILY, layout(keys.length), keys);
}

/**
 * Worker: adds its count of every group it has with at least the minimum group size of rows
 * (a smaller group is not contributed); a group outside the domain is refused. With `dp`,
 * integer Laplace noise is added to every key of the domain.
 */
export async function groupCount(ctx: Ctx<'GroupCount'>): Promise<MaskedRunning> {
  const keys = readRunning(ctx, FAMILY).keys ?? [];
  if (keys.length > MAX_GROUP_KEYS) throw badInput(ctx, `more than ${MAX_GROUP_KEYS} group keys`);
  const running = readRunning(ctx, FAMILY, layout(keys.length));
  const { dp } = ctx.operation;
  checkDpRequired(ctx, dp);
  const local = await requireData(ctx).groupCounts(ctx.projectToken, ctx.operation.by, ctx.operation.query);
  const index = new Map(keys.map((k, j) => [k, j]));
  const n = new Array<number>(keys.length).fill(0);
  for (const g of local) {
    const j = index.get(keyJson(g.key));
    if (j === undefined) {
      // The value itself is not echoed: it is this node's data.
      throw new FdlError(
        'BAD_QUERY',
        `a group key of (${ctx.operation.by.map((b) => JSON.stringify(b)).join(', ')}) in this node's data is outside the declared domain`,
        { path: 'operation.domain', retryable: false },
      );
    }
    if (allowed(ctx, g.count)) n[j] = g.count;
  }
  if (dp !== undefined) {
    // One row is in one group: L1 sensitivity 1.
    const noise = dpNoise(ctx, dp, 1, n.length, 0);
    for (let j = 0; j < n.length; j++) n[j] = (n[j] as number) + (noise.ints[j] as number);
  }
  return addContribution(running, { n, x: [] });
}

const RANK = { object: 0, boolean: 1, number: 2, string: 3 } as const;

function compareScalar(a: Scalar, b: Scalar): number {
  const ra = RANK[typeof a as keyof typeof RANK] ?? 4;
  const rb = RANK[typeof b as keyof typeof RANK] ?? 4;
  if (ra !== rb) return ra - rb;
  if (a === null || b === null || a === b) return 0;
  return (a as number | string | boolean) < (b as number | string | boolean) ? -1 : 1;
}

export function compareKeys(a: readonly Scalar[], b: readonly Scalar[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = compareScalar(a[i] as Scalar, b[i] as Scalar);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

/** Initiator: removes the masks; keeps the groups that have rows, sorted by key. */
export function groupCountFinal(ctx: Ctx<'GroupCountFinal'>): GroupCountProduct {
  const keys = ctx.locals.get(localsKey(ctx, `${FAMILY}-keys`));
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string')) {
    throw new FdlError('INTERNAL', `GroupCountFinal: no group keys for step ${ctx.stepIndex}, iteration ${ctx.iteration} in locals`);
  }
  const { plain, keys: carried } = maskedFinal(ctx, FAMILY, layout(keys.length));
  if (carried === undefined || carried.length !== keys.length || carried.some((k, j) => k !== keys[j])) {
    throw badInput(ctx, 'the group keys are not the ones declared');
  }
  const groups: Array<{ key: Scalar[]; count: number }> = [];
  for (const [j, k] of (keys as string[]).entries()) {
    const count = plain.n[j] as number;
    // Only noise (dp) can make a count negative.
    if (count > 0) groups.push({ key: JSON.parse(k) as Scalar[], count });
  }
  groups.sort((a, b) => compareKeys(a.key, b.key));
  return { by: [...ctx.operation.by], groups };
}
