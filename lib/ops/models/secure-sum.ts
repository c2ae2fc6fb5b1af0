import { randomBytes } from 'node:crypto';

/**
 * A secure sum of real numbers along a Sequential chain, exact and deterministic: each value
 * is scaled to fixed point (2^-SCALE_BITS) and summed modulo 2^128. The initiator starts the
 * running sums at uniformly random masks (from node:crypto, kept in its locals), so each
 * worker sees only values that are uniformly random to it; the initiator subtracts the masks
 * at the end. Modular integer sums do not depend on the masks, unlike float sums, so the
 * result is the same bits on every run.
 */

export const SCALE_BITS = 24;
const WIDTH = 16; // bytes per value
const MOD = 1n << 128n;
const SCALE = 2 ** SCALE_BITS;

function read(b: Uint8Array, i: number): bigint {
  let v = 0n;
  for (let k = WIDTH - 1; k >= 0; k--) v = (v << 8n) | BigInt(b[i * WIDTH + k] as number);
  return v;
}

function write(b: Uint8Array, i: number, v: bigint): void {
  let x = ((v % MOD) + MOD) % MOD;
  for (let k = 0; k < WIDTH; k++) {
    b[i * WIDTH + k] = Number(x & 0xffn);
    x >>= 8n;
  }
}

/** `count` random masks, as the running value a chain starts from. */
export function randomMasks(count: number): Uint8Array {
  return Uint8Array.from(randomBytes(count * WIDTH));
}

export function slots(b: Uint8Array): number {
  if (b.byteLength % WIDTH !== 0) throw new RangeError('a secure sum must be a multiple of 16 bytes');
  return b.byteLength / WIDTH;
}

/** running + values (fixed point), as new bytes. Values must be finite. */
export function addValues(running: Uint8Array, values: ArrayLike<number>): Uint8Array {
  const n = slots(running);
  if (values.length !== n) throw new RangeError(`a secure sum of ${n} values got ${values.length}`);
  const out = new Uint8Array(running.byteLength);
  for (let i = 0; i < n; i++) {
    const v = values[i] as number;
    if (!Number.isFinite(v)) throw new RangeError('a value to sum is not finite');
    write(out, i, read(running, i) + BigInt(Math.round(v * SCALE)));
  }
  return out;
}

/** (running - masks) as numbers (two's complement: the sums may be negative). */
export function unmask(running: Uint8Array, masks: Uint8Array): Float64Array {
  const n = slots(running);
  if (slots(masks) !== n) throw new RangeError('the masks do not match the running sums');
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let v = (((read(running, i) - read(masks, i)) % MOD) + MOD) % MOD;
    if (v >= MOD / 2n) v -= MOD;
    out[i] = Number(v) / SCALE;
  }
  return out;
}
