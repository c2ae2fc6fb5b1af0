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
/** Longest `type` worth reading back from a refused frame (every real type is shorter). */
const MAX_TYPE_BYTES = 64;

/**
 * The text of a short string's bytes: ASCII by hand (TextDecoder costs more than a whole small
 * frame's walk), anything else by the decoder.
 */
function shortText(bytes: Uint8Array, start: number, end: number): string {
  let text = '';
  for (let i = start; i < end; i++) {
    const c = bytes[i] as number;
    if (c >= 0x80) return utf8.decode(bytes.subarray(start, end));
    text += String.fromCharCode(c);
  }
  return text;
}

/** Whether bytes[at, at + word.length) are the ASCII `word`. */
function isWord(bytes: Uint8Array, at: number, size: number, word: string): boolean {
  if (size !== word.length) return false;
  for (let i = 0; i < size; i++) if (bytes[at + i] !== word.charCodeAt(i)) return false;
  return true;
}

/**
 * Per open map or array, outermost first: values still to read, its number of values (a map's
 * keys and values), whether it is a map, where its current key starts. Reused by every scan
 * (a scan runs to its end synchronously); grown when limits allow deeper frames.
 */
let openLeft = new Int32Array(128);
let openTotal = new Int32Array(128);
let openIsMap = new Uint8Array(128);
let openKeyAt = new Int32Array(128);
/** Counts and positions fit the stacks' 32 bits: a larger frame is refused as too large whatever the limit. */
const MAX_SCANNED_BYTES = 0x7fff_ffff;

/**
 * Walks the msgpack headers of a frame without decoding it: O(bytes) time, O(depth) memory (one
 * counter per open map or array, and depth is bounded). Refuses a frame that is truncated, has
 * bytes left over, uses an extension type (frames carry none), or exceeds a limit. Strings and
 * binaries are skipped by their length, never read, except the top-level `type` and `reqId`.
 */
export function scanFrame(bytes: Uint8Array, limits: Readonly<FrameLimits>): ScanFailure | undefined {
  const end = bytes.length;
  const maxBytes = Math.min(limits.maxBytes, MAX_SCANNED_BYTES);
  if (end > maxBytes) return refusal(bytes, 0, 'FRAME_TOO_LARGE', `${end} bytes, more than the ${maxBytes} allowed`);
  // At most maxDepth + 1 containers are open at once (a deeper one is refused before it opens).
  if (openLeft.length < limits.maxDepth + 2) {
    const size = limits.maxDepth + 2;
    openLeft = new Int32Array(size);
    openTotal = new Int32Array(size);
    openIsMap = new Uint8Array(size);
    openKeyAt = new Int32Array(size);
  }
  const left = openLeft;
  const total = openTotal;
  const isMapAt = openIsMap;
  const keyAt = openKeyAt;
  let depth = 0;
  let type: string | undefined;
  let reqId: number | undefined;
  let topIsMap = false;
  let topEntry = 0;
  /** The top-level key just read: 1 `type`, 2 `reqId`, 0 any other. */
  let topKey = 0;
  let elements = 0;
  let pos = 0;
  do {
    if (pos >= end) return refusal(bytes, depth, 'BAD_FRAME', 'unexpected end of data', type, reqId);
    const b = bytes[pos] as number;
    if (depth > 0 && isMapAt[depth - 1] === 1 && (((total[depth - 1] as number) - (left[depth - 1] as number)) & 1) === 0) keyAt[depth - 1] = pos;
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
    else if (b === 0xc1) return refusal(bytes, depth, 'BAD_FRAME', 'byte 0xc1 is never used', type, reqId);
    else {
      // bin 8/16/32 (0xc4-0xc6), str 8/16/32 (0xd9-0xdb), array 16/32 (0xdc, 0xdd), map 16/32 (0xde, 0xdf).
      const width = b === 0xc4 || b === 0xd9 ? 1 : b === 0xc5 || b === 0xda || b === 0xdc || b === 0xde ? 2 : b === 0xc6 || b === 0xdb || b === 0xdd || b === 0xdf ? 4 : 0;
      if (width === 0) return refusal(bytes, depth, 'BAD_FRAME', `extension types are not part of the protocol (byte 0x${b.toString(16)})`, type, reqId);
      header = 1 + width;
      if (pos + header > end) return refusal(bytes, depth, 'BAD_FRAME', 'unexpected end of data', type, reqId);
      const length =
        width === 1
          ? (bytes[pos + 1] as number)
          : width === 2
            ? ((bytes[pos + 1] as number) << 8) | (bytes[pos + 2] as number)
            : (bytes[pos + 1] as number) * 0x1000000 + (((bytes[pos + 2] as number) << 16) | ((bytes[pos + 3] as number) << 8) | (bytes[pos + 4] as number));
      if (b === 0xdc || b === 0xdd) entries = length;
      else if (b === 0xde || b === 0xdf) {
        entries = length;
        isMap = true;
      } else {
        size = length;
        isString = b >= 0xd9;
      }
    }
    if (pos + header + size > end) return refusal(bytes, depth, 'BAD_FRAME', 'unexpected end of data', type, reqId);
    // A map of n entries holds 2n values, each at least one byte: more than the bytes left is a lie.
    const children = isMap ? 2 * entries : entries;
    if (children > end - pos - header) return refusal(bytes, depth, 'BAD_FRAME', 'unexpected end of data', type, reqId);

    if (++elements > limits.maxElements) return refusal(bytes, depth, 'INVALID_MESSAGE', `more than ${limits.maxElements} values in one frame`, type, reqId);
    if (isString && size > limits.maxStringBytes) {
      return refusal(bytes, depth, 'INVALID_MESSAGE', `a string of ${size} bytes (at most ${limits.maxStringBytes})`, type, reqId);
    }
    if (entries > limits.maxContainerLength) {
      return refusal(bytes, depth, 'INVALID_MESSAGE', `a ${isMap ? 'map' : 'list'} of ${entries} entries (at most ${limits.maxContainerLength})`, type, reqId);
    }
    if (entries >= 0 && depth > limits.maxDepth) return refusal(bytes, depth, 'INVALID_MESSAGE', `nested deeper than ${limits.maxDepth} levels`, type, reqId);
    if (depth === 1 && topIsMap) {
      // A key or value of the top-level map: remember `type` and `reqId` to echo them in an error.
      const isKey = topEntry++ % 2 === 0;
      const at = pos + header;
      if (isKey) topKey = !isString ? 0 : isWord(bytes, at, size, 'type') ? 1 : isWord(bytes, at, size, 'reqId') ? 2 : 0;
      else if (topKey === 1 && isString && size <= MAX_TYPE_BYTES) type = shortText(bytes, at, at + size);
      else if (topKey === 2 && b <= 0x7f) reqId = b;
      else if (topKey === 2 && b >= 0xcc && b <= 0xce) {
        reqId =
          b === 0xcc
            ? (bytes[pos + 1] as number)
            : b === 0xcd
              ? ((bytes[pos + 1] as number) << 8) | (bytes[pos + 2] as number)
              : (bytes[pos + 1] as number) * 0x1000000 + (((bytes[pos + 2] as number) << 16) | ((bytes[pos + 3] as number) << 8) | (bytes[pos + 4] as number));
      }
    }
    if (depth === 0) topIsMap = isMap;
    else (left[depth - 1] as number)--;
    pos += header + size;
    if (children > 0) {
      left[depth] = children;
      total[depth] = children;
      isMapAt[depth] = isMap ? 1 : 0;
      keyAt[depth] = -1;
      depth++;
    }
    while (depth > 0 && left[depth - 1] === 0) depth--;
  } while (depth > 0);
  if (pos !== end) return refusal(bytes, depth, 'BAD_FRAME', `${end - pos} bytes left over after the message`, type, reqId);
  return undefined;
}

