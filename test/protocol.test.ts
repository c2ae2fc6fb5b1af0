// The wire format is what other implementations code against: these tests pin every message kind to a golden corpus, prove the codec never throws on hostile bytes, and keep docs/PROTOCOL.md from drifting from the schemas.
import { createDecipheriv, createHash, createPrivateKey, createPublicKey, diffieHellman, hkdfSync, sign, verify } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { Packr } from 'msgpackr';
import t, { type Test } from 'tap';
import { z } from 'zod';
import { CHUNK_HEADER_BYTES, encodeChunkInto } from '../protocols/chunk-frame.ts';
import { compileCheck } from '../protocols/compiled-check.ts';
import { canonicalJson, decode, decodeValue, encode, encodeValue, MAX_DEPTH } from '../protocols/codec.ts';
import { JobStatusSchema, OperationSchema, ProvenanceSchema, QueryStageSchema } from '../protocols/entities.ts';
import { AggregationStrategySchema, ModelSpecSchema } from '../protocols/operations/models.ts';
import { type ErrorCode, ErrorCodes, formatPath, WireErrorSchema, wireError } from '../protocols/errors.ts';
import { type Message, MessageSchemas, type MessageType, MessageTypes } from '../protocols/messages.ts';

const CORPUS = fileURLToPath(new URL('./protocol-corpus/', import.meta.url));
const DOC = fileURLToPath(new URL('../docs/PROTOCOL.md', import.meta.url));
const INVALID = 'invalid';

// The same options as protocols/codec.ts: plain msgpack, maps as objects, no records.
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, int64AsType: 'number' });

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** JSON -> wire value: `{"$bytes": "<base64>"}` becomes a Uint8Array (msgpack bin). */
function revive(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(revive);
  if (isRecord(v)) {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === '$bytes' && typeof v.$bytes === 'string') {
      return Uint8Array.from(Buffer.from(v.$bytes, 'base64'));
    }
    return Object.fromEntries(keys.map((k) => [k, revive(v[k])]));
  }
  return v;
}

/** Wire value -> JSON-comparable: any Uint8Array (Buffer included) becomes `{"$bytes": ...}`. */
function toJson(v: unknown): Json {
  if (v instanceof Uint8Array) return { $bytes: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  if (Array.isArray(v)) return v.map(toJson);
  if (isRecord(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toJson(x)]));
  return v as Json;
}

