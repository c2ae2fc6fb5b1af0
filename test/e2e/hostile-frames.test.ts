// Why: a scheduler faces peers it does not control. A malformed frame, an unknown message type
// or a known type with wrong fields must each get an error reply with a code, and must leave the
// connection, the other peers and every artifact in flight working.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { encode } from '../../protocols/codec.ts';
import { PROTOCOL_VERSION } from '../../protocols/version.ts';
import { Cluster, EXAMPLE_DATA } from '../../lib/sim/cluster.ts';
import { RawPeer } from '../helpers/raw-peer.ts';
import { type CountProduct, steps, } from '../../lib/workbench.ts';
import { PROCESS_FILE_TIMEOUT_MS } from '../helpers/cluster.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const shards = ['california_housing.MedInc1.csv', 'california_housing.MedInc2.csv'].map((f) => join(EXAMPLE_DATA, f));
const token = randomBytes(16).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'fdl-hostile-'));
const MAX_PAYLOAD = 1024 * 1024;

const cluster = await Cluster.start({
  dir,
  projectName: 'california',
  projectToken: token,
  workers: shards.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })),
  scheduler: { max_payload_bytes: MAX_PAYLOAD },
});
const wb = await cluster.connect();
t.teardown(async () => {
  wb.close();
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
});


// An artifact runs beside the attacks and must complete with the right figure.
const project = await wb.project(token);
const beside = await project.submit([steps.parallel({ kind: 'TestSleep', ms: 1500 }), steps.finalize({ kind: 'Noop' })]);
const count = await project.count();

t.test('bad frames get error replies with codes; the connection keeps working', async (t) => {
  const peer = new RawPeer(cluster.url);
  await peer.open();

  peer.raw(Uint8Array.from([0xc1, 0xff, 0x00, 0x13]));
  t.match(await peer.next(), { type: 'error', error: { code: 'BAD_FRAME' } }, 'garbage bytes');

  peer.raw('{"type":"listProjects","reqId":1}');
  t.match(await peer.next(), { type: 'error', error: { code: 'BAD_FRAME' } }, 'a text frame');

  peer.msg([1, 2, 3]);
  t.match(await peer.next(), { type: 'error', error: { code: 'BAD_FRAME' } }, 'msgpack that is not a map');

  peer.msg({ type: 'listProjects', reqId: 2 });
  t.match(await peer.next(), { type: 'error', reqId: 2, error: { code: 'NOT_AUTHENTICATED' } }, 'a request before hello');
  // getStatus is answered by the Connection as the frame comes (no actor hop): not before a hello either.
  peer.msg({ type: 'getStatus', reqId: 3, artifactId: count.id });
  t.match(await peer.next(), { type: 'error', reqId: 3, error: { code: 'NOT_AUTHENTICATED' } }, 'a getStatus before hello');

  peer.msg({ type: 'workbenchHello', protocolVersion: PROTOCOL_VERSION, token: cluster.workbenchToken });
  t.match(await peer.next(), { type: 'welcome', protocolVersion: PROTOCOL_VERSION });

  peer.msg({ type: 'launchMissiles', reqId: 7 });
  t.match(await peer.next(), { type: 'error', reqId: 7, error: { code: 'UNKNOWN_MESSAGE' } }, 'an unknown type');

  peer.msg({ type: 'getStatus', reqId: 8, artifactId: 5 });
  t.match(await peer.next(), { type: 'error', reqId: 8, error: { code: 'INVALID_MESSAGE', path: 'artifactId' } }, 'a wrong field type');

  peer.msg({ type: 'getStatus', reqId: 9, artifactId: 'a-1', extra: true });
  t.match(await peer.next(), { type: 'error', reqId: 9, error: { code: 'INVALID_MESSAGE' } }, 'an unexpected field');

  peer.msg({ type: 'submitArtifact', reqId: 10, projectToken: token, artifact: { steps: [{ kind: 'Teleport' }] } });
  t.match(await peer.next(), { type: 'error', reqId: 10, error: { code: 'INVALID_MESSAGE', path: /^artifact\.steps\[0\]/ } }, 'an unknown step kind');

  peer.msg({ type: 'jobStarted', jobId: 'x.0', attempt: 1 });
  t.match(await peer.next(), { type: 'error', error: { code: 'UNEXPECTED_MESSAGE' } }, "a worker's message from a workbench");

  let nested: unknown = 'deep';
  for (let i = 0; i < 200; i++) nested = { and: [nested] };
  peer.msg({ type: 'getStatus', reqId: 11, artifactId: nested });
  t.match(await peer.next(), { type: 'error', reqId: 11, error: { code: 'INVALID_MESSAGE' } }, 'deep nesting');

  peer.raw(encode({ type: 'listProjects', reqId: 12 }).subarray(0, 5));
  t.match(await peer.next(), { type: 'error', error: { code: 'BAD_FRAME' } }, 'a truncated frame');

  peer.msg({ type: 'listProjects', reqId: 13 });
  t.match(await peer.next(), { type: 'projectList', reqId: 13, projects: [{ name: 'california' }] }, 'still serves requests');
  peer.msg({ type: 'getStatus', reqId: 14, artifactId: 'a-no-such-artifact' });
  t.match(await peer.next(), { type: 'error', reqId: 14, error: { code: 'UNKNOWN_ARTIFACT' } }, 'a getStatus of no artifact');
  peer.msg({ type: 'getStatus', reqId: 15, artifactId: count.id });
  t.match(await peer.next(), { type: 'status', reqId: 15, status: { id: count.id } }, 'a getStatus of an artifact');
  peer.ws.close();
});

t.test('a peer that keeps sending bad frames is disconnected; others are not', async (t) => {
  const good = new RawPeer(cluster.url);
  const bad = new RawPeer(cluster.url);
  await Promise.all([good.open(), bad.open()]);
  for (let i = 0; i < 30; i++) bad.raw(Uint8Array.from([0xc1]));
  t.equal(await bad.closed, 1008, 'closed with policy violation');
  good.msg({ type: 'workbenchHello', protocolVersion: PROTOCOL_VERSION, token: cluster.workbenchToken });
  t.match(await good.next(), { type: 'welcome' });
  good.msg({ type: 'listNodes', reqId: 1 });
  t.match(await good.next(), { type: 'nodeList', reqId: 1 });
  good.ws.close();
});

t.test('a frame over max_payload_bytes is refused by ws before it is buffered', async (t) => {
  const peer = new RawPeer(cluster.url);
  await peer.open();
  peer.raw(new Uint8Array(MAX_PAYLOAD + 1024));
  t.equal(await peer.closed, 1009, 'closed: message too big');
  t.equal((await wb.projects()).length, 1, 'the workbench beside it still works');
});

t.test('a wrong protocol version is refused and closed', async (t) => {
  const peer = new RawPeer(cluster.url);
  await peer.open();
  // A future version's hello may carry fields this version does not know: still a version error.
  peer.msg({ type: 'workbenchHello', protocolVersion: 999, token: cluster.workbenchToken, capabilities: ['streams'] });
  t.match(await peer.next(), { type: 'error', error: { code: 'PROTOCOL_VERSION_MISMATCH' } });
  t.equal(await peer.closed, 1002);
});

t.test('the artifacts in flight beside the attacks complete correctly', async (t) => {
  t.equal((await beside.done()).state, 'COMPLETED');
  t.equal((await count.result<CountProduct>()).count, 18576);
});
