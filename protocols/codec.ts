import { Packr } from 'msgpackr';
import type { WireError } from './errors.ts';
import { ErrorCodes, formatPath, wireError } from './errors.ts';
import { type Message, MessageSchemas, type MessageType } from './messages.ts';
import { PROTOCOL_VERSION } from './version.ts';

// One codec for every frame. Records/structured clone are off so the bytes are plain
// msgpack that any client library can read.
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, int64AsType: 'number' });
// Resource payloads (products, models): the same, plus typed arrays as msgpack extensions that
// carry their raw bytes. Without moreTypes, msgpackr writes a Float64Array element by element
// into bytes and silently destroys it.
const valuePackr = new Packr({ useRecords: false, moreTypes: true, mapsAsObjects: true, int64AsType: 'number' });

/** A frame above this nesting depth is refused before it is validated (no stack blow-up in zod). */
export const MAX_DEPTH = 64;

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

export type Decoded =
  | { ok: true; message: Message }
  | { ok: false; error: WireError; reqId?: number; type?: string };

function depthExceeds(value: unknown, limit: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop() as [unknown, number];
    if (d > limit) return true;
    if (v === null || typeof v !== 'object' || ArrayBuffer.isView(v)) continue;
    const children = Array.isArray(v) ? v : Object.values(v as Record<string, unknown>);
    for (const c of children) if (c !== null && typeof c === 'object') stack.push([c, d + 1]);
  }
  return false;
}

/** Bytes -> a validated message, or the error to send back. Never throws. */
export function decode(bytes: Uint8Array): Decoded {
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
    return withReq(wireError('UNKNOWN_MESSAGE', `unknown message type ${JSON.stringify(type.slice(0, 64))}`));
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
  if (depthExceeds(raw, MAX_DEPTH)) {
    return withReq(wireError('INVALID_MESSAGE', `${type}: nested deeper than ${MAX_DEPTH} levels`));
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
