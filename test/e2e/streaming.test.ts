// Why: a resource larger than a frame must cross every hop in chunks, never whole in memory, checked per
// chunk and whole, resumed after a cut instead of restarted, and a product over the limit must fail its job
// naming its size (it used to make the worker reconnect in a loop). Real processes and sockets throughout.
import { createCipheriv, createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import t from 'tap';
import { encode } from '../../protocols/codec.ts';
import type { Message } from '../../protocols/messages.ts';
import { PROTOCOL_VERSION } from '../../protocols/version.ts';
import { sha256OfFile } from '../../lib/transport/stream.ts';
import { handshakeMessage, signWith } from '../../lib/security/identity.ts';
import { blobSha256 } from '../helpers/blob.ts';
import { countLog, PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster, waitFor, waitForJob, waitForLog, within } from '../helpers/cluster.ts';
import { runFdl } from '../helpers/fdl.ts';
import { storedBytes } from '../helpers/resources.ts';
import { openSqlite } from '../../lib/store/sqlite.ts';
import { RawPeer } from '../helpers/raw-peer.ts';

t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const MiB = 1024 * 1024;
const BIG = 200 * MiB;
/** Peak RSS growth allowed per process while 200 MiB crosses it (the bench measures the tight figure). */
const RSS_GROWTH_MAX = 128 * MiB;
const RAW_TOKEN = randomBytes(16).toString('hex');

const { cluster, wb, token, dir } = await testCluster(t, 'streaming', {
  workers: [
    // Each link is cut once mid-stream: worker-1 while it uploads its product, worker-2 while it downloads it.
    { name: 'worker-1', files: [SHARDS[0] as string], env: { FDL_FAULTS: `cut-upload-once=${64 * MiB}` } },
    { name: 'worker-2', files: [SHARDS[1] as string], env: { FDL_FAULTS: `cut-download-once=${64 * MiB}` } },
  ],
  projects: [{ name: 'raw', token: RAW_TOKEN }],
  scheduler: {
    store: { max_resource_bytes: 256 * MiB },
    retry: { max_attempts: 3, initial_interval_ms: 100, max_interval_ms: 1000, worker_grace_ms: 30_000, attempt_timeout_ms: 120_000 },
  },
});

/** Resident memory of a process now, and its peak since the last reset (Linux /proc). */
function rss(pid: number): { now: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(status.match(new RegExp(`${field}:\\s+(\\d+) kB`))?.[1] ?? 0) * 1024;
  return { now: kb('VmRSS'), peak: kb('VmHWM') };
}
/** Starts a process's peak-RSS count afresh (writing 5 to clear_refs resets VmHWM). */
function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

t.test('200 MiB crosses worker -> scheduler -> worker -> initiator -> workbench in chunks, resumed after cuts, RSS flat', async (t) => {
  const pids = Object.fromEntries(['scheduler', 'worker-1', 'worker-2'].map((n) => [n, cluster.pid(n) as number]));
  const base: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) {
    resetPeak(pid);
    base[name] = rss(pid).now;
  }
  resetPeak(process.pid);
  const selfBase = rss(process.pid).now;
  const expected = blobSha256(BIG, 7);

  const blob = { kind: 'TestBlob' as const, bytes: BIG, seed: 7 };
  // init (initiator) -> worker-1 makes the blob -> worker-2 passes it on -> final (initiator) passes it on.
  const handle = await (await wb.project(token)).submit({ name: 'big', steps: [{ kind: 'Sequential', init: { kind: 'Noop' }, operation: blob, final: blob }] });
  await within(handle.done(), { what: 'the 200 MiB artifact to complete', timeoutMs: 600_000 });
  const out = join(dir, 'result.msgpack');
  const got = await within(wb.resultToFile(handle.id, out), { what: 'the 200 MiB result to download', timeoutMs: 300_000 });
  t.equal(got.sha256, expected, 'the workbench got the bytes worker-1 made (sha256)');
  t.equal(statSync(out).size, BIG + 5, 'the whole resource, on disk');
  t.equal(sha256OfFile(out), expected, 'the file on disk matches');
  const status = await wb.status(handle.id);
  t.ok(status.jobs.every((j) => j.state === 'COMPLETED'), 'every job completed');

  for (const [name, pid] of Object.entries(pids)) {
    const growth = rss(pid).peak - (base[name] as number);
    t.ok(growth < RSS_GROWTH_MAX, `${name}: peak RSS grew ${Math.round(growth / MiB)} MiB (< ${RSS_GROWTH_MAX / MiB} MiB) while 200 MiB crossed it`);
  }
  const selfGrowth = rss(process.pid).peak - selfBase;
  t.ok(selfGrowth < RSS_GROWTH_MAX, `the workbench's process: peak RSS grew ${Math.round(selfGrowth / MiB)} MiB`);

  // Resumed, not restarted: the scheduler asked worker-1 again from a non-zero offset, and
  // worker-2 asked the scheduler again from what its partial file held.
  const scheduler = join(dir, 'scheduler.log');
  t.ok(countLog(join(dir, 'worker-1.log'), /cutting the connection mid-stream/) === 1, 'worker-1 cut its link mid-upload');
  t.ok(countLog(join(dir, 'worker-2.log'), /cutting the connection mid-stream/) === 1, 'worker-2 cut its link mid-download');
  t.ok(countLog(scheduler, /"offset":[1-9][0-9]*.*asking from offset/) >= 1, 'the upload resumed from a non-zero offset');
  t.ok(countLog(join(dir, 'worker-1.log'), /"offset":[1-9][0-9]*.*sending a streamed product from offset/) >= 1, 'worker-1 sent from that offset');
  t.ok(countLog(join(dir, 'worker-2.log'), /"offset":[1-9][0-9]*.*download resumed from offset/) >= 1, 'the download resumed from a non-zero offset');

  // A streamed result decodes as a byte string for a workbench that asks for the value.
  const value = (await wb.result(handle.id)) as Uint8Array;
  t.equal(value.byteLength, BIG, 'result() decodes it to its bytes');
});

