// Why: the dashboard must stay usable with 1,000 workers and an artifact of 3,000 jobs. This runs
// the real page in Chromium against a stand-in scheduler that speaks the protocol (a handshake,
// then a network of 1,000 nodes and 1,000 artifacts, an artifact of 3,001 jobs, and 6,000 pushed
// job events), and checks what keeps it usable: the lists keep a few dozen rows in the page
// whatever their length, the DAG draws a 3,000-job step as one lane, and every push is applied.
// Times are printed, never asserted (the machine is shared).
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { WebSocketServer } from 'ws';
import { dashboardHandler } from '../../lib/dashboard/serve.ts';
import { decode, encode } from '../../protocols/codec.ts';
import type { ArtifactStatus, ArtifactSummary, JobStatus, NodeInfo } from '../../protocols/entities.ts';
import { type Message, MessageSchemas } from '../../protocols/messages.ts';
import { PROTOCOL_VERSION } from '../../protocols/version.ts';
import { launchChromium, signIn } from '../helpers/browser.ts';
import { WAIT_MS } from '../helpers/cluster.ts';

const WORKERS = 1000;
const JOBS = 3000;
const ARTIFACTS = 1000;
const PROJECT = 'p-scale';
const BIG = 'a-big';
const TOKEN = 'fdl_w_scale-test-token';

const now = Date.now();
const nodes: NodeInfo[] = Array.from({ length: WORKERS }, (_, i) => ({
  id: `w-${String(i).padStart(4, '0')}`,
  name: `w-${String(i).padStart(4, '0')}`,
  role: 'worker',
  connected: true,
  lastSeen: now,
  projects: 1,
  datasources: 1,
  fingerprint: randomBytes(16).toString('hex').replace(/(.{4})(?!$)/g, '$1:'),
  sources: [{ projectId: PROJECT, name: 'shard', rows: 1000, features: 9 }],
}));
const artifacts: ArtifactSummary[] = Array.from({ length: ARTIFACTS }, (_, i) => ({
  id: i === 0 ? BIG : `a-${i}`,
  name: i === 0 ? 'big' : `count ${i}`,
  projectId: PROJECT,
  state: i === 0 ? 'RUNNING' : 'COMPLETED',
  createdAt: now - i * 1000,
  updatedAt: now - i * 1000 + 500,
  ...(i === 0 ? {} : { finishedAt: now - i * 1000 + 500 }),
  progress: i === 0 ? { completed: 0, total: JOBS + 1 } : { completed: 4, total: 4 },
}));
const jobs: JobStatus[] = [
  ...Array.from({ length: JOBS }, (_, i): JobStatus => ({
    id: `${BIG}.${i}`,
    index: i,
    worker: nodes[i % WORKERS]?.id as string,
    stepIndex: 0,
    iteration: 0,
    operation: 'TestSleep',
    state: 'SCHEDULED',
    attempt: 1,
    locks: [JOBS],
  })),
  { id: `${BIG}.${JOBS}`, index: JOBS, worker: 'scheduler', stepIndex: 1, iteration: 0, operation: 'Noop', state: 'WAITING', attempt: 0, locks: [] },
];
const status: ArtifactStatus = { id: BIG, name: 'big', projectId: PROJECT, state: 'RUNNING', progress: { completed: 0, total: JOBS + 1 }, jobs, createdAt: now, updatedAt: now };

/** Sends only what the protocol's schemas accept: the stand-in cannot drift from the real thing. */
function frame(m: Message): Uint8Array {
  MessageSchemas[m.type].parse(m);
  return encode(m);
}

