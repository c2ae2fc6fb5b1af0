// Why: a data holder's first contact with the system is its YAML file. A mistake there must end
// in one clear line naming the file, the field and what was expected, never in a stack trace.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, parseConfig, retryPolicyOf, schedulerUrlsOf } from '../lib/config.ts';
import { RetryPolicySchema } from '../protocols/entities.ts';
import { FDL_BIN } from '../lib/sim/cluster.ts';
import { PROCESS_FILE_TIMEOUT_MS } from './helpers/cluster.ts';
import { FDL_RUN_TIMEOUT_MS, startFdl } from './helpers/fdl.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const problemsOf = (yaml: string, env: NodeJS.ProcessEnv = {}): string[] => {
  try {
    parseConfig(yaml, 'node.yaml', '/base', env);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
};

t.test('a valid worker config, with defaults and paths resolved against the file', async (t) => {
  const c = parseConfig(
    'mode: worker\nname: w1\nscheduler: { url: "ws://127.0.0.1:1456" }\ndatasources:\n  - { name: d, path: data/x.csv, projects: [abcdefgh12] }\n',
    'w.yaml',
    '/base',
  );
  t.equal(c.workdir, '/base/workdir');
  t.equal(c.datasources[0]?.path, '/base/data/x.csv');
  t.equal(c.heartbeat_ms, 5000);
  t.equal(c.allow_resource_download, true);
});

t.test("the scheduler's heap sizing (lib/heap.ts): 30% by default, 0 for V8's own, never negative", async (t) => {
  const base = 'mode: scheduler\nname: s\nprojects: [ { name: p, token: abcdefgh12 } ]\n';
  t.equal(parseConfig(base, 's.yaml', '/base').heap_growing_percent, 30);
  t.equal(parseConfig(`${base}heap_growing_percent: 0\n`, 's.yaml', '/base').heap_growing_percent, 0);
  t.match(problemsOf(`${base}heap_growing_percent: -1\n`), [/^heap_growing_percent: /]);
});

t.test('${ENV} substitution', async (t) => {
  const c = parseConfig(
    'mode: scheduler\nname: s\nprojects: [ { name: p, token: "${TOKEN}" } ]\nworkdir: ${DIR}/s\n',
    's.yaml',
    '/base',
    { TOKEN: 'secret-token-1', DIR: '/data' },
  );
  t.equal(c.projects[0]?.token, 'secret-token-1');
  t.equal(c.workdir, '/data/s');
  t.same(problemsOf('mode: scheduler\nname: s\nprojects: [ { name: p, token: "${NOPE}" } ]\n'), [
    'projects[0].token: environment variable NOPE is not set',
  ]);
});

t.test('each mistake names its field and what was expected', async (t) => {
  t.match(problemsOf('name: x\nprojects: [{name: p, token: abcdefgh12}]\n'), [/^mode: /]);
  t.match(problemsOf('mode: scheduler\nname: s\nlisten: { port: "high" }\nprojects: [{name: p, token: abcdefgh12}]\n'), [
    /^listen\.port: .*number/,
  ]);
  t.match(problemsOf('mode: worker\nname: w\ndatasources: [{ name: d, path: x.csv, projects: [abcdefgh12] }]\n'), [
    /^scheduler\.url: a worker needs the url of its scheduler/,
  ]);
  t.match(problemsOf('mode: scheduler\nname: s\nprojects: [{name: p, token: abcdefgh12}]\nlisten_port: 3\n'), [/listen_port/]);
  t.match(problemsOf('mode: nope\nname: "bad name!"\n'), [/^mode: /, /^name: /]);
  t.match(problemsOf('mode: [unclosed\n'), [/not valid YAML/]);
  t.match(problemsOf('- a list\n'), [/expected a mapping/]);
});

