/**
 * Central reference statistics, in plain TypeScript over rows parsed by test/helpers/central.ts
 * (no DuckDB): what every federated figure is checked against.
 */

/** Neumaier (compensated) sum. */
export function fsum(values: readonly number[]): number {
  let sum = 0;
  let c = 0;
  for (const v of values) {
    const t = sum + v;
    c += Math.abs(sum) >= Math.abs(v) ? sum - t + v : v - t + sum;
    sum = t;
  }
  return sum + c;
}

export function meanOf(values: readonly number[]): number {
  return fsum(values) / values.length;
}

/** Two-pass variance about the exact mean. */
export function varianceOf(values: readonly number[], ddof: 0 | 1 = 1): number {
  const m = meanOf(values);
  return fsum(values.map((v) => (v - m) * (v - m))) / (values.length - ddof);
}

export function covarianceOf(a: readonly number[], b: readonly number[], ddof: 0 | 1 = 1): number {
  const ma = meanOf(a);
  const mb = meanOf(b);
  return fsum(a.map((v, i) => (v - ma) * ((b[i] as number) - mb))) / (a.length - ddof);
}

/** The value of rank ceil(qN) (1-based, at least 1) among the sorted values: the inverted empirical CDF. */
export function quantileDisc(sorted: readonly number[], rank: number): number {
  return sorted[rank - 1] as number;
}

export function relErr(a: number, b: number): number {
  return b === 0 ? Math.abs(a) : Math.abs(a - b) / Math.abs(b);
}
