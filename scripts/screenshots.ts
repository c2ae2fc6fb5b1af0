// `npm run screenshots`: starts a demo cluster (a scheduler and two workers on loopback), runs a
// count, a mean and a group count through the workbench library, opens the dashboard in headless
// Chromium with the cluster's workbench token, saves a PNG of each view to a folder it prints,
// and stops everything. Needs Debian's chromium (see test/helpers/browser.ts).
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, EXAMPLE_DATA } from '../lib/sim/cluster.ts';
import { estimators, steps } from '../lib/workbench.ts';
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
  await page.goto(`${url}#/artifact/${mean.id}`);
  await page.waitForSelector('[data-testid="result"]');
  await shot('4-artifact-mean');
  await page.goto(`${url}#/artifact/${count.id}`);
  await page.waitForSelector('[data-testid="result"]');
  await shot('5-artifact-count');
  await page.goto(`${url}#/artifact/${groups.id}`);
  await page.waitForSelector('[data-testid="result"]');
  await shot('6-artifact-group-count');
  await page.goto(`${url}#/artifact/${running.id}`);
  await page.waitForSelector('[data-job][data-state="RUNNING"]');
  await page.click('[data-job][data-state="RUNNING"]');
  await shot('7-artifact-running');
  await running.cancel();
} finally {
  await browser.close();
  wb.close();
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
}
console.log(`done: ${out}`);
