// The chaos run (`npm run chaos -- --seconds N`, not part of `npm test`): for N seconds, submit
// artifacts while killing and restarting random workers and the scheduler at random moments
// (SIGKILL, or SIGSTOP for a while), then check every result against the central computation.
// Prints `artifacts N, completed N, wrong N, lost N` and exits non-zero if any is wrong or lost.
// With `--ha`: two schedulers on one PostgreSQL database (a fresh one on the server of
// scripts/test-postgres.sh, dropped after), either of which is SIGKILLed or frozen past its lease
// at random; a supervisor loop starts every scheduler that exits again (a fenced one exits 3),
// as the operator's process supervisor does (docs/DEPLOY.md).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Cluster, HA_SCHEDULERS } from '../lib/sim/cluster.ts';
import type { CountProduct, GroupCountProduct, MeanProduct } from '../lib/workbench.ts';
import { type ArtifactHandle, where, type Workbench } from '../lib/workbench.ts';
import { column, mean, readCsv, relErr, union } from './helpers/central.ts';
import { countLog, SHARDS, VALIDATION } from './helpers/cluster.ts';
import { testDatabase } from './helpers/postgres.ts';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '60' }, seed: { type: 'string' }, ha: { type: 'boolean', default: false } },
});
const ha = values.ha;
const seconds = Number(values.seconds);
let seed = Number(values.seed ?? Date.now() % 1_000_000);
const initialSeed = seed;
// A small deterministic generator, so a failing run can be replayed with --seed.
const random = () => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
};
const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)] as T;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (s: string) => process.stderr.write(`[chaos +${((Date.now() - t0) / 1000).toFixed(1)}s] ${s}\n`);

const files = [SHARDS[0] as string, SHARDS[1] as string, VALIDATION];
const all = union(...files.map(readCsv));
const workers = files.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] }));
const token = randomBytes(16).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'fdl-chaos-'));
const t0 = Date.now();

type Check = (result: unknown) => boolean;
interface Tracked {
  handle: ArtifactHandle;
  label: string;
  check: Check;
}

const kinds: Array<() => { label: string; submit: (p: Awaited<ReturnType<Workbench['project']>>) => Promise<ArtifactHandle>; check: Check }> = [
  () => ({ label: 'count', submit: (p) => p.count(), check: (r) => (r as CountProduct).count === all.rows.length }),
  () => {
    const limit = Math.floor(random() * 50);
    const expected = column(all, 'HouseAge').filter((a) => a > limit).length;
    return {
      label: `count HouseAge>${limit}`,
      submit: (p) => p.count({ where: where('HouseAge', '>', limit) }),
      check: (r) => (r as CountProduct).count === expected,
    };
  },
  () => {
    const f = pick(all.columns);
    const expected = mean(column(all, f));
    return { label: `mean ${f}`, submit: (p) => p.mean([f]), check: (r) => relErr((r as MeanProduct).mean[f] as number, expected) <= 1e-9 };
  },
  () => {
    const label = column(all, 'MedHouseValDiscrete');
    const zeros = label.filter((v) => v === 0).length;
    return {
      label: 'groupCount',
      submit: (p) => p.groupCount(['MedHouseValDiscrete']),
      check: (r) => {
        const g = (r as GroupCountProduct).groups;
        return g.length === 2 && g[0]?.count === zeros && g[1]?.count === label.length - zeros;
      },
    };
  },
];

/** What runs after the chaos (dropping the --ha database). */
const teardowns: Array<() => unknown> = [];

