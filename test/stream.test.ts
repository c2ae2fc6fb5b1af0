// Why: the receiving end of a stream must refuse a bad chunk without losing the good ones, and a restart of the
// receiver (a new process over the same partial file) must resume from what the file holds, not from 0.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { CHUNK_HEADER_BYTES } from '../protocols/chunk-frame.ts';
import { decode } from '../protocols/codec.ts';
import type { MessageOf } from '../protocols/messages.ts';
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
