import { type ErrorCode, formatPath, type WireError, wireError } from './errors.ts';

/**
 * What a frame may hold, checked on its bytes before anything is decoded (`scanFrame`): a
 * msgpack header costs one byte on the wire but tens of bytes of memory once decoded (an empty
 * array is one byte, 0x90), so a frame is refused on its shape, never after building it.
 */
export interface FrameLimits {
  /** Bytes of the whole frame. */
  maxBytes: number;
  /** Maps and arrays nested below the top-level map. */
  maxDepth: number;
  /** Entries of one array or map. */
  maxContainerLength: number;
  /** Values in the whole frame (every map key, value and list item counts one). */
  maxElements: number;
  /** Bytes of one string, map keys included. */
  maxStringBytes: number;
}

/**
 * The protocol's own bounds. The longest list a peer sends is 100 000 entries (`holding`,
 * `inputs`, `sealFor`); the scheduler's replies (`status.jobs`, `nodeList.nodes`) are unbounded
 * in the schema, so lists get 1 Mi entries and a frame 4 Mi values (an `assignJob` with 100 000
 * inputs holds about 1.2 M); the longest string is 10 000 characters (40 000 bytes of UTF-8).
 * At most 4 Mi values cost ~200 MiB while decoded, however small their bytes.
 */
export const FRAME_LIMITS: Readonly<FrameLimits> = {
  maxBytes: 64 * 1024 * 1024,
  maxDepth: 64,
  maxContainerLength: 1024 * 1024,
  maxElements: 4 * 1024 * 1024,
  maxStringBytes: 64 * 1024,
};

/** A refused frame, with its `type` and `reqId` when they came before the fault (to echo them). */
export interface ScanFailure {
  error: WireError;
  type?: string;
  reqId?: number;
}

const utf8 = new TextDecoder();
/** Bytes of the length field after each variable-length header byte (bin, str, array, map). */
const LENGTH_WIDTH: ReadonlyMap<number, 1 | 2 | 4> = new Map([
  [0xc4, 1], [0xc5, 2], [0xc6, 4], // bin 8/16/32
  [0xd9, 1], [0xda, 2], [0xdb, 4], // str 8/16/32
  [0xdc, 2], [0xdd, 4], // array 16/32
  [0xde, 2], [0xdf, 4], // map 16/32
]);
/** Longest `type` worth reading back from a refused frame (every real type is shorter). */
const MAX_TYPE_BYTES = 64;

/**
 * Walks the msgpack headers of a frame without decoding it: O(bytes) time, O(depth) memory (one
 * counter per open map or array, and depth is bounded). Refuses a frame that is truncated, has
 * bytes left over, uses an extension type (frames carry none), or exceeds a limit. Strings and
 * binaries are skipped by their length, never read, except the top-level `type` and `reqId`.
 */
