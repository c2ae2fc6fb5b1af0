/**
 * The one train/test split of the system: row i goes to the test set when a hash of
 * (seed, i) falls below the test fraction. The same seed gives the same split on the same
 * data, on any node, with no state to keep; the split is independent of the data values.
 */
export function isTestRow(seed: number, row: number, testFraction: number): boolean {
  return hash32(seed, row) / 4294967296 < testFraction;
}

/** Row indices of each side, for `rows` rows. */
export function splitRows(rows: number, seed: number, testFraction: number): { train: Uint32Array; test: Uint32Array } {
  const train: number[] = [];
  const test: number[] = [];
  for (let i = 0; i < rows; i++) (isTestRow(seed, i, testFraction) ? test : train).push(i);
  return { train: Uint32Array.from(train), test: Uint32Array.from(test) };
}

/** A 32-bit mix (murmur3 finalizer) of two integers. */
function hash32(a: number, b: number): number {
  let h = (Math.imul(a | 0, 0x9e3779b1) ^ (b | 0)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
