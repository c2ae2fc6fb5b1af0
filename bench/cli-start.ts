import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, EXAMPLE_DATA, FDL_BIN } from '../lib/sim/cluster.ts';
import { median } from './util.ts';

/**
 * `npm run bench:cli`: how long an `fdl` command takes from the shell's point of view (process
 * start to exit), against a running scheduler with two workers and one finished artifact.
 * Each command runs BENCH_REPEATS times (default 10) one after the other; the figures are the
 * median and fastest wall time and the median CPU time (user + system), in seconds, next to
 * `node -e 0` (the floor).
 */

const REPEATS = Number(process.env.BENCH_REPEATS) > 0 ? Number(process.env.BENCH_REPEATS) : 10;

/** Wall and CPU (user + system) seconds of each run, from /usr/bin/time (CPU is what a loaded machine inflates least). */
function time(args: string[], env: NodeJS.ProcessEnv): { wall: number[]; cpu: number[] } {
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    const r = spawnSync('/usr/bin/time', ['-f', 'TIME %e %U %S', process.execPath, ...args], { env: { ...process.env, ...env }, encoding: 'utf8' });
    const m = r.stderr.match(/TIME ([\d.]+) ([\d.]+) ([\d.]+)/);
    if (r.status !== 0 || !m) throw new Error(`${args.join(' ')} failed: ${r.stderr}`);
    wall.push(Number(m[1]));
    cpu.push(Number(m[2]) + Number(m[3]));
  }
  return { wall, cpu };
}

const dir = mkdtempSync(join(tmpdir(), 'fdl-bench-cli-'));
const token = randomBytes(16).toString('hex');
const shards = ['california_housing.MedInc1.csv', 'california_housing.MedInc2.csv'].map((f) => join(EXAMPLE_DATA, f));
const cluster = await Cluster.start({
  dir,
  projectName: 'california',
  projectToken: token,
  workers: shards.map((f, i) => ({ name: `w${i + 1}`, files: [f] })),
  env: { FDL_LOG_LEVEL: 'warn' },
});
try {
  const wb = await cluster.connect();
  const project = await wb.project(token);
  const handle = await project.mean(['MedInc']);
  await handle.result();
  wb.close();
  const env = { FDL_URL: cluster.url, FDL_TOKEN: cluster.workbenchToken };
  const load = loadavg()[0]?.toFixed(1);
  const rows: Array<[string, { wall: number[]; cpu: number[] }]> = [
    ['node -e 0', time(['-e', '0'], env)],
    ['fdl --help', time([FDL_BIN, '--help'], env)],
    ['fdl status ID', time([FDL_BIN, 'status', handle.id], env)],
    ['fdl nodes', time([FDL_BIN, 'nodes'], env)],
    ['fdl artifacts list', time([FDL_BIN, 'artifacts', 'list'], env)],
  ];
  process.stdout.write(`load average at the start: ${load}; ${REPEATS} runs each\n`);
  process.stdout.write('| command | wall, median | wall, fastest | CPU (user + sys), median |\n| --- | --- | --- | --- |\n');
  for (const [name, { wall, cpu }] of rows) {
    process.stdout.write(`| \`${name}\` | ${median(wall).toFixed(2)} s | ${Math.min(...wall).toFixed(2)} s | ${median(cpu).toFixed(2)} s |\n`);
  }
} finally {
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
}
