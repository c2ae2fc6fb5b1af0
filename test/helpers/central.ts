import { readFileSync } from 'node:fs';
import { meanOf } from './stats.ts';

/**
 * The central computation the federated figures must equal: the union of the shards,
 * parsed here with plain code (no DuckDB), so a bug in the data engine cannot hide itself.
 */
export interface Table {
  columns: string[];
  rows: number[][];
}

export function readCsv(file: string): Table {
  const [header, ...lines] = readFileSync(file, 'utf8').trim().split('\n');
  const columns = (header ?? '').split(',');
  return { columns, rows: lines.map((l) => l.split(',').map(Number)) };
}

export function union(...tables: Table[]): Table {
  return { columns: tables[0]?.columns ?? [], rows: tables.flatMap((t) => t.rows) };
}

export function column(t: Table, name: string): number[] {
  const i = t.columns.indexOf(name);
  if (i < 0) throw new Error(`no column ${name}`);
  return t.rows.map((r) => r[i] as number);
}

/** The central mean, with the same compensated sum as every other central figure. */
export function mean(values: number[]): number {
  return meanOf(values);
}

export function relErr(a: number, b: number): number {
  return b === 0 ? Math.abs(a) : Math.abs(a - b) / Math.abs(b);
}

const SCALE = 1074n;

/** A double as an integer count of 2^-1074 (the smallest subnormal): every double is one, exactly. */
function scaled(x: number): bigint {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const exp = (bits >> 52n) & 0x7ffn;
  const frac = bits & ((1n << 52n) - 1n);
  if (exp === 0x7ffn) throw new Error(`${x} is not finite`);
  const m = exp === 0n ? frac : (frac | (1n << 52n)) << (exp - 1n);
  return bits >> 63n === 1n ? -m : m;
}

/** sum * 2^-scale / n as a double: the quotient keeps about 120 bits, then one rounding. */
function ratio(sum: bigint, n: bigint, scale = SCALE): number {
  if (sum === 0n) return 0;
  const neg = sum < 0n;
  const abs = neg ? -sum : sum;
  const shift = 120 - abs.toString(2).length + n.toString(2).length;
  let out = Number(shift >= 0 ? (abs << BigInt(shift)) / n : abs / (n << BigInt(-shift)));
  // Times 2^-(1074 + shift), in steps within a double's exponent range (each partial stays between q and the result).
  let e = Number(scale) + shift;
  while (e !== 0) {
    const step = Math.max(-1000, Math.min(e, 1000));
    out /= 2 ** step;
    e -= step;
  }
  return neg ? -out : out;
}

const exactTotal = (values: readonly number[]): bigint => values.reduce((acc, v) => acc + scaled(v), 0n);

/** The exact sum of doubles (a BigInt, no rounding), rounded once: what a federated sum is judged by. */
export function exactSum(values: readonly number[]): number {
  return ratio(exactTotal(values), 1n);
}

/** The exact mean of doubles, rounded once: what a federated mean is judged by. */
export function exactMean(values: readonly number[]): number {
  if (values.length === 0) throw new Error('no values');
  return ratio(exactTotal(values), BigInt(values.length));
}

/**
 * The exact sum of squared deviations from the mean of doubles, sum (x - mean)^2 =
 * (n sum x^2 - (sum x)^2) / n, in BigInt (units of 2^-2148), rounded once: what a variance's
 * M2 is judged by, with no rounding of its own, for data where a two-pass double formula is itself
 * in doubt (far from 0, tiny spread).
 */
export function exactM2(values: readonly number[]): number {
  if (values.length === 0) throw new Error('no values');
  const xs = values.map(scaled);
  const s = xs.reduce((a, x) => a + x, 0n);
  const q = xs.reduce((a, x) => a + x * x, 0n);
  const n = BigInt(values.length);
  return ratio(n * q - s * s, n, 2n * SCALE);
}
