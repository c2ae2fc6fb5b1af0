import {
  createHash,
  hkdfSync,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign as cryptoSign,
  verify as cryptoVerify,
} from 'node:crypto';
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FdlError } from '../errors.ts';

/**
 * A node's identity: an Ed25519 key pair to prove who it is (signed handshakes) and an
 * X25519 key pair to receive sealed resources. Made at first start, kept in the work
 * directory (mode 0600), never sent anywhere but as public keys.
 */
export interface Identity {
  /** Ed25519 public key, SPKI DER, base64. */
  signKey: string;
  /** X25519 public key, SPKI DER, base64. */
  boxKey: string;
  fingerprint: string;
  signPrivate: KeyObject;
  boxPrivate: KeyObject;
}

const FILE = 'identity.json';

const spki = (k: KeyObject) => k.export({ type: 'spki', format: 'der' }).toString('base64');

/** A short, readable digest of a node's signing key: compare it out of band to trust a node. */
export function fingerprint(signKey: string): string {
  const hex = createHash('sha256').update(Buffer.from(signKey, 'base64')).digest('hex').slice(0, 32);
  return hex.match(/.{4}/g)?.join(':') ?? hex;
}

/** A new identity's private keys, as identity.json holds them (PEM, PKCS#8). */
export function newIdentityText(): string {
  const sign = generateKeyPairSync('ed25519');
  const box = generateKeyPairSync('x25519');
  const body = {
    ed25519: sign.privateKey.export({ type: 'pkcs8', format: 'pem' }),
    x25519: box.privateKey.export({ type: 'pkcs8', format: 'pem' }),
  };
  return JSON.stringify(body, null, 2);
}

/** The identity whose private keys `text` holds (identity.json's body); `where` names it in an error. */
export function identityOf(text: string, where: string): Identity {
  let body: { ed25519: string; x25519: string };
  try {
    body = JSON.parse(text) as { ed25519: string; x25519: string };
  } catch (e) {
    throw new FdlError('INTERNAL', `${where}: cannot read the node identity: ${(e as Error).message}`);
  }
  const signPrivate = createPrivateKey(body.ed25519);
  const boxPrivate = createPrivateKey(body.x25519);
  const signKey = spki(createPublicKey(signPrivate));
  return { signKey, boxKey: spki(createPublicKey(boxPrivate)), fingerprint: fingerprint(signKey), signPrivate, boxPrivate };
}

/**
 * Made whole and durable before first use (a temporary file, fsynced, renamed, its folder
 * fsynced), never readable by others: what the node derives from it (its initiator's masks) must
 * survive a power cut as its keys must.
 */
function writeNewIdentity(path: string): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, newIdentityText());
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

export function loadOrCreateIdentity(workdir: string): Identity {
  mkdirSync(workdir, { recursive: true });
  const path = join(workdir, FILE);
  if (!existsSync(path)) writeNewIdentity(path);
  chmodSync(path, 0o600);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new FdlError('INTERNAL', `${path}: cannot read the node identity: ${(e as Error).message}`);
  }
  return identityOf(text, path);
}

/**
 * The node's secret for the values its Locals derive (the initiator's masks: lib/store/locals.ts),
 * drawn by HKDF from its X25519 private key under a label of its own: as durable as the identity
 * (identity.json, or the store's row on PostgreSQL, where every replica derives the same), and
 * telling nothing of the key it comes from.
 */
export function localsSecret(identity: Identity): Buffer {
  const ikm = identity.boxPrivate.export({ type: 'pkcs8', format: 'der' });
  return Buffer.from(hkdfSync('sha256', ikm, '', 'fdl-locals-secret-v1', 32));
}

/** What a worker signs to join: bound to this scheduler, this node id, this connection's nonce and its box key. */
export function handshakeMessage(schedulerId: string, nodeId: string, nonce: Uint8Array, boxKey: string): Uint8Array {
  return createHash('sha256')
    .update('fdl-join-v1\0')
    .update(schedulerId)
    .update('\0')
    .update(nodeId)
    .update('\0')
    .update(nonce)
    .update('\0')
    .update(boxKey)
    .digest();
}

export function signWith(identity: Identity, data: Uint8Array): Uint8Array {
  return cryptoSign(null, data, identity.signPrivate);
}

/** False for a bad signature and for a malformed key alike. */
export function verifySignature(signKey: string, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    const key = createPublicKey({ key: Buffer.from(signKey, 'base64'), format: 'der', type: 'spki' });
    if (key.asymmetricKeyType !== 'ed25519') return false;
    return cryptoVerify(null, data, key, signature);
  } catch {
    return false;
  }
}

export function isBoxKey(boxKey: string): boolean {
  try {
    return createPublicKey({ key: Buffer.from(boxKey, 'base64'), format: 'der', type: 'spki' }).asymmetricKeyType === 'x25519';
  } catch {
    return false;
  }
}
