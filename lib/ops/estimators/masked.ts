import { FdlError } from '../../errors.ts';
import { badInput, localsKey, type OpContext, singleInput } from '../context.ts';
import { randomBytesOf } from './privacy.ts';

/**
 * The one masked sum of every Sequential estimator that masks (Count, Mean, GroupCount, Sum,
 * Variance, GroupMean, Histogram, Quantiles, Covariance; Min/Max cannot be masked): a vector of
 * integer slots and a vector of real slots, each masked by the initiator with a uniform random
 * element of a ring, so a worker sees values that are uniformly distributed whatever the data
 * (unlike an additive offset of bounded size), and the sums are exact. On a node with a locals
 * secret (the scheduler's initiator) the masks are pseudorandom, derived from it per chain
 * (`masksOf`: AES-256-CTR, indistinguishable from uniform without the secret), so nothing is
 * written per chain; elsewhere they are drawn from node:crypto and kept in the locals:
 *
 * - integer slots (counts): integers mod 2^52, as plain numbers (exact in a double); a
 *   contribution must be below 2^51 in magnitude;
 * - real slots (sums of doubles): fixed point with 128 fractional bits, mod 2^256, on the wire
 *   as 64 hex digits. A worker's local sum x becomes round(x * 2^128): exact for
 *   2^-76 <= |x| < 2^100 (every double there is a multiple of 2^-128), within 2^-129 below.
 *   |x| >= 2^100 is refused (BAD_QUERY), never wrapped. The merged total is exact; converting it
 *   back to a double costs one rounding. The signed range of the total is +-2^127; a chain of
 *   fewer than 2^26 links stays within +-2^126, and the final refuses a total beyond that (an
 *   overflowed or corrupt chain) rather than release it.
 *
 * The running value names its estimator family: a worker and the final op check it, so an init,
 * a worker op and a final op of different estimators cannot be chained into a release the
 * estimator's own final would not make.
 */

export const INT_RING = 2 ** 52;
const HALF_INT_RING = 2 ** 51;
const REAL_BITS = 256n;
const REAL_RING = 1n << REAL_BITS;
const HALF_REAL_RING = 1n << (REAL_BITS - 1n);
/** Fractional bits of a real slot. */
export const FRAC_BITS = 128;
const FRAC = 2 ** FRAC_BITS;
const HEX_DIGITS = Number(REAL_BITS / 4n);
/** Random bytes of one integer mask and of one real mask. */
const INT_BYTES = 7;
const REAL_BYTES = Number(REAL_BITS / 8n);
const HEX = new RegExp(`^[0-9a-f]{${HEX_DIGITS}}$`);
/** |local real| must stay below this. */
export const MAX_REAL = 2 ** 100;
/** |merged total| beyond this cannot come from a chain of fewer than 2^26 links: refused. */
export const MAX_TOTAL = 2 ** 126;
/** Bound on slots in one running value (a histogram of many bins, a wide covariance). */
export const MAX_SLOTS = 1_000_000;

/** What travels between the jobs of a chain. */
export interface MaskedRunning {
  family: string;
  /** Integer slots, each in [0, 2^52). */
  n: number[];
  /** Real slots, each 64 hex digits (an element of Z/2^256, fixed point with 128 fractional bits). */
  x: string[];
  /** Estimator-specific public layout (e.g. the group keys), set by the init and passed on. */
  keys?: string[];
}

export interface Layout {
  ints: number;
  reals: number;
}

/** The plain (unmasked) figures of a contribution or of the total. */
export interface Plain {
  n: number[];
  x: number[];
}

function mod(a: bigint): bigint {
  const r = a % REAL_RING;
  return r < 0n ? r + REAL_RING : r;
}

function intMod(a: number): number {
  const r = a % INT_RING;
  return r < 0 ? r + INT_RING : r;
}

/**
 * A double -> its fixed-point ring element. x * 2^128 is exact (a change of exponent), and a
 * double of magnitude >= 2^-76 is already an integer there, so only smaller ones are rounded.
 */
