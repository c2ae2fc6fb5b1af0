import type { Query, QueryStage } from '../../../protocols/entities.ts';
import { FdlError } from '../../errors.ts';
import type { OpContext } from '../context.ts';

/** The features in first-seen order, without repeats (every op of a chain derives the same list). */
export function unique(features: readonly string[]): string[] {
  return [...new Set(features)];
}

/** The features of a newer estimator: repeats are refused, since per-feature fields (bins, bounds, shifts) follow this order. */
export function distinct(ctx: OpContext, features: readonly string[]): string[] {
  if (new Set(features).size !== features.length) {
    throw new FdlError('BAD_QUERY', `${ctx.operation.kind}: a feature is listed twice`, { retryable: false, path: 'operation.features' });
  }
  return [...features];
}

/** The query with each feature clipped to its bounds, appended as Clamp stages (what a noisy sum needs). */
export function clampedQuery(query: Query | undefined, features: readonly string[], bounds: ReadonlyArray<readonly [number, number]>): Query {
  const clamps: QueryStage[] = features.map((f, i) => {
    const [min, max] = bounds[i] as readonly [number, number];
    return { kind: 'Clamp', features: [f], min, max };
  });
  return { ...query, stages: [...(query?.stages ?? []), ...clamps] };
}

/** Per-feature values given with an operation must have one entry per (unique) feature. */
export function perFeature<T>(ctx: OpContext, values: readonly T[] | undefined, features: readonly string[], field: string): T[] | undefined {
  if (values === undefined) return undefined;
  if (values.length !== features.length) {
    throw new FdlError('BAD_QUERY', `${ctx.operation.kind}: "${field}" has ${values.length} entries for ${features.length} features`, {
      retryable: false,
      path: `operation.${field}`,
    });
  }
  return [...values];
}

/** L1 sensitivity of a (count, clipped sum) pair per feature: one row moves each count by 1 and each sum by at most max(|low|, |high|). */
export function sumSensitivity(bounds: ReadonlyArray<readonly [number, number]>): number {
  return bounds.reduce((acc, [lo, hi]) => acc + Math.max(Math.abs(lo), Math.abs(hi)) + 1, 0);
}

/** feature -> value, built with fromEntries so that a feature named `__proto__` is an own key. */
export function record<T>(features: readonly string[], values: readonly T[]): Record<string, T> {
  return Object.fromEntries(features.map((f, i) => [f, values[i] as T]));
}
