import {
  createCipheriv,
  createHash,
  type Hash,
  createDecipheriv,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, rmSync } from 'node:fs';
import { open as fsOpen } from 'node:fs/promises';
import { decodeValue, encodeValue } from '../../protocols/codec.ts';
import { FdlError } from '../errors.ts';

/**
 * Sealing a resource for the nodes that will read it: the bytes are encrypted once with a
 * fresh AES-256-GCM key; that key is wrapped for each recipient with X25519 (an ephemeral key
 * per resource) + HKDF-SHA256 + AES-256-GCM. The scheduler relays and stores the envelope
 * without being able to read it. `context` (the producing job and attempt) is authenticated,
 * so an envelope cannot be passed off as another job's product.
 */

export interface Recipient {
  nodeId: string;
  /** X25519 public key, SPKI DER, base64. */
  boxKey: string;
}

interface Envelope {
  fdlSealed: 1;
  epk: Uint8Array;
  iv: Uint8Array;
  tag: Uint8Array;
  ct: Uint8Array;
  keys: Array<{ to: string; salt: Uint8Array; iv: Uint8Array; tag: Uint8Array; wrapped: Uint8Array }>;
}

const INFO = 'fdl-seal-v1';

/** What a sealed product is bound to: its artifact and producing job. */
export function resourceContext(artifactId: string, producerJobId: string): string {
  return `fdl-resource\0${artifactId}\0${producerJobId}`;
}

function kek(shared: Buffer, salt: Uint8Array, to: string, epk: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, salt, Buffer.concat([Buffer.from(`${INFO}\0${to}\0`), epk]), 32));
}

type KeyEntry = Envelope['keys'][number];

/** Recipients' public keys as KeyObjects, by their base64 SPKI: parsing one cost more than the rest of a small seal. */
const recipientKeys = new Map<string, KeyObject>();
/** A node seals for the few nodes of its network; past this many keys the map starts again. */
const RECIPIENT_KEYS_MAX = 4096;

function recipientKey(boxKey: string): KeyObject {
  let key = recipientKeys.get(boxKey);
  if (!key) {
    key = createPublicKey({ key: Buffer.from(boxKey, 'base64'), format: 'der', type: 'spki' });
    if (recipientKeys.size >= RECIPIENT_KEYS_MAX) recipientKeys.clear();
    recipientKeys.set(boxKey, key);
  }
  return key;
}

/** A fresh content key wrapped for each recipient (an ephemeral X25519 key per resource). */
function wrapKey(key: Buffer, recipients: Recipient[], context: string): { epk: Buffer; keys: KeyEntry[] } {
  if (recipients.length === 0) throw new FdlError('INTERNAL', 'sealing needs at least one recipient');
  const eph = generateKeyPairSync('x25519');
  const epk = eph.publicKey.export({ type: 'spki', format: 'der' });
  const keys = recipients.map((r) => {
    const shared = diffieHellman({ privateKey: eph.privateKey, publicKey: recipientKey(r.boxKey) });
    const salt = randomBytes(16);
    const wiv = randomBytes(12);
    const w = createCipheriv('aes-256-gcm', kek(shared, salt, r.nodeId, epk), wiv);
    w.setAAD(Buffer.from(context));
    const wrapped = Buffer.concat([w.update(key), w.final()]);
    return { to: r.nodeId, salt, iv: wiv, tag: w.getAuthTag(), wrapped };
  });
  return { epk, keys };
}

