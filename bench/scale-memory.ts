import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster } from '../lib/sim/cluster.ts';
import { DEFAULT_WORKERS_PER_PROCESS, syntheticShard } from '../lib/sim/simulate.ts';
import { distributions, steps } from '../lib/workbench/builders.ts';
import type { Step } from '../protocols/entities.ts';

/**
 * The scheduler's memory with N connected workers (issue 10): resident memory split as Linux
 * counts it (anonymous = V8 heap + native allocations; file = mapped code), at 0 and N workers
 * and after A artifacts. `--snapshot` also writes V8 heap snapshots of the scheduler (SIGUSR2)
 * into the run's directory, to see which objects own the memory (Chrome DevTools, Memory tab).
 * Between artifacts it reports every tenth; a leak shows as heapUsed/arrayBuffers climbing after
 * the idle GC at the end. BENCH_NODE_OPTIONS adds node flags (to every process it starts).
 * Under the load it samples the scheduler's RSS every 100 ms and counts its CPU per job;
 * `--alloc-profile` writes V8's sampling heap profile of that load (every allocation, garbage
 * included: what sizes the heap); `--heap-growing-percent P` sets the scheduler's config value.
 * Usage: node --import tsx bench/scale-memory.ts [--workers N] [--artifacts A] [--snapshot]
 *        [--alloc-profile] [--heap-growing-percent P]
 */

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function memory(pid: number): Record<string, number> {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string) => Number(status.match(new RegExp(`${key}:\\s+(\\d+)`))?.[1] ?? Number.NaN);
  return { rss: kib('VmRSS') / 1024, anon: kib('RssAnon') / 1024, file: kib('RssFile') / 1024 };
}

/** The scheduler's garbage collections so far, as its preload last wrote them: count and main-thread pause (ms) by kind. */
function collections(pid: number): Record<string, { count: number; ms: number }> {
  try {
    return (JSON.parse(readFileSync(join(dir, `mem-${pid}.json`), 'utf8')) as { gc?: Record<string, { count: number; ms: number }> }).gc ?? {};
  } catch {
    return {};
  }
}

/** What the scheduler's preload (bench/memory-preload.cjs) last wrote: process.memoryUsage() in MiB. */
function inside(pid: number): Record<string, number> {
  try {
    const { mem } = JSON.parse(readFileSync(join(dir, `mem-${pid}.json`), 'utf8')) as { mem: Record<string, number> };
    return Object.fromEntries(Object.entries(mem).filter(([k]) => k !== 'rss').map(([k, v]) => [k, v / 2 ** 20]));
  } catch {
    return {};
  }
}

/** The scheduler's CPU time so far (user + system, ms), from /proc/<pid>/stat. */
function cpuMs(pid: number): number {
  const fields = (readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1] ?? '').split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

const pct = (xs: number[], p: number): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))] ?? Number.NaN;

const fmt = (m: Record<string, number>) => Object.entries(m).map(([k, v]) => `${k} ${v.toFixed(1)} MiB`).join(', ');
const report = (label: string, pid: number) => process.stdout.write(`[memory] ${label}: ${fmt(memory(pid))}; ${fmt(inside(pid))}\n`);

const n = arg('--workers', 1000);
const artifacts = arg('--artifacts', 0);
const snapshot = process.argv.includes('--snapshot');
const allocProfile = process.argv.includes('--alloc-profile');
/** The scheduler's `heap_growing_percent` (lib/heap.ts); unset: the config's default. 0: V8's own sizing. */
const growing = process.argv.includes('--heap-growing-percent') ? arg('--heap-growing-percent', 0) : undefined;
const dir = join(process.env.TMPDIR ?? '/tmp', `fdl-scale-memory-${n}-${Date.now()}`);
const token = randomBytes(16).toString('hex');
const workers = Array.from({ length: n }, (_, i) => ({ name: `w-${String(i).padStart(4, '0')}`, files: [] as string[] }));
mkdirSync(dir, { recursive: true });
for (const [i, w] of workers.entries()) {
  const file = join(dir, `shard-${i}.csv`);
  writeFileSync(file, syntheticShard(i, 10));
  w.files.push(file);
}
const hosted: typeof workers = [];
let snaps = 0;
async function snap(pid: number, label: string): Promise<void> {
  if (!snapshot) return;
  const before = readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot')).length;
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 600; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const files = readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot'));
    if (files.length > before) {
      await new Promise((r) => setTimeout(r, 3000));
      process.stdout.write(`[memory] snapshot ${++snaps} (${label}): ${files.sort().at(-1)}\n`);
      return;
    }
  }
  throw new Error('no heap snapshot within 300 s');
}

