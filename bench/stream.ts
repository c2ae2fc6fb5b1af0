import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Cluster, EXAMPLE_DATA } from '../lib/sim/cluster.ts';
import { floorWallMs, measurePasses } from './stream-floor.ts';
import { type Cleanup, median, type Row, ratio, spread } from './util.ts';

/**
 * 7. Streamed resources: a TestBlob of `bytes` (1 GiB by default) made on worker-1 crosses
 * worker-1 -> scheduler (stored on disk) -> worker-2 (spooled to disk, checked whole) in 1 MiB
 * chunks, each CRC-checked, the whole SHA-256-checked at both hops. Timed from worker-1's first
 * chunk to worker-2's offer of the same bytes (it has them whole and checked, and its job has run).
 * Baseline, same run and machine: bare ws moving the same bytes over the same two hops, one
 * process per end, store-and-forward like ours (bench/bare-ws.mjs). Also each process's peak RSS
 * growth over its idle RSS while the bytes cross it (Linux VmHWM, reset before each repeat).
 */

const BARE = fileURLToPath(new URL('./bare-ws.mjs', import.meta.url));
const MiB = 1024 * 1024;

function child(args: string[]): { proc: ChildProcess; lines: AsyncIterator<string> } {
  const proc = spawn(process.execPath, [BARE, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: proc.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
  return { proc, lines };
}

async function nextJson<T>(lines: AsyncIterator<string>): Promise<T> {
  const { value, done } = await lines.next();
  if (done) throw new Error('a bare-ws process ended early');
  return JSON.parse(value as string) as T;
}

/**
 * One hop of bare ws: ms from the first frame to the last at the sink (with `file`: written there
 * and fsynced), and the CPU both ends spent moving the bytes.
 */
async function bareHop(bytes: number, chunkBytes: number, cleanup: Cleanup, file?: string): Promise<{ ms: number; cpuMs: number }> {
  const sink = child(['sink', String(bytes), ...(file ? [file] : [])]);
  cleanup.add('bare-ws sink', () => sink.proc.kill('SIGKILL'));
  const { port } = await nextJson<{ port: number }>(sink.lines);
  const source = child(['source', `ws://127.0.0.1:${port}`, String(bytes), String(chunkBytes)]);
  cleanup.add('bare-ws source', () => source.proc.kill('SIGKILL'));
  const { ms, cpuMs: sinkCpu } = await nextJson<{ ms: number; cpuMs: number }>(sink.lines);
  const { cpuMs: sourceCpu } = await nextJson<{ cpuMs: number }>(source.lines);
  await new Promise((r) => source.proc.once('exit', r));
  return { ms, cpuMs: sinkCpu + sourceCpu };
}

function rssOf(pid: number): { now: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (f: string) => Number(status.match(new RegExp(`${f}:\\s+(\\d+) kB`))?.[1] ?? 0) * 1024;
  return { now: kb('VmRSS'), peak: kb('VmHWM') };
}

/** A process's CPU seconds (user + system) and bytes it caused to be written to storage (Linux /proc). */
function usageOf(pid: number): { cpu: number; sys: number; written: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  return { cpu: ticks / 100, sys: Number(fields[12]) / 100, written: Number(io.match(/write_bytes:\s+(\d+)/)?.[1] ?? 0) };
}

interface LogLine {
  time: number;
  cpuMs?: number;
}

/** The first line of a node's log with this message, at or after `since`. */
function logLine(file: string, msg: string, since: number): LogLine | undefined {
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.includes(`"msg":"${msg}"`)) continue;
    const parsed = JSON.parse(line) as LogLine;
    if (parsed.time >= since) return parsed;
  }
  return undefined;
}