/** Every Uint8Array inside a value, with its path. */
function binaries(v: unknown, path = ''): Array<[string, Uint8Array]> {
  if (v instanceof Uint8Array) return [[path, v]];
  if (Array.isArray(v)) return v.flatMap((x, i) => binaries(x, `${path}[${i}]`));
  if (isRecord(v)) return Object.entries(v).flatMap(([k, x]) => binaries(x, path ? `${path}.${k}` : k));
  return [];
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const readJson = (path: string): unknown => JSON.parse(readFileSync(path, 'utf8'));

interface Fixture {
  dir: string;
  name: string;
  raw: unknown;
}

const dirs = readdirSync(CORPUS, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();
const messageDirs = dirs.filter((d) => d !== INVALID);
const jsonFiles = (dir: string) =>
  readdirSync(join(CORPUS, dir))
    .filter((f) => f.endsWith('.json'))
    .sort();

const valid: Fixture[] = messageDirs.flatMap((dir) =>
  jsonFiles(dir).map((f) => ({ dir, name: `${dir}/${f}`, raw: revive(readJson(join(CORPUS, dir, f))) })),
);
const invalid = jsonFiles(INVALID).map((f) => ({ name: `${INVALID}/${f}`, raw: readJson(join(CORPUS, INVALID, f)) }));

const isMessageType = (s: string): s is MessageType => Object.hasOwn(MessageSchemas, s);

function parseFixture(f: Fixture): Message {
  if (!isMessageType(f.dir)) throw new Error(`${f.name}: no message type ${f.dir}`);
  return MessageSchemas[f.dir].parse(f.raw) as Message;
}

function fixture(name: string): Fixture {
  const f = valid.find((x) => x.name === name);
  if (!f) throw new Error(`fixture ${name} is missing`);
  return f;
}

// ---------------------------------------------------------------- corpus completeness

t.test('every message type has a fixture dir, and every fixture dir names a message type', async (t) => {
  for (const type of MessageTypes) {
    t.ok(messageDirs.includes(type), `${type} has a fixture dir`);
    if (messageDirs.includes(type)) t.ok(jsonFiles(type).length > 0, `${type} has at least one .json case`);
  }
  for (const dir of messageDirs) t.ok(isMessageType(dir), `fixture dir ${dir} names a message type`);
  t.ok(dirs.includes(INVALID), 'there is an invalid/ dir');
  t.ok(invalid.length > 0, 'with cases');
});

// ---------------------------------------------------------------- valid fixtures

t.test('each valid fixture parses with its schema and survives encode/decode', async (t) => {
  for (const f of valid) {
    t.test(f.name, async (t) => {
      t.equal((f.raw as { type?: unknown }).type, f.dir, 'its type is its directory');
      if (!isMessageType(f.dir)) return;
      const parsed = MessageSchemas[f.dir].safeParse(f.raw);
      t.ok(parsed.success, parsed.success ? 'parses' : `parses: ${JSON.stringify(parsed.error.issues[0])}`);
      if (!parsed.success) return;
      const message = parsed.data as Message;
      const bytes = encode(message);
      t.ok(bytes instanceof Uint8Array && bytes.byteLength > 0, 'encodes to bytes');
      const head = bytes[0] ?? 0;
      t.ok((head & 0xf0) === 0x80 || head === 0xde || head === 0xdf, 'the frame is a msgpack map');
      const decoded = decode(bytes);
      t.ok(decoded.ok, decoded.ok ? 'decodes' : `decodes: ${JSON.stringify(decoded.error)}`);
      if (!decoded.ok) return;
      t.strictSame(toJson(decoded.message), toJson(message), 'round trip is deep-equal');
      const before = binaries(message);
      const after = new Map(binaries(decoded.message));
      for (const [path, b] of before) {
        const back = after.get(path);
        t.ok(back instanceof Uint8Array, `${path} comes back as a Uint8Array`);
        if (back) t.ok(Buffer.from(back).equals(Buffer.from(b)), `${path} has equal bytes`);
      }
      t.equal(after.size, before.length, 'no other field became binary');
      // As another implementation would send it: the JSON, binary fields as bin, plain msgpack.
      const foreign = decode(packr.pack(f.raw));
      t.ok(foreign.ok, 'the fixture packed as-is decodes');
      if (foreign.ok) t.strictSame(toJson(foreign.message), toJson(message), 'to the same message');
    });
  }
});

t.test('binary fixtures carry the sha256 of their data', async (t) => {
  for (const f of valid.filter((x) => ['jobCompleted', 'resourceData', 'result'].includes(x.dir))) {
    const m = parseFixture(f) as { sha256: string; size?: number; data?: Uint8Array };
    // A streamed reply has no data: its bytes follow as resourceChunks.
    if (!m.data) continue;
    t.equal(sha256(m.data), m.sha256, f.name);
    if (m.size !== undefined) t.equal(m.size, m.data.byteLength, `${f.name}: size is the byte length`);
  }
});

t.test('resourceChunk fixtures carry the crc32 of their data, and a streamed reply names its size', async (t) => {
  for (const f of valid.filter((x) => x.dir === 'resourceChunk')) {
    const m = parseFixture(f);
    if (m.type !== 'resourceChunk') return t.fail('wrong fixture type');
    t.equal(crc32(m.data) >>> 0, m.crc32, `${f.name}: crc32 (zlib) of data`);
  }
  const streamed = parseFixture(fixture('resourceData/streamed.json'));
  if (streamed.type !== 'resourceData') return t.fail('wrong fixture type');
  t.equal(streamed.data, undefined, 'a streamed reply has no data');
  t.ok(streamed.size > 0, 'and names the size the chunks add up to');
});

t.test('inputs named in assignJob match the bytes a resourceData carries', async (t) => {
  const assign = parseFixture(fixture('assignJob/mean-link-with-input.json'));
  const data = parseFixture(fixture('resourceData/initiator-product.json'));
  if (assign.type !== 'assignJob' || data.type !== 'resourceData') return t.fail('wrong fixture types');
  const ref = assign.inputs[0];
  t.ok(ref, 'the link has one input');
  t.equal(ref?.id, data.resourceId, 'same resource');
  t.equal(ref?.sha256, data.sha256, 'same sha256');
  t.equal(ref?.size, data.data?.byteLength, 'size is the byte length');
  t.equal(ref?.size, data.size, 'and the size the reply says');
});

t.test('an input that rides in its assignment carries the bytes of its sha256', async (t) => {
  for (const f of valid.filter((x) => x.dir === 'assignJob')) {
    const m = parseFixture(f);
    if (m.type !== 'assignJob') return t.fail('wrong fixture type');
    for (const input of m.inputs) {
      if (input.data === undefined) continue;
      t.equal(sha256(input.data), input.sha256, `${f.name}: ${input.id}`);
      t.equal(input.data.byteLength, input.size, `${f.name}: size is the byte length`);
    }
  }
  const inline = parseFixture(fixture('assignJob/inline-input.json'));
  t.ok(inline.type === 'assignJob' && inline.inputs[0]?.data instanceof Uint8Array, 'the corpus has an inline input');
});

t.test('result data decodes to the documented product shapes', async (t) => {
  const product = (name: string) => {
    const m = parseFixture(fixture(name));
    if (m.type !== 'result' || !m.data) throw new Error(`${name} is not a result with its data`);
    return toJson(decodeValue(m.data));
  };
  t.strictSame(product('result/count.json'), { count: 20640 }, 'Count: { count }');
  t.strictSame(
    product('result/mean.json'),
    { mean: { MedInc: 3.7825, HouseAge: 38.25 }, count: { MedInc: 9024, HouseAge: 9024 } },
    'Mean: { mean: {feature: number|null}, count: {feature: n} }',
  );
  t.strictSame(
    product('result/group-count.json'),
    {
      by: ['MedHouseValDiscrete'],
      groups: [
        { key: [0], count: 10323 },
        { key: [1], count: 10317 },
      ],
    },
    'GroupCount: { by, groups: [{ key, count }] }',
  );
  t.strictSame(product('result/several-exits.json'), { products: [{ products: 1 }, { products: 1 }] }, 'several exit jobs: { products: [...] }');
  // A chain link's product, as a worker ships it in jobCompleted.
  const link = parseFixture(fixture('jobCompleted/mean-link.json'));
  if (link.type !== 'jobCompleted') return t.fail('wrong fixture type');
  const running = decodeValue(link.data) as { family?: unknown; n?: unknown; x?: unknown };
  t.equal(running.family, 'mean', 'a Mean link is a masked running value of family "mean"');
  t.ok(Array.isArray(running.n) && running.n.length === 2 && running.n.every((v) => Number.isInteger(v) && v >= 0 && v < 2 ** 52), 'n: one ring integer per feature');
  t.ok(Array.isArray(running.x) && running.x.length === 2 && running.x.every((v) => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v)), 'x: one 64-hex-digit ring element per feature');
});

t.test('decoding fills schema defaults, but never in a retry policy override', async (t) => {
  // `policy` holds overrides only: a field left out keeps the scheduler's configured value.
  const m = parseFixture(fixture('submitArtifact/partial-policy.json'));
  if (m.type !== 'submitArtifact') return t.fail('wrong fixture type');
  t.strictSame(m.artifact.policy, { maxAttempts: 5 }, 'the policy stays as sent');
  const first = m.artifact.steps[0];
  t.strictSame(first && 'distribution' in first ? first.distribution : undefined, { kind: 'Collect', encryption: false }, 'distribution.encryption defaults to false');
  const decoded = decode(packr.pack(fixture('submitArtifact/partial-policy.json').raw));
  t.ok(decoded.ok, 'decodes');
  if (decoded.ok) t.strictSame(toJson(decoded.message), toJson(m), 'decode fills the same defaults as the schema');
});

// ---------------------------------------------------------------- security material in the corpus

// Test-only keys of the corpus (test/protocol-corpus/README.md): PKCS#8 DER = fixed prefix + a 32-byte seed, seed = sha256(label).
const seedOf = (label: string) => createHash('sha256').update(label).digest();
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const signPrivate = (label: string) =>
  createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seedOf(label)]), format: 'der', type: 'pkcs8' });
