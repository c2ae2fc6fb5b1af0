// Why: the dashboard is what a researcher or an operator looks at, so it is tested as they use it:
// in a real browser (Debian's Chromium, headless, driven by playwright-core), against a real
// cluster, through the scheduler's own port. Every wait is for something the page shows (a job's
// state in the DAG, a node's status), pushed by the scheduler: nothing here polls the scheduler or
// sleeps. Screenshots of each stage are saved under the test's folder (kept with FDL_KEEP_TEST_DIRS=1).
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import t from 'tap';
import type { CountProduct } from '../../lib/workbench.ts';
import { steps } from '../../lib/workbench.ts';
import { dashboardUrl, launchChromium, signIn } from '../helpers/browser.ts';
import { LONG_SLEEP_MS, PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster, WAIT_MS, waitForJob } from '../helpers/cluster.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const ROWS = 9288 + 9288;
const OTHER_TOKEN = randomBytes(16).toString('hex');
const SCOPED_TOKEN = `fdl_w_${randomBytes(18).toString('base64url')}`;

const { cluster, wb, token, dir } = await testCluster(t, 'dashboard', {
  workers: [
    { name: 'worker-1', files: [SHARDS[0] as string] },
    { name: 'worker-2', files: [SHARDS[1] as string] },
  ],
  // A second project no worker holds, and a token that sees only it.
  projects: [{ name: 'other', token: OTHER_TOKEN }],
  workbenchTokens: [{ token: SCOPED_TOKEN, projects: ['other'] }],
});
const project = await wb.project(token);
const url = dashboardUrl(cluster.url);
const shots = join(dir, 'screenshots');
mkdirSync(shots, { recursive: true });
t.comment(`screenshots in ${shots}`);

const browser = await launchChromium();
t.teardown(() => browser.close());

async function newPage(): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(WAIT_MS);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  t.teardown(async () => {
    await page.close();
  });
  (page as Page & { errors: string[] }).errors = errors;
  return page;
}
const pageErrors = (page: Page) => (page as Page & { errors?: string[] }).errors ?? [];
const shot = (page: Page, name: string) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

t.test('an artifact submitted from the workbench library appears, and its DAG turns from waiting to completed', async (t) => {
  const page = await newPage();
  await signIn(page, url, cluster.workbenchToken);
  // Frozen, worker-2 holds the count's chain at its link: the jobs after it stay WAITING until it thaws.
  cluster.kill('worker-2', 'SIGSTOP');
  t.teardown(() => cluster.kill('worker-2', 'SIGCONT'));
  const handle = await project.count();
  // Pushed to the list (watchNetwork), then opened like a user would.
  const row = page.locator(`[data-artifact="${handle.id}"]`);
  await row.waitFor();
  await shot(page, '1-artifacts-running');
  await row.click();
  await page.waitForSelector(`[data-artifact-view="${handle.id}"]`);
  await page.waitForSelector('[data-testid="dag"] [data-job][data-state="WAITING"]');
  t.equal(await page.locator('[data-testid="dag"] [data-job]').count(), 4, 'the DAG has the count chain: init, two workers, final');
  t.ok((await page.locator('[data-testid="dag"] path.edge').count()) >= 3, 'locks drawn as edges');
  await shot(page, '2-dag-waiting');
  cluster.kill('worker-2', 'SIGCONT');
  await page.waitForSelector(`[data-artifact-view="${handle.id}"][data-state="COMPLETED"]`);
  t.equal(await page.locator('[data-testid="dag"] [data-job]:not([data-state="COMPLETED"])').count(), 0, 'every job drawn COMPLETED');
  // The timeline: a row per worker, a bar per job, from the times the scheduler recorded.
  const timed = (await wb.status(handle.id)).jobs;
  t.ok(
    timed.every((j) => j.startedAt !== undefined && j.finishedAt !== undefined && j.startedAt <= j.finishedAt),
    'every job has started and finished times, in order',
  );
  await page.waitForSelector('[data-testid="timeline"] [data-timeline-worker="worker-2"] [data-timeline-job][data-state="COMPLETED"]');
  const rows = await page.locator('[data-testid="timeline"] [data-timeline-worker]').evaluateAll((els) => els.map((e) => e.getAttribute('data-timeline-worker')));
  t.same([...rows].sort(), [...new Set(timed.map((j) => j.worker))].sort(), 'the timeline has a row per worker of the artifact');
  t.equal(await page.locator('[data-testid="timeline"] [data-timeline-job][data-state="COMPLETED"]').count(), 4, 'and a COMPLETED bar per job');
  const result = page.locator('[data-testid="result"]');
  await result.waitFor();
  t.match(await result.textContent(), new RegExp(ROWS.toLocaleString('en-US').replace(',', '[,.\\s\\u202f]?')), 'the result table shows the count');
  t.equal((await handle.result<CountProduct>()).count, ROWS, 'the same count the library gets');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  t.same(JSON.parse(readFileSync(await download.path(), 'utf8')), { count: ROWS }, 'the download button gives the result as JSON');
  await shot(page, '3-dag-completed');
  await page.click('#tab-artifacts');
  await page.waitForSelector(`[data-artifact="${handle.id}"][data-state="COMPLETED"]`);
  // Deleted by the library: its line goes from the list (an artifactDeleted push).
  await wb.deleteArtifact(handle.id);
  await page.waitForSelector(`[data-artifact="${handle.id}"]`, { state: 'detached' });
  await page.click('#tab-projects');
  await page.waitForSelector('[data-project]');
  t.match(await page.locator('[data-testid="project-list"]').textContent(), /california/);
  // Its aggregated schema, with the project's own token.
  await page.fill('#project-token', token);
  await page.click('#open-project');
  await page.waitForSelector('[data-testid="schema"] [data-feature="MedInc"]');
  t.match(await page.locator('[data-testid="schema"] caption').textContent(), /california: 2 workers, 2 data sources, 18,576 rows/, 'the aggregated schema');
  await shot(page, '4-projects');
  t.same(pageErrors(page), [], 'no error in the page');
});

