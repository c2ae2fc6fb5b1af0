import { FdlError } from '../../errors.ts';
import { badInput, type Ctx, requireData, singleInput } from '../context.ts';
import { distinct, record } from './common.ts';
import { allowed, checkDpRequired } from './privacy.ts';

/**
 * Min and max over a Sequential chain. Masking cannot hide an extremum (min(a + m, b + m)
 * needs m at every worker, and then m hides nothing), so the running value is in clear:
 * worker i sees the running min/max of the workers before it, and the scheduler sees every
 * hop. What the researcher gets, the global min and max, is each one row's value. A worker
 * whose feature has fewer non-null values than the minimum group size does not take part for
 * it (counted in `suppressed`, which travels in clear too). See docs/OPERATIONS.md.
 */

const FAMILY = 'min-max';

export interface MinMaxRunning {
  family: typeof FAMILY;
  min: Array<number | null>;
  max: Array<number | null>;
  suppressed: number;
}

export interface MinMaxProduct {
  /** null when no worker contributed a value. */
  min: Record<string, number | null>;
  max: Record<string, number | null>;
  suppressed: number;
}

function read(ctx: Ctx<'MinMax' | 'MinMaxFinal'>, size: number): MinMaxRunning {
  const input = singleInput(ctx);
  if (input.family !== FAMILY) {
    throw new FdlError('OPERATION_FAILED', `${ctx.operation.kind}: its input is not a ${FAMILY} running value`, { retryable: false });
  }
  const ok = (v: unknown) => Array.isArray(v) && v.length === size && v.every((x) => x === null || (typeof x === 'number' && Number.isFinite(x)));
  if (!ok(input.min) || !ok(input.max)) throw badInput(ctx, `"min"/"max" are not ${size} numbers or nulls`);
  if (!(Number.isInteger(input.suppressed) && (input.suppressed as number) >= 0)) throw badInput(ctx, '"suppressed" is not a count');
  return input as unknown as MinMaxRunning;
}

export function minMaxInit(ctx: Ctx<'MinMaxInit'>): MinMaxRunning {
  const n = distinct(ctx, ctx.operation.features).length;
  return { family: FAMILY, min: new Array(n).fill(null), max: new Array(n).fill(null), suppressed: 0 };
}

export async function minMax(ctx: Ctx<'MinMax'>): Promise<MinMaxRunning> {
  const features = distinct(ctx, ctx.operation.features);
  const running = read(ctx, features.length);
  checkDpRequired(ctx, undefined);
  const local = await requireData(ctx).extremes(ctx.projectToken, features, ctx.operation.query);
  const out: MinMaxRunning = { family: FAMILY, min: [...running.min], max: [...running.max], suppressed: running.suppressed };
  for (const [i, f] of features.entries()) {
    const m = local[f] as { n: number; min: number | null; max: number | null };
    if (!allowed(ctx, m.n)) {
      if (m.n > 0) out.suppressed++;
      continue;
    }
    const lo = out.min[i] ?? null;
    const hi = out.max[i] ?? null;
    if (m.min !== null) out.min[i] = lo === null ? m.min : Math.min(lo, m.min);
    if (m.max !== null) out.max[i] = hi === null ? m.max : Math.max(hi, m.max);
  }
  return out;
}

export function minMaxFinal(ctx: Ctx<'MinMaxFinal'>): MinMaxProduct {
  const features = distinct(ctx, ctx.operation.features);
  const running = read(ctx, features.length);
  return { min: record(features, running.min), max: record(features, running.max), suppressed: running.suppressed };
}