const boxPrivate = (label: string) =>
  createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, seedOf(label)]), format: 'der', type: 'pkcs8' });
const spkiKey = (b64: string) => createPublicKey({ key: Buffer.from(b64, 'base64'), format: 'der', type: 'spki' });

t.test('workerHello signatures verify as docs/PROTOCOL.md says (Ed25519 over the join digest)', async (t) => {
  const pairs: Array<[string, string, string]> = [
    ['challenge/first-connection.json', 'workerHello/first-join.json', 'fdl-corpus hospital-a'],
    ['challenge/reconnection.json', 'workerHello/reconnect-holding.json', 'fdl-corpus hospital-b'],
  ];
  for (const [c, h, label] of pairs) {
    const challenge = parseFixture(fixture(c));
    const hello = parseFixture(fixture(h));
    if (challenge.type !== 'challenge' || hello.type !== 'workerHello') return t.fail('wrong fixture types');
    const digest = createHash('sha256')
      .update('fdl-join-v1\0')
      .update(challenge.schedulerId)
      .update('\0')
      .update(hello.nodeId)
      .update('\0')
      .update(challenge.nonce)
      .update('\0')
      .update(hello.boxKey)
      .digest();
    t.equal(challenge.nonce.byteLength, 32, `${c}: a 32-byte nonce`);
    t.equal(hello.signature.byteLength, 64, `${h}: a 64-byte Ed25519 signature`);
    t.equal(spkiKey(hello.signKey).asymmetricKeyType, 'ed25519', `${h}: signKey is Ed25519 SPKI`);
    t.equal(spkiKey(hello.boxKey).asymmetricKeyType, 'x25519', `${h}: boxKey is X25519 SPKI`);
    t.ok(verify(null, digest, spkiKey(hello.signKey), hello.signature), `${h} is signed for ${c}`);
    const ownKey = signPrivate(`${label} sign`);
    t.equal(createPublicKey(ownKey).export({ type: 'spki', format: 'der' }).toString('base64'), hello.signKey, `${h}: signKey is the test key of README.md`);
    t.equal(
      createPublicKey(boxPrivate(`${label} box`)).export({ type: 'spki', format: 'der' }).toString('base64'),
      hello.boxKey,
      `${h}: boxKey is the test key of README.md`,
    );
    t.ok(Buffer.from(sign(null, digest, ownKey)).equals(Buffer.from(hello.signature)), `${h}: Ed25519 is deterministic, the signature is reproduced`);
    const other = pairs.find(([x]) => x !== c)?.[0];
    if (other) {
      const o = parseFixture(fixture(other));
      if (o.type === 'challenge') {
        const replay = createHash('sha256').update('fdl-join-v1\0').update(o.schedulerId).update('\0').update(hello.nodeId).update('\0').update(o.nonce).update('\0').update(hello.boxKey).digest();
        t.notOk(verify(null, replay, spkiKey(hello.signKey), hello.signature), `${h} does not verify for another nonce`);
      }
    }
  }
});

t.test('nodeList fingerprints are the documented digest of the signing keys', async (t) => {
  const list = parseFixture(fixture('nodeList/basic.json'));
  if (list.type !== 'nodeList') return t.fail('wrong fixture type');
  const keys = new Map<string, string>();
  for (const name of ['workerHello/first-join.json', 'workerHello/reconnect-holding.json']) {
    const h = parseFixture(fixture(name));
    if (h.type === 'workerHello') keys.set(h.nodeId, h.signKey);
  }
  for (const n of list.nodes) {
    const key = keys.get(n.id);
    if (!key) continue;
    const hex = createHash('sha256').update(Buffer.from(key, 'base64')).digest('hex').slice(0, 32);
    t.equal(n.fingerprint, hex.match(/.{4}/g)?.join(':'), `${n.id}: first 128 bits of sha256(SPKI DER), hex, in groups of 4`);
  }
});

t.test('a sealed product opens as docs/PROTOCOL.md says, for its recipient only', async (t) => {
  const sealedMsg = parseFixture(fixture('jobCompleted/sealed-mean-link.json'));
  const plainMsg = parseFixture(fixture('jobCompleted/mean-link.json'));
  const assign = parseFixture(fixture('assignJob/sealed-output.json'));
  const served = parseFixture(fixture('resourceData/sealed.json'));
  if (sealedMsg.type !== 'jobCompleted' || plainMsg.type !== 'jobCompleted' || assign.type !== 'assignJob' || served.type !== 'resourceData') {
    return t.fail('wrong fixture types');
  }
  t.ok(Buffer.from(served.data ?? []).equals(Buffer.from(sealedMsg.data)), 'the scheduler relays the envelope unchanged');
  const envelope = decodeValue(sealedMsg.data) as Record<string, unknown>;
  t.equal(envelope.fdlSealed, 1, 'an envelope is marked fdlSealed: 1');
  for (const f of ['epk', 'iv', 'tag', 'ct']) t.ok(envelope[f] instanceof Uint8Array, `${f} is binary`);
  const keys = envelope.keys as Array<Record<string, unknown>>;
  t.strictSame(
    keys.map((k) => k.to),
    (assign.sealFor ?? []).map((r) => r.nodeId),
    'one wrapped key per node of sealFor',
  );
  const entry = keys.find((k) => k.to === 'hospital-b');
  if (!entry) return t.fail('no key for hospital-b');
  const aad = Buffer.from(`fdl-resource\0${assign.artifactId}\0${sealedMsg.jobId}`);
  const epk = Buffer.from(envelope.epk as Uint8Array);
  const shared = diffieHellman({ privateKey: boxPrivate('fdl-corpus hospital-b box'), publicKey: createPublicKey({ key: epk, format: 'der', type: 'spki' }) });
  const kek = Buffer.from(hkdfSync('sha256', shared, entry.salt as Uint8Array, Buffer.concat([Buffer.from('fdl-seal-v1\0hospital-b\0'), epk]), 32));
  const unwrap = createDecipheriv('aes-256-gcm', kek, entry.iv as Uint8Array);
  unwrap.setAAD(aad);
  unwrap.setAuthTag(entry.tag as Uint8Array);
  const key = Buffer.concat([unwrap.update(entry.wrapped as Uint8Array), unwrap.final()]);
  t.equal(key.byteLength, 32, 'the content key is 32 bytes');
  const d = createDecipheriv('aes-256-gcm', key, envelope.iv as Uint8Array);
  d.setAAD(aad);
  d.setAuthTag(envelope.tag as Uint8Array);
  const plain = Buffer.concat([d.update(envelope.ct as Uint8Array), d.final()]);
  t.ok(plain.equals(Buffer.from(plainMsg.data)), 'the plaintext is the unsealed product bytes');
  t.equal(sha256(sealedMsg.data), sealedMsg.sha256, 'sha256 covers the envelope, not the plaintext');
  const wrongAad = createDecipheriv('aes-256-gcm', key, envelope.iv as Uint8Array);
  wrongAad.setAAD(Buffer.from(`fdl-resource\0${assign.artifactId}\0${assign.artifactId}.2`));
  wrongAad.setAuthTag(envelope.tag as Uint8Array);
  wrongAad.update(envelope.ct as Uint8Array);
  t.throws(() => wrongAad.final(), 'bound to the producing job: another context fails authentication');
});