t.test('a worker killed during an artifact: the page shows it lost, the retry and its attempt count, and cancels the artifact', async (t) => {
  const page = await newPage();
  const nodes = await newPage();
  await signIn(page, url, cluster.workbenchToken);
  await signIn(nodes, `${url}#/nodes`, cluster.workbenchToken);
  await nodes.waitForSelector('[data-node="worker-1"][data-connected="true"]');
  t.match(await nodes.locator('[data-node="worker-1"]').textContent(), /california\): 9,288 rows, 9 features/, 'its data source, as aggregates');
  // For this artifact only: a short grace, a FAILED state that lasts seconds (a page on a busy
  // machine draws it for sure, with its next retry), and attempts enough to outlast the restart.
  const handle = await project.submit({
    name: 'sleep',
    steps: [steps.parallel({ kind: 'TestSleep', ms: LONG_SLEEP_MS }), steps.finalize({ kind: 'Noop' })],
    policy: { workerGraceMs: 1000, maxAttempts: 30, initialIntervalMs: 4000, maxIntervalMs: 4000, jitter: 0 },
  });
  await page.goto(`${url}#/artifact/${handle.id}`);
  const job = page.locator('[data-testid="dag"] [data-job][data-worker="worker-1"]');
  await page.waitForSelector('[data-testid="dag"] [data-job][data-worker="worker-1"][data-state="RUNNING"]');
  await waitForJob(handle, { worker: 'worker-1', state: 'RUNNING', operation: 'TestSleep' });
  cluster.kill('worker-1', 'SIGKILL');
  t.equal(await cluster.exited('worker-1'), null, 'killed');
  await nodes.waitForSelector('[data-node="worker-1"][data-connected="false"]');
  await shot(nodes, '5-nodes-worker-lost');
  // The grace ends: the attempt fails with WORKER_LOST and a retry is due.
  await page.waitForSelector('[data-job-row][data-state="FAILED"]');
  const failedRow = page.locator('[data-job-row][data-state="FAILED"]');
  t.match(await failedRow.textContent(), /WORKER_LOST/, 'the last error is shown');
  t.match(await failedRow.textContent(), /\(in /, 'and when the next retry is due');
  await shot(page, '6-dag-retry-due');
  cluster.startWorker('worker-1');
  await nodes.waitForSelector('[data-node="worker-1"][data-connected="true"]');
  // Back: a later attempt runs, and the DAG shows its number.
  await page.waitForFunction(() => {
    const el = document.querySelector('[data-testid="dag"] [data-job][data-worker="worker-1"]');
    return el?.getAttribute('data-state') === 'RUNNING' && Number(el.getAttribute('data-attempt')) >= 2;
  });
  const attempts = Number(await job.getAttribute('data-attempt'));
  t.ok(attempts >= 2, `attempt ${attempts} runs`);
  t.equal(await job.locator('.attempts').textContent(), `×${attempts}`, 'the attempt count is drawn on the job');
  t.match(await page.locator(`[data-job-row="${handle.id}.0"], [data-job-row="${handle.id}.1"]`).filter({ hasText: 'worker-1' }).textContent(), /WORKER_LOST/);
  await page.click(`[data-testid="dag"] [data-job][data-worker="worker-1"]`);
  t.match(await page.locator('[data-testid="job-details"]').textContent(), new RegExp(`attempts\\s*${attempts}`), 'the job details say the attempts');
  await shot(page, '7-dag-retried');
  await page.click('#cancel');
  await page.waitForSelector(`[data-artifact-view="${handle.id}"][data-state="CANCELLED"]`);
  t.equal((await wb.status(handle.id)).state, 'CANCELLED', 'the cancel button cancelled it');
  await shot(page, '8-cancelled');
  t.same(pageErrors(page), [], 'no error in the page');
});