t.test('fdl node with a bad config exits 2 with a message and no stack trace', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fdl-config-'));
  const file = join(dir, 'worker.yaml');
  writeFileSync(file, 'mode: worker\nname: w1\nheartbeat_ms: fast\ndatasources: []\n');
  const r = spawnSync(process.execPath, [FDL_BIN, 'node', '--config', file], { encoding: 'utf8', timeout: FDL_RUN_TIMEOUT_MS });
  t.equal(r.status, 2);
  t.match(r.stderr, file);
  t.match(r.stderr, /heartbeat_ms: .*number/);
  t.match(r.stderr, /scheduler\.url/);
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');

  const missing = spawnSync(process.execPath, [FDL_BIN, 'node', '--config', join(dir, 'nope.yaml')], { encoding: 'utf8', timeout: FDL_RUN_TIMEOUT_MS });
  t.equal(missing.status, 2);
  t.match(missing.stderr, /nope\.yaml: .*cannot read the file: ENOENT/s);

  const data = join(dir, 'data.yaml');
  writeFileSync(data, `mode: standalone\nname: s\nlisten: { port: 0 }\nprojects: [{name: p, token: abcdefgh12}]\ndatasources: [{ name: d, path: ${join(dir, 'missing.csv')}, projects: [abcdefgh12] }]\n`);
  const noData = spawnSync(process.execPath, [FDL_BIN, 'node', '--config', data], { encoding: 'utf8', timeout: FDL_RUN_TIMEOUT_MS });
  t.equal(noData.status, 1);
  t.match(noData.stderr, /DATA_UNAVAILABLE: .*missing\.csv/);
  t.notMatch(noData.stderr, /\n\s+at /, 'no stack trace');
});

t.test('plain ws:// only on loopback unless insecure: true', async (t) => {
  const base = 'name: s\nprojects: [{name: p, token: abcdefgh12}]\n';
  t.match(problemsOf(`mode: scheduler\n${base}listen: { host: 0.0.0.0 }\n`), [/^listen\.host: 0\.0\.0\.0 is not loopback; configure tls/]);
  t.same(problemsOf(`mode: scheduler\n${base}listen: { host: 0.0.0.0 }\ninsecure: true\n`), [], 'allowed in so many words');
  t.same(problemsOf(`mode: scheduler\n${base}listen: { host: 0.0.0.0 }\ntls: { cert: c.pem, key: k.pem }\n`), [], 'allowed with TLS');
  t.same(problemsOf(`mode: scheduler\n${base}listen: { host: "::1" }\n`), [], 'IPv6 loopback');
  const worker = (url: string, extra = '') =>
    problemsOf(`mode: worker\nname: w\nscheduler: { url: "${url}" }\ndatasources: [{ name: d, path: x.csv, projects: [abcdefgh12] }]\n${extra}`);
  t.match(worker('ws://10.1.2.3:1456'), [/^scheduler\.url: plain ws:\/\/ to 10\.1\.2\.3 is not loopback/]);
  t.same(worker('wss://10.1.2.3:1456'), []);
  t.same(worker('ws://localhost:1456'), []);
  t.same(worker('ws://10.1.2.3:1456', 'insecure: true\n'), []);
});

// Two schedulers on PostgreSQL: the lease time (docs/DEPLOY.md, "What the lease time trades").
t.test('ha.lease_ms: 4 s by default, bounded, naming its field', async (t) => {
  const scheduler = 'mode: scheduler\nname: s\nprojects: [{name: p, token: abcdefgh12}]\n';
  t.equal(parseConfig(scheduler, 's.yaml', '/base').ha.lease_ms, 4000);
  t.equal(parseConfig(`${scheduler}ha: { lease_ms: 10000 }\n`, 's.yaml', '/base').ha.lease_ms, 10000);
  t.match(problemsOf(`${scheduler}ha: { lease_ms: 100 }\n`), [/^ha\.lease_ms: .*500/]);
  t.match(problemsOf(`${scheduler}ha: { lease: 100 }\n`), [/^ha: .*lease/]);
});

