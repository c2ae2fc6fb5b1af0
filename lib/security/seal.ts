import {
  createCipheriv,
  createDecipheriv,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
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

export function seal(plaintext: Uint8Array, recipients: Recipient[], context: string): Uint8Array {
  if (recipients.length === 0) throw new FdlError('INTERNAL', 'sealing needs at least one recipient');
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(context));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const tag = cipher.getAuthTag();
  const eph = generateKeyPairSync('x25519');
  const epk = eph.publicKey.export({ type: 'spki', format: 'der' });
  const keys = recipients.map((r) => {
    const publicKey = createPublicKey({ key: Buffer.from(r.boxKey, 'base64'), format: 'der', type: 'spki' });
    const shared = diffieHellman({ privateKey: eph.privateKey, publicKey });
    const salt = randomBytes(16);
    const wiv = randomBytes(12);
    const w = createCipheriv('aes-256-gcm', kek(shared, salt, r.nodeId, epk), wiv);
    w.setAAD(Buffer.from(context));
    const wrapped = Buffer.concat([w.update(key), w.final()]);
    return { to: r.nodeId, salt, iv: wiv, tag: w.getAuthTag(), wrapped };
  });
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
  const entry = envelope.keys.find((k) => k.to === nodeId);
  if (!entry) throw new FdlError('OPERATION_FAILED', `a sealed input is not addressed to ${nodeId}`, { retryable: false });
  try {
    const epk = Buffer.from(envelope.epk);
    const publicKey = createPublicKey({ key: epk, format: 'der', type: 'spki' });
    const shared = diffieHellman({ privateKey: boxPrivate, publicKey });
    const w = createDecipheriv('aes-256-gcm', kek(shared, entry.salt, nodeId, epk), entry.iv);
    w.setAAD(Buffer.from(context));
    w.setAuthTag(entry.tag);
    const key = Buffer.concat([w.update(entry.wrapped), w.final()]);
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
  if (!envelope) return value;
  if (!me) throw new FdlError('OPERATION_FAILED', 'a sealed input reached a node without keys', { retryable: false });
  return decodeValue(open(envelope, me.nodeId, me.boxPrivate, context));
}