/** This node's content key from an envelope's entries (OPERATION_FAILED: none for it; CHECKSUM_MISMATCH: it does not authenticate). */
export function unwrapKey(epkBytes: Uint8Array, keys: KeyEntry[], nodeId: string, boxPrivate: KeyObject, context: string): Buffer {
  const entry = keys.find((k) => k.to === nodeId);
  if (!entry) throw new FdlError('OPERATION_FAILED', `a sealed input is not addressed to ${nodeId}`, { retryable: false });
  try {
    const epk = Buffer.from(epkBytes);
    const publicKey = createPublicKey({ key: epk, format: 'der', type: 'spki' });
    const shared = diffieHellman({ privateKey: boxPrivate, publicKey });
    const w = createDecipheriv('aes-256-gcm', kek(shared, entry.salt, nodeId, epk), entry.iv);
    w.setAAD(Buffer.from(context));
    w.setAuthTag(entry.tag);
    return Buffer.concat([w.update(entry.wrapped), w.final()]);
  } catch (e) {
    throw new FdlError('CHECKSUM_MISMATCH', `a sealed input failed authentication: ${(e as Error).message}`);
  }
}

export function seal(plaintext: Uint8Array, recipients: Recipient[], context: string): Uint8Array {
  const key = randomBytes(32);
  const { epk, keys } = wrapKey(key, recipients, context);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(context));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const tag = cipher.getAuthTag();
  const envelope: Envelope = { fdlSealed: 1, epk, iv, tag, ct, keys };
  return encodeValue(envelope);
}

/** The envelope inside decoded bytes, if these bytes are one. */
export function asEnvelope(value: unknown): Envelope | undefined {
  return typeof value === 'object' && value !== null && (value as { fdlSealed?: unknown }).fdlSealed === 1
    ? (value as Envelope)
    : undefined;
}

export function open(envelope: Envelope, nodeId: string, boxPrivate: KeyObject, context: string): Uint8Array {
  const key = unwrapKey(envelope.epk, envelope.keys, nodeId, boxPrivate, context);
  try {
    const d = createDecipheriv('aes-256-gcm', key, envelope.iv);
    d.setAAD(Buffer.from(context));
    d.setAuthTag(envelope.tag);
    return Buffer.concat([d.update(envelope.ct), d.final()]);
  } catch (e) {
    throw new FdlError('CHECKSUM_MISMATCH', `a sealed input failed authentication: ${(e as Error).message}`);
  }
}

/** Decodes resource bytes, opening them first when they are sealed for this node. */
export function openValue(bytes: Uint8Array, me: { nodeId: string; boxPrivate: KeyObject } | undefined, context: string): unknown {
  const value = decodeValue(bytes);
  const envelope = asEnvelope(value);
  const segmented = envelope ? undefined : asSegmentedEnvelope(value);
  if (!envelope && !segmented) return value;
  if (!me) throw new FdlError('OPERATION_FAILED', 'a sealed input reached a node without keys', { retryable: false });
  if (envelope) return decodeValue(open(envelope, me.nodeId, me.boxPrivate, context));
  const { head, ct } = segmented as { head: SegmentedHead; ct: Uint8Array };
  checkCtLength(head, ct.byteLength);
  const opener = segmentOpener(head, unwrapKey(head.epk, head.keys, me.nodeId, me.boxPrivate, context), context);
  const plain = Buffer.allocUnsafe(head.size);
  const sealedChunk = head.chunk + TAG_BYTES;
  for (let i = 0, at = 0; i < segmentCount(head); i++, at += sealedChunk) {
    opener(i, ct.subarray(at, Math.min(at + sealedChunk, ct.byteLength))).copy(plain, i * head.chunk);
  }
  return decodeValue(plain);
}

// --- Segmented envelopes: a streamed product sealed chunk by chunk --------------------------------
//
// A sealed product over the stream threshold is never sealed (nor opened) whole: its plaintext is
// cut in segments of `chunk` bytes, each its own AES-256-GCM message under the product's one key,
// with a nonce derived from the segment's index and, in the additional data, the index, the
// plaintext size and segment size, and whether it is the last: a segment moved, dropped, repeated
// or cut off fails its tag. The bytes are still one msgpack map (docs/PROTOCOL.md, "Sealed
// resources"), `{fdlSealed: 2, head: bin, ct: bin 32}`, written so that `ct` comes last and can be
// written and read in pieces: a file is sealed into a file and opened into a file, a segment at a
// time, and the scheduler stores and relays those bytes like any others.