async function main(): Promise<number> {
  say(`seed ${initialSeed}, ${seconds} s, 3 workers${ha ? ', 2 schedulers on PostgreSQL' : ''}, in ${dir}`);
  const storeUrl = ha ? await testDatabase({ teardown: (fn) => teardowns.push(fn) }, 'chaos') : undefined;
  const cluster = await Cluster.start({
    dir,
    projectName: 'california',
    projectToken: token,
    workers,
    ...(storeUrl ? { ha: { storeUrl } } : {}),
    scheduler: {
      heartbeat_ms: 1000,
      retry: { max_attempts: 10, initial_interval_ms: 200, max_interval_ms: 2000, worker_grace_ms: 20_000, attempt_timeout_ms: 30_000 },
    },
  });
  const wb = await cluster.connect('chaos', { requestTimeoutMs: 60_000 });
  const tracked: Tracked[] = [];
  let faults = 0;
  let running = true;

  const submitter = (async () => {
    while (running) {
      const k = pick(kinds)();
      try {
        const project = await wb.project(token);
        tracked.push({ handle: await k.submit(project), label: k.label, check: k.check });
      } catch (e) {
        // A submit refused while the scheduler is away is not an artifact: nothing to lose.
        say(`submit not accepted (${(e as Error).message}); trying again later`);
        await sleep(500);
      }
      await sleep(100 + random() * 400);
    }
  })();

  // --ha: the operator's supervisor: a scheduler that exits (killed, or fenced after a freeze) is started again,
  // after a restart delay as a real supervisor's (not a wait for anything). It goes on while the artifacts drain,
  // so a scheduler fenced late (thawed after the faults stopped) is replaced too; it stops before the cluster does.
  let fenced = 0;
  let supervising = ha;
  const supervisors = ha
    ? HA_SCHEDULERS.map(async (name) => {
        while (supervising) {
          const code = await cluster.exited(name);
          if (code === 3) fenced++;
          if (!supervising) break;
          await sleep(300 + random() * 1500); // a supervisor's restart delay (the exit was awaited above)
          if (!supervising) break;
          say(`supervisor: starting ${name} again (it exited ${code ?? 'by a signal'})`);
          // Resolves once it is active (it may stay a standby for good): not awaited.
          void cluster.startScheduler(name).then(
            () => say(`${name} is active`),
            () => {},
          );
        }
      })
    : [];

  const chaos = (async () => {
    while (running) {
      await sleep(2000 + random() * 4000); // the time between faults: the schedule, not a wait for anything
      if (!running) break;
      faults++;
      const r = random();
      if (ha && r < 0.3) {
        const s = pick([...HA_SCHEDULERS]);
        if (r < 0.2) {
          say(`SIGKILL ${s}`);
          cluster.kill(s, 'SIGKILL');
        } else {
          // Past the lease (4 s) or not: a standby takes over only after it, and the thawed one is fenced.
          const ms = 1000 + random() * 6000;
          say(`SIGSTOP ${s} for ${Math.round(ms)} ms`);
          cluster.kill(s, 'SIGSTOP');
          await sleep(ms); // the freeze's length: the fault itself, not a wait for anything
          cluster.kill(s, 'SIGCONT');
        }
      } else if (!ha && r < 0.2) {
        say('SIGKILL scheduler');
        cluster.kill('scheduler', 'SIGKILL');
        await cluster.exited('scheduler');
        await sleep(300 + random() * 1500); // down for a while, as after a real crash (the exit was awaited above)
        await cluster.startScheduler();
        say('scheduler back');
      } else if (r < 0.7) {
        const w = pick(workers).name;
        say(`SIGKILL ${w}`);
        cluster.kill(w, 'SIGKILL');
        await cluster.exited(w);
        await sleep(300 + random() * 2500); // down for a while (the exit was awaited above)
        cluster.startWorker(w);
      } else {
        const w = pick(workers).name;
        const ms = 500 + random() * 2500;
        say(`SIGSTOP ${w} for ${Math.round(ms)} ms`);
        cluster.kill(w, 'SIGSTOP');
        await sleep(ms); // the freeze's length: the fault itself, not a wait for anything
        cluster.kill(w, 'SIGCONT');
      }
    }
  })();

  await sleep(seconds * 1000);
  running = false;
  await Promise.all([submitter, chaos]);
  // A scheduler frozen when the faults stopped is thawed; if it was fenced meanwhile, it exits and its
  // supervisor starts it again.
  if (ha) for (const name of HA_SCHEDULERS) cluster.kill(name, 'SIGCONT');
  say(`faults injected: ${faults}; waiting for ${tracked.length} artifacts to finish`);
  await cluster.waitForWorkers(workers.map((w) => w.name), 60_000);

  let completed = 0;
  let wrong = 0;
  let lost = 0;
  const deadline = Date.now() + 180_000;
  for (const a of tracked) {
    try {
      const left = Math.max(1, deadline - Date.now());
      const result = await Promise.race([a.handle.result(), sleep(left).then(() => Promise.reject(new Error('did not finish in time')))]);
      completed++;
      if (!a.check(result)) {
        wrong++;
        say(`WRONG ${a.label} ${a.handle.id}: ${JSON.stringify(result).slice(0, 200)}`);
      }
    } catch (e) {
      lost++;
      say(`LOST ${a.label} ${a.handle.id}: ${(e as Error).message}`);
    }
  }
  wb.close();
  supervising = false;
  await cluster.stop();
  await Promise.all(supervisors);
  // Every start as the active one after the first is a takeover.
  const takeovers = HA_SCHEDULERS.reduce((n, name) => n + countLog(join(dir, `${name}.log`), /active: this scheduler holds the lease/), 0) - 1;
  const failover = ha ? `, takeovers ${takeovers}, fenced ${fenced}` : '';
  process.stdout.write(`artifacts ${tracked.length}, completed ${completed}, wrong ${wrong}, lost ${lost}${failover}\n`);
  if (wrong === 0 && lost === 0) rmSync(dir, { recursive: true, force: true });
  else say(`logs kept in ${dir}; replay with --seed ${initialSeed}`);
  return wrong === 0 && lost === 0 ? 0 : 1;
}

const end = async (code: number) => {
  for (const fn of teardowns) await Promise.resolve(fn()).catch(() => {});
  process.exit(code);
};
main().then(end, (e) => {
  process.stderr.write(`chaos run failed: ${e instanceof Error ? e.stack : String(e)}\n(logs in ${dir})\n`);
  return end(2);
});
