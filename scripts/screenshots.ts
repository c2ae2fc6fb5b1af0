// `npm run screenshots [-- FOLDER] [-- --workers N]`: starts a demo cluster (a scheduler and two
// workers on loopback), runs a count, a mean, a group count and a FedAvg model through the
// workbench library, opens the dashboard in headless Chromium with the cluster's workbench token,
// saves a PNG of each view to a folder it prints, and stops everything. With `--workers N` the
// cluster has N workers (50 per process) holding small synthetic shards, to see the page at scale
// (collapsed lanes, long lists). Needs Debian's chromium (see test/helpers/browser.ts).
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Cluster, EXAMPLE_DATA, type WorkerSpec } from '../lib/sim/cluster.ts';
import { syntheticShard } from '../lib/sim/simulate.ts';
import { estimators, type Project, models, steps } from '../lib/workbench.ts';
import { dashboardUrl, launchChromium, signIn } from '../test/helpers/browser.ts';

const { values, positionals } = parseArgs({ options: { workers: { type: 'string' } }, allowPositionals: true });
const many = values.workers ? Number(values.workers) : 0;
if (values.workers && !(Number.isInteger(many) && many > 0)) throw new Error('--workers: a positive integer');
const out = positionals[0] ?? mkdtempSync(join(tmpdir(), 'fdl-screenshots-'));
mkdirSync(out, { recursive: true });
const dir = mkdtempSync(join(tmpdir(), 'fdl-screenshots-cluster-'));
const token = randomBytes(16).toString('hex');

let workers: WorkerSpec[];
if (many > 0) {
  mkdirSync(join(dir, 'shards'));
  workers = Array.from({ length: many }, (_, i) => {
    const file = join(dir, 'shards', `shard-${i + 1}.csv`);
    writeFileSync(file, syntheticShard(i, 100));
    return { name: `worker-${String(i + 1).padStart(String(many).length, '0')}`, files: [file] };
  });
} else {
  workers = ['california_housing.MedInc1.csv', 'california_housing.MedInc2.csv'].map((f, i) => ({ name: `worker-${i + 1}`, files: [join(EXAMPLE_DATA, f)] }));
}

console.log(`starting a scheduler and ${workers.length} workers in ${dir} ...`);
const started = Date.now();
const cluster = await Cluster.start({
  dir,
  projectName: many > 0 ? 'synthetic' : 'california',
  projectToken: token,
  workers,
  workersPerProcess: many > 0 ? 50 : 1,
  env: { FDL_LOG_LEVEL: 'warn' },
  ...(many > 0 ? { scheduler: { connection_limits: { max_unauthenticated_per_address: 64 } } } : {}),
});
console.log(`up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
const wb = await cluster.connect('screenshots');
const browser = await launchChromium();

/** The artifacts to show: finished ones with a result, and one still running. */
async function run(project: Project) {
  const label = many > 0 ? 'y' : 'MedHouseValDiscrete';
  const count = await project.count();
  await count.done();
  const mean = await project.mean();
  await mean.done();
  const done: Array<[string, string]> = [
    ['4-artifact-mean', mean.id],
    ['5-artifact-count', count.id],
  ];
  if (many === 0) {
    const groups = await project.groupCount([label]);
    await groups.done();
    done.push(['6-artifact-group-count', groups.id]);
  }
  // A model: standardization, then FedAvg rounds (an Iterate: a column per round in the DAG).
  const features = project.numericFeatures().filter((f) => f !== label);
  const fedavg = await project.submit({
    name: 'logistic regression (FedAvg)',
    steps: models.logisticRegression({ features, label, rounds: 4, epochs: 1, learningRate: 0.1, batchSize: 32, seed: 7, testFraction: 0.2 }),
  });
  await fedavg.done();
  done.push(['7-artifact-fedavg', fedavg.id]);
  // One still running when the pictures are taken: its DAG shows jobs in flight.
  const running = await project.submit({ name: 'sleep (running)', steps: [steps.parallel({ kind: 'TestSleep', ms: 60_000 }), estimators.count()] });
  return { done, running, last: mean.id };
}

try {
  const { done, running, last } = await run(await wb.project(token));
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const url = dashboardUrl(cluster.url);
  await page.goto(url);
  await page.screenshot({ path: join(out, '0-sign-in.png') });
  await signIn(page, url, cluster.workbenchToken);
  await page.waitForSelector(`[data-artifact="${last}"]`);
  const shot = async (name: string) => {
    const file = join(out, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    console.log(`  ${file}`);
  };
  console.log(`dashboard at ${url}; screenshots in ${out}:`);
  await shot('1-artifacts');
  await page.click('#tab-nodes');
  await page.waitForSelector(`[data-node="${workers[0]?.name}"][data-connected="true"]`);
  await shot('2-nodes');
  await page.click('#tab-projects');
  await page.waitForSelector('[data-project]');
  await shot('3-projects');
  for (const [name, id] of done) {
    await page.goto(`${url}#/artifact/${id}`);
    await page.waitForSelector(`[data-artifact-view="${id}"] [data-testid="result"]`);
    await shot(name);
  }
  await page.goto(`${url}#/artifact/${running.id}`);
  await page.waitForSelector(many > 50 ? '[data-lane]' : '[data-job][data-state="RUNNING"]');
  if (many <= 50) await page.click('[data-job][data-state="RUNNING"]');
  await shot('8-artifact-running');
  await running.cancel();
} finally {
  await browser.close();
  wb.close();
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
}
console.log(`done: ${out}`);