/** Plaintext bytes per segment. */
export const SEALED_SEGMENT_BYTES = 1024 * 1024;
export const TAG_BYTES = 16;
/** The largest head read (thousands of recipients fit). */
const MAX_HEAD_BYTES = 4 * 1024 * 1024;
/** `{` fixmap 3, "fdlSealed": 2, "head": bin 32 (its length follows). */
const SEGMENTED_PREFIX = Buffer.concat([
  Buffer.from([0x83, 0xa9]),
  Buffer.from('fdlSealed'),
  Buffer.from([0x02, 0xa4]),
  Buffer.from('head'),
  Buffer.from([0xc6]),
]);
/** "ct": bin 32 (its length follows), after the head. */
const CT_KEY = Buffer.concat([Buffer.from([0xa2]), Buffer.from('ct'), Buffer.from([0xc6])]);

/** What a segmented envelope's `head` holds (msgpack map). */
export interface SegmentedHead {
  epk: Uint8Array;
  /** Base nonce: segment i uses it with its last 4 bytes XORed with i. */
  iv: Uint8Array;
  /** Plaintext bytes per segment (the last may be shorter). */
  chunk: number;
  /** Plaintext bytes in all. */
  size: number;
  keys: KeyEntry[];
}

export function segmentCount(head: Pick<SegmentedHead, 'size' | 'chunk'>): number {
  return Math.max(1, Math.ceil(head.size / head.chunk));
}

function segmentNonce(iv: Uint8Array, index: number): Buffer {
  const nonce = Buffer.from(iv);
  nonce.writeUInt32BE((nonce.readUInt32BE(8) ^ index) >>> 0, 8);
  return nonce;
}

function segmentAad(context: string, head: Pick<SegmentedHead, 'size' | 'chunk'>, index: number): Buffer {
  const fixed = Buffer.alloc(17);
  fixed.writeBigUInt64BE(BigInt(head.size), 0);
  fixed.writeUInt32BE(head.chunk, 8);
  fixed.writeUInt32BE(index, 12);
  fixed[16] = index === segmentCount(head) - 1 ? 1 : 0;
  return Buffer.concat([Buffer.from(`${context}\0`), fixed]);
}

/** The bytes of `ct` for a plaintext of `size` bytes. */
export function ctLength(head: Pick<SegmentedHead, 'size' | 'chunk'>): number {
  return head.size + segmentCount(head) * TAG_BYTES;
}

function checkCtLength(head: SegmentedHead, got: number): void {
  if (got !== ctLength(head)) {
    throw new FdlError(
      'CHECKSUM_MISMATCH',
      `a sealed input is truncated or padded: ${got} sealed bytes for ${head.size} plaintext bytes in ${segmentCount(head)} segments (expected ${ctLength(head)})`,
    );
  }
}

/** Opens one segment (its ciphertext then its tag); CHECKSUM_MISMATCH naming it when it fails. */
export function segmentOpener(head: SegmentedHead, key: Buffer, context: string): (index: number, sealed: Uint8Array) => Buffer {
  const count = segmentCount(head);
  return (index, sealed) => {
    try {
      if (sealed.byteLength < TAG_BYTES) throw new Error('shorter than its tag');
      const d = createDecipheriv('aes-256-gcm', key, segmentNonce(head.iv, index));
      d.setAAD(segmentAad(context, head, index));
      d.setAuthTag(sealed.subarray(sealed.byteLength - TAG_BYTES));
      // GCM's final() returns no bytes: the update's output is the whole plaintext (no concat copy).
      const plain = d.update(sealed.subarray(0, sealed.byteLength - TAG_BYTES));
      d.final();
      return plain;
    } catch (e) {
      throw new FdlError(
        'CHECKSUM_MISMATCH',
        `sealed segment ${index} of ${count} of an input failed authentication (tampered with, reordered or truncated): ${(e as Error).message}`,
      );
    }
  };
}

