// Why: the receiving end of a stream must refuse a bad chunk without losing the good ones, and a restart of the
// receiver (a new process over the same partial file) must resume from what the file holds, not from 0; an
// upload whose producer names its sha256 at the end must still be checked whole before it is taken.
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { CHUNK_HEADER_BYTES } from '../protocols/chunk-frame.ts';
import { decode } from '../protocols/codec.ts';
import type { MessageOf } from '../protocols/messages.ts';
import { SealedProduct } from '../lib/security/seal.ts';
import { Uploads } from '../lib/store/uploads.ts';
import { bufferSource, ChunkSender, ChunkSink, crc32Of, MAX_REFUSED_CHUNKS } from '../lib/transport/stream.ts';

const dir = mkdtempSync(join(tmpdir(), 'fdl-stream-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const CHUNK = 64 * 1024;
const bytes = randomBytes(10 * CHUNK + 123);
const sha = createHash('sha256').update(bytes).digest('hex');
const chunkAt = (offset: number, corrupt = false): MessageOf<'resourceChunk'> => {
  const data = Buffer.from(bytes.subarray(offset, offset + CHUNK));
  const crc32 = crc32Of(data);
  if (corrupt) data[0] = (data[0] ?? 0) ^ 1;
  return { type: 'resourceChunk', resource: sha, offset, crc32, data };
};

t.test('a sink refuses a corrupt chunk, keeps the good ones, drops stale ones, and checks the whole', async (t) => {
  const sink = new ChunkSink(join(dir, 'a.part'), sha, bytes.length);
  t.match(sink.accept(chunkAt(0)), { kind: 'ok' });
  const refused = sink.accept(chunkAt(CHUNK, true));
  t.match(refused, { kind: 'refused', offset: CHUNK, gaveUp: false, error: { code: 'CHUNK_CORRUPT' } }, 'refused, asked again from its offset');
  t.match(sink.accept(chunkAt(2 * CHUNK)), { kind: 'stale' }, 'a chunk sent before the re-ask is dropped');
  let r = sink.accept(chunkAt(CHUNK));
  for (let o = 2 * CHUNK; o < bytes.length; o += CHUNK) r = sink.accept(chunkAt(o));
  t.match(r, { kind: 'done' }, 'whole and checked');
  t.ok(readFileSync(join(dir, 'a.part')).equals(bytes), 'the file holds the bytes');
});

t.test('a sink gives up after too many corrupt chunks in a row', async (t) => {
  const sink = new ChunkSink(join(dir, 'b.part'), sha, bytes.length);
  let r = sink.accept(chunkAt(0, true));
  for (let i = 0; i < MAX_REFUSED_CHUNKS; i++) r = sink.accept(chunkAt(0, true));
  t.match(r, { kind: 'refused', gaveUp: true });
  sink.discard();
});

t.test('a sink opened again over a partial file (a restart) resumes from what it holds', async (t) => {
  const path = join(dir, 'c.part');
  const first = new ChunkSink(path, sha, bytes.length, true);
  for (let o = 0; o < 4 * CHUNK; o += CHUNK) first.accept(chunkAt(o));
  first.close();
  const again = new ChunkSink(path, sha, bytes.length, true);
  t.equal(again.offset, 4 * CHUNK, 'the receiver says it has 4 chunks');
  t.equal(again.resumedFrom, 4 * CHUNK);
  let r = again.accept(chunkAt(4 * CHUNK));
  for (let o = 5 * CHUNK; o < bytes.length; o += CHUNK) r = again.accept(chunkAt(o));
  t.match(r, { kind: 'done' }, 'the rehashed prefix and the rest make the whole sha256');
});

t.test('a sink whose bytes do not make the sha256 says so and removes its file', async (t) => {
  const sink = new ChunkSink(join(dir, 'd.part'), 'f'.repeat(64), bytes.length);
  let r = sink.accept({ ...chunkAt(0), resource: 'f'.repeat(64) });
  for (let o = CHUNK; o < bytes.length; o += CHUNK) r = sink.accept({ ...chunkAt(o), resource: 'f'.repeat(64) });
  t.match(r, { kind: 'corrupt', error: { code: 'CHECKSUM_MISMATCH' } });
});

t.test('uploads are keyed by content: a second offer of the same bytes resumes the first', async (t) => {
  const uploads = new Uploads(join(dir, 'incoming'));
  const offer = { jobId: 'a-1.1', attempt: 1, nodeId: 'w1' };
  t.same(uploads.begin(offer, sha, bytes.length), { offset: 0, resumedFrom: 0 });
  uploads.receive('w1', chunkAt(0));
  t.equal(uploads.receive('w2', chunkAt(CHUNK)), undefined, 'a node that did not offer the bytes may not send them');
  t.same(uploads.begin({ ...offer, attempt: 2 }, sha, bytes.length), { offset: CHUNK, resumedFrom: 0 }, 'offered again: from the offset held');
  let r = uploads.receive('w1', chunkAt(CHUNK));
  for (let o = 2 * CHUNK; o < bytes.length; o += CHUNK) r = uploads.receive('w1', chunkAt(o));
  t.equal(r?.kind, 'done');
  t.same(r?.offers.map((o) => o.attempt).sort(), [1, 2], 'both offers complete with it');
});

t.test('a sender keeps at most its window unwritten, its frames decode to the chunks, and it fills written frames again', async (t) => {
  const pending: Array<() => void> = [];
  // What a socket does with a frame before its callback: takes its bytes (decoded below from the copy).
  const frames: Uint8Array[] = [];
  const buffers = new Set<ArrayBufferLike>();
  const sender = new ChunkSender(
    {
      sendFrame: (frame, cb) => {
        frames.push(Uint8Array.from(frame));
        buffers.add(frame.buffer);
        pending.push(() => cb());
        return true;
      },
    },
    sha,
    bufferSource(bytes),
    CHUNK,
  );
  sender.start(0);
  t.equal(frames.length, 8, 'stops at the window until the socket takes frames');
  while (pending.length > 0) pending.shift()?.();
  t.equal(frames.length, 11, 'then sends the rest');
  t.equal(buffers.size, 8 + 1, 'the chunks after the window went in frames already written (the last, shorter chunk has its own)');
  const sink = new ChunkSink(join(dir, 'e.part'), sha, bytes.length);
  let last = '';
  for (const f of frames) {
    t.ok(f.byteLength <= CHUNK_HEADER_BYTES + CHUNK);
    const d = decode(f);
    if (!d.ok || d.message.type !== 'resourceChunk') return t.fail('not a chunk');
    last = sink.accept(d.message).kind;
  }
  t.equal(last, 'done', 'the receiver gets the whole resource');
});

t.test('the sweep removes partial uploads untouched since the cutoff, not open ones', async (t) => {
  const uploads = new Uploads(join(dir, 'sweep'));
  uploads.begin({ jobId: 'a-2.1', attempt: 1, nodeId: 'w1' }, sha, bytes.length);
  uploads.receive('w1', chunkAt(0));
  const other = createHash('sha256').update('other').digest('hex');
  new ChunkSink(join(dir, 'sweep', `${other}.part`), other, 10).close();
  t.equal(uploads.sweep(Date.now() - 60_000), 0, 'nothing is older than the cutoff');
  t.equal(uploads.sweep(Date.now() + 60_000), 1, 'the abandoned one goes, the open one stays');
  t.equal(uploads.begin({ jobId: 'a-2.1', attempt: 1, nodeId: 'w1' }, sha, bytes.length).offset, CHUNK, 'the open upload kept its bytes');
});

t.test('an upload offered by name is checked whole against the sha256 its producer names at the end, before or after the last chunk', async (t) => {
  const name = 'a'.repeat(64);
  const named = (offset: number, corrupt = false) => ({ ...chunkAt(offset, corrupt), resource: name });
  const feed = (uploads: Uploads, from: number, to = bytes.length) => {
    let r: ReturnType<Uploads['receive']>;
    for (let o = from; o < to; o += CHUNK) r = uploads.receive('w1', named(o));
    return r;
  };
  const offer = { jobId: 'a-3.1', attempt: 1, nodeId: 'w1' };

  // The digest after the bytes: every byte in is not enough.
  const uploads = new Uploads(join(dir, 'by-name'));
  t.same(uploads.begin(offer, name, bytes.length, true), { offset: 0, resumedFrom: 0 });
  t.match(feed(uploads, 0), { kind: 'ok' }, 'every byte in, no digest yet: not done');
  t.equal(uploads.digest('w2', name, sha), undefined, 'only the node that offered the upload may name its digest');
  const done = uploads.digest('w1', name, sha);
  t.match(done, { kind: 'done', sha256: sha, size: bytes.length }, 'then the digest completes it, under its sha256');
  t.same(done?.offers.map((o) => o.jobId), ['a-3.1']);
  if (done?.kind === 'done') t.ok(readFileSync(done.path).equals(bytes), 'the file holds the bytes');

  // The digest before the last chunk; a wrong one fails it whole.
  const early = new Uploads(join(dir, 'by-name-early'));
  early.begin(offer, name, bytes.length, true);
  feed(early, 0, 4 * CHUNK);
  t.match(early.digest('w1', name, sha), { kind: 'ok' }, 'a digest before the bytes waits for them');
  t.match(feed(early, 4 * CHUNK), { kind: 'done', sha256: sha }, 'and the last chunk completes it');
  const wrong = new Uploads(join(dir, 'by-name-wrong'));
  wrong.begin(offer, name, bytes.length, true);
  feed(wrong, 0);
  t.match(wrong.digest('w1', name, 'f'.repeat(64)), { kind: 'corrupt', error: { code: 'CHECKSUM_MISMATCH' } }, 'bytes that do not make the named sha256 fail');
  t.same(readdirSync(join(dir, 'by-name-wrong')), [], 'and their file is gone');

  // A scheduler restart mid-upload: the partial file is rehashed, the rest resumed, the whole checked.
  const first = new Uploads(join(dir, 'by-name-restart'));
  first.begin(offer, name, bytes.length, true);
  feed(first, 0, 3 * CHUNK);
  const again = new Uploads(join(dir, 'by-name-restart'));
  t.same(again.begin(offer, name, bytes.length, true), { offset: 3 * CHUNK, resumedFrom: 3 * CHUNK }, 'resumed from what the file holds');
  feed(again, 3 * CHUNK);
  t.match(again.digest('w1', name, sha), { kind: 'done', sha256: sha }, 'the rehashed prefix and the rest make the named sha256');
  // Whole before the restart, the digest lost with the link: the next offer finds the file whole and waits for the digest.
  const whole = new Uploads(join(dir, 'by-name-whole'));
  whole.begin(offer, name, bytes.length, true);
  feed(whole, 0);
  const after = new Uploads(join(dir, 'by-name-whole'));
  t.same(after.begin(offer, name, bytes.length, true), { offset: bytes.length, resumedFrom: bytes.length });
  t.match(after.finishWhole(name), { kind: 'ok' }, 'whole, its sha256 still to come');
  t.match(after.digest('w1', name, sha), { kind: 'done', sha256: sha });
});

t.test('a product sealed as it is read hashes the bytes as a sender reads them, and a re-ask from earlier does not upset it', async (t) => {
  const box = generateKeyPairSync('x25519');
  const me = { nodeId: 'w2', boxKey: box.publicKey.export({ type: 'spki', format: 'der' }).toString('base64') };
  const product = SealedProduct.streamed(bufferSource(bytes), [me], 'ctx', 100_000);
  const frames: Buffer[] = [];
  let ended = false;
  const link = {
    sendFrame: (frame: Uint8Array, cb: (err?: Error) => void) => {
      frames.push(Buffer.from(frame));
      setImmediate(() => cb());
      return true;
    },
  };
  // A window of chunks the socket never takes, then asked again from an earlier offset (a refused chunk) and sent to the end.
  const stuck = {
    sendFrame: (frame: Uint8Array) => {
      frames.push(Buffer.from(frame));
      return true;
    },
  };
  const first = new ChunkSender(stuck, 'b'.repeat(64), product, CHUNK).start(0);
  t.equal(first.sent, 8 * CHUNK, 'the first sender stopped at its window');
  first.stop();
  await new Promise<void>((resolve) => {
    new ChunkSender(link, 'b'.repeat(64), product, CHUNK, () => {
      ended = true;
      resolve();
    }).start(2 * CHUNK);
  });
  t.ok(ended);
  const whole = Buffer.alloc(product.size);
  for (const f of frames) {
    const d = decode(f);
    if (d.ok && d.message.type === 'resourceChunk') Buffer.from(d.message.data).copy(whole, d.message.offset);
  }
  t.equal(product.digest(), createHash('sha256').update(whole).digest('hex'), 'its digest is the sha256 of the bytes sent');
  // Read out of order (a scheduler that held more than was read here): the digest reads what it skipped.
  const skipped = SealedProduct.streamed(bufferSource(bytes), [me], 'ctx', 100_000);
  const tail = Buffer.alloc(skipped.size - 5 * CHUNK);
  skipped.readInto(5 * CHUNK, tail.length, tail, 0);
  const all = Buffer.alloc(skipped.size);
  skipped.readInto(0, skipped.size, all, 0);
  t.equal(skipped.digest(), createHash('sha256').update(all).digest('hex'), 'reads that skipped ahead are caught up');
});