/**
 * The refusal of a frame, built only now: where the value being read sits, as the protocol
 * writes error paths (`artifact.steps[3]`), from the containers open (`depth` of them, in the
 * scan's stacks) and the keys read back from their bytes.
 */
function refusal(bytes: Uint8Array, depth: number, code: ErrorCode, problem: string, type?: string, reqId?: number): ScanFailure {
  if (code === 'BAD_FRAME') return { error: wireError(code, `frame is not valid msgpack: ${problem}`) };
  const path = code === 'INVALID_MESSAGE' ? pathAt(bytes, depth) : '';
  const refused: ScanFailure = {
    error: path ? wireError(code, `${type ?? 'frame'}: ${path}: ${problem}`, path) : wireError(code, `${type ?? 'frame'}: ${problem}`),
  };
  if (type !== undefined) refused.type = type;
  if (reqId !== undefined) refused.reqId = reqId;
  return refused;
}

function pathAt(bytes: Uint8Array, depth: number): string {
  const path: PropertyKey[] = [];
  for (let level = 0; level < depth; level++) {
    // The value being read is not yet counted off its own container; the outer ones are.
    const index = (openTotal[level] as number) - (openLeft[level] as number) - (level === depth - 1 ? 0 : 1);
    if (openIsMap[level] !== 1) path.push(index);
    else if (index % 2 === 1 || level < depth - 1) path.push(keyText(bytes, openKeyAt[level] as number));
  }
  const text = formatPath(path);
  // An error's path is at most 1,000 characters on the wire (64 levels of long keys can be more).
  return text.length <= 1000 ? text : `${text.slice(0, 997)}...`;
}

function keyText(bytes: Uint8Array, at: number): string {
  const end = bytes.length;
  const b = bytes[at] as number;
  const [start, length] =
    b >= 0xa0 && b <= 0xbf ? [at + 1, b & 0x1f] : b === 0xd9 && at + 1 < end ? [at + 2, bytes[at + 1] as number] : [at, -1];
  if (length < 0 || start + length > end) return '?';
  return utf8.decode(bytes.subarray(start, start + Math.min(length, 64)));
}