// ---------------------------------------------------------------- invalid fixtures

/** The reqId an error reply names: the frame's, when it is a valid one and the frame had a string `type`. */
function expectedReqId(c: Record<string, unknown>): number | undefined {
  if (typeof c.reqId === 'number') return c.reqId;
  // A BAD_FRAME is refused before any field is read: it never names a request.
  if (c.code === 'BAD_FRAME') return undefined;
  const frame = c.frame;
  if (!isRecord(frame)) return undefined;
  const r = frame.reqId;
  return typeof r === 'number' && Number.isSafeInteger(r) && r >= 0 ? r : undefined;
}

t.test('each invalid fixture is refused with its code', async (t) => {
  for (const c of invalid) {
    t.test(c.name, async (t) => {
      if (!isRecord(c.raw)) return t.fail('a case is a JSON object');
      const code = c.raw.code as ErrorCode;
      t.ok(ErrorCodes.includes(code), `expects a known code (${code})`);
      t.ok('frame' in c.raw, 'has a frame');
      const bytes = packr.pack(revive(c.raw.frame));
      let result: ReturnType<typeof decode> | undefined;
      t.doesNotThrow(() => {
        result = decode(bytes);
      }, 'decode never throws');
      if (!result) return;
      t.equal(result.ok, false, 'refused');
      if (result.ok) return;
      t.equal(result.error.code, code, 'with the expected code');
      t.ok(WireErrorSchema.safeParse(result.error).success, 'the error is a valid WireError');
      t.equal(result.error.retryable, wireError(code, '').retryable, 'retryable as wireError says');
      const want = expectedReqId(c.raw);
      if (want === undefined) t.notOk('reqId' in result, 'no reqId to echo');
      else t.equal(result.reqId, want, 'the reqId is echoed');
      // The reply a receiver sends must itself be a valid frame (no error ping-pong).
      const reply = decode(encode(result.reqId === undefined ? { type: 'error', error: result.error } : { type: 'error', reqId: result.reqId, error: result.error }));
      t.ok(reply.ok, 'the error reply is itself a valid frame');
    });
  }
});

// ---------------------------------------------------------------- hostile bytes

/** A tiny deterministic PRNG, so a failure reproduces. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function refused(t: Test, bytes: Uint8Array, what: string, code?: ErrorCode): void {
  let result: ReturnType<typeof decode> | undefined;
  try {
    result = decode(bytes);
  } catch (e) {
    t.fail(`${what}: decode threw ${(e as Error).message}`);
    return;
  }
  if (result.ok) {
    t.fail(`${what}: was accepted`);
    return;
  }
  if (code) t.equal(result.error.code, code, what);
  else t.ok(ErrorCodes.includes(result.error.code), `${what}: refused with ${result.error.code}`);
}

t.test('raw garbage never throws and is refused', async (t) => {
  refused(t, new Uint8Array(0), 'empty frame', 'BAD_FRAME');
  refused(t, Uint8Array.of(0xc1), 'the never-used byte 0xc1', 'BAD_FRAME');
  refused(t, Buffer.from('{"type":"listNodes","reqId":1}'), 'JSON text', 'BAD_FRAME');
  refused(t, Uint8Array.of(0xdf, 0xff, 0xff, 0xff, 0xff), 'a map32 header claiming 4G entries', 'BAD_FRAME');
  refused(t, Uint8Array.of(0xc6, 0x7f, 0xff, 0xff, 0xff, 0x00), 'a bin32 header claiming 2 GiB', 'BAD_FRAME');
  const random = prng(0x5eed);
  let count = 0;
  for (let i = 0; i < 500; i++) {
    const bytes = new Uint8Array(Math.floor(random() * 64));
    for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(random() * 256);
    const r = decode(bytes);
    if (!r.ok && ErrorCodes.includes(r.error.code)) count++;
  }
  t.equal(count, 500, '500 random frames are refused with a known code');
});

t.test('every truncation of every valid frame is refused as BAD_FRAME', async (t) => {
  let cases = 0;
  let wrong = 0;
  for (const f of valid) {
    const bytes = encode(parseFixture(f));
    for (let n = 0; n < bytes.length; n++) {
      cases++;
      const r = decode(bytes.subarray(0, n));
      if (r.ok || r.error.code !== 'BAD_FRAME') {
        wrong++;
        t.fail(`${f.name} cut at ${n}: ${r.ok ? 'accepted' : r.error.code}`);
      }
    }
  }
  t.ok(cases > 1000, `${cases} truncations tried`);
  t.equal(wrong, 0, 'all refused as BAD_FRAME');
});

t.test('frames that are not maps are BAD_FRAME', async (t) => {
  refused(t, packr.pack(['listNodes', 1]), 'a msgpack array', 'BAD_FRAME');
  refused(t, packr.pack([{ type: 'listNodes', reqId: 1 }]), 'an array holding a valid message', 'BAD_FRAME');
  refused(t, packr.pack('listNodes'), 'a msgpack string', 'BAD_FRAME');
  refused(t, packr.pack(42), 'an integer', 'BAD_FRAME');
  refused(t, packr.pack(null), 'nil', 'BAD_FRAME');
  refused(t, packr.pack(true), 'a boolean', 'BAD_FRAME');
  refused(t, packr.pack(Uint8Array.of(0x81)), 'a bin', 'BAD_FRAME');
  refused(t, packr.pack({ reqId: 1 }), 'a map without type', 'BAD_FRAME');
  refused(t, packr.pack({ type: Buffer.from('listNodes'), reqId: 1 }), 'type as bin, not str', 'BAD_FRAME');
  // Two valid frames back to back are not one frame.
  const one = encode({ type: 'listNodes', reqId: 1 });
  refused(t, Buffer.concat([one, one]), 'two frames in one WebSocket message', 'BAD_FRAME');
});

/** `{type, reqId: 11, d: <levels nested arrays around 1>}` as raw msgpack (no encoder recursion). */
function nested(levels: number, type = 'listNodes'): Uint8Array {
  const str = (s: string) => {
    const b = Buffer.from(s);
    if (b.length > 31) throw new Error('fixstr only');
    return Buffer.concat([Uint8Array.of(0xa0 | b.length), b]);
  };
  return Buffer.concat([
    Uint8Array.of(0x83),
    str('type'),
    str(type),
    str('reqId'),
    Uint8Array.of(11),
    str('d'),
    Buffer.alloc(levels, 0x91),
    Uint8Array.of(0x01),
  ]);
}