/**
 * Seals one segment into `out` (its ciphertext, then its tag) and returns those bytes. Under one
 * key and the segment's nonce AES-GCM is deterministic: the same plaintext gives the same sealed
 * bytes, which is how a receiver that kept only the opened plaintext rehashes what it received.
 */
export function segmentSealer(
  head: Pick<SegmentedHead, 'iv' | 'size' | 'chunk'>,
  key: Buffer,
  context: string,
): (index: number, plain: Uint8Array, out: Buffer) => Buffer {
  return (index, plain, out) => {
    const c = createCipheriv('aes-256-gcm', key, segmentNonce(head.iv, index));
    c.setAAD(segmentAad(context, head, index));
    // GCM's final() returns no bytes: the update's output is the whole ciphertext.
    const ct = c.update(plain);
    c.final();
    ct.copy(out, 0);
    c.getAuthTag().copy(out, plain.byteLength);
    return out.subarray(0, plain.byteLength + TAG_BYTES);
  };
}

function isBytes(v: unknown, length?: number): v is Uint8Array {
  return v instanceof Uint8Array && (length === undefined || v.byteLength === length);
}

function asHead(value: unknown): SegmentedHead {
  const h = value as Partial<SegmentedHead> | null;
  const ok =
    typeof h === 'object' &&
    h !== null &&
    isBytes(h.epk) &&
    isBytes(h.iv, 12) &&
    Number.isSafeInteger(h.chunk) &&
    (h.chunk as number) > 0 &&
    (h.chunk as number) <= 0xffff_ffff &&
    Number.isSafeInteger(h.size) &&
    (h.size as number) >= 0 &&
    Array.isArray(h.keys) &&
    h.keys.every((k) => typeof k?.to === 'string' && isBytes(k.salt) && isBytes(k.iv, 12) && isBytes(k.tag, 16) && isBytes(k.wrapped));
  if (!ok) throw new FdlError('CHECKSUM_MISMATCH', 'a sealed input has a malformed head');
  return h as SegmentedHead;
}

/** A decoded segmented envelope (`{fdlSealed: 2, head, ct}`), if the value is one. */
function asSegmentedEnvelope(value: unknown): { head: SegmentedHead; ct: Uint8Array } | undefined {
  const v = value as { fdlSealed?: unknown; head?: unknown; ct?: unknown } | null;
  if (typeof v !== 'object' || v === null || v.fdlSealed !== 2) return undefined;
  if (!isBytes(v.head) || !isBytes(v.ct)) throw new FdlError('CHECKSUM_MISMATCH', 'a sealed input is malformed');
  return { head: asHead(decodeValue(v.head)), ct: v.ct };
}

/** Where a sealed product's plaintext is read from, by position (a file or bytes: lib/transport/stream.ts's ByteSource). */
export interface PlainSource {
  readonly size: number;
  readInto(offset: number, length: number, target: Buffer, at: number): void;
  close(): void;
}

/** Segments the event loop waits for at most between two turns while a product is sealed (~8 MiB). */
const SEGMENTS_PER_TURN = 8;

/**
 * A product sealed in segments, made on demand from its plaintext source: the segmented
 * envelope's bytes are read by position like a file's (`readInto`), each segment encrypted when a
 * read reaches it (the last one is kept, as sequential reads of chunks that do not line up with
 * segments touch it twice). Nothing is written: the sealed bytes are never on disk nor whole in
 * memory at the producer. The key lives as long as this object (a resumed upload re-reads the same
 * bytes; a restart of the producer makes a new key, hence other bytes). `digest()` is the whole's
 * sha256: made in a pass of its own (`make`), or as the bytes are read in order (`streamed`: an
 * upload that names its sha256 at the end, so nothing is sealed before its first chunk).
 */
