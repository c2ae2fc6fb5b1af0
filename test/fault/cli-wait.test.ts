// Why: scripts and CI jobs read `fdl`'s exit code as the outcome. `fdl submit --wait` must follow
// its artifact across a scheduler restart to the real result (exit 0), and end non-zero with one
// clear line when the scheduler stays away longer than its bound: never a silent exit 0. The
// other commands say so the same way when the scheduler is down.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { LONG_SLEEP_MS, PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster, waitForJob } from '../helpers/cluster.ts';
import { runFdl, startFdl } from '../helpers/fdl.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const WORKERS = ['worker-1', 'worker-2'];
const { cluster, wb, token, dir } = await testCluster(t, 'fault-cli', {
  workers: SHARDS.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })),
  // Workers frozen or away during a restart stay members of their jobs: generous.
  scheduler: { retry: { initial_interval_ms: 100, max_interval_ms: 1000, worker_grace_ms: 120_000 } },
});
// The scheduler comes back on the same port: the URL stays valid.
const env = { FDL_URL: cluster.url, FDL_TOKEN: cluster.workbenchToken };

const artifact = (name: string, ms: number) => {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ name, steps: [{ kind: 'Parallel', operation: { kind: 'TestSleep', ms } }, { kind: 'Finalize', operation: { kind: 'Noop' } }] }));
  return file;
};

t.test('submit --wait: the scheduler is SIGKILLed during the wait and started again: the result, exit 0', async (t) => {
  // The workers are frozen from before the submit until after the restart, so the artifact
  // cannot end before the kill, however slow or fast the machine.
  for (const w of WORKERS) cluster.kill(w, 'SIGSTOP');
  t.teardown(() => {
    for (const w of WORKERS) cluster.kill(w, 'SIGCONT');
  });
  const run = startFdl(['submit', artifact('restart', 500), '--project', token, '--wait', '--json'], env);
  const [, id] = await run.stderrMatch(/submitted (a-\S+)/);
  cluster.kill('scheduler', 'SIGKILL');
  t.equal(await cluster.exited('scheduler'), null, 'the scheduler was killed');
  await cluster.startScheduler();
  t.equal(run.stdout(), '', 'no outcome printed while the workers could not have finished');
  for (const w of WORKERS) cluster.kill(w, 'SIGCONT');
  const r = await run.ended;
  t.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  t.same({ id: out.id, result: out.result }, { id, result: { products: 2 } }, 'the result, as if undisturbed');
  t.equal(out.provenance?.complete, true, 'its provenance says it covers every holder');
  t.same(out.provenance?.included, ['worker-1', 'worker-2'], 'both workers are included');
  t.equal((await wb.status(id as string)).state, 'COMPLETED');
});

t.test('submit --wait: the scheduler is SIGKILLed and does not come back: exit 1, one line, after --timeout', async (t) => {
  await cluster.waitForWorkers(WORKERS);
  const run = startFdl(['submit', artifact('gone', LONG_SLEEP_MS), '--project', token, '--wait', '--timeout', '2'], env);
  const [, id] = await run.stderrMatch(/submitted (a-\S+)/);
  await waitForJob(await wb.watch(id as string), { state: 'RUNNING' });
  cluster.kill('scheduler', 'SIGKILL');
  await cluster.exited('scheduler');
  const r = await run.ended;
  t.equal(r.code, 1, 'not a success');
  t.equal(r.stdout, '', 'no result');
  const last = r.stderr.trimEnd().split('\n').at(-1) ?? '';
  t.match(last, new RegExp(`^fdl: lost the scheduler at ws://127\\.0\\.0\\.1:\\d+ and it was not back within 2 s: the outcome of artifact ${id} is unknown`));
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
});

t.test('with the scheduler down, every client command exits non-zero with one line', async (t) => {
  // Still down from the test above.
  const commands = [['status', 'a-1'], ['result', 'a-1'], ['cancel', 'a-1'], ['nodes'], ['projects'], ['submit', artifact('down', 1), '--project', token, '--wait']];
  for (const args of commands) {
    const r = await runFdl(args, env);
    t.equal(r.code, 1, `fdl ${args[0]}: exit 1`);
    t.equal(r.stdout, '', `fdl ${args[0]}: nothing on stdout`);
    t.match(r.stderr, /^fdl: cannot reach the scheduler at ws:\/\/127\.0\.0\.1:\d+: .*\n$/, `fdl ${args[0]}: one line on stderr`);
  }
});