export function toFixed(x: number): bigint {
  if (!Number.isFinite(x)) throw new FdlError('OPERATION_FAILED', 'a local aggregate is not finite', { retryable: false });
  if (Math.abs(x) >= MAX_REAL) {
    throw new FdlError('BAD_QUERY', 'a local sum is too large to aggregate exactly (|x| >= 2^100): scale or shift the feature', {
      retryable: false,
    });
  }
  return mod(BigInt(Math.round(x * FRAC)));
}

/**
 * A ring element -> the double it stands for (signed: the upper half of the ring is negative),
 * correctly rounded: BigInt -> Number rounds to nearest, and the division by 2^128 is exact.
 */
export function fromFixed(v: bigint): number {
  const signed = v >= HALF_REAL_RING ? v - REAL_RING : v;
  return Number(signed) / FRAC;
}

const hex = (v: bigint): string => v.toString(16).padStart(HEX_DIGITS, '0');

function randomReal(ctx: OpContext): bigint {
  const b = randomBytesOf(ctx, REAL_BYTES);
  let v = 0n;
  for (const byte of b) v = (v << 8n) | BigInt(byte);
  return v;
}

function randomInt(ctx: OpContext): number {
  const b = randomBytesOf(ctx, INT_BYTES);
  let v = 0;
  for (const byte of b) v = v * 256 + byte;
  return v % INT_RING;
}

interface StoredMasks {
  n: number[];
  x: string[];
}

function readStored(v: unknown, layout: Layout): StoredMasks | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const { n, x } = v as StoredMasks;
  if (!Array.isArray(n) || !Array.isArray(x) || n.length !== layout.ints || x.length !== layout.reals) return undefined;
  return { n, x };
}

function checkLayout(layout: Layout): void {
  if (layout.ints + layout.reals > MAX_SLOTS) {
    throw new FdlError('BAD_QUERY', `the estimate needs ${layout.ints + layout.reals} masked values; at most ${MAX_SLOTS} are allowed`, {
      retryable: false,
    });
  }
}

/**
 * The masks of a chain from `size` secret bytes: 7 per integer slot (56 bits, reduced mod 2^52:
 * uniform, as 2^52 divides 2^56), then 32 per real slot (an element of Z/2^256).
 */
function masksFrom(bytes: Uint8Array, layout: Layout): StoredMasks {
  let at = 0;
  const n = Array.from({ length: layout.ints }, () => {
    let v = 0;
    for (const byte of bytes.subarray(at, (at += INT_BYTES))) v = v * 256 + byte;
    return v % INT_RING;
  });
  const x = Array.from({ length: layout.reals }, () => Buffer.from(bytes.subarray(at, (at += REAL_BYTES))).toString('hex'));
  return { n, x };
}

/**
 * The masks of this step and iteration. Kept ones win (drawn and written by a node without a
 * derive secret, or by an older version before a restart); else, where the node has a durable
 * secret, derived from it (`Locals.derive`: a pseudorandom function of the secret, the artifact,
 * the step, the iteration, the family and the layout), so the init writes nothing and the final
 * derives the same masks after any restart or on another replica. Else (`create`) drawn from
 * node:crypto and written durably before the chain's first value leaves.
 */
function masksOf(ctx: OpContext, family: string, layout: Layout, create: boolean): StoredMasks | undefined {
  const key = localsKey(ctx, family);
  const kept = readStored(ctx.locals.get(key), layout);
  if (kept !== undefined) return kept;
  if (ctx.locals.derive) {
    return masksFrom(ctx.locals.derive(`masks:${key}:${layout.ints}/${layout.reals}`, layout.ints * INT_BYTES + layout.reals * REAL_BYTES), layout);
  }
  if (!create) return undefined;
  const masks = {
    n: Array.from({ length: layout.ints }, () => randomInt(ctx)),
    x: Array.from({ length: layout.reals }, () => hex(randomReal(ctx))),
  };
  ctx.locals.set(key, masks);
  return masks;
}

/**
 * Initiator: the masks of this step and iteration (the same for a retried init: see `masksOf`),
 * which are the chain's starting value.
 */