export function scanFrame(bytes: Uint8Array, limits: Readonly<FrameLimits>): ScanFailure | undefined {
  const end = bytes.length;
  let type: string | undefined;
  let reqId: number | undefined;
  /** Values still to read in each open map or array, outermost first. */
  const open: number[] = [];
  /** Per open container: its number of values (a map's keys and values), whether it is a map, where its current key starts. */
  const total: number[] = [];
  const isMapAt: boolean[] = [];
  const keyAt: number[] = [];
  /**
   * Where the value being read sits, as the protocol writes error paths (`artifact.steps[3]`): the
   * keys are read back from their bytes only now, at a refusal, so the walk itself decodes none.
   */
  const pathHere = (): string => {
    const path: PropertyKey[] = [];
    for (let level = 0; level < open.length; level++) {
      // The value being read is not yet counted off its own container; the outer ones are.
      const index = (total[level] as number) - (open[level] as number) - (level === open.length - 1 ? 0 : 1);
      if (!isMapAt[level]) path.push(index);
      else if (index % 2 === 1 || level < open.length - 1) path.push(keyText(keyAt[level] as number));
    }
    const text = formatPath(path);
    // An error's path is at most 1,000 characters on the wire (64 levels of long keys can be more).
    return text.length <= 1000 ? text : `${text.slice(0, 997)}...`;
  };
  const keyText = (at: number): string => {
    const b = bytes[at] as number;
    const [start, length] =
      b >= 0xa0 && b <= 0xbf ? [at + 1, b & 0x1f] : b === 0xd9 && at + 1 < end ? [at + 2, bytes[at + 1] as number] : [at, -1];
    if (length < 0 || start + length > end) return '?';
    return utf8.decode(bytes.subarray(start, start + Math.min(length, 64)));
  };
  const fail = (code: ErrorCode, problem: string): ScanFailure => {
    if (code === 'BAD_FRAME') return { error: wireError(code, `frame is not valid msgpack: ${problem}`) };
    const path = code === 'INVALID_MESSAGE' ? pathHere() : '';
    const refused: ScanFailure = {
      error: path ? wireError(code, `${type ?? 'frame'}: ${path}: ${problem}`, path) : wireError(code, `${type ?? 'frame'}: ${problem}`),
    };
    if (type !== undefined) refused.type = type;
    if (reqId !== undefined) refused.reqId = reqId;
    return refused;
  };
  if (end > limits.maxBytes) return fail('FRAME_TOO_LARGE', `${end} bytes, more than the ${limits.maxBytes} allowed`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, end);
  let topIsMap = false;
  let topEntry = 0;
  let topKey: string | undefined;
  let elements = 0;
  let pos = 0;
  do {
    if (pos >= end) return fail('BAD_FRAME', 'unexpected end of data');
    const b = bytes[pos] as number;
    const top = open.length - 1;
    if (top >= 0 && isMapAt[top] && ((total[top] as number) - (open[top] as number)) % 2 === 0) keyAt[top] = pos;
    // A header: `header` bytes, then `size` bytes of payload (strings, binaries, numbers), or
    // `entries` entries of a map or list (-1: not a container).
    let header = 1;
    let size = 0;
    let entries = -1;
    let isMap = false;
    let isString = false;
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) {
      // fixint, nil, false, true: the header is the value.
    } else if (b <= 0x8f) {
      entries = b & 0x0f;
      isMap = true;
    } else if (b <= 0x9f) entries = b & 0x0f;
    else if (b <= 0xbf) {
      size = b & 0x1f;
      isString = true;
    } else if (b >= 0xcc && b <= 0xd3) size = 1 << ((b - 0xcc) & 3);
    else if (b === 0xca || b === 0xcb) size = b === 0xca ? 4 : 8;
    else if (b === 0xc1) return fail('BAD_FRAME', 'byte 0xc1 is never used');
    else {
      const width = LENGTH_WIDTH.get(b);
      if (width === undefined) return fail('BAD_FRAME', `extension types are not part of the protocol (byte 0x${b.toString(16)})`);
      header = 1 + width;
      if (pos + header > end) return fail('BAD_FRAME', 'unexpected end of data');
      const length = width === 1 ? view.getUint8(pos + 1) : width === 2 ? view.getUint16(pos + 1) : view.getUint32(pos + 1);
      if (b === 0xdc || b === 0xdd) entries = length;
      else if (b === 0xde || b === 0xdf) {
        entries = length;
        isMap = true;
      } else {
        size = length;
        isString = b >= 0xd9;
      }
    }
    if (pos + header + size > end) return fail('BAD_FRAME', 'unexpected end of data');
    // A map of n entries holds 2n values, each at least one byte: more than the bytes left is a lie.
    const children = isMap ? 2 * entries : entries;
    if (children > end - pos - header) return fail('BAD_FRAME', 'unexpected end of data');

    if (++elements > limits.maxElements) return fail('INVALID_MESSAGE', `more than ${limits.maxElements} values in one frame`);
    if (isString && size > limits.maxStringBytes) {
      return fail('INVALID_MESSAGE', `a string of ${size} bytes (at most ${limits.maxStringBytes})`);
    }
    if (entries > limits.maxContainerLength) {
      return fail('INVALID_MESSAGE', `a ${isMap ? 'map' : 'list'} of ${entries} entries (at most ${limits.maxContainerLength})`);
    }
    if (entries >= 0 && open.length > limits.maxDepth) return fail('INVALID_MESSAGE', `nested deeper than ${limits.maxDepth} levels`);
    if (open.length === 1 && topIsMap) {
      // A key or value of the top-level map: remember `type` and `reqId` to echo them in an error.
      const isKey = topEntry++ % 2 === 0;
      if (isKey) topKey = isString && size <= 5 ? utf8.decode(bytes.subarray(pos + header, pos + header + size)) : undefined;
      else if (topKey === 'type' && isString && size <= MAX_TYPE_BYTES) type = utf8.decode(bytes.subarray(pos + header, pos + header + size));
      else if (topKey === 'reqId' && b <= 0x7f) reqId = b;
      else if (topKey === 'reqId' && b >= 0xcc && b <= 0xce) reqId = b === 0xcc ? view.getUint8(pos + 1) : b === 0xcd ? view.getUint16(pos + 1) : view.getUint32(pos + 1);
    }
    if (open.length === 0) topIsMap = isMap;
    else (open[open.length - 1] as number)--;
    pos += header + size;
    if (children > 0) {
      open.push(children);
      total.push(children);
      isMapAt.push(isMap);
      keyAt.push(-1);
    }
    while (open.length > 0 && open[open.length - 1] === 0) {
      open.pop();
      total.pop();
      isMapAt.pop();
      keyAt.pop();
    }
  } while (open.length > 0);
  if (pos !== end) return fail('BAD_FRAME', `${end - pos} bytes left over after the message`);
  return undefined;
}