t.test('nesting deeper than MAX_DEPTH is refused before validation, and never throws', async (t) => {
  const at = decode(nested(MAX_DEPTH));
  t.ok(!at.ok && at.error.code === 'INVALID_MESSAGE' && !at.error.message.includes('nested'), `${MAX_DEPTH} levels below the root pass the depth check (then fail the schema)`);
  const over = decode(nested(MAX_DEPTH + 1));
  t.equal(over.ok, false, `${MAX_DEPTH + 1} levels are refused`);
  if (!over.ok) {
    t.equal(over.error.code, 'INVALID_MESSAGE');
    t.match(over.error.message, /nested deeper than 64 levels/);
    t.equal(over.error.path, `d${'[0]'.repeat(MAX_DEPTH)}`, 'its path names where (as every INVALID_MESSAGE does)');
    t.equal(over.reqId, 11, 'reqId is echoed');
    t.equal(over.type, 'listNodes');
  }
  const unknown = decode(nested(MAX_DEPTH + 1, 'noSuchType'));
  t.ok(!unknown.ok && unknown.error.code === 'UNKNOWN_MESSAGE', 'an unknown type is reported first');
  for (const levels of [10_000, 1_000_000]) {
    refused(t, nested(levels), `${levels} levels (the msgpack decoder's own stack)`);
  }
  const after = decode(encode({ type: 'listNodes', reqId: 12 }));
  t.ok(after.ok, 'the codec still decodes a good frame after a stack blow-up');
});

// ---------------------------------------------------------------- typed arrays in products

t.test('typed arrays in products travel as msgpack extension 0x74 with their raw bytes', async (t) => {
  const f = new Float64Array([1.5, -2, 3]);
  const bytes = encodeValue({ w: f });
  // map16 of 1 entry, fixstr "w", ext8 of 25 bytes, type 0x74, array kind 8 (Float64), then 24 little-endian bytes.
  const expected = Buffer.concat([Buffer.from('de0001a177c71974' + '08', 'hex'), Buffer.from(f.buffer)]);
  t.ok(Buffer.from(bytes).equals(expected), `encoded as ${Buffer.from(bytes).toString('hex')}`);
  const back = decodeValue(bytes) as { w: unknown };
  t.ok(back.w instanceof Float64Array, 'it comes back as a Float64Array');
  t.strictSame([...(back.w as Float64Array)], [1.5, -2, 3], 'with the same values');
  t.equal((back.w as Float64Array).byteOffset % 8, 0, 'aligned, so it can be used at once');
  const misaligned = new Uint8Array(bytes.byteLength + 3);
  misaligned.set(bytes, 3);
  const again = decodeValue(misaligned.subarray(3)) as { w: Float64Array };
  t.strictSame([...again.w], [1.5, -2, 3], 'also from a buffer at an odd offset');

  const kinds: Array<[ArrayBufferView, number]> = [
    [new Int8Array([-1]), 0],
    [new Uint8Array([1, 2]), 1],
    [new Int16Array([-2]), 3],
    [new Uint16Array([2]), 4],
    [new Int32Array([1, -1]), 5],
    [new Uint32Array([7]), 6],
    [new Float32Array([1.5]), 7],
    [new Float64Array([0.25]), 8],
  ];
  for (const [a, kind] of kinds) {
    const b = Buffer.from(encodeValue(a));
    t.equal(b[b[0] === 0xc7 ? 2 : 1], 0x74, `${a.constructor.name}: extension type 0x74`);
    t.equal(b[b[0] === 0xc7 ? 3 : 2], kind, `${a.constructor.name}: array kind ${kind}`);
    const back = decodeValue(b) as ArrayBufferView;
    t.equal(back.constructor, a.constructor, `${a.constructor.name}: same class back`);
    t.ok(Buffer.from(back.buffer, back.byteOffset, back.byteLength).equals(Buffer.from(a.buffer, a.byteOffset, a.byteLength)), `${a.constructor.name}: same bytes`);
  }
  // A Node Buffer stays a plain msgpack bin in products, as binary fields do in frames.
  t.equal(Buffer.from(encodeValue(Buffer.from([1, 2])))[0], 0xc4, 'a Buffer is a bin 8 in a product');
  const frame = encode({ type: 'jobCompleted', jobId: 'a-1.0', attempt: 1, sha256: '0'.repeat(64), data: new Uint8Array([1, 2]) });
  t.ok(Buffer.from(frame).includes(Buffer.from('a464617461c4020102', 'hex')), 'a Uint8Array field of a frame is a bin 8, never an extension');
});

t.test('an error reply is never itself invalid, whatever reqId the refused frame had', async (t) => {
  for (const reqId of [-1, -(2 ** 53) + 1, 2 ** 53, 1.5, Number.NaN, '7', null]) {
    const r = decode(packr.pack({ type: 'listNodes', reqId, extra: true }));
    if (r.ok) {
      t.fail(`reqId ${String(reqId)}: accepted`);
      continue;
    }
    t.notOk('reqId' in r, `reqId ${String(reqId)} is not echoed`);
    const reply = decode(encode(r.reqId === undefined ? { type: 'error', error: r.error } : { type: 'error', reqId: r.reqId, error: r.error }));
    t.ok(reply.ok, `reqId ${String(reqId)}: the error reply is a valid frame`);
  }
});