t.test('a sealed product over the threshold is sealed segment by segment, stored unread by the scheduler, opened by its receiver, RSS flat', async (t) => {
  const size = 96 * MiB;
  const seed = 11;
  // worker-2's download of the sealed input is cut once and gets one corrupt chunk (below its
  // crc32 check): it opens the input as it arrives and keeps only the plaintext, so both must
  // resume from what it opened.
  // worker-1 offers its sealed product by an upload name (it seals and hashes it as the chunks are
  // read, naming the sha256 at the end): its upload is cut once and must resume, checked whole.
  for (const [name, faults] of [
    ['worker-1', `cut-upload-once=${40 * MiB}`],
    ['worker-2', `corrupt-download-once=${24 * MiB},cut-download-once=${48 * MiB}`],
  ] as const) {
    cluster.kill(name, 'SIGKILL');
    await cluster.exited(name);
    cluster.startWorker(name, { env: { FDL_FAULTS: faults } });
  }
  await cluster.waitForWorkers(['worker-1', 'worker-2']);
  const worker2Log = join(dir, 'worker-2.log');
  const resumedBefore = countLog(worker2Log, /"offset":[1-9][0-9]*.*download resumed from offset/);
  const pids = Object.fromEntries(['scheduler', 'worker-1', 'worker-2'].map((n) => [n, cluster.pid(n) as number]));
  const base: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) {
    resetPeak(pid);
    base[name] = rss(pid).now;
  }
  const blob = { kind: 'TestBlob' as const, bytes: size, seed };
  // worker-1 makes it, sealed for worker-2, which opens it and passes it on sealed for the initiator.
  const handle = await (await wb.project(token)).submit({
    name: 'sealed',
    steps: [{ kind: 'Sequential', init: { kind: 'Noop' }, operation: blob, final: blob, encryption: true }],
  });
  await within(handle.done(), { what: 'the sealed chain to complete', timeoutMs: 300_000 });
  // Sealed whole, a 96 MiB product would be whole twice in its producer (plaintext and envelope) and its receiver.
  for (const [name, pid] of Object.entries(pids)) {
    const growth = rss(pid).peak - (base[name] as number);
    t.ok(growth < RSS_GROWTH_MAX, `${name}: peak RSS grew ${Math.round(growth / MiB)} MiB (< ${RSS_GROWTH_MAX / MiB} MiB) while 96 MiB crossed it sealed`);
  }
  const got = await within(wb.resultToFile(handle.id, join(dir, 'sealed.msgpack')), { what: 'the sealed chain result' });
  t.equal(got.sha256, blobSha256(size, seed), 'the result is the bytes TestBlob made, opened right at every hop');
  const offers = countLog(join(dir, 'scheduler.log'), new RegExp(`"jobId":"${handle.id}\\.[12]".*streamed product offered`));
  t.ok(offers >= 2, `both workers' sealed products were streamed (${offers} offers)`);
  t.ok(
    countLog(join(dir, 'scheduler.log'), new RegExp(`"jobId":"${handle.id}\\.1".*"offset":[1-9][0-9]*.*"digestAtEnd":true.*asking from offset`)) >= 1,
    'worker-1 offered it by an upload name (its sha256 at the end), and the cut upload resumed from a non-zero offset',
  );
  t.ok(countLog(worker2Log, /"asItArrived":true.*sealed input opened/) >= 1, 'worker-2 opened its input as it arrived, not in a second pass');
  t.equal(countLog(worker2Log, /fault injection: corrupting a downloaded chunk/), 1, 'a chunk of its download arrived corrupt');
  t.ok(countLog(worker2Log, /a chunk was refused; asking again/) >= 1, 'and was refused and asked again');
  t.ok(countLog(worker2Log, /"offset":[1-9][0-9]*.*download resumed from offset/) > resumedBefore, 'the cut download resumed from a non-zero offset');

  // What the scheduler stored of the workers' products: segmented envelopes, with no plaintext in them.
  const schedulerDir = join(dir, 'scheduler');
  const db = openSqlite(join(schedulerDir, 'scheduler.sqlite'), { readonly: true, fileMustExist: true });
  const ids = (db.prepare('SELECT id FROM resources WHERE job_id IN (?, ?)').all(`${handle.id}.1`, `${handle.id}.2`) as Array<{ id: string }>).map(
    (r) => r.id,
  );
  const sealedSha = (db.prepare('SELECT sha256 FROM resources WHERE job_id = ?').get(`${handle.id}.1`) as { sha256: string }).sha256;
  db.close();
  t.equal(ids.length, 2, 'both workers\' products are stored');
  // worker-2 kept only the opened plaintext of worker-1's sealed product: never the sealed bytes.
  const spool = join(dir, 'worker-2', 'spool', 'in');
  t.ok(existsSync(join(spool, `${sealedSha}.open`)), 'worker-2 holds the opened input');
  for (const f of readdirSync(spool)) t.notOk(f.startsWith(sealedSha) && !f.endsWith('.open'), `and no file of the sealed bytes (${f})`);
  const key = createHash('sha256').update(`fdl-test-blob\0${seed}`).digest();
  const plain = createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(MiB));
  for (const id of ids) {
    const stored = storedBytes(schedulerDir, id);
    if (!stored) return t.fail(`no stored bytes for ${id}`);
    t.ok(stored.subarray(0, 12).equals(Buffer.from([0x83, 0xa9, ...Buffer.from('fdlSealed'), 0x02])), `${id} is a segmented envelope ({fdlSealed: 2, …})`);
    let seen = 0;
    for (let o = 0; o < MiB; o += 64 * 1024) if (stored.includes(plain.subarray(o, o + 32))) seen++;
    t.equal(seen, 0, `${id} holds none of the plaintext`);
  }
});