export async function benchStream(opts: { cleanup: Cleanup; repeats: number; bytes: number; sealed: boolean; chunkBytes?: number }): Promise<Row[]> {
  const { bytes, sealed } = opts;
  const chunkBytes = opts.chunkBytes ?? MiB;
  const dir = opts.cleanup.tempDir('fdl-bench-stream-');
  const bare: number[] = [];
  const bareCpu: number[] = [];
  const bareDisk: number[] = [];
  for (let r = 0; r < opts.repeats; r++) {
    const [a, b] = [await bareHop(bytes, chunkBytes, opts.cleanup), await bareHop(bytes, chunkBytes, opts.cleanup)];
    bare.push(a.ms + b.ms);
    bareCpu.push(a.cpuMs + b.cpuMs);
    // The same with each hop's bytes written to a file and fsynced at its end: the disk's share.
    const file = join(dir, 'bare.bin');
    bareDisk.push((await bareHop(bytes, chunkBytes, opts.cleanup, file)).ms + (await bareHop(bytes, chunkBytes, opts.cleanup, file)).ms);
  }
  const floor = measurePasses(bytes, chunkBytes, dir, sealed);

  const token = randomBytes(16).toString('hex');
  const shard = (i: number) => join(EXAMPLE_DATA, `california_housing.MedInc${i}.csv`);
  const cluster = await Cluster.start({
    dir,
    projectName: 'stream',
    projectToken: token,
    workers: [
      { name: 'worker-1', files: [shard(1)], extra: { streaming: { chunk_bytes: chunkBytes } } },
      { name: 'worker-2', files: [shard(2)], extra: { streaming: { chunk_bytes: chunkBytes } } },
    ],
    scheduler: { store: { max_resource_bytes: 2 * bytes + MiB }, retry: { attempt_timeout_ms: 1_200_000 }, streaming: { chunk_bytes: chunkBytes } },
    env: { FDL_LOG_LEVEL: 'info' },
  });
  opts.cleanup.add('stream cluster', () => cluster.stop());
  const wb = await cluster.connect('bench-stream');
  opts.cleanup.add('stream workbench', () => wb.close());
  const project = await wb.project(token);
  const names = ['scheduler', 'worker-1', 'worker-2'];
  const ours: number[] = [];
  /** worker-1's first chunk -> the scheduler has the whole product, checked and fsynced. */
  const upload: number[] = [];
  /** The scheduler's CPU (its whole process) while it received the product. */
  const receiveCpu: number[] = [];
  const growth: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  /** Each process's CPU seconds and storage writes over the whole artifact (robust to other load, unlike wall time). */
  const cpu: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  const sys: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  const written: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < opts.repeats; r++) {
    const base: Record<string, number> = {};
    for (const n of names) {
      const pid = cluster.pid(n) as number;
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
      base[n] = rssOf(pid).now;
    }
    const usage0 = Object.fromEntries(names.map((n) => [n, usageOf(cluster.pid(n) as number)]));
    const since = Date.now();
    const blob = { kind: 'TestBlob' as const, bytes, seed: 1000 + r };
    const handle = await project.submit({
      name: 'stream',
      steps: [{ kind: 'Sequential', init: { kind: 'Noop' }, operation: blob, final: { kind: 'Noop' }, ...(sealed ? { encryption: true } : {}) }],
    });
    await handle.done();
    for (const n of names) (growth[n] as number[]).push(rssOf(cluster.pid(n) as number).peak - (base[n] as number));
    for (const n of names) {
      const u = usageOf(cluster.pid(n) as number);
      const u0 = usage0[n] as { cpu: number; sys: number; written: number };
      (cpu[n] as number[]).push(u.cpu - u0.cpu);
      (sys[n] as number[]).push(u.sys - u0.sys);
      (written[n] as number[]).push(u.written - u0.written);
    }
    // Sealed: from worker-1 starting to seal its product to worker-2 having opened it (the
    // plaintext in its file, every segment authenticated); plain: first chunk to worker-2's offer.
    const t0 = logLine(join(dir, 'worker-1.log'), sealed ? 'sealing a streamed product' : 'sending a streamed product from offset', since)?.time;
    const t1 = logLine(join(dir, 'worker-2.log'), sealed ? 'sealed input opened' : 'sending a streamed product from offset', since)?.time;
    const stored = logLine(join(dir, 'scheduler.log'), 'streamed product received whole', since);
    if (t0 === undefined || t1 === undefined || stored === undefined) throw new Error('the stream bench found no send times in the logs');
    ours.push(t1 - t0);
    upload.push(stored.time - t0);
    receiveCpu.push(stored.cpuMs ?? Number.NaN);
    // The next repeat's bytes go to the same disks: drop this artifact's files first.
    await wb.deleteArtifact(handle.id);
  }
  wb.close();
  await cluster.stop();

  const gib = bytes / (1024 * MiB);
  const rateOf = (msTaken: number) => `${((2 * bytes) / MiB / (msTaken / 1000)).toFixed(0)} MiB/s`;
  const oursMs = median(ours);
  const bareMs = median(bare);
  const bareDiskMs = median(bareDisk);
  const how = `${sealed ? 'sealed' : 'plain'}${chunkBytes === MiB ? '' : ` ${chunkBytes / MiB} MiB chunks`}`;
  process.stdout.write(
    `[stream] ${how} ${gib.toFixed(2)} GiB worker -> scheduler -> worker: ${(oursMs / 1000).toFixed(2)} s (${rateOf(oursMs)} over 2 hops, spread ${ratio(spread(ours))}) ` +
      `vs bare ws ${(bareMs / 1000).toFixed(2)} s (${rateOf(bareMs)}), bare ws + write + fsync at each end ${(bareDiskMs / 1000).toFixed(2)} s (${rateOf(bareDiskMs)}); first hop (to the store, fsynced) ${(median(upload) / 1000).toFixed(2)} s, ` +
      `second hop and the job between ${((oursMs - median(upload)) / 1000).toFixed(2)} s; ` +
      `scheduler CPU receiving ${(median(receiveCpu) / gib / 1000).toFixed(2)} s per GiB; ` +
      `whole artifact per GiB: CPU ${names.map((n) => `${n} ${(median(cpu[n] as number[]) / gib).toFixed(2)} s (${(median(sys[n] as number[]) / gib).toFixed(2)} s in the kernel)`).join(', ')}; ` +
      `written to storage ${names.map((n) => `${n} ${(median(written[n] as number[]) / gib / (1024 * MiB)).toFixed(2)} GiB`).join(', ')}; peak RSS growth ${names.map((n) => `${n} ${(median(growth[n] as number[]) / MiB).toFixed(0)} MiB`).join(', ')}\n`,
  );
  const rows: Row[] = [
    {
      figure: `stream ${how} ${gib.toFixed(2)} GiB worker->scheduler->worker (throughput)`,
      value: rateOf(oursMs),
      baseline: `bare ws ${rateOf(bareMs)}`,
      ratio: ratio(bareMs / oursMs),
      note: `goal >= 0.7x (crc32 per chunk, sha256 whole at each hop, disk at each end${sealed ? ', sealed and opened' : ''})`,
    },
    {
      figure: `stream ${how} ${gib.toFixed(2)} GiB: vs bare ws writing + fsyncing each hop`,
      value: rateOf(oursMs),
      baseline: `bare ws+disk ${rateOf(bareDiskMs)}`,
      ratio: ratio(bareDiskMs / oursMs),
      note: 'the same bytes, to disk at each hop end (what a store must do)',
    },
  ];
  // The ceiling: what the goal's ratio could be at best here, whatever the code (bench/stream-floor.ts).
  const bareCpuMs = median(bareCpu);
  const floorMs = floorWallMs(bareMs, bareCpuMs, floor.mandatoryMs, floor.cores);
  const leanFloorMs = floorWallMs(bareMs, bareCpuMs, floor.leanMs, floor.cores);
  const p = floor.passMs;
  process.stdout.write(
    `[stream] ${how} floor: bare ws CPU ${(bareCpuMs / 1000).toFixed(2)} s over both hops; one pass over the bytes, CPU: ` +
      `AES-GCM seal ${(p.seal / 1000).toFixed(2)} s, open ${(p.open / 1000).toFixed(2)} s, SHA-256 ${(p.sha256 / 1000).toFixed(2)} s, CRC-32 ${(p.crc32 / 1000).toFixed(2)} s, ` +
      `write to the page cache ${(p.write / 1000).toFixed(2)} s; a crossing's mandatory passes ${(floor.mandatoryMs / 1000).toFixed(2)} s on ${floor.cores} cores: ` +
      `floor ${(floorMs / 1000).toFixed(2)} s, best reachable ratio ${ratio(bareMs / floorMs)} (SHA-256 at the consumer only: ${ratio(bareMs / leanFloorMs)})\n`,
  );
  rows.push({
    figure: `stream ${how} ${gib.toFixed(2)} GiB: best ratio reachable here (floor)`,
    value: `${(floorMs / 1000).toFixed(2)} s`,
    baseline: `bare ws ${(bareMs / 1000).toFixed(2)} s`,
    ratio: ratio(bareMs / floorMs),
    note: `bare ws CPU + ${sealed ? 'seal, open, ' : ''}3 SHA-256, 3 CRC-32, 1 write, on ${floor.cores} cores, perfect overlap; ours / floor ${ratio(floorMs / oursMs)}`,
  });
  for (const n of names) {
    rows.push({
      figure: `stream ${how} ${gib.toFixed(2)} GiB: ${n} peak RSS growth`,
      value: `${(median(growth[n] as number[]) / MiB).toFixed(0)} MiB`,
      note: 'goal < 128 MiB',
    });
  }
  return rows;
}