// ---------------------------------------------------------------- the document

t.test('docs/PROTOCOL.md covers every message, error code, operation and query stage, and shows the corpus example', async (t) => {
  const doc = readFileSync(DOC, 'utf8');
  for (const type of MessageTypes) {
    t.match(doc, new RegExp(`^###\\s+\`${type}\``, 'm'), `a section for ${type}`);
  }
  for (const code of ErrorCodes) {
    const row = new RegExp(`^\\|\\s*\`${code}\`\\s*\\|\\s*(yes|no)\\s*\\|`, 'm').exec(doc);
    t.ok(row, `a table row for ${code}`);
    if (row) t.equal(row[1] === 'yes', wireError(code, '').retryable, `${code}: retryable column matches wireError`);
  }
  for (const option of OperationSchema.options) {
    const kind = option.shape.kind.value;
    t.match(doc, new RegExp(`^\\|[^|\\n]*\`${kind}\`[^|\\n]*\\|`, 'm'), `a table row names the operation ${kind}`);
  }
  for (const option of QueryStageSchema.options) {
    const kind = option.shape.kind.value;
    t.match(doc, new RegExp(`^\\|[^|\\n]*\`${kind}\`[^|\\n]*\\|`, 'm'), `a table row names the query stage ${kind}`);
  }
  const example = /<!-- example-artifact -->\s*```json\n([\s\S]*?)```/.exec(doc);
  t.ok(example, 'the example artifact is marked');
  if (!example?.[1]) return;
  const submit = fixture('submitArtifact/mean-with-filter.json').raw as { artifact: unknown };
  t.strictSame(JSON.parse(example[1]), submit.artifact, 'the example is the artifact of submitArtifact/mean-with-filter.json');
});

/** The rows `| `field` | type | default | meaning |` of one `#### ` subsection of the model-spec section, by field. */
function specTables(doc: string): Map<string, Map<string, { type: string; default: string }>> {
  const start = doc.indexOf('<!-- model-spec -->');
  const end = doc.indexOf('### Where each check happens');
  const section = start >= 0 && end > start ? doc.slice(start, end) : '';
  const tables = new Map<string, Map<string, { type: string; default: string }>>();
  for (const part of section.split(/^#### /m).slice(1)) {
    const [heading = '', ...lines] = part.split('\n');
    const rows = new Map<string, { type: string; default: string }>();
    for (const line of lines) {
      // Cells split on `|` not escaped as `\|` (a union of literals in the Type column).
      const cells = line.split(/(?<!\\)\|/).map((c) => c.trim());
      const field = /^`([A-Za-z][A-Za-z0-9]*)`$/.exec(cells[1] ?? '')?.[1];
      if (field && cells.length >= 5) rows.set(field, { type: cells[2] ?? '', default: cells[3] ?? '' });
    }
    tables.set(heading, rows);
  }
  return tables;
}

t.test('docs/PROTOCOL.md defines the model spec field by field, as ModelSpecSchema has it', async (t) => {
  const tables = specTables(readFileSync(DOC, 'utf8'));
  t.ok(tables.size >= 3, 'the model-spec section has a table per model family and one for the aggregation strategy');
  const tableOf = (name: string) => [...tables].find(([heading]) => heading.includes(`\`${name}\``))?.[1];
  const check = (what: string, rows: Map<string, { type: string; default: string }> | undefined, shape: Record<string, { safeParse(v: unknown): { success: boolean } }>) => {
    if (!rows) return t.fail(`a table for ${what}`);
    for (const [field, schema] of Object.entries(shape)) {
      const row = rows.get(field);
      t.ok(row, `${what}: a row for ${field}`);
      if (!row) continue;
      const optional = schema.safeParse(undefined).success;
      t.equal(!row.default.startsWith('(required'), optional, `${what}.${field}: ${optional ? 'optional, with its default' : '(required)'}`);
    }
    for (const field of rows.keys()) t.ok(Object.hasOwn(shape, field), `${what}: the documented ${field} is in the schema`);
  };
  for (const option of ModelSpecSchema.options) {
    const type = option.shape.type.value;
    const rows = tableOf(type);
    check(type, rows, option.shape);
    t.match(rows?.get('type')?.type ?? '', `"${type}"`, `${type}: the type row names its literal`);
  }
  const strategies = AggregationStrategySchema.options;
  const rows = tableOf('AggregationStrategy');
  const fields = Object.fromEntries(strategies.flatMap((o) => Object.entries(o.shape)));
  // `trim` is required by one strategy and absent from the others: documented as required-with.
  check('AggregationStrategy', rows, { ...fields, trim: { safeParse: () => ({ success: false }) } });
  for (const o of strategies) t.match(rows?.get('strategy')?.type ?? '', `"${o.shape.strategy.value}"`, `the strategy ${o.shape.strategy.value} is listed`);
});

t.test("a provenance's artifactSha256 is the SHA-256 of the artifact's canonical JSON, as docs/PROTOCOL.md shows it", async (t) => {
  const m = parseFixture(fixture('result/count-with-provenance.json'));
  if (m.type !== 'result' || !m.provenance) return t.fail('a result with a provenance');
  const doc = readFileSync(DOC, 'utf8');
  const shown = /has the canonical JSON\s+`([^`]+)`/.exec(doc)?.[1] ?? '';
  const spec = { name: 'count', steps: [{ kind: 'Sequential', init: { kind: 'CountInit' }, operation: { kind: 'Count' }, final: { kind: 'CountFinal' }, encryption: true }] };
  t.equal(canonicalJson(spec), shown, 'the canonical JSON is the one the document shows');
  t.equal(sha256(Buffer.from(shown)), m.provenance.artifactSha256, 'its SHA-256 is the fixture\'s artifactSha256');
  t.match(doc, m.provenance.artifactSha256, 'and the document states it');
  t.equal(m.provenance.rows, m.provenance.workers.reduce((n, w) => n + (w.rows ?? 0), 0), 'rows: the included workers\' rows summed');
});

t.test('docs/PROTOCOL.md defines Provenance field by field', async (t) => {
  const doc = readFileSync(DOC, 'utf8');
  const start = doc.indexOf('### Provenance');
  const section = doc.slice(start, doc.indexOf('\n### ', start + 1));
  t.ok(start >= 0, 'a Provenance section');
  for (const field of Object.keys(ProvenanceSchema.shape)) t.match(section, new RegExp(`^\\|\\s*\`${field}\`\\s*\\|`, 'm'), `a row for ${field}`);
});