t.test("a token's scope decides what the page shows", async (t) => {
  const page = await newPage();
  await signIn(page, url, SCOPED_TOKEN);
  await page.click('#tab-projects');
  await page.waitForSelector('[data-project]');
  t.same(await page.locator('[data-project] td:first-child').allTextContents(), ['other'], 'only the project of its scope');
  await page.click('#tab-artifacts');
  await page.waitForSelector('[data-testid="artifact-list"] .empty');
  t.equal(await page.locator('[data-artifact]').count(), 0, "none of the other project's artifacts");
  // Pushes are scoped too: an artifact submitted now does not appear.
  const handle = await project.count();
  await handle.done();
  await page.click('#tab-nodes');
  await page.waitForSelector('[data-node="scheduler"]');
  t.same(await page.locator('[data-node]').evaluateAll((els) => els.map((e) => e.getAttribute('data-node'))), ['scheduler'], 'no worker of another project');
  await page.click('#tab-artifacts');
  t.equal(await page.locator('[data-artifact]').count(), 0, 'still none after a submit in the other project');
  await page.goto(`${url}#/artifact/${handle.id}`);
  await page.waitForSelector('main .error');
  t.match(await page.locator('main .error').textContent(), /UNKNOWN_ARTIFACT|no artifact/, 'an artifact of another project is unknown');
  await shot(page, '9-scoped');
});

t.test('a wrong token gets a clear message and shows nothing', async (t) => {
  const page = await newPage();
  await page.goto(url);
  await page.fill('#token', 'fdl_w_not-a-real-token-at-all');
  await page.click('#connect');
  const error = page.locator('#login-error');
  await error.waitFor();
  t.match(await error.textContent(), /refused this token \(AUTH_FAILED/, 'says the token was refused');
  t.equal(await page.locator('header, [data-artifact], [data-node], [data-project], [data-testid="dag"]').count(), 0, 'shows nothing of the network');
  t.ok(await page.locator('#token').isVisible(), 'and asks again');
  await shot(page, '10-wrong-token');
  t.same(pageErrors(page), [], 'no error in the page');
});

t.test('a restarted scheduler: the page dials again, follows the network again, and shows what is new', async (t) => {
  const page = await newPage();
  await signIn(page, url, cluster.workbenchToken);
  t.equal(await cluster.signal('scheduler', 'SIGTERM'), 0, 'the scheduler stopped');
  await page.waitForSelector('#connection:has-text("reconnecting")');
  await shot(page, '11-reconnecting');
  await cluster.startScheduler();
  await page.waitForSelector('#connection:has-text("live")');
  await cluster.waitForWorkers(['worker-1', 'worker-2']);
  // Submitted after the restart: pushed to the page by its new watch.
  const handle = await project.count();
  await page.waitForSelector(`[data-artifact="${handle.id}"][data-state="COMPLETED"]`);
  await page.click('#tab-nodes');
  await page.waitForSelector('[data-node="worker-2"][data-connected="true"]');
  t.same(pageErrors(page), [], 'no error in the page');
});