// An active scheduler and its standby: a worker dials them in turn (docs/DEPLOY.md).
t.test('scheduler.urls: several schedulers, each checked like url; url or urls, not both', async (t) => {
  const worker = (scheduler: string) =>
    `mode: worker\nname: w\nscheduler: ${scheduler}\ndatasources: [{ name: d, path: x.csv, projects: [abcdefgh12] }]\n`;
  const c = parseConfig(worker('{ urls: ["ws://127.0.0.1:1456", "ws://127.0.0.1:1457"] }'), 'w.yaml', '/base');
  t.same(schedulerUrlsOf(c), ['ws://127.0.0.1:1456', 'ws://127.0.0.1:1457']);
  t.same(schedulerUrlsOf(parseConfig(worker('{ url: "ws://127.0.0.1:1456" }'), 'w.yaml', '/base')), ['ws://127.0.0.1:1456']);
  t.match(problemsOf(worker('{ url: "ws://127.0.0.1:1", urls: ["ws://127.0.0.1:2"] }')), [/^scheduler\.urls: give url or urls, not both/]);
  t.match(problemsOf(worker('{ urls: [] }')), [/^scheduler\.urls: /]);
  t.match(problemsOf(worker('{ urls: ["http://x"] }')), [/^scheduler\.urls\[0\]: a ws:\/\/ or wss:\/\/ URL/]);
  t.match(problemsOf(worker('{ urls: ["wss://10.0.0.1:1456", "ws://10.1.2.3:1456"] }')), [/^scheduler\.url: plain ws:\/\/ to 10\.1\.2\.3 is not loopback/]);
});

// The retry section and the wire RetryPolicy derive from one definition: a section that
// validates gives a policy the scheduler takes; one that would not is refused here, naming its field.
t.test('every retry section either starts or is refused at validation, naming its field', async (t) => {
  const scheduler = 'mode: scheduler\nname: s\nprojects: [{name: p, token: abcdefgh12}]\n';
  const refused: Array<[string, RegExp]> = [
    ['{ initial_interval_ms: 40000 }', /^retry\.initial_interval_ms: 40000 must not exceed retry\.max_interval_ms \(30000\)$/],
    ['{ initial_interval_ms: 100, max_interval_ms: 50 }', /^retry\.initial_interval_ms: 100 must not exceed retry\.max_interval_ms \(50\)$/],
    ['{ max_interval_ms: 100 }', /^retry\.initial_interval_ms: 500 must not exceed retry\.max_interval_ms \(100\)$/],
    ['{ max_attempts: 0 }', /^retry\.max_attempts: /],
    ['{ max_attempts: 101 }', /^retry\.max_attempts: /],
    ['{ max_interval_ms: 3600001 }', /^retry\.max_interval_ms: /],
    ['{ initial_interval_ms: 3600001 }', /^retry\.initial_interval_ms: /],
    ['{ attempt_timeout_ms: 86400001 }', /^retry\.attempt_timeout_ms: /],
    ['{ worker_grace_ms: 86400001 }', /^retry\.worker_grace_ms: /],
    ['{ backoff_coefficient: 0.5 }', /^retry\.backoff_coefficient: /],
    ['{ jitter: 2 }', /^retry\.jitter: /],
    ['{ maxAttempts: 3 }', /^retry: .*maxAttempts/],
  ];
  for (const [retry, problem] of refused) {
    const problems = problemsOf(`${scheduler}retry: ${retry}\n`);
    t.equal(problems.length, 1, `retry: ${retry} is one problem: ${problems.join(' | ')}`);
    t.match(problems[0], problem, `retry: ${retry}`);
  }
  const accepted = [
    '{}',
    '{ initial_interval_ms: 40000, max_interval_ms: 40000 }',
    '{ initial_interval_ms: 0, max_interval_ms: 0 }',
    '{ max_attempts: 1 }',
    '{ max_attempts: 100, backoff_coefficient: 10, jitter: 1 }',
    '{ initial_interval_ms: 3600000, max_interval_ms: 3600000, attempt_timeout_ms: 86400000, worker_grace_ms: 86400000 }',
    '{ attempt_timeout_ms: 100, worker_grace_ms: 0, jitter: 0, backoff_coefficient: 1 }',
  ];
  for (const retry of accepted) {
    t.same(problemsOf(`${scheduler}retry: ${retry}\n`), [], `retry: ${retry} validates`);
    const policy = retryPolicyOf(parseConfig(`${scheduler}retry: ${retry}\n`, 's.yaml', '/base', {}));
    t.ok(RetryPolicySchema.safeParse(policy).success, `retry: ${retry} gives a policy the scheduler takes`);
  }
  t.match(retryPolicyOf(parseConfig(`${scheduler}retry: { max_attempts: 5, worker_grace_ms: 7 }\n`, 's.yaml', '/base', {})), {
    maxAttempts: 5,
    workerGraceMs: 7,
    initialIntervalMs: 500,
  });
});