// Scheduler alone first (no workers), then the workers.
const c = await Cluster.start({
  dir,
  projectName: 'scale',
  projectToken: token,
  workers: hosted, // empty at the start: the scheduler alone is measured first
  scheduler: { connection_limits: { max_unauthenticated_per_address: 64 }, ...(growing === undefined ? {} : { heap_growing_percent: growing }) },
  env: {
    FDL_LOG_LEVEL: 'warn',
    FDL_MEM_DIR: dir,
    ...(allocProfile ? { FDL_ALLOC_PROFILE_DIR: dir } : {}),
    NODE_OPTIONS: [
      `--require=${join(import.meta.dirname, 'memory-preload.cjs')}`,
      ...(snapshot ? [`--heapsnapshot-signal=SIGUSR2`, `--diagnostic-dir=${dir}`] : []),
      ...(allocProfile && !snapshot ? [`--require=${join(import.meta.dirname, 'alloc-profile-preload.cjs')}`] : []),
      process.env.BENCH_NODE_OPTIONS ?? '',
    ].join(' '),
  },
  startTimeoutMs: 600_000,
});
try {
  const pid = c.pid('scheduler') as number;
  await new Promise((r) => setTimeout(r, 2000));
  report('0 workers', pid);
  await snap(pid, '0 workers');
  hosted.push(...workers);
  const per = Math.min(DEFAULT_WORKERS_PER_PROCESS, Math.ceil(n / 4));
  for (let i = 0; i < n; i += per) c.startHost(`host-${i / per}`, workers.slice(i, i + per).map((w) => w.name));
  const t0 = Date.now();
  await c.waitForWorkers(workers.map((w) => w.name), 600_000);
  process.stdout.write(`[memory] ${n} workers up in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
  await new Promise((r) => setTimeout(r, 5000));
  report(`${n} workers`, pid);
  await snap(pid, `${n} workers`);
  if (artifacts > 0) {
    const wb = await c.connect('bench-memory');
    const project = await wb.project(token);
    const artifact: Step[] = [steps.parallel({ kind: 'Noop' }, distributions.collect()), steps.finalize({ kind: 'Noop' })];
    // RSS sampled every 100 ms under the load (the every-tenth reports alone miss the peaks).
    const rss: number[] = [];
    const sampler = setInterval(() => rss.push(memory(pid).rss ?? Number.NaN), 100);
    if (allocProfile && !snapshot) process.kill(pid, 'SIGUSR2'); // start sampling every allocation
    const gc0 = collections(pid);
    const cpu0 = cpuMs(pid);
    const t1 = Date.now();
    for (let a = 1; a <= artifacts; a++) {
      await (await project.submit(artifact)).result();
      if (a === 1 || a % Math.max(1, Math.floor(artifacts / 10)) === 0) {
        report(`after ${a} artifacts (${((Date.now() - t1) / 1000).toFixed(0)} s)`, pid);
      }
    }
    const wall = Date.now() - t1;
    const cpu = cpuMs(pid) - cpu0;
    clearInterval(sampler);
    if (allocProfile && !snapshot) {
      process.kill(pid, 'SIGUSR2'); // write the allocation profile
      process.stdout.write(`[memory] allocation profile (sampled, garbage included) in ${dir}\n`);
    }
    const jobs = artifacts * (n + 1);
    process.stdout.write(
      `[memory] under load: RSS min ${pct(rss, 0).toFixed(0)}, median ${pct(rss, 50).toFixed(0)}, p90 ${pct(rss, 90).toFixed(0)}, ` +
        `max ${pct(rss, 100).toFixed(0)} MiB (${rss.length} samples); ${jobs} jobs: wall ${(wall / jobs).toFixed(3)} ms/job, ` +
        `scheduler CPU ${(cpu / jobs).toFixed(3)} ms/job\n`,
    );
    await new Promise((r) => setTimeout(r, 2500)); // the preload's next write
    const gc1 = collections(pid);
    const gcLine = Object.entries(gc1)
      .map(([k, v]) => `${k} ${v.count - (gc0[k]?.count ?? 0)} (${(v.ms - (gc0[k]?.ms ?? 0)).toFixed(0)} ms)`)
      .join(', ');
    process.stdout.write(`[memory] garbage collections under the load (main-thread pauses): ${gcLine}\n`);
    wb.close();
    await new Promise((r) => setTimeout(r, 5000));
    report(`after ${artifacts} artifacts, 5 s idle`, pid);
    await snap(pid, `after ${artifacts} artifacts`);
  }
} finally {
  await c.stop();
}