t.test('docs/PROTOCOL.md defines JobStatus field by field', async (t) => {
  const doc = readFileSync(DOC, 'utf8');
  const start = doc.indexOf('`JobStatus`:');
  t.ok(start >= 0, 'a JobStatus table');
  const section = doc.slice(start, doc.indexOf('\n### ', start + 1));
  for (const field of Object.keys(JobStatusSchema.shape)) t.match(section, new RegExp(`^\\|\\s*\`${field}\`\\s*\\|`, 'm'), `a row for ${field}`);
});

t.test('an error frame with a code from a newer peer is read as INTERNAL, keeping its text', async (t) => {
  const bytes = new Packr({ useRecords: false }).pack({
    type: 'error',
    reqId: 4,
    error: { code: 'MAINTENANCE_WINDOW', message: 'back at 02:00', retryable: true },
  });
  const d = decode(bytes);
  t.ok(d.ok, 'accepted');
  if (d.ok && d.message.type === 'error') {
    t.equal(d.message.error.code, 'INTERNAL');
    t.equal(d.message.error.message, 'MAINTENANCE_WINDOW: back at 02:00');
    t.equal(d.message.reqId, 4, 'so the request it answers fails at once');
  }
});

t.test('every error path is written one way: dots between names, brackets around indices', async (t) => {
  t.equal(formatPath(['artifact', 'steps', 0, 'operation', 'features', 1]), 'artifact.steps[0].operation.features[1]');
  t.equal(formatPath([0, 'a']), '[0].a');
  t.equal(formatPath([]), '');
  const d = decode(
    new Packr({ useRecords: false }).pack({ type: 'submitArtifact', reqId: 1, projectToken: 'token-1234', artifact: { steps: [{ kind: 'Teleport' }] } }),
  );
  t.match(d, { ok: false, error: { code: 'INVALID_MESSAGE', path: /^artifact\.steps\[0\]/ } });
});

t.test('a resourceChunk encoded around its bytes in place decodes to the same message as encode() makes', async (t) => {
  const data = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 251));
  const resource = sha256(data);
  for (const offset of [0, 5 * 1024 * 1024 * 1024 + 7]) {
    const frame = Buffer.alloc(CHUNK_HEADER_BYTES + data.length);
    data.copy(frame, CHUNK_HEADER_BYTES);
    encodeChunkInto(frame, resource, offset, crc32(data) >>> 0);
    const decoded = decode(frame);
    t.ok(decoded.ok, 'decodes');
    const expected: Message = { type: 'resourceChunk', resource, offset, crc32: crc32(data) >>> 0, data };
    if (decoded.ok) t.strictSame(toJson(decoded.message), toJson(expected), `offset ${offset}: the same message`);
    t.strictSame(toJson((packr.unpack(frame) as Record<string, unknown>)), toJson(expected), 'plain msgpack reads it too');
  }
});

t.test('a value refused inside a union (a filter) is reported at the value, not at the union', async (t) => {
  const where = (value: number) => ({ and: [{ feature: 'HouseAge', op: '>', value: 3 }, { feature: 'HouseAge', op: '<', value }] });
  const submit = (w: unknown) => ({
    type: 'submitArtifact',
    reqId: 3,
    projectToken: 'p'.repeat(20),
    artifact: { name: 'a', steps: [{ kind: 'Sequential', init: { kind: 'CountInit' }, operation: { kind: 'Count', query: { where: w } }, final: { kind: 'CountFinal' } }] },
  });
  const nan = decode(encode(submit(where(Number.NaN)) as unknown as Message));
  t.equal(nan.ok, false);
  if (!nan.ok) {
    t.equal(nan.error.path, 'artifact.steps[0].operation.query.where.and[1].value');
    t.match(nan.error.message, /where\.and\[1\]\.value: .*NaN/);
  }
  const leaf = decode(encode(submit({ feature: 'HouseAge', op: '>', value: Number.POSITIVE_INFINITY }) as unknown as Message));
  t.ok(!leaf.ok && leaf.error.path === 'artifact.steps[0].operation.query.where.value', 'a single filter too');
  const string = decode(encode(submit({ feature: 'x'.repeat(70_000), op: '>', value: 1 }) as unknown as Message));
  t.ok(!string.ok && string.error.path === 'artifact.steps[0].operation.query.where.feature', 'a shape limit found by the frame scan names its field');
});

t.test('encodeValue: a small result is its own memory, not a view that pins the packer buffer', async (t) => {
  // A kept product (a worker's remembered report) once pinned msgpackr's whole reusable buffer.
  encodeValue({ big: new Float64Array(100_000) });
  const small = encodeValue({ mean: 1.5, n: 3 });
  t.equal(small.buffer.byteLength, small.byteLength, 'backed by exactly its own bytes');
  t.same(decodeValue(small), { mean: 1.5, n: 3 });
  const big = new Float64Array(300_000).fill(2);
  const bytes = encodeValue(big);
  t.ok(bytes.byteLength * 2 >= bytes.buffer.byteLength, 'a large result is not copied');
  t.same(decodeValue(bytes), big);
});

// ---------------------------------------------------------------- the precompiled check (protocols/compiled-check.ts)

/** Every [path, value] inside a wire value (the value itself at path []). */
function places(v: unknown, path: PropertyKey[] = []): Array<[PropertyKey[], unknown]> {
  const here: Array<[PropertyKey[], unknown]> = [[path, v]];
  if (Array.isArray(v)) return here.concat(v.flatMap((x, i) => places(x, [...path, i])));
  if (isRecord(v)) return here.concat(Object.entries(v).flatMap(([k, x]) => places(x, [...path, k])));
  return here;
}

/** A deep copy of `root` with the value at `path` replaced (`undefined`: the key removed). */
function replaced(root: unknown, path: PropertyKey[], value: unknown): unknown {
  if (path.length === 0) return value;
  const [head, ...rest] = path;
  if (Array.isArray(root)) return root.map((x, i) => (i === head ? replaced(x, rest, value) : x));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(root as Record<string, unknown>)) {
    if (k !== head) out[k] = x;
    else if (rest.length > 0 || value !== undefined) out[k] = replaced(x, rest, value);
  }
  return out;
}

