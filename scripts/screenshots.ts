// `npm run screenshots`: starts a demo cluster (a scheduler and two workers on loopback), runs a
// count, a mean, a group count and a FedAvg model through the workbench library, opens the dashboard in headless
// Chromium with the cluster's workbench token, saves a PNG of each view to a folder it prints,
// and stops everything. Needs Debian's chromium (see test/helpers/browser.ts).
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, EXAMPLE_DATA } from '../lib/sim/cluster.ts';
import { estimators, models, steps } from '../lib/workbench.ts';
import { dashboardUrl, launchChromium, signIn } from '../test/helpers/browser.ts';

const out = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'fdl-screenshots-'));
mkdirSync(out, { recursive: true });
const dir = mkdtempSync(join(tmpdir(), 'fdl-screenshots-cluster-'));
const token = randomBytes(16).toString('hex');
const shards = ['california_housing.MedInc1.csv', 'california_housing.MedInc2.csv'].map((f) => join(EXAMPLE_DATA, f));

console.log(`starting a scheduler and 2 workers in ${dir} ...`);
const cluster = await Cluster.start({
  dir,
  projectName: 'california',
  projectToken: token,
  workers: shards.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })),
  env: { FDL_LOG_LEVEL: 'warn' },
});
const wb = await cluster.connect('screenshots');
const browser = await launchChromium();
try {
  const project = await wb.project(token);
  const count = await project.count();
  await count.done();
  const mean = await project.mean();
  await mean.done();
  const groups = await project.groupCount(['MedHouseValDiscrete']);
  await groups.done();
  // A model: standardization, then FedAvg rounds (an Iterate: a column per round in the DAG).
  const label = 'MedHouseValDiscrete';
  const features = project.numericFeatures().filter((f) => f !== label);
  const fedavg = await project.submit({
    name: 'logistic regression (FedAvg)',
    steps: models.logisticRegression({ features, label, rounds: 4, epochs: 1, learningRate: 0.1, batchSize: 32, seed: 7, testFraction: 0.2 }),
  });
  await fedavg.done();
  // One still running when the pictures are taken: its DAG shows jobs in flight.
  const running = await project.submit({ name: 'sleep (running)', steps: [steps.parallel({ kind: 'TestSleep', ms: 60_000 }), estimators.count()] });

  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const url = dashboardUrl(cluster.url);
  await page.goto(url);
  await page.screenshot({ path: join(out, '0-sign-in.png') });
  await signIn(page, url, cluster.workbenchToken);
  await page.waitForSelector(`[data-artifact="${mean.id}"]`);
  const shot = async (name: string) => {
    const file = join(out, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    console.log(`  ${file}`);
  };
  console.log(`dashboard at ${url}; screenshots in ${out}:`);
  await shot('1-artifacts');
  await page.click('#tab-nodes');
  await page.waitForSelector('[data-node="worker-1"][data-connected="true"]');
  await shot('2-nodes');
  await page.click('#tab-projects');
  await page.waitForSelector('[data-project]');
  await shot('3-projects');
  const done: Array<[string, string]> = [
    ['4-artifact-mean', mean.id],
    ['5-artifact-count', count.id],
    ['6-artifact-group-count', groups.id],
    ['7-artifact-fedavg', fedavg.id],
  ];
  for (const [name, id] of done) {
    await page.goto(`${url}#/artifact/${id}`);
    await page.waitForSelector(`[data-artifact-view="${id}"] [data-testid="result"]`);
    await shot(name);
  }
  await page.goto(`${url}#/artifact/${running.id}`);
  await page.waitForSelector('[data-job][data-state="RUNNING"]');
  await page.click('[data-job][data-state="RUNNING"]');
  await shot('8-artifact-running');
  await running.cancel();
} finally {
  await browser.close();
  wb.close();
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
}
console.log(`done: ${out}`);