export class SealedProduct {
  readonly size: number;
  private readonly lead: Buffer;
  private readonly key = randomBytes(32);
  private readonly iv = randomBytes(12);
  private readonly count: number;
  private readonly plain: Buffer;
  /** The last segment made (its bytes are valid until the next one is made). */
  private readonly sealed: Buffer;
  private cached: { index: number; bytes: Buffer } | undefined;
  private readonly sealSegment: (index: number, plain: Uint8Array, out: Buffer) => Buffer;
  /** The sha256 of the whole sealed bytes, once known. */
  private sha256: string | undefined;
  /** Reads in order from 0 are hashed as they go: the bytes hashed so far, and their hash. */
  private hashedTo = 0;
  private hashing: Hash | undefined = createHash('sha256');

  private constructor(
    private readonly source: PlainSource,
    recipients: Recipient[],
    context: string,
    private readonly chunk: number,
  ) {
    const size = source.size;
    const ct = ctLength({ size, chunk });
    if (ct > 0xffff_ffff) {
      throw new FdlError('RESOURCE_TOO_LARGE', `a sealed product of ${size} bytes is over the 4 GiB a sealed resource can carry`, { retryable: false });
    }
    const { epk, keys } = wrapKey(this.key, recipients, context);
    const headBytes = encodeValue({ epk, iv: this.iv, chunk, size, keys });
    this.lead = Buffer.alloc(SEGMENTED_PREFIX.length + 4 + headBytes.byteLength + CT_KEY.length + 4);
    let at = SEGMENTED_PREFIX.copy(this.lead, 0);
    at = this.lead.writeUInt32BE(headBytes.byteLength, at);
    at += Buffer.from(headBytes.buffer, headBytes.byteOffset, headBytes.byteLength).copy(this.lead, at);
    at += CT_KEY.copy(this.lead, at);
    this.lead.writeUInt32BE(ct, at);
    this.size = this.lead.byteLength + ct;
    this.count = segmentCount({ size, chunk });
    this.sealSegment = segmentSealer({ iv: this.iv, size, chunk }, this.key, context);
    this.plain = Buffer.allocUnsafe(Math.min(chunk, Math.max(size, 1)));
    this.sealed = Buffer.allocUnsafe(this.plain.byteLength + TAG_BYTES);
  }

  /** Seals `source` for `recipients`: one pass to hash the sealed bytes (yielding to the event loop as it goes). */
  static async make(source: PlainSource, recipients: Recipient[], context: string, chunk = SEALED_SEGMENT_BYTES): Promise<SealedProduct> {
    const p = new SealedProduct(source, recipients, context, chunk);
    const hash = createHash('sha256').update(p.lead);
    for (let i = 0; i < p.count; i++) {
      hash.update(p.segment(i));
      if (i % SEGMENTS_PER_TURN === SEGMENTS_PER_TURN - 1) await new Promise((r) => setImmediate(r));
    }
    p.sha256 = hash.digest('hex');
    p.hashing = undefined;
    return p;
  }

  /** Seals `source` for `recipients` as it is read: its sha256 is known once every byte has been read (`digest`). */
  static streamed(source: PlainSource, recipients: Recipient[], context: string, chunk = SEALED_SEGMENT_BYTES): SealedProduct {
    return new SealedProduct(source, recipients, context, chunk);
  }

  /**
   * The sha256 of the whole sealed bytes. Made as the bytes were read when the reads went in order
   * from 0 (an upload's chunks); whatever was skipped is read now to finish it.
   */
  digest(): string {
    if (this.sha256 === undefined) {
      const scratch = Buffer.allocUnsafe(Math.min(this.chunk, Math.max(this.size, 1)));
      while (this.hashedTo < this.size) this.readInto(this.hashedTo, Math.min(scratch.byteLength, this.size - this.hashedTo), scratch, 0);
      if (this.sha256 === undefined) this.sha256 = (this.hashing as Hash).digest('hex');
    }
    return this.sha256;
  }

