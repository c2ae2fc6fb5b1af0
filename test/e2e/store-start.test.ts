// Why: a scheduler whose store is lost or damaged used to start silently as a brand-new network,
// forgetting every artifact and every pinned node key (anyone with a join token could then claim
// a known node's id). Run as an operator would: the node must refuse with one line and exit 2, and
// start a new network only when told to with --init-store, the old files kept aside.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { stringify } from 'yaml';
import { FDL_BIN } from '../../lib/sim/cluster.ts';
import { PROCESS_FILE_TIMEOUT_MS } from '../helpers/cluster.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const dir = mkdtempSync(join(tmpdir(), 'fdl-store-start-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const workdir = join(dir, 'scheduler');
const dbFile = join(workdir, 'scheduler.sqlite');
const config = join(dir, 'scheduler.yaml');
writeFileSync(
  config,
  stringify({
    mode: 'scheduler',
    name: 'scheduler',
    workdir,
    listen: { host: '127.0.0.1', port: 0 },
    projects: [{ name: 'california', token: randomBytes(16).toString('hex') }],
  }),
);

interface Started {
  child: ChildProcess;
  /** The first line on stdout ("listening"), or undefined if the process ended first. */
  listening: Promise<string | undefined>;
  exited: Promise<{ code: number | null; stderr: string }>;
}

function startScheduler(...flags: string[]): Started {
  const child = spawn(process.execPath, [FDL_BIN, 'node', '--config', config, ...flags], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FDL_LOG_LEVEL: 'warn' },
  });
  let stdout = '';
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += String(d);
  });
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => child.once('exit', (code) => resolve({ code, stderr })));
  const listening = new Promise<string | undefined>((resolve) => {
    child.stdout?.on('data', (d) => {
      stdout += String(d);
      if (stdout.includes('\n')) resolve(stdout.split('\n')[0]);
    });
    void exited.then(() => resolve(undefined));
  });
  // Generous bound: a node that neither listens nor exits is a failure, not a hang.
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  void exited.then(() => clearTimeout(timer));
  return { child, listening, exited };
}

/** Starts the scheduler, checks it listens, stops it with SIGTERM (exit 0). */
async function startAndStop(t: Test, ...flags: string[]): Promise<string> {
  const node = startScheduler(...flags);
  const line = await node.listening;
  t.match(line, /"event":"listening"/, `it starts${flags.length ? ` with ${flags.join(' ')}` : ''}`);
  node.child.kill('SIGTERM');
  const { code, stderr } = await node.exited;
  t.equal(code, 0, 'and stops cleanly');
  return stderr;
}

/** Starts the scheduler, expects it to refuse: exit 2 and one line on stderr. */
async function refusedStart(t: Test, line: RegExp): Promise<void> {
  const node = startScheduler();
  t.equal(await node.listening, undefined, 'it does not listen');
  const { code, stderr } = await node.exited;
  t.equal(code, 2, 'it exits 2, as for a bad config');
  t.equal(stderr.trim().split('\n').length, 1, `one line on stderr: ${stderr.trim()}`);
  t.match(stderr, line);
  t.match(stderr, /restore it from a backup, or start a new network with fdl node --init-store\n$/, 'saying both ways out');
  t.notMatch(stderr, /\n\s+at /, 'no stack trace');
}

t.test('a fresh, empty work directory starts without any flag', async (t) => {
  await startAndStop(t);
  t.ok(existsSync(join(workdir, 'network.json')), 'and marks the network it now holds');
});

t.test('scheduler.sqlite cut to 0 bytes: refused', async (t) => {
  writeFileSync(dbFile, '');
  await refusedStart(t, /^fdl: .*scheduler\.sqlite is empty \(0 bytes\), but this work directory has held network n-[0-9a-f-]+ \(since [0-9T:.-]+Z\)/);
  t.equal(statSync(dbFile).size, 0, 'the file is left as it was');
});

t.test('scheduler.sqlite deleted: refused', async (t) => {
  rmSync(dbFile);
  await refusedStart(t, /^fdl: .*scheduler\.sqlite is missing, but this work directory has held network n-/);
  t.notOk(existsSync(dbFile), 'no new empty store was made');
});

t.test('--init-store starts a new network, the old files kept aside', async (t) => {
  const stderr = await startAndStop(t, '--init-store');
  t.match(stderr, /started a new network \(--init-store\)/, 'the operator is told in the log');
  t.equal(readdirSync(workdir).filter((f) => f.startsWith('replaced-')).length, 1, 'the old files are in a replaced-* folder');
  await startAndStop(t);
});

t.test('a damaged page: refused at start, not when a query reaches it', async (t) => {
  const size = statSync(dbFile).size;
  t.ok(size > 8 * 4096, `the store has pages to damage (${size} bytes)`);
  // Page 1 (the header and the schema) stays; every page from the 5th on is overwritten.
  const fd = openSync(dbFile, 'r+');
  writeSync(fd, Buffer.alloc(size - 4 * 4096, 0xa5), 0, size - 4 * 4096, 4 * 4096);
  closeSync(fd);
  await refusedStart(t, /^fdl: .*scheduler\.sqlite (is damaged \(PRAGMA quick_check: |cannot be read \()/);
  await startAndStop(t, '--init-store');
});