let push: ((m: Message) => void) | undefined;
const http = createServer(dashboardHandler());
const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.send(frame({ type: 'challenge', protocolVersion: PROTOCOL_VERSION, schedulerId: 'scheduler', nonce: randomBytes(32) }));
  ws.on('message', (data) => {
    const d = decode(new Uint8Array(data as Buffer));
    if (!d.ok) throw new Error(`the page sent a bad frame: ${d.error.message}`);
    const m = d.message;
    if (m.type === 'workbenchHello') {
      if (m.token !== TOKEN) return ws.close(1008, 'authentication failed');
      ws.send(frame({ type: 'welcome', protocolVersion: PROTOCOL_VERSION, schedulerId: 'scheduler', sessionId: 's-1' }));
    } else if (m.type === 'watchNetwork') {
      ws.send(frame({ type: 'network', reqId: m.reqId, nodes, projects: [{ id: PROJECT, name: 'scale', workers: WORKERS, datasources: WORKERS, rows: WORKERS * 1000 }], artifacts }));
    } else if (m.type === 'subscribe') {
      ws.send(frame({ type: 'status', reqId: m.reqId, status }));
      push = (x) => ws.send(frame(x));
    }
  });
});
await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
t.teardown(() => {
  for (const c of wss.clients) c.terminate();
  wss.close();
  http.close();
});
const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/`;

const browser = await launchChromium();
t.teardown(() => browser.close());
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
page.setDefaultTimeout(WAIT_MS);
const errors: string[] = [];
page.on('pageerror', (e) => errors.push(e.message));

t.test(`${ARTIFACTS} artifacts and ${WORKERS} nodes: listed, filtered, a few dozen rows in the page`, async (t) => {
  let started = performance.now();
  await signIn(page, url, TOKEN);
  await page.waitForSelector(`[data-artifact="${BIG}"]`);
  t.comment(`signed in and listed ${ARTIFACTS} artifacts in ${Math.round(performance.now() - started)} ms`);
  t.match(await page.locator('.count').textContent(), `${ARTIFACTS} of ${ARTIFACTS} artifacts`);
  const rows = await page.locator('[data-artifact]').count();
  t.ok(rows < 60, `only the rows in view are in the page (${rows})`);
  await page.fill('#filter-text', 'count 99');
  await page.waitForSelector('[data-artifact="a-999"]');
  t.match(await page.locator('.count').textContent(), /^11 of/, 'filtered: count 99, 990-999');
  started = performance.now();
  await page.click('#tab-nodes');
  await page.waitForSelector('[data-node="w-0000"]');
  t.comment(`nodes view in ${Math.round(performance.now() - started)} ms`);
  t.match(await page.locator('.count').textContent(), `${WORKERS} online of ${WORKERS} nodes`);
  t.ok((await page.locator('[data-node]').count()) < 60, 'the node list is virtualized');
  // Scrolled to the end, the last node is drawn.
  await page.locator('[data-testid="node-list"] .vbody').evaluate((el) => {
    el.scrollTop = el.scrollHeight;
  });
  await page.waitForSelector(`[data-node="w-0999"]`);
  await page.click('#tab-projects');
  t.match(await page.locator('[data-project]').textContent(), /1,000,000/, 'the project counts the rows of the 1,000 nodes');
});

t.test(`an artifact of ${JOBS + 1} jobs: one lane for the big step, and ${2 * JOBS} pushed events applied`, async (t) => {
  let started = performance.now();
  await page.goto(`${url}#/artifact/${BIG}`);
  const lane = page.locator('[data-lane]');
  await lane.waitFor();
  t.comment(`DAG of ${JOBS + 1} jobs drawn in ${Math.round(performance.now() - started)} ms`);
  t.equal(await page.locator('[data-testid="dag"] [data-job]').count(), 1, 'the 3,000-job step is one lane, the final job one node');
  t.equal(await page.locator('[data-testid="dag"] path.edge').count(), 1, 'its 3,000 locks one arrow');
  t.ok((await page.locator('[data-job-row]').count()) < 60, 'the job list is virtualized');
  started = performance.now();
  if (!push) return t.fail('the page did not subscribe');
  for (let i = 0; i < JOBS; i++) {
    const job = jobs[i] as JobStatus;
    push({ type: 'artifactEvent', artifactId: BIG, progress: { completed: i, total: JOBS + 1 }, events: [{ kind: 'jobState', jobId: job.id, worker: job.worker, state: 'RUNNING', attempt: 1 }] });
    push({ type: 'artifactEvent', artifactId: BIG, progress: { completed: i + 1, total: JOBS + 1 }, events: [{ kind: 'jobState', jobId: job.id, worker: job.worker, state: 'COMPLETED', attempt: 1 }] });
  }
  await page.waitForSelector(`[data-lane] text:has-text("completed: ${JOBS}")`);
  t.comment(`${2 * JOBS} pushed events applied and drawn in ${Math.round(performance.now() - started)} ms`);
  t.match(await page.locator('.artifact-head .progress').textContent(), `${JOBS}/${JOBS + 1}`);
  await lane.click();
  await page.selectOption('#filter-job-state', 'COMPLETED');
  t.match(await page.locator('.artifact .count').last().textContent(), `${JOBS} jobs in the lane picked`);
  t.same(errors, [], 'no error in the page');
});