export function maskedInit(ctx: OpContext, family: string, layout: Layout, keys?: string[]): MaskedRunning {
  checkLayout(layout);
  const masks = masksOf(ctx, family, layout, true) as StoredMasks;
  const running: MaskedRunning = { family, n: [...masks.n], x: [...masks.x] };
  if (keys !== undefined) running.keys = keys;
  return running;
}

/** The chain link's input, checked: family, shape, every slot a ring element. */
export function readRunning(ctx: OpContext, family: string, layout?: Layout): MaskedRunning {
  const input = singleInput(ctx);
  if (input.family !== family) {
    throw new FdlError('OPERATION_FAILED', `${ctx.operation.kind}: its input is not a ${family} running value`, { retryable: false });
  }
  const { n, x, keys } = input as Partial<MaskedRunning>;
  if (!Array.isArray(n) || !n.every((v) => Number.isInteger(v) && v >= 0 && v < INT_RING)) throw badInput(ctx, '"n" is not a list of ring integers');
  if (!Array.isArray(x) || !x.every((v) => typeof v === 'string' && HEX.test(v))) throw badInput(ctx, '"x" is not a list of ring elements');
  if (layout !== undefined && (n.length !== layout.ints || x.length !== layout.reals)) {
    throw badInput(ctx, `${n.length} + ${x.length} slots, ${layout.ints} + ${layout.reals} expected`);
  }
  if (n.length + x.length > MAX_SLOTS) throw badInput(ctx, 'too many slots');
  if (keys !== undefined && !(Array.isArray(keys) && keys.every((k) => typeof k === 'string'))) throw badInput(ctx, '"keys" is not a list of strings');
  const out: MaskedRunning = { family, n, x };
  if (keys !== undefined) out.keys = keys;
  return out;
}

/** Worker: adds its plain contribution (integers for `n`, any finite doubles for `x`) to the running value. */
export function addContribution(running: MaskedRunning, plain: Plain): MaskedRunning {
  if (plain.n.length !== running.n.length || plain.x.length !== running.x.length) {
    throw new FdlError('INTERNAL', `a contribution of ${plain.n.length} + ${plain.x.length} slots to ${running.n.length} + ${running.x.length}`);
  }
  const n = running.n.map((r, i) => {
    const v = plain.n[i] as number;
    if (!Number.isInteger(v) || Math.abs(v) >= HALF_INT_RING) throw new FdlError('INTERNAL', `a count contribution ${v} is not a small integer`);
    return intMod(r + v);
  });
  const x = running.x.map((r, i) => hex(mod(BigInt(`0x${r}`) + toFixed(plain.x[i] as number))));
  const out: MaskedRunning = { family: running.family, n, x };
  if (running.keys !== undefined) out.keys = running.keys;
  return out;
}

/** Initiator: removes the masks; integer slots come out signed (noise can make a small count negative). */
export function maskedFinal(ctx: OpContext, family: string, layout?: Layout): { plain: Plain; keys?: string[] } {
  const running = readRunning(ctx, family, layout);
  const stored = masksOf(ctx, family, { ints: running.n.length, reals: running.x.length }, false);
  if (stored === undefined) {
    throw new FdlError('INTERNAL', `${ctx.operation.kind}: no masks for step ${ctx.stepIndex}, iteration ${ctx.iteration} in locals`);
  }
  const n = running.n.map((r, i) => {
    const v = intMod(r - (stored.n[i] as number));
    return v >= HALF_INT_RING ? v - INT_RING : v;
  });
  const x = running.x.map((r, i) => {
    const v = fromFixed(mod(BigInt(`0x${r}`) - BigInt(`0x${stored.x[i]}`)));
    if (Math.abs(v) >= MAX_TOTAL) {
      throw new FdlError('OPERATION_FAILED', `${ctx.operation.kind}: a masked total is out of range (|sum| >= 2^126): the chain overflowed or was corrupted`, {
        retryable: false,
      });
    }
    return v;
  });
  const out: { plain: Plain; keys?: string[] } = { plain: { n, x } };
  if (running.keys !== undefined) out.keys = running.keys;
  return out;
}