t.test('streaming sizes follow a smaller max_payload_bytes unless set; a set size that does not fit is named', async (t) => {
  const scheduler = 'mode: scheduler\nname: s\nprojects: [{name: p, token: abcdefgh12}]\n';
  const defaults = parseConfig(scheduler, 's.yaml', '/base', {});
  t.same(defaults.streaming, { threshold_bytes: 1024 * 1024, chunk_bytes: 1024 * 1024 }, 'the defaults');
  const small = parseConfig(`${scheduler}max_payload_bytes: 1048576\n`, 's.yaml', '/base', {});
  t.ok(small.streaming.chunk_bytes < 1048576 && small.streaming.threshold_bytes < 1048576, 'max_payload_bytes alone starts: the sizes shrink to fit');
  t.equal(small.streaming.chunk_bytes, 1048576 - 64 * 1024);
  t.match(problemsOf(`${scheduler}max_payload_bytes: 1048576\nstreaming: { chunk_bytes: 1048576 }\n`), [/^streaming\.chunk_bytes: 1048576 does not fit a frame of max_payload_bytes 1048576/]);
  t.match(problemsOf(`${scheduler}max_payload_bytes: 2048\n`), [/^max_payload_bytes: 2048 leaves no room/]);
});

t.test('plan.holder_wait_ms: 30 s by default, 0 to 10 min, named when refused', async (t) => {
  const scheduler = 'mode: scheduler\nname: s\nprojects: [{name: p, token: abcdefgh12}]\n';
  t.equal(parseConfig(scheduler, 's.yaml', '/base', {}).plan.holder_wait_ms, 30_000, 'the default');
  for (const ok of [0, 600_000]) t.equal(parseConfig(`${scheduler}plan: { holder_wait_ms: ${ok} }\n`, 's.yaml', '/base', {}).plan.holder_wait_ms, ok);
  for (const bad of ['{ holder_wait_ms: 600001 }', '{ holder_wait_ms: -1 }', '{ holder_wait_ms: 1.5 }']) {
    t.match(problemsOf(`${scheduler}plan: ${bad}\n`), [/^plan\.holder_wait_ms: /], `plan: ${bad} is refused, naming the field`);
  }
  t.match(problemsOf(`${scheduler}plan: { holderWaitMs: 5 }\n`), [/^plan: .*holderWaitMs/], 'an unknown key is named');
});

t.test('fdl node with a retry section the scheduler cannot take exits 2 with one line, no zod dump', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fdl-config-'));
  const file = join(dir, 'scheduler.yaml');
  writeFileSync(
    file,
    `mode: scheduler\nname: s\nworkdir: ${join(dir, 'work')}\nlisten: { port: 0 }\nprojects: [{name: p, token: abcdefgh12}]\nretry: { initial_interval_ms: 40000 }\n`,
  );
  const r = spawnSync(process.execPath, [FDL_BIN, 'node', '--config', file], { encoding: 'utf8', timeout: FDL_RUN_TIMEOUT_MS });
  t.equal(r.status, 2, r.stderr);
  const problems = r.stderr.split('\n').filter((l) => l.startsWith('  - '));
  t.same(problems, ['  - retry.initial_interval_ms: 40000 must not exceed retry.max_interval_ms (30000)']);
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  t.notMatch(r.stderr, /ZodError|"code":|"path":/, 'no zod dump');
});

t.test('fdl node starts with an edge retry section that validates', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fdl-config-'));
  const file = join(dir, 'scheduler.yaml');
  writeFileSync(
    file,
    `mode: scheduler\nname: s\nworkdir: ${join(dir, 'work')}\nlisten: { port: 0 }\nprojects: [{name: p, token: abcdefgh12}]\nretry: { initial_interval_ms: 40000, max_interval_ms: 40000, max_attempts: 1 }\n`,
  );
  // Info lines on: the test waits for "scheduler listening" (CI runs with FDL_LOG_LEVEL=warn).
  const node = startFdl(['node', '--config', file], { FDL_LOG_LEVEL: 'info' });
  t.teardown(async () => {
    node.kill('SIGKILL');
    await node.ended;
  });
  await node.stderrMatch(/scheduler listening/, { what: 'the scheduler listening' });
  node.kill('SIGTERM');
  const end = await node.ended;
  t.equal(end.code, 0, `it started and stopped cleanly: ${end.stderr}`);
});
