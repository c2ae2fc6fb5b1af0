// Why: `fdl demo --dashboard` is how a newcomer first sees the dashboard: the demo's cluster stays
// up with its artifacts, the command prints where to look and with which token, and Ctrl-C must
// leave nothing behind (no node process, no temporary folder). Run as a user would: the command
// in its own process, a signal to end it.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import t from 'tap';
import { Workbench } from '../../lib/workbench.ts';
import { PROCESS_FILE_TIMEOUT_MS } from '../helpers/cluster.ts';
import { startFdl } from '../helpers/fdl.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

/** The pids of the processes whose command line names `dir` (the demo's nodes: `fdl node --config DIR/x.yaml`). */
function processesIn(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(dir)) pids.push(Number(entry));
    } catch {
      // ended meanwhile
    }
  }
  return pids;
}

t.test('fdl demo --dashboard keeps the cluster up, prints the dashboard and its token, and SIGINT stops it all', async (t) => {
  const demo = startFdl(['demo', '--dashboard']);
  t.teardown(() => demo.kill('SIGKILL'));
  const [, dir] = (await demo.stderrMatch(/starting a scheduler and 2 workers in (\S+) \.\.\./)) as [string, string];
  const [, url] = (await demo.stdoutMatch(/dashboard\s+(http:\/\/127\.0\.0\.1:\d+\/)/, { what: 'the dashboard URL' })) as [string, string];
  const [, token] = (await demo.stdoutMatch(/workbench token\s+(\S+)/)) as [string, string];
  t.match(demo.stdout(), /count\s/, 'the demo ran first: its figures are printed');
  t.match(demo.stdout(), /Ctrl-C stops/, 'and it says how to stop');
  t.equal(processesIn(dir).length, 3, 'a scheduler and two workers run');

  const page = await fetch(url);
  t.equal(page.status, 200);
  t.match(await page.text(), /<title>fdl dashboard<\/title>/, 'the URL serves the dashboard');

  const wb = await Workbench.connect(url.replace(/^http/, 'ws').replace(/\/$/, ''), { token, name: 'demo-dashboard-test', reconnect: false });
  try {
    const artifacts = await wb.artifacts();
    t.equal(artifacts.length, 4, "the demo's four artifacts: count, filtered count, mean, group count");
    t.ok(artifacts.every((a) => a.state === 'COMPLETED'), 'all completed');
  } finally {
    wb.close();
  }

  demo.kill('SIGINT');
  const end = await demo.ended;
  t.equal(end.code, 0, `SIGINT ends it with exit 0: ${end.stderr}`);
  t.match(end.stderr, /3 processes stopped/, 'it stopped its three node processes');
  // Stopped means exited (the command waits for each): nothing of the demo is left once it has ended.
  t.same(processesIn(dir), [], 'no node process of the demo is left');
  t.notOk(existsSync(dir), 'the temporary folder is removed');
});