t.test('a sealed download resumes from the opened plaintext after a restart of its receiver, and is checked whole', async (t) => {
  const size = 160 * MiB;
  const seed = 31;
  const spool = join(dir, 'worker-2', 'spool', 'in');
  const opening = () => {
    for (const f of existsSync(spool) ? readdirSync(spool) : []) {
      if (f.endsWith('.open.part') && statSync(join(spool, f)).size >= 16 * MiB) return f;
    }
    return undefined;
  };
  const blob = { kind: 'TestBlob' as const, bytes: size, seed };
  const handle = await (await wb.project(token)).submit({
    name: 'sealed-restart',
    steps: [{ kind: 'Sequential', init: { kind: 'Noop' }, operation: blob, final: blob, encryption: true }],
  });
  // worker-2 has opened part of worker-1's sealed product into plaintext: now it dies.
  await waitFor(() => opening() !== undefined, { what: `part of the sealed input opened in ${spool}`, timeoutMs: 300_000 });
  const part = opening() as string;
  t.notOk(readdirSync(spool).includes(part.replace('.open.part', '.part')), 'no file of the sealed bytes beside the plaintext');
  const resumedBefore = countLog(join(dir, 'worker-2.log'), /"offset":[1-9][0-9]*.*input download resumed from offset/);
  cluster.kill('worker-2', 'SIGKILL');
  await cluster.exited('worker-2');
  cluster.startWorker('worker-2', { env: {} });
  await within(handle.done(), { what: 'the sealed chain to complete after worker-2 restarted', timeoutMs: 300_000 });
  t.ok(
    countLog(join(dir, 'worker-2.log'), /"offset":[1-9][0-9]*.*input download resumed from offset/) > resumedBefore,
    'the restarted worker-2 resumed its download from a non-zero offset (the plaintext it had, sealed again to rehash it)',
  );
  const got = await within(wb.resultToFile(handle.id, join(dir, 'sealed-restart.msgpack')), { what: 'the result' });
  t.equal(got.sha256, blobSha256(size, seed), 'the result is the bytes TestBlob made: the resumed input opened right');
});

