/**
 * How a result becomes tables (dashboard/main.tsx draws them): pure functions over the decoded
 * product, so they are tested without a browser (test/dashboard.test.ts).
 */

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}
export const isScalar = (v: unknown) => v === null || ['number', 'string', 'boolean'].includes(typeof v);
export const fmtValue = (v: unknown) => (typeof v === 'number' ? (Number.isInteger(v) ? v.toLocaleString() : v.toPrecision(6)) : v === null ? '—' : String(v));

/**
 * A model's parameters travel as the raw little-endian bytes of Float64Arrays (lib/ops/models/bytes.ts):
 * one per feature when the byte length says so.
 */
export function perFeatureArray(x: unknown, features: readonly string[]): Record<string, number> | undefined {
  let values: ArrayLike<number> | undefined;
  if (x instanceof Uint8Array && x.byteLength === 8 * features.length) {
    const out = new Float64Array(features.length);
    new Uint8Array(out.buffer).set(x);
    values = out;
  } else if (x instanceof Float64Array || (Array.isArray(x) && x.every((e) => typeof e === 'number'))) values = x as ArrayLike<number>;
  if (!values || values.length !== features.length) return undefined;
  return Object.fromEntries(features.map((f, i) => [f, values[i] as number]));
}

/**
 * A record's scalar fields, and those one level down (a round's `metrics.accuracy` as `accuracy`);
 * a group's `key` as one column per feature it is grouped `by`.
 */
export function flatRow(r: Record<string, unknown>, by?: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(r)) {
    if (k === 'key' && by && Array.isArray(x) && x.length === by.length) {
      for (const [i, name] of by.entries()) out[name] = x[i];
    } else if (isScalar(x)) out[k] = x;
    else if (Array.isArray(x) && x.every(isScalar)) out[k] = x.map((y) => fmtValue(y)).join(', ');
    else if (isRecord(x)) for (const [k2, y] of Object.entries(x)) if (isScalar(y) && !(k2 in out)) out[k2] = y;
  }
  return out;
}

/**
 * The product as JSON for a download: typed arrays as arrays of numbers, and a model's parameters
 * (raw Float64 bytes, one value per feature) as numbers too.
 */
export function toJson(value: unknown): string {
  const features = isRecord(value) && Array.isArray(value.features) ? (value.features as string[]) : undefined;
  return JSON.stringify(
    value,
    (_k, x) => {
      if (x instanceof Uint8Array && features) {
        const arr = perFeatureArray(x, features);
        if (arr) return Object.values(arr);
      }
      return ArrayBuffer.isView(x) ? Array.from(x as Uint8Array) : x;
    },
    2,
  );
}
