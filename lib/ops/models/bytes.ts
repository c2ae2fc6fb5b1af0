/**
 * Typed arrays on the wire. Model parameters go out as Uint8Array views of their raw bytes
 * (little-endian, no copy) and come back as byte arrays, copied here into aligned arrays:
 * a reader in any language needs only byte strings. (Products are encoded with msgpackr's
 * moreTypes, so a view travels as extension 0x74; before that setting, msgpackr destroyed
 * non-byte typed arrays, which is why this module exists.)
 */

/** The raw bytes of a typed array, as a view (no copy). */
export function bytesOf(a: Float64Array | Int32Array | Uint32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function asBytes(x: unknown, what: string, width: number): Uint8Array {
  if (!(x instanceof Uint8Array)) throw new TypeError(`${what} is not binary`);
  if (x.byteLength % width !== 0) throw new TypeError(`${what} has ${x.byteLength} bytes, not a multiple of ${width}`);
  return x;
}

/** Bytes -> a fresh Float64Array (a copy: the bytes may sit at any offset of a shared buffer). */
export function f64(x: unknown, what = 'value'): Float64Array {
  const b = asBytes(x, what, 8);
  const out = new Float64Array(b.byteLength / 8);
  new Uint8Array(out.buffer).set(b);
  return out;
}

export function i32(x: unknown, what = 'value'): Int32Array {
  const b = asBytes(x, what, 4);
  const out = new Int32Array(b.byteLength / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}