t.test('an upload resumes by content hash after a restart of the producing worker and of the scheduler', async (t) => {
  const size = 160 * MiB;
  const incoming = join(dir, 'scheduler', 'resources', 'incoming');
  const partSize = (sha: string) => {
    try {
      return statSync(join(incoming, `${sha}.part`)).size;
    } catch {
      return 0;
    }
  };
  const scheduler = join(dir, 'scheduler.log');
  const resumedOffers = (artifactId: string) => countLog(scheduler, new RegExp(`"jobId":"${artifactId}\\.1".*"offset":[1-9][0-9]*.*asking from offset`));
  for (const [seed, restart] of [
    [21, 'worker-1'],
    [22, 'scheduler'],
  ] as const) {
    const sha = blobSha256(size, seed);
    const blob = { kind: 'TestBlob' as const, bytes: size, seed };
    const handle = await (await wb.project(token)).submit({ name: `restart-${restart}`, steps: [{ kind: 'Sequential', init: { kind: 'Noop' }, operation: blob, final: { kind: 'Noop' } }] });
    // Part of worker-1's product is on the scheduler's disk: now one end of the upload dies.
    await waitFor(() => partSize(sha) >= 16 * MiB, { what: `part of the upload in ${incoming}` });
    cluster.kill(restart, 'SIGKILL');
    await cluster.exited(restart);
    if (restart === 'scheduler') await cluster.startScheduler();
    else cluster.startWorker('worker-1', { env: {} });
    await within(handle.done(), { what: `the artifact to complete after the ${restart} restarted`, timeoutMs: 300_000 });
    // A rerun of TestBlob with the same seed makes the same bytes: the same sha256, so the
    // scheduler (its partial file rehashed after its own restart) asks only for the rest.
    t.ok(resumedOffers(handle.id) >= 1, `after a restart of ${restart}, the upload resumed from a non-zero offset`);
  }
});

t.test('a product over store.max_resource_bytes fails its job naming its size and the limit', async (t) => {
  const size = 257 * MiB;
  const handle = await (await wb.project(token)).submit({
    name: 'oversize',
    steps: [{ kind: 'Sequential', init: { kind: 'Noop' }, operation: { kind: 'TestBlob', bytes: size, seed: 1 }, final: { kind: 'Noop' } }],
  });
  const error = await handle.done().then(
    () => undefined,
    (e: Error & { code?: string }) => e,
  );
  t.equal(error?.code, 'RESOURCE_TOO_LARGE', 'the artifact ends with the cause');
  t.match(error?.message, String(size + 5), 'naming the size');
  t.match(error?.message, String(256 * MiB), 'and the limit');
  const status = await wb.status(handle.id);
  const failed = status.jobs.find((j) => j.lastError?.code === 'RESOURCE_TOO_LARGE');
  t.equal(failed?.attempt, 1, 'refused at once: not retried (the same product would be refused again)');
  await waitForLog(join(dir, 'scheduler.log'), /a product over the resource limit was refused/);
});