/** Values of every kind and edge the schemas draw lines at. */
const SUBSTITUTES: unknown[] = [
  undefined, null, true, 0, -1, 1.5, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY, '', 'x', 'x'.repeat(129), 'a'.repeat(64),
  'COMPLETED', [], [1], {}, new Uint8Array(0), new Uint8Array(3),
];

t.test('the precompiled check accepts a frame only where zod does, and zod would give back the same message', async (t) => {
  const compiled = new Map(MessageTypes.map((type) => [type, compileCheck(MessageSchemas[type])]));
  // The requests and replies of every round trip, and the job traffic, are compiled; submitArtifact
  // (defaults and a superRefine in its retry policy) is always zod's.
  t.strictSame(MessageTypes.filter((type) => !compiled.get(type)), ['submitArtifact'], 'only submitArtifact is left to zod');
  let accepted = 0;
  let cases = 0;
  for (const f of valid) {
    if (!isMessageType(f.dir)) continue;
    const check = compiled.get(f.dir);
    if (!check) continue;
    const zodSays = MessageSchemas[f.dir].safeParse(f.raw);
    // A fixture zod gives back unchanged (no default filled in) is taken by the fast path.
    if (zodSays.success && JSON.stringify(toJson(zodSays.data)) === JSON.stringify(toJson(f.raw)) || check(f.raw)) {
      t.ok(check(f.raw), `${f.name}: accepted without zod`);
    }
    const mutants: unknown[] = [];
    for (const [path, value] of places(f.raw)) {
      for (const s of SUBSTITUTES) mutants.push(replaced(f.raw, path, s));
      if (isRecord(value)) mutants.push(replaced(f.raw, path, { ...value, unknownField: 1 }));
    }
    for (const m of mutants) {
      cases++;
      if (!check(m)) continue;
      accepted++;
      const parsed = MessageSchemas[f.dir].safeParse(m);
      if (!parsed.success || JSON.stringify(toJson(parsed.data)) !== JSON.stringify(toJson(m)) && !isSameJson(parsed.data, m)) {
        t.fail(`${f.name}: the check accepted what zod ${parsed.success ? 'changes' : 'refuses'}: ${JSON.stringify(toJson(m)).slice(0, 300)}`);
      }
    }
  }
  t.ok(cases > 10_000 && accepted > 0, `${cases} mutated frames, ${accepted} accepted, each also by zod, unchanged`);
});

/** Deep equality of two wire values, whatever the order of their keys. */
function isSameJson(a: unknown, b: unknown): boolean {
  const sorted = (v: Json): Json =>
    Array.isArray(v) ? v.map(sorted) : v !== null && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted(v[k] as Json)])) : v;
  return JSON.stringify(sorted(toJson(a))) === JSON.stringify(sorted(toJson(b)));
}

t.test('the precompiled check: what it does not know is left to zod', async (t) => {
  t.equal(compileCheck(z.object({ a: z.number() })), undefined, 'a non-strict object (zod strips unknown keys)');
  t.equal(compileCheck(z.object({ a: z.boolean().default(false) }).strict()), undefined, 'a default');
  t.equal(compileCheck(z.string().transform((s) => s.length)), undefined, 'a transform');
  t.equal(compileCheck(z.object({ a: z.number() }).strict().superRefine(() => {})), undefined, 'a superRefine');
  t.equal(compileCheck(z.string().email()), undefined, 'a string format');
  const refined = compileCheck(z.object({ lo: z.number(), hi: z.number() }).strict().refine((b) => b.lo < b.hi));
  t.ok(refined?.({ lo: 1, hi: 2 }) && !refined({ lo: 2, hi: 1 }), 'a refine is called');
  const tree: z.ZodType = z.lazy(() => z.object({ kids: z.array(tree).max(3) }).strict());
  const check = compileCheck(tree);
  t.ok(check?.({ kids: [{ kids: [] }] }) && !check({ kids: [{ kids: [1] }] }), 'a recursive schema');
  t.notOk(compileCheck(z.object({}).strict())?.(new Uint8Array(0)), 'binary data is not an object (zod would copy it into one)');
});

t.test("a status the store keeps (frozen) is sent as the bytes a fresh encoding makes, whatever the reqId", async (t) => {
  const message = parseFixture(fixture('status/completed.json'));
  if (message.type !== 'status') throw new Error('not a status');
  const kept = structuredClone(message.status);
  const freeze = (v: unknown): void => {
    if (v !== null && typeof v === 'object') {
      Object.freeze(v);
      for (const x of Object.values(v)) freeze(x);
    }
  };
  freeze(kept);
  for (const reqId of [0, 7, 300, 70_000, 2 ** 32 - 1, 2 ** 40]) {
    const fresh = packr.pack({ type: 'status', reqId, status: message.status });
    const sent = encode({ type: 'status', reqId, status: kept });
    t.ok(Buffer.from(sent).equals(fresh), `reqId ${reqId}: the same bytes`);
    const back = decode(sent);
    t.ok(back.ok && back.message.type === 'status' && back.message.reqId === reqId, 'and it decodes');
  }
  // Frozen at the top only: its parts could change, so it is not kept (sent as it is now).
  const shallow = Object.freeze({ ...structuredClone(message.status), jobs: structuredClone(message.status.jobs) });
  t.ok(Buffer.from(encode({ type: 'status', reqId: 1, status: shallow })).equals(packr.pack({ type: 'status', reqId: 1, status: shallow })), 'a shallow-frozen status: its bytes now');
  (shallow.jobs[0] as { state: string }).state = 'ERROR';
  const later = decode(encode({ type: 'status', reqId: 2, status: shallow }));
  t.ok(later.ok && later.message.type === 'status' && later.message.status.jobs[0]?.state === 'ERROR', 'and again after a part of it changed');
  // Another kept status (the artifact changed: the store made a new one) is not sent as the first.
  const changed = structuredClone(message.status);
  changed.state = 'ERROR';
  freeze(changed);
  const again = decode(encode({ type: 'status', reqId: 1, status: changed }));
  t.ok(again.ok && again.message.type === 'status' && again.message.status.state === 'ERROR', 'the new one');
});
