import { Packr } from 'msgpackr';
import type { WireError } from './errors.ts';
import { ErrorCodes, formatPath, wireError } from './errors.ts';
import { type Message, MessageSchemas, type MessageType } from './messages.ts';
import { FRAME_LIMITS, type FrameLimits, scanFrame } from './frame-scan.ts';
import { PROTOCOL_VERSION } from './version.ts';

// One codec for every frame. Records/structured clone are off so the bytes are plain
// msgpack that any client library can read.
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, int64AsType: 'number' });
// Resource payloads (products, models): the same, plus typed arrays as msgpack extensions that
// carry their raw bytes. Without moreTypes, msgpackr writes a Float64Array element by element
// into bytes and silently destroys it.
const valuePackr = new Packr({ useRecords: false, moreTypes: true, mapsAsObjects: true, int64AsType: 'number' });

/** A frame above this nesting depth is refused before it is decoded (no stack blow-up anywhere). */
export const MAX_DEPTH = FRAME_LIMITS.maxDepth;
export { FRAME_LIMITS, type FrameLimits };

export function encode(message: Message): Uint8Array {
  return packr.pack(message);
}

/** Encodes any value as msgpack (resource payloads). */
export function encodeValue(value: unknown): Uint8Array {
  return valuePackr.pack(value);
}

export function decodeValue(bytes: Uint8Array): unknown {
  return valuePackr.unpack(bytes);
}

const CHUNK_KEYS = {
  type: Buffer.from([0xa4, ...Buffer.from('type'), 0xad, ...Buffer.from('resourceChunk')]),
  resource: Buffer.from([0xa8, ...Buffer.from('resource'), 0xd9, 64]),
  offset: Buffer.from([0xa6, ...Buffer.from('offset'), 0xcf]),
  crc32: Buffer.from([0xa5, ...Buffer.from('crc32'), 0xce]),
  data: Buffer.from([0xa4, ...Buffer.from('data'), 0xc6]),
};
/** The bytes of a resourceChunk frame before its data. */
export const CHUNK_HEADER_BYTES =
  1 + CHUNK_KEYS.type.length + CHUNK_KEYS.resource.length + 64 + CHUNK_KEYS.offset.length + 8 + CHUNK_KEYS.crc32.length + 4 + CHUNK_KEYS.data.length + 4;

/**
 * A `resourceChunk` frame, written by hand around bytes already in place: `frame` holds
 * CHUNK_HEADER_BYTES of room, then the chunk's data (put there by the caller, e.g. read from a file
 * straight into it), so a chunk is never copied to be encoded. The same msgpack any encoder
 * would accept (a map of 5; offset as uint 64, crc32 as uint 32, data as bin 32).
 */
export function encodeChunkInto(frame: Buffer, resource: string, offset: number, crc32: number): Buffer {
  let at = 0;
  frame[at++] = 0x85;
  at += CHUNK_KEYS.type.copy(frame, at);
  at += CHUNK_KEYS.resource.copy(frame, at);
  at += frame.write(resource, at, 64, 'latin1');
  at += CHUNK_KEYS.offset.copy(frame, at);
  frame.writeBigUInt64BE(BigInt(offset), at);
  at += 8;
  at += CHUNK_KEYS.crc32.copy(frame, at);
  frame.writeUInt32BE(crc32, at);
  at += 4;
  at += CHUNK_KEYS.data.copy(frame, at);
  frame.writeUInt32BE(frame.length - CHUNK_HEADER_BYTES, at);
  return frame;
}

export type Decoded =
  | { ok: true; message: Message }
  | { ok: false; error: WireError; reqId?: number; type?: string };

const unknownType = (type: string): WireError => wireError('UNKNOWN_MESSAGE', `unknown message type ${JSON.stringify(type.slice(0, 64))}`);

/**
 * Bytes -> a validated message, or the error to send back. Never throws. The frame's shape is
 * checked against `limits` on its bytes first, so nothing the schema could never accept is built.
 */
export function decode(bytes: Uint8Array, limits: Readonly<FrameLimits> = FRAME_LIMITS): Decoded {
  const refused = scanFrame(bytes, limits);
  if (refused) {
    const { error, type, reqId } = refused;
    if (type === undefined) return { ok: false, error };
    // The same order as below: an unknown type is reported before the shape of its fields.
    const reported = Object.hasOwn(MessageSchemas, type) ? error : unknownType(type);
    return reqId === undefined ? { ok: false, error: reported, type } : { ok: false, error: reported, type, reqId };
  }
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch (e) {
    return { ok: false, error: wireError('BAD_FRAME', `frame is not valid msgpack: ${(e as Error).message}`) };
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || typeof (raw as { type?: unknown }).type !== 'string') {
    return { ok: false, error: wireError('BAD_FRAME', 'frame must be a map with a string `type`') };
  }
  const type = (raw as { type: string }).type;
  const reqIdRaw = (raw as { reqId?: unknown }).reqId;
  // Echoed only when it is a valid id: an error reply must itself be a valid frame.
  const reqId = typeof reqIdRaw === 'number' && Number.isSafeInteger(reqIdRaw) && reqIdRaw >= 0 ? reqIdRaw : undefined;
  const withReq = (error: WireError): Decoded =>
    reqId === undefined ? { ok: false, error, type } : { ok: false, error, type, reqId };
  if (!Object.hasOwn(MessageSchemas, type)) {
    return withReq(unknownType(type));
  }
  // A hello from another protocol version may have other fields: say so before the strict
  // schema would call it merely invalid.
  const version = (raw as { protocolVersion?: unknown }).protocolVersion;
  if ((type === 'workerHello' || type === 'workbenchHello' || type === 'challenge') && typeof version === 'number' && version !== PROTOCOL_VERSION) {
    return withReq(wireError('PROTOCOL_VERSION_MISMATCH', `this peer speaks protocol ${PROTOCOL_VERSION}, not ${version}`));
  }
  // An error code from a newer peer is still an error: keep its text, read it as INTERNAL, so
  // the request it answers fails at once instead of timing out.
  const err = (raw as { error?: { code?: unknown; message?: unknown } }).error;
  if (type === 'error' && err && typeof err.code === 'string' && !(ErrorCodes as readonly string[]).includes(err.code)) {
    err.message = `${err.code.slice(0, 64)}: ${typeof err.message === 'string' ? err.message : ''}`.slice(0, 10_000);
    err.code = 'INTERNAL';
  }
  const schema = MessageSchemas[type as MessageType];
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue ? formatPath(issue.path) : '';
    return withReq(wireError('INVALID_MESSAGE', `${type}: ${path ? `${path}: ` : ''}${issue?.message ?? 'invalid'}`, path));
  }
  return { ok: true, message: parsed.data as Message };
}