  /** Seals `source` into the file `out` (awaiting each write: the event loop runs between segments). */
  static async toFile(source: PlainSource, recipients: Recipient[], context: string, out: string, chunk: number): Promise<{ sha256: string; size: number }> {
    const p = new SealedProduct(source, recipients, context, chunk);
    const hash = createHash('sha256').update(p.lead);
    const file = await fsOpen(out, 'w');
    try {
      await file.write(p.lead);
      for (let i = 0; i < p.count; i++) {
        const seg = p.segment(i);
        hash.update(seg);
        await file.write(seg);
      }
    } finally {
      await file.close();
    }
    return { sha256: hash.digest('hex'), size: p.size };
  }

  /** Segment i's sealed bytes (its ciphertext, then its tag). */
  segment(i: number): Buffer {
    if (this.cached?.index === i) return this.cached.bytes;
    const size = this.source.size;
    const length = Math.min(this.chunk, size - i * this.chunk);
    this.source.readInto(i * this.chunk, length, this.plain, 0);
    // Into one buffer kept for the last segment: one 1 MiB allocation per segment (the cipher's
    // output) instead of three.
    const bytes = this.sealSegment(i, this.plain.subarray(0, length), this.sealed);
    this.cached = { index: i, bytes };
    return bytes;
  }

  readInto(offset: number, length: number, target: Buffer, at: number): void {
    const end = offset + length;
    let pos = offset;
    if (pos < this.lead.byteLength) pos += this.lead.copy(target, at, pos, Math.min(end, this.lead.byteLength));
    const sealedChunk = this.chunk + TAG_BYTES;
    while (pos < end) {
      const inCt = pos - this.lead.byteLength;
      const i = Math.floor(inCt / sealedChunk);
      const from = inCt - i * sealedChunk;
      const seg = this.segment(i);
      pos += seg.copy(target, at + (pos - offset), from, Math.min(seg.byteLength, from + (end - pos)));
    }
    // Bytes read for the first time, in order: into the whole's sha256 (a re-read from earlier is not).
    if (this.hashing && offset <= this.hashedTo && end > this.hashedTo) {
      this.hashing.update(target.subarray(at + (this.hashedTo - offset), at + length));
      this.hashedTo = end;
      if (this.hashedTo === this.size) {
        this.sha256 = this.hashing.digest('hex');
        this.hashing = undefined;
      }
    }
  }

  close(): void {
    this.cached = undefined;
    this.source.close();
  }
}

/**
 * Seals `source` for `recipients` into the file `out`, a segment at a time (never whole in
 * memory). Returns the sealed bytes' sha256 and size.
 */
export async function sealToFile(
  source: PlainSource,
  recipients: Recipient[],
  context: string,
  out: string,
  chunk = SEALED_SEGMENT_BYTES,
): Promise<{ sha256: string; size: number }> {
  return SealedProduct.toFile(source, recipients, context, out, chunk);
}

/**
 * A segmented envelope's lead (every byte before `ct`) from the first bytes of a resource: 'not'
 * when they are not one, `{ need }` when it takes that many bytes to tell, else its head, where
 * `ct` starts and how long it is (checked against the head). CHECKSUM_MISMATCH when malformed.
 */
