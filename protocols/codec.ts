import { Packr } from 'msgpackr';
import type { z } from 'zod';
import type { ArtifactStatus } from './entities.ts';
import type { WireError } from './errors.ts';
import { ErrorCodes, formatPath, wireError } from './errors.ts';
import { type Message, MessageSchemas, type MessageType } from './messages.ts';
import { type Check, compileCheck } from './compiled-check.ts';
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
  if (message.type === 'status' && Object.isFrozen(message.status)) return encodeKeptStatus(message.reqId, message.status);
  return packr.pack(message);
}

/**
 * The encoding of each deep-frozen status (the store's kept ones, lib/store/store.ts), made once:
 * frozen, the value can never differ from its bytes, and the entry goes with the value. A poller
 * asks the same status again and again; encoding its ~1 KiB was most of the reply's codec time.
 */
const statusBytes = new WeakMap<ArtifactStatus, Uint8Array>();

/**
 * `{type: 'status', reqId, status}` from the kept bytes of `status`: the head is packed with a nil
 * in the status's place (its last byte, 0xc0), and the status's bytes follow it instead.
 */
function encodeKeptStatus(reqId: number, status: ArtifactStatus): Uint8Array {
  let body = statusBytes.get(status);
  if (!body) {
    // Frozen at the top only, a part of it could still change: such a status is encoded afresh.
    if (!isDeepFrozen(status)) return packr.pack({ type: 'status', reqId, status });
    // Its own memory: msgpackr's result is a view into its shared buffer, which a kept view would pin.
    body = copyOf(packr.pack(status));
    statusBytes.set(status, body);
  }
  const head = packr.pack({ type: 'status', reqId, status: null });
  const frame = allocate(head.byteLength - 1 + body.byteLength);
  frame.set(head.subarray(0, head.byteLength - 1));
  frame.set(body, head.byteLength - 1);
  return frame;
}

function isDeepFrozen(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return true;
  return Object.isFrozen(value) && Object.values(value).every(isDeepFrozen);
}

/** Node's Buffer where there is one (bytes stay Buffers, as msgpackr gives them); this module also runs in the dashboard's browser bundle. */
const NodeBuffer = (globalThis as { Buffer?: { allocUnsafeSlow(size: number): Uint8Array; allocUnsafe(size: number): Uint8Array } }).Buffer;

/**
 * Encodes any value as msgpack (resource payloads). The bytes are kept (a worker remembers its
 * reports to send them again, stores hold them), and msgpackr returns a view into its reusable
 * buffer (as large as the largest value packed yet): a kept view would pin that whole buffer.
 * A result much smaller than the buffer is copied into its own, unpooled, memory (the scheduler's
 * initiator pinned ~650 KiB per Finalize this way: 13.7 MiB after 20 artifacts at 1,000 workers).
 */
export function encodeValue(value: unknown): Uint8Array {
  const bytes = valuePackr.pack(value);
  if (bytes.byteLength * 2 >= bytes.buffer.byteLength) return bytes;
  return copyOf(bytes);
}

/** `bytes` in memory of their own, unpooled (kept bytes must not pin a shared buffer). */
function copyOf(bytes: Uint8Array): Uint8Array {
  const own = NodeBuffer ? NodeBuffer.allocUnsafeSlow(bytes.byteLength) : new Uint8Array(bytes.byteLength);
  own.set(bytes);
  return own;
}

/** Memory for a frame about to be sent (pooled where Node pools it). */
function allocate(size: number): Uint8Array {
  return NodeBuffer ? NodeBuffer.allocUnsafe(size) : new Uint8Array(size);
}

export function decodeValue(bytes: Uint8Array): unknown {
  return valuePackr.unpack(bytes);
}

/**
 * The canonical JSON of a plain value (what a provenance's `artifactSha256` hashes): object keys
 * sorted by UTF-16 code units, no whitespace, numbers, strings and literals as JSON.stringify
 * writes them, keys whose value is undefined left out (RFC 8785's rules for such values).
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * The issue to report for `issue`. A union's own issue ("Invalid input" at a filter) says nothing
 * of why; the branch the sender most likely meant does: the one with the fewest issues (then the
 * deepest), followed down through nested unions, so a NaN in a filter is reported at its `value`.
 */
function mostSpecific(issue: z.core.$ZodIssue): { path: PropertyKey[]; message: string } {
  const path: PropertyKey[] = [...issue.path];
  let current = issue;
  while (current.code === 'invalid_union' && current.errors.length > 0) {
    let best: z.core.$ZodIssue[] | undefined;
    for (const branch of current.errors) {
      if (branch.length === 0) continue;
      const depth = (issues: z.core.$ZodIssue[]) => Math.max(...issues.map((i) => i.path.length));
      if (!best || branch.length < best.length || (branch.length === best.length && depth(branch) > depth(best))) best = branch;
    }
    const next = best?.[0];
    if (!next) break;
    path.push(...next.path);
    current = next;
  }
  return { path, message: current.message };
}

/** Each message type's precompiled check (protocols/compiled-check.ts), where its schema compiles. */
const fastChecks = new Map<string, Check>();
for (const type of Object.keys(MessageSchemas) as MessageType[]) {
  const check = compileCheck(MessageSchemas[type]);
  if (check) fastChecks.set(type, check);
}

/** A refusal naming the frame's type, and its reqId when it is a valid id. */
function refusedFrame(type: string, reqId: number | undefined, error: WireError): Decoded {
  return reqId === undefined ? { ok: false, error, type } : { ok: false, error, type, reqId };
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
  if (!Object.hasOwn(MessageSchemas, type)) {
    return refusedFrame(type, reqId, unknownType(type));
  }
  // A hello from another protocol version may have other fields: say so before the strict
  // schema would call it merely invalid.
  const version = (raw as { protocolVersion?: unknown }).protocolVersion;
  if ((type === 'workerHello' || type === 'workbenchHello' || type === 'challenge') && typeof version === 'number' && version !== PROTOCOL_VERSION) {
    return refusedFrame(type, reqId, wireError('PROTOCOL_VERSION_MISMATCH', `this peer speaks protocol ${PROTOCOL_VERSION}, not ${version}`));
  }
  // An error code from a newer peer is still an error: keep its text, read it as INTERNAL, so
  // the request it answers fails at once instead of timing out.
  const err = (raw as { error?: { code?: unknown; message?: unknown } }).error;
  if (type === 'error' && err && typeof err.code === 'string' && !(ErrorCodes as readonly string[]).includes(err.code)) {
    err.message = `${err.code.slice(0, 64)}: ${typeof err.message === 'string' ? err.message : ''}`.slice(0, 10_000);
    err.code = 'INTERNAL';
  }
  // The common case, a valid frame, without building zod's copy; zod judges everything else.
  if (fastChecks.get(type)?.(raw)) return { ok: true, message: raw as Message };
  const schema = MessageSchemas[type as MessageType];
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const { path: at, message } = issue ? mostSpecific(issue) : { path: [], message: 'invalid' };
    const path = formatPath(at);
    return refusedFrame(type, reqId, wireError('INVALID_MESSAGE', `${type}: ${path ? `${path}: ` : ''}${message}`, path));
  }
  return { ok: true, message: parsed.data as Message };
}