t.test('a corrupt chunk is refused with CHUNK_CORRUPT and asked again; the product then completes', async (t) => {
  // A raw worker holding the only data of the "raw" project: it gets the job and streams by hand.
  const sign = generateKeyPairSync('ed25519');
  const box = generateKeyPairSync('x25519');
  const me = {
    signKey: sign.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
    boxKey: box.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
    fingerprint: '',
    signPrivate: sign.privateKey,
    boxPrivate: box.privateKey,
  };
  const peer = new RawPeer(cluster.url);
  t.teardown(() => peer.ws.terminate());
  const c = await peer.open();
  const hello: Message = {
    type: 'workerHello',
    protocolVersion: PROTOCOL_VERSION,
    nodeId: 'raw-worker',
    name: 'raw-worker',
    signKey: me.signKey,
    boxKey: me.boxKey,
    joinToken: cluster.joinToken,
    signature: signWith(me, handshakeMessage(c.schedulerId, 'raw-worker', c.nonce, me.boxKey)),
    projects: [{ token: RAW_TOKEN, datasources: [{ name: 'raw-1', rows: 100, features: [] }] }],
    holding: [],
  };
  peer.raw(encode(hello));
  t.match(await peer.next(), { type: 'welcome' });

  const next = async (type: string): Promise<Message> => {
    for (;;) {
      const m = await within(peer.next(), { what: `a ${type} from the scheduler` });
      if (m.type === type) return m;
    }
  };
  const handle = await (await wb.project(RAW_TOKEN)).submit({ name: 'raw', steps: [{ kind: 'Parallel', operation: { kind: 'Noop' } }] });
  const assign = await next('assignJob');
  if (assign.type !== 'assignJob') return t.fail('no assignment');
  const bytes = randomBytes(3 * MiB);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  peer.raw(encode({ type: 'jobStarted', jobId: assign.jobId, attempt: assign.attempt }));
  peer.raw(encode({ type: 'productOffer', jobId: assign.jobId, attempt: assign.attempt, sha256, size: bytes.length }));
  t.match(await next('resourceWant'), { sha256, offset: 0 }, 'the scheduler asks from offset 0');
  const chunk = (offset: number, corrupt = false) => {
    const data = Buffer.from(bytes.subarray(offset, offset + MiB));
    const sum = crc32(data) >>> 0;
    if (corrupt) data[10] = (data[10] ?? 0) ^ 0xff;
    return encode({ type: 'resourceChunk', resource: sha256, offset, crc32: sum, data });
  };
  peer.raw(chunk(0));
  peer.raw(chunk(MiB, true));
  const refused = await next('error');
  t.match(refused, { type: 'error', error: { code: 'CHUNK_CORRUPT' } }, 'the corrupt chunk is refused with its code');
  t.match(refused.type === 'error' ? refused.error.message : '', `offset ${MiB}`, 'naming its offset');
  t.match(await next('resourceWant'), { sha256, offset: MiB }, 'and asked again from its offset (the good chunk before it is kept)');
  peer.raw(chunk(MiB));
  peer.raw(chunk(2 * MiB));
  await waitForJob(handle, { state: 'COMPLETED', worker: 'raw-worker' });
  await within(handle.done(), { what: 'the raw artifact to complete' });
  const stored = await wb.resultToFile(handle.id, join(dir, 'raw.bin'));
  t.equal(stored.sha256, sha256, 'the stored product is the bytes sent, whole');
  t.equal(countLog(join(dir, 'scheduler.log'), /a chunk was refused/), 1, 'one refusal logged');
  // The CLI streams the same result to a file.
  const out = join(dir, 'cli-result.bin');
  const cli = await runFdl(['result', handle.id, '--out', out], { FDL_URL: cluster.url, FDL_TOKEN: cluster.workbenchToken });
  t.equal(cli.code, 0, `fdl result --out exits 0 ${cli.stderr}`);
  t.match(JSON.parse(cli.stdout), { file: out, bytes: bytes.length, sha256 }, 'and says what it wrote');
  t.equal(sha256OfFile(out), sha256, 'the file holds the result');

  // An offer by upload name: the bytes all in are not taken until the sha256 named at the end
  // matches them; a wrong one fails the attempt, and the retry's right one completes it.
  const named = await (await wb.project(RAW_TOKEN)).submit({ name: 'raw-named', steps: [{ kind: 'Parallel', operation: { kind: 'Noop' } }] });
  const upload = randomBytes(32).toString('hex');
  for (const [attempt, digest] of [
    [1, 'f'.repeat(64)],
    [2, sha256],
  ] as const) {
    const a = await next('assignJob');
    if (a.type !== 'assignJob') return t.fail('no assignment');
    t.equal(a.attempt, attempt, `attempt ${attempt} assigned`);
    const offer: Message = { type: 'productOffer', jobId: a.jobId, attempt: a.attempt, upload, size: bytes.length };
    peer.raw(encode(offer));
    const want = await next('resourceWant');
    t.match(want, { sha256: upload }, 'the scheduler asks for the upload by its name');
    const from = want.type === 'resourceWant' ? want.offset : 0;
    for (let o = from; o < bytes.length; o += MiB) {
      const data = Buffer.from(bytes.subarray(o, o + MiB));
      peer.raw(encode({ type: 'resourceChunk', resource: upload, offset: o, crc32: crc32(data) >>> 0, data }));
    }
    peer.raw(encode({ type: 'productDigest', jobId: a.jobId, attempt: a.attempt, upload, sha256: digest }));
  }
  await within(named.done(), { what: 'the artifact offered by upload name to complete' });
  const namedStatus = await wb.status(named.id);
  t.match(namedStatus.jobs[0], { state: 'COMPLETED', attempt: 2, lastError: { code: 'CHECKSUM_MISMATCH' } }, 'the wrong digest failed attempt 1 (CHECKSUM_MISMATCH)');
  t.equal((await wb.resultToFile(named.id, join(dir, 'raw-named.bin'))).sha256, sha256, 'attempt 2 stored the bytes under the sha256 named');
});
