import { type Ctx, requireData } from '../context.ts';
import { distinct, perFeature } from './common.ts';
import { addContribution, maskedFinal, maskedInit, type MaskedRunning, readRunning } from './masked.ts';
import { allowed, checkDpRequired } from './privacy.ts';

/**
 * Secure covariance and Pearson correlation matrices over a Sequential chain, over the rows
 * where every feature has a value (listwise deletion). Merged exactly like the variance:
 * worker i sends its row count n_i, per feature D_ij = sum(x_j - c_j) (c: an optional shift,
 * default 0) and S_ij = sum(x_j), per pair its co-moment about its own means
 * C_ijk = n_i covar_pop(x_j, x_k) and T_ijk = D_ij D_ik / n_i; the initiator computes
 *
 *   C_jk = sum_i C_ijk + (sum_i T_ijk - D_j D_k / n).
 *
 * A worker with fewer complete rows than the minimum group size contributes nothing.
 * Slots: n = [suppressed, n], x = [S_j..., D_j..., C_jk (j <= k)..., T_jk (j <= k)...].
 */

const FAMILY = 'covariance';

export interface CovarianceProduct {
  features: string[];
  /** Complete rows used. */
  count: number;
  mean: Array<number | null>;
  /** Divided by count - ddof; null entries when count <= ddof. */
  covariance: Array<Array<number | null>>;
  /** null where a variance is 0 or unknown. */
  correlation: Array<Array<number | null>>;
  ddof: 0 | 1;
  suppressed: number;
}

const pairs = (F: number) => (F * (F + 1)) / 2;
const layout = (F: number) => ({ ints: 2, reals: 2 * F + 2 * pairs(F) });

export function covarianceInit(ctx: Ctx<'CovarianceInit'>): MaskedRunning {
  return maskedInit(ctx, FAMILY, layout(distinct(ctx, ctx.operation.features).length));
}

export async function covariance(ctx: Ctx<'Covariance'>): Promise<MaskedRunning> {
  const features = distinct(ctx, ctx.operation.features);
  const F = features.length;
  const running = readRunning(ctx, FAMILY, layout(F));
  checkDpRequired(ctx, undefined);
  const shifts = perFeature(ctx, ctx.operation.shift, features, 'shift');
  const data = requireData(ctx);
  const local = await data.comoments(ctx.projectToken, features, ctx.operation.query, shifts);
  const P = pairs(F);
  const x = new Array<number>(2 * F + 2 * P).fill(0);
  if (!allowed(ctx, local.n)) return addContribution(running, { n: [local.n > 0 ? 1 : 0, 0], x });
  for (let j = 0; j < F; j++) {
    x[j] = local.sums[j] as number;
    x[F + j] = local.shifted[j] as number;
  }
  let p = 0;
  for (let j = 0; j < F; j++) {
    for (let k = j; k < F; k++) {
      x[2 * F + p] = (local.comoments[j] as number[])[k] as number;
      x[2 * F + P + p] = ((local.shifted[j] as number) * (local.shifted[k] as number)) / local.n;
      p++;
    }
  }
  return addContribution(running, { n: [0, local.n], x });
}

export function covarianceFinal(ctx: Ctx<'CovarianceFinal'>): CovarianceProduct {
  const features = distinct(ctx, ctx.operation.features);
  const F = features.length;
  const P = pairs(F);
  const ddof = ctx.operation.ddof ?? 1;
  const { plain } = maskedFinal(ctx, FAMILY, layout(F));
  const n = plain.n[1] as number;
  const D = plain.x.slice(F, 2 * F);
  const cov: Array<Array<number | null>> = features.map(() => features.map(() => null));
  let p = 0;
  for (let j = 0; j < F; j++) {
    for (let k = j; k < F; k++) {
      const C = (plain.x[2 * F + p] as number) + ((plain.x[2 * F + P + p] as number) - (n > 0 ? ((D[j] as number) * (D[k] as number)) / n : 0));
      const v = n - ddof > 0 ? (j === k ? Math.max(0, C) : C) / (n - ddof) : null;
      (cov[j] as Array<number | null>)[k] = v;
      (cov[k] as Array<number | null>)[j] = v;
      p++;
    }
  }
  const correlation = cov.map((row, j) =>
    row.map((c, k) => {
      const vj = (cov[j] as Array<number | null>)[j];
      const vk = (cov[k] as Array<number | null>)[k];
      if (c === null || vj === null || vk === null || vj === undefined || vk === undefined || vj <= 0 || vk <= 0) return null;
      if (j === k) return 1;
      return Math.max(-1, Math.min(1, c / Math.sqrt(vj * vk)));
    }),
  );
  return {
    features,
    count: n,
    mean: features.map((_, j) => (n > 0 ? (plain.x[j] as number) / n : null)),
    covariance: cov,
    correlation,
    ddof,
    suppressed: plain.n[0] as number,
  };
}
