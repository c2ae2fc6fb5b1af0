// Why: a sealed product over the stream threshold is sealed and opened a segment at a time, so it is
// never whole in memory; the per-segment tags must still catch what a whole tag caught (a flipped
// byte) and what cutting into segments makes possible (segments swapped, dropped, cut off), naming
// the segment; and the relay (the scheduler) must see only ciphertext. Its receiver opens it as it
// arrives and keeps only the plaintext, yet still checks the sealed bytes' sha256 whole and resumes.
import { createDecipheriv, createHash, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { decodeValue, encodeValue } from '../protocols/codec.ts';
import type { Message, MessageOf } from '../protocols/messages.ts';
import { openSegmentedFile, openValue, readSegmentedHead, resourceContext, SealedProduct, sealToFile } from '../lib/security/seal.ts';
import { Downloads } from '../lib/transport/downloads.ts';
import { OpeningSink } from '../lib/transport/opening-sink.ts';
import { bufferSource, crc32Of, type SinkResult } from '../lib/transport/stream.ts';

const dir = mkdtempSync(join(tmpdir(), 'fdl-seal-stream-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const node = (nodeId: string) => {
  const box = generateKeyPairSync('x25519');
  return { nodeId, boxPrivate: box.privateKey, boxKey: box.publicKey.export({ type: 'spki', format: 'der' }).toString('base64') };
};
const alice = node('worker-2');
const bob = node('scheduler');
const eve = node('worker-3');
const context = resourceContext('a-1', 'a-1.1');
const SEGMENT = 64 * 1024;
// A msgpack bin 32 of 5 segments and a part: the shape of a binary product.
const payload = randomBytes(5 * SEGMENT + 777);
const plain = Buffer.from(encodeValue(payload));

async function sealed(name: string): Promise<{ path: string; sha256: string; size: number }> {
  const path = join(dir, name);
  const r = await sealToFile(bufferSource(plain), [alice, bob], context, path, SEGMENT);
  return { path, ...r };
}

/** The file's bytes, the offset of segment i's sealed bytes, and a writer of a variant. */
function parts(path: string) {
  const bytes = readFileSync(path);
  const found = readSegmentedHead(path);
  if (!found) throw new Error('not a segmented envelope');
  const at = (i: number) => found.ctStart + i * (SEGMENT + 16);
  return { bytes, at, ctStart: found.ctStart };
}

async function openError(path: string, me = alice): Promise<{ code?: string; message: string } | undefined> {
  try {
    await openSegmentedFile(path, me, context, join(dir, 'out.bin'));
    return undefined;
  } catch (e) {
    return e as { code?: string; message: string };
  }
}

t.test('a sealed file opens, segment by segment, into the plaintext for each recipient', async (t) => {
  const s = await sealed('ok.sealed');
  const bytes = readFileSync(s.path);
  t.equal(s.size, bytes.length, 'the size returned is the file');
  t.equal(s.sha256, createHash('sha256').update(bytes).digest('hex'), 'and so is the sha256');
  for (const me of [alice, bob]) {
    const out = join(dir, `open-${me.nodeId}.bin`);
    t.same(await openSegmentedFile(s.path, me, context, out), { size: plain.length });
    t.ok(readFileSync(out).equals(plain), `${me.nodeId} gets the plaintext`);
  }
  // The same bytes are one msgpack value: decoded and opened in memory they are the product too.
  t.ok(Buffer.from(openValue(bytes, alice, context) as Uint8Array).equals(payload), 'opened in memory as well');
  t.match(decodeValue(bytes), { fdlSealed: 2 }, 'a map marked as a sealed envelope');
  // The relay sees no plaintext: no 32-byte window of the product is in the sealed bytes.
  let seen = 0;
  for (let o = 0; o + 32 <= payload.length; o += 4096) if (bytes.includes(payload.subarray(o, o + 32))) seen++;
  t.equal(seen, 0, 'no piece of the plaintext is in the sealed bytes');
});

t.test('a flipped byte, swapped segments, a dropped or cut-off segment, another context or recipient are refused', async (t) => {
  const s = await sealed('tamper.sealed');
  const { bytes, at, ctStart } = parts(s.path);
  const variant = (name: string, b: Buffer) => {
    const p = join(dir, name);
    writeFileSync(p, b);
    return p;
  };

  const flipped = Buffer.from(bytes);
  flipped[at(2) + 100] = (flipped[at(2) + 100] ?? 0) ^ 1;
  const e1 = await openError(variant('flipped', flipped));
  t.equal(e1?.code, 'CHECKSUM_MISMATCH', 'a flipped byte fails');
  t.match(e1?.message, /segment 2 of 6/, 'naming the segment');

  const swapped = Buffer.from(bytes);
  bytes.copy(swapped, at(1), at(2), at(3));
  bytes.copy(swapped, at(2), at(1), at(2));
  const e2 = await openError(variant('swapped', swapped));
  t.equal(e2?.code, 'CHECKSUM_MISMATCH', 'two segments swapped fail');
  t.match(e2?.message, /segment 1 of 6.*reordered/);

  // Segment 3 dropped, the bin 32 length fixed up to match: the head's size no longer fits the bytes.
  const dropped = Buffer.concat([bytes.subarray(0, at(3)), bytes.subarray(at(4))]);
  dropped.writeUInt32BE(dropped.length - ctStart, ctStart - 4);
  const e3 = await openError(variant('dropped', dropped));
  t.equal(e3?.code, 'CHECKSUM_MISMATCH', 'a dropped segment fails');
  t.match(e3?.message, /truncated/);

  // The last (short) segment cut off and the file ending on a whole segment, lengths fixed up: the
  // new last segment was not sealed as the last, and the size in the head does not match.
  const cut = Buffer.from(bytes.subarray(0, at(5)));
  cut.writeUInt32BE(cut.length - ctStart, ctStart - 4);
  t.equal((await openError(variant('cut', cut)))?.code, 'CHECKSUM_MISMATCH', 'a file cut at a segment boundary fails');

  // A file that ends early (a partial copy): refused before a segment is opened.
  t.equal((await openError(variant('short', bytes.subarray(0, bytes.length - 10))))?.code, 'CHECKSUM_MISMATCH', 'a short file fails');

  const other = await openSegmentedFile(s.path, alice, resourceContext('a-1', 'a-1.2'), join(dir, 'x.bin')).then(
    () => undefined,
    (e: { code?: string }) => e,
  );
  t.equal(other?.code, 'CHECKSUM_MISMATCH', 'passed off as another job’s product: refused');
  t.equal((await openError(s.path, eve))?.code, 'OPERATION_FAILED', 'a node it is not sealed for cannot open it');
});

t.test('a product sealed as it is read gives, read in chunks that do not line up with segments, bytes that open', async (t) => {
  const p = await SealedProduct.make(bufferSource(plain), [alice], context, SEGMENT);
  const chunk = 100_000;
  const out = Buffer.alloc(p.size);
  for (let o = 0; o < p.size; o += chunk) p.readInto(o, Math.min(chunk, p.size - o), out, o);
  t.equal(createHash('sha256').update(out).digest('hex'), p.digest(), 'the bytes read are the ones hashed when it was made');
  // A resumed upload reads again from an offset: the same bytes (same key and nonces).
  const again = Buffer.alloc(p.size - 3 * chunk);
  p.readInto(3 * chunk, again.length, again, 0);
  t.ok(again.equals(out.subarray(3 * chunk)), 'read again from an offset: the same bytes');
  const path = join(dir, 'streamed.sealed');
  writeFileSync(path, out);
  await openSegmentedFile(path, alice, context, join(dir, 'streamed.bin'));
  t.ok(readFileSync(join(dir, 'streamed.bin')).equals(plain), 'and open into the plaintext');
  p.close();
});

t.test('the bytes are what docs/PROTOCOL.md says (a segment opened from the formula alone)', async (t) => {
  const s = await sealed('spec.sealed');
  const bytes = readFileSync(s.path);
  // 83 a9 "fdlSealed" 02 a4 "head" c6 <u32 H> <head> a2 "ct" c6 <u32 C> <ct>
  t.ok(bytes.subarray(0, 18).equals(Buffer.from([0x83, 0xa9, ...Buffer.from('fdlSealed'), 0x02, 0xa4, ...Buffer.from('head'), 0xc6])), 'the prefix');
  const h = bytes.readUInt32BE(18);
  const head = decodeValue(bytes.subarray(22, 22 + h)) as { epk: Buffer; iv: Buffer; chunk: number; size: number; keys: Array<Record<string, Buffer | string>> };
  t.ok(bytes.subarray(22 + h, 26 + h).equals(Buffer.from([0xa2, ...Buffer.from('ct'), 0xc6])), 'then ct');
  const n = Math.max(1, Math.ceil(head.size / head.chunk));
  t.equal(bytes.readUInt32BE(26 + h), head.size + 16 * n, 'C = size + 16 n');
  const ct = bytes.subarray(30 + h);
  // The content key, unwrapped as for a whole envelope.
  const entry = head.keys.find((k) => k.to === alice.nodeId) as Record<string, Buffer>;
  const shared = diffieHellman({ privateKey: alice.boxPrivate, publicKey: createPublicKey({ key: head.epk, format: 'der', type: 'spki' }) });
  const kek = Buffer.from(hkdfSync('sha256', shared, entry.salt as Buffer, Buffer.concat([Buffer.from(`fdl-seal-v1\0${alice.nodeId}\0`), head.epk]), 32));
  const w = createDecipheriv('aes-256-gcm', kek, entry.iv as Buffer).setAAD(Buffer.from(context)).setAuthTag(entry.tag as Buffer);
  const key = Buffer.concat([w.update(entry.wrapped as Buffer), w.final()]);
  // The last segment: nonce = iv with its last 4 bytes XOR i; AAD = context 0 u64 size u32 chunk u32 i u8 last.
  const i = n - 1;
  const nonce = Buffer.from(head.iv);
  nonce.writeUInt32BE((nonce.readUInt32BE(8) ^ i) >>> 0, 8);
  const fixed = Buffer.alloc(17);
  fixed.writeBigUInt64BE(BigInt(head.size), 0);
  fixed.writeUInt32BE(head.chunk, 8);
  fixed.writeUInt32BE(i, 12);
  fixed[16] = 1;
  const sealedSegment = ct.subarray(i * (head.chunk + 16));
  const d = createDecipheriv('aes-256-gcm', key, nonce).setAAD(Buffer.concat([Buffer.from(`${context}\0`), fixed]));
  d.setAuthTag(sealedSegment.subarray(sealedSegment.length - 16));
  const last = Buffer.concat([d.update(sealedSegment.subarray(0, sealedSegment.length - 16)), d.final()]);
  t.ok(last.equals(plain.subarray(i * head.chunk)), 'the last segment opens to the end of the plaintext');
});

t.test('opened as it downloads: fed in chunks of any size it writes only the plaintext; a tampered segment or a gap is caught', async (t) => {
  const s = await sealed('sink.sealed');
  const bytes = readFileSync(s.path);
  const feedAll = (b: Buffer, step: number, name: string) => {
    const sink = new OpeningSink(join(dir, 'sink', name), s.sha256, b.length, { me: alice, context });
    let r: SinkResult = { kind: 'ok' };
    for (let o = 0; o < b.length && r.kind === 'ok'; o += step) r = sink.accept(chunk(s.sha256, b, o, step));
    return r;
  };
  for (const step of [1024, 65_536, 100_003, bytes.length]) {
    const r = feedAll(bytes, step, `step-${step}`);
    t.match(r, { kind: 'done', opened: true }, `fed in chunks of ${step} bytes: whole, checked and opened`);
    if (r.kind === 'done') t.ok(readFileSync(r.path).equals(plain), 'into the plaintext');
    t.same(readdirSync(join(dir, 'sink', `step-${step}`)), [`${s.sha256}.open.part`], 'only the plaintext is left (its lead goes when it is done)');
  }
  // Tampered at the source (its chunk's crc32 made over the tampered bytes): the segment fails its tag.
  const flipped = Buffer.from(bytes);
  flipped[parts(s.path).at(3) + 5] = (flipped[parts(s.path).at(3) + 5] ?? 0) ^ 1;
  const bad = feedAll(flipped, 65_536, 'flipped');
  t.match(bad, { kind: 'corrupt', error: { code: 'CHECKSUM_MISMATCH' } }, 'a tampered segment fails the download');
  t.match(bad.kind === 'corrupt' ? bad.error.message : '', /segment 3 of 6/, 'naming the segment');
  t.same(readdirSync(join(dir, 'sink', 'flipped')), [], 'and its files are gone');
  const gap = new OpeningSink(join(dir, 'sink', 'gap'), s.sha256, bytes.length, { me: alice, context });
  t.match(gap.accept(chunk(s.sha256, bytes, 0, 1000)), { kind: 'ok' });
  t.match(gap.accept(chunk(s.sha256, bytes, 2000, 1000)), { kind: 'stale' }, 'a chunk past a gap is dropped (the sender is asked again from the offset held)');
  gap.discard();
  const notMine = new OpeningSink(join(dir, 'sink', 'eve'), s.sha256, bytes.length, { me: eve, context });
  t.match(notMine.accept(chunk(s.sha256, bytes, 0, 65_536)), { kind: 'corrupt', error: { code: 'OPERATION_FAILED', retryable: false } }, 'not sealed for this node: refused at its head');
});

/** A resourceChunk of `bytes` at `offset` (`corrupt`: a byte flipped after its crc32 was taken, as on a bad link). */
function chunk(sha256: string, bytes: Buffer, offset: number, step: number, corrupt = false): MessageOf<'resourceChunk'> {
  const data = Buffer.from(bytes.subarray(offset, Math.min(bytes.length, offset + step)));
  const crc32 = crc32Of(data);
  if (corrupt) data[0] = (data[0] ?? 0) ^ 0xff;
  return { type: 'resourceChunk', resource: sha256, offset, crc32, data };
}

/** A fetchResource a Downloads sent, as `serve` answers it. */
type Ask = { reqId: number; offset: number };

/** The link a Downloads sends on, recording its asks, and how it asks for resource `resourceId` from an offset. */
function recordedLink(resourceId = 'r-1'): { asks: Ask[]; link: (m: Message) => boolean; build: (reqId: number, offset: number) => Message } {
  const asks: Ask[] = [];
  const link = (m: Message) => {
    if (m.type === 'fetchResource') asks.push({ reqId: m.reqId, offset: m.offset ?? 0 });
    return true;
  };
  const build = (reqId: number, offset: number): Message => ({ type: 'fetchResource', reqId, resourceId, ...(offset > 0 ? { offset } : {}) });
  return { asks, link, build };
}

/**
 * A scheduler serving one resource to a Downloads: each fetchResource is answered with its header
 * and chunks from the offset asked. `stopAt`: the link is cut once that many bytes have gone (what
 * is left is served after `reconnected()`); `corruptAt`: the chunk at that offset arrives corrupt once.
 */
function serve(downloads: () => Downloads, asks: Ask[], sha256: string, bytes: Buffer, o: { stopAt?: number; corruptAt?: number; onChunk?: () => void } = {}) {
  const step = 20_000;
  while (asks.length > 0) {
    const ask = asks.shift() as { reqId: number; offset: number };
    downloads().onMessage({ type: 'resourceData', reqId: ask.reqId, resourceId: 'r-1', sha256, size: bytes.length, offset: ask.offset });
    for (let at = ask.offset; at < bytes.length; at += step) {
      // Asked again (a refused chunk, a header that says another offset): that sender stops.
      if (asks.length > 0) break;
      if (o.stopAt !== undefined && at >= o.stopAt) {
        o.stopAt = undefined;
        asks.length = 0;
        return 'cut';
      }
      const corrupt = o.corruptAt !== undefined && at <= o.corruptAt && o.corruptAt < at + step;
      if (corrupt) o.corruptAt = undefined;
      downloads().onMessage(chunk(sha256, bytes, at, step, corrupt));
      o.onChunk?.();
    }
  }
  return 'served';
}

t.test('a sealed download opened as it arrives: the folder never holds the sealed bytes; a cut, a restart and a corrupt chunk resume', async (t) => {
  const s = await sealed('download.sealed');
  const bytes = readFileSync(s.path);
  const folder = join(dir, 'in');
  const { asks, link, build } = recordedLink();
  let downloads = new Downloads(folder, link);
  // What the folder holds, checked after every chunk: never the sealed bytes, never more than the plaintext and the lead.
  let most = 0;
  const look = () => {
    for (const f of readdirSync(folder)) if (f === `${s.sha256}.part` || f === `${s.sha256}.bin`) t.fail(`the sealed bytes were written: ${f}`);
    most = Math.max(most, readdirSync(folder).reduce((n, f) => n + statSync(join(folder, f)).size, 0));
  };

  // Cut mid-way: the same process asks again from what it holds.
  let got = downloads.fetch(build, { sha256: s.sha256, open: { me: alice, context } });
  t.equal(serve(() => downloads, asks, s.sha256, bytes, { stopAt: 100_000, onChunk: look }), 'cut');
  downloads.reconnected();
  t.equal(asks[0]?.offset, 100_000, 'asked again from every byte it had');
  // Then the node restarts mid-way (a new Downloads over the same folder): the download is asked for again.
  serve(() => downloads, asks, s.sha256, bytes, { stopAt: 200_000, onChunk: look });
  got.catch(() => {});
  downloads = new Downloads(folder, link);
  got = downloads.fetch(build, { sha256: s.sha256, open: { me: alice, context } });
  const { ctStart } = parts(s.path);
  const boundary = ctStart + Math.floor((200_000 - ctStart) / (SEGMENT + 16)) * (SEGMENT + 16);
  t.equal(asks.length, 1);
  serve(() => downloads, asks, s.sha256, bytes, { corruptAt: 260_000, onChunk: look });
  const d = await got;
  t.equal(d.resumedFrom, boundary, 'after the restart it resumed from its last whole segment (the plaintext prefix sealed again to rehash it)');
  t.equal(downloads.refused, 1, 'the corrupt chunk was refused and fetched again');
  t.match(d, { opened: true, sha256: s.sha256, size: plain.length }, 'opened, checked against the sha256 of the sealed bytes');
  t.ok(readFileSync(d.path).equals(plain), 'the file is the plaintext');
  t.ok(most <= plain.length + ctStart, `the folder held at most the plaintext and the lead (${most} bytes)`);
  t.same(readdirSync(folder), [`${s.sha256}.open`], 'the finished opening, and nothing else');
  const again = await downloads.fetch(build, { sha256: s.sha256, open: { me: alice, context } });
  t.equal(asks.length, 0, 'fetched again: the finished opening is reused');
  t.equal(again.path, d.path);
});

t.test('a plaintext changed at rest reseals to other bytes: the download fails whole and the next starts from 0', async (t) => {
  const s = await sealed('rot.sealed');
  const bytes = readFileSync(s.path);
  const folder = join(dir, 'rot');
  const { asks, link, build } = recordedLink();
  let downloads = new Downloads(folder, link);
  downloads.fetch(build, { sha256: s.sha256, open: { me: alice, context } }).catch(() => {});
  serve(() => downloads, asks, s.sha256, bytes, { stopAt: 300_000 });
  const partial = join(folder, `${s.sha256}.open.part`);
  const rotted = readFileSync(partial);
  rotted[10] = (rotted[10] ?? 0) ^ 1;
  writeFileSync(partial, rotted);
  downloads = new Downloads(folder, link);
  const failed = downloads.fetch(build, { sha256: s.sha256, open: { me: alice, context } });
  serve(() => downloads, asks, s.sha256, bytes);
  await t.rejects(failed, { code: 'CHECKSUM_MISMATCH' }, 'the whole sha256 of what it resealed and received does not match');
  t.same(readdirSync(folder), [], 'its files are gone');
  const retried = downloads.fetch(build, { sha256: s.sha256, open: { me: alice, context } });
  t.equal(asks[0]?.offset, 0, 'asked again from 0');
  serve(() => downloads, asks, s.sha256, bytes);
  t.ok(readFileSync((await retried).path).equals(plain), 'and then opened right');
});

t.test('bytes that are not a segmented envelope are downloaded as they are, for the caller to open', async (t) => {
  const bytes = Buffer.from(encodeValue(payload));
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const folder = join(dir, 'plain');
  const { asks, link, build } = recordedLink('r-2');
  const downloads = new Downloads(folder, link);
  const got = downloads.fetch(build, { sha256, open: { me: alice, context } });
  serve(() => downloads, asks, sha256, bytes);
  const d = await got;
  t.notOk(d.opened, 'not opened');
  t.ok(readFileSync(d.path).equals(bytes), 'the file is the bytes as sent');
  t.ok(d.path.endsWith(`${sha256}.bin`));
});