export function parseLead(bytes: Uint8Array): 'not' | { need: number } | { head: SegmentedHead; ctStart: number; ct: number } {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const seen = Math.min(b.byteLength, SEGMENTED_PREFIX.length);
  if (!b.subarray(0, seen).equals(SEGMENTED_PREFIX.subarray(0, seen))) return 'not';
  const fixed = SEGMENTED_PREFIX.length + 4;
  if (b.byteLength < fixed) return { need: fixed };
  const headLength = b.readUInt32BE(SEGMENTED_PREFIX.length);
  if (headLength > MAX_HEAD_BYTES) throw new FdlError('CHECKSUM_MISMATCH', `a sealed input's head is ${headLength} bytes, over ${MAX_HEAD_BYTES}`);
  const ctStart = fixed + headLength + CT_KEY.length + 4;
  if (b.byteLength < ctStart) return { need: ctStart };
  if (!b.subarray(ctStart - CT_KEY.length - 4, ctStart - 4).equals(CT_KEY)) throw new FdlError('CHECKSUM_MISMATCH', 'a sealed input is malformed');
  let decoded: unknown;
  try {
    decoded = decodeValue(b.subarray(fixed, fixed + headLength));
  } catch {
    throw new FdlError('CHECKSUM_MISMATCH', 'a sealed input has a malformed head');
  }
  const head = asHead(decoded);
  const ct = b.readUInt32BE(ctStart - 4);
  checkCtLength(head, ct);
  return { head, ctStart, ct };
}

/** The head of a segmented envelope in a file, and where its `ct` starts; undefined when the file is not one. */
export function readSegmentedHead(path: string): { head: SegmentedHead; ctStart: number } | undefined {
  const fd = openSync(path, 'r');
  try {
    const fileSize = fstatSync(fd).size;
    const first = Buffer.alloc(SEGMENTED_PREFIX.length + 4);
    if (readSync(fd, first, 0, first.length, 0) < first.length) return undefined;
    let lead = parseLead(first);
    if (lead !== 'not' && 'need' in lead) {
      const rest = Buffer.alloc(lead.need);
      if (readSync(fd, rest, 0, rest.length, 0) < rest.length) throw new FdlError('CHECKSUM_MISMATCH', 'a sealed input ends inside its head');
      lead = parseLead(rest);
    }
    if (lead === 'not') return undefined;
    if ('need' in lead) throw new FdlError('CHECKSUM_MISMATCH', 'a sealed input is malformed');
    // The bin 32 length and the file must agree (and, checked above, both with the head's size).
    if (lead.ctStart + lead.ct !== fileSize) {
      throw new FdlError('CHECKSUM_MISMATCH', `a sealed input says ${lead.ct} sealed bytes but its file holds ${fileSize - lead.ctStart}`);
    }
    return { head: lead.head, ctStart: lead.ctStart };
  } finally {
    closeSync(fd);
  }
}

/**
 * Opens a segmented envelope held in the file `path` into the file `out`, a segment at a time
 * (never whole in memory; the event loop runs between segments). Every segment is authenticated
 * before its plaintext is written; on a failure `out` is removed. Returns the plaintext's size.
 */
export async function openSegmentedFile(
  path: string,
  me: { nodeId: string; boxPrivate: KeyObject },
  context: string,
  out: string,
): Promise<{ size: number }> {
  const found = readSegmentedHead(path);
  if (!found) throw new FdlError('INTERNAL', `${path} is not a sealed resource`);
  const { head, ctStart } = found;
  const opener = segmentOpener(head, unwrapKey(head.epk, head.keys, me.nodeId, me.boxPrivate, context), context);
  const sealedChunk = head.chunk + TAG_BYTES;
  const input = await fsOpen(path, 'r');
  const output = await fsOpen(out, 'w');
  let ok = false;
  try {
    const buf = Buffer.allocUnsafe(Math.min(sealedChunk, ctLength(head)));
    const count = segmentCount(head);
    for (let i = 0; i < count; i++) {
      const length = Math.min(sealedChunk, ctLength(head) - i * sealedChunk);
      const { bytesRead } = await input.read(buf, 0, length, ctStart + i * sealedChunk);
      if (bytesRead < length) throw new FdlError('CHECKSUM_MISMATCH', `a sealed input ends inside segment ${i} of ${count}`);
      await output.write(opener(i, buf.subarray(0, length)));
    }
    ok = true;
  } finally {
    await input.close();
    await output.close();
    if (!ok) rmSync(out, { force: true });
  }
  return { size: head.size };
}
