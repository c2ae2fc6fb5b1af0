// Why: whatever bytes a peer sends, the scheduler must answer with error codes, never crash,
// never grow its memory without bound, and finish the artifact running beside the attack with
// the right result. fast-check generates the attacks (random bytes, msgpack of wrong shapes,
// huge arrays, deep nesting, oversize strings), first against the decoder alone, then against a
// real node; and a peer that floods is slowed, then disconnected, without touching the others.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import t from 'tap';
import WebSocket from 'ws';
import { decode } from '../../protocols/codec.ts';
import { ErrorCodes } from '../../protocols/errors.ts';
import { MessageTypes } from '../../protocols/messages.ts';
import { PROTOCOL_VERSION } from '../../protocols/version.ts';
import type { CountProduct } from '../../lib/workbench.ts';
import { PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster, within } from '../helpers/cluster.ts';
import { RawPeer } from '../helpers/raw-peer.ts';
import { DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS } from '../../lib/transport/defaults.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const packr = new Packr({ useRecords: false });
const SEED = 20261125;
const DISCONNECT_AFTER_MS = 1500;

/** Attacks: each an encoded frame. */
// Deep nesting written as bytes (msgpackr's own encoder would overflow its stack first).
const deep = fc.integer({ min: 65, max: 100_000 }).map((d) => {
  const template = packr.pack({ type: 'getStatus', reqId: 1, artifactId: 'DEEP_PLACEHOLDER' });
  const at = Buffer.from(template).indexOf(Buffer.from('DEEP_PLACEHOLDER')) - 1;
  const nested = Buffer.concat([Buffer.alloc(d, 0x91), Buffer.from([0xa1, 0x78])]);
  return Buffer.concat([template.subarray(0, at), nested, template.subarray(at + 17)]);
});
const frames = fc.oneof(
  fc.uint8Array({ maxLength: 512 }),
  fc.anything({ maxDepth: 4 }).map((v) => packr.pack(v)),
  fc
    .record({
      type: fc.constantFrom(...MessageTypes),
      reqId: fc.oneof(fc.nat(), fc.string(), fc.constant(-1)),
      artifactId: fc.oneof(fc.string({ maxLength: 200 }), fc.integer(), fc.constant(null)),
      jobId: fc.string({ maxLength: 50 }),
      attempt: fc.oneof(fc.integer(), fc.double()),
      projectToken: fc.string({ maxLength: 600 }),
      extra: fc.anything({ maxDepth: 2 }),
    })
    .map((v) => packr.pack(v)),
  deep,
  fc.constant(packr.pack({ type: 'submitArtifact', reqId: 5, projectToken: 'x'.repeat(100), artifact: { steps: new Array(50_000).fill({ kind: 'Noop' }) } })),
  fc.constant(packr.pack({ type: 'listNodes', reqId: 'z'.repeat(1_000_000) })),
  fc.constant(packr.pack({ type: 'x'.repeat(2_000_000) })),
);

t.test('the decoder answers every attack with a code and never throws', async (t) => {
  const codes = new Set<string>(ErrorCodes);
  let refused = 0;
  fc.assert(
    fc.property(frames, (bytes) => {
      const d = decode(bytes);
      if (!d.ok) {
        refused++;
        return codes.has(d.error.code) && typeof d.error.message === 'string' && d.error.message.length <= 10_000;
      }
      return typeof d.message.type === 'string';
    }),
    { seed: SEED, numRuns: 2000 },
  );
  t.ok(refused > 1500, `most attacks refused (${refused} of 2000)`);
});

const { cluster, wb, token } = await testCluster(t, 'hostile-input', {
  workers: SHARDS.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })),
  scheduler: { rate_limit: { frames_per_second: 400, burst: 800, disconnect_after_ms: DISCONNECT_AFTER_MS } },
});

const rssKb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);

async function attacker(authenticated: boolean): Promise<RawPeer> {
  const peer = new RawPeer(cluster.url);
  await peer.open();
  if (authenticated) {
    peer.msg({ type: 'workbenchHello', protocolVersion: PROTOCOL_VERSION, token: cluster.workbenchToken });
    const welcome = await peer.next();
    if (welcome.type !== 'welcome') throw new Error(`expected welcome, got ${welcome.type}`);
  }
  return peer;
}

t.test('a real scheduler under random frames: error codes, no crash, bounded memory, the artifact beside completes', async (t) => {
  const pid = cluster.pid('scheduler') as number;
  const before = rssKb(pid);
  const project = await wb.project(token);
  const beside = await project.submit([
    { kind: 'Parallel', operation: { kind: 'TestSleep', ms: 1500 } },
    { kind: 'Sequential', init: { kind: 'CountInit' }, operation: { kind: 'Count' }, final: { kind: 'CountFinal' }, encryption: true },
  ]);
  const sample = fc.sample(frames, { seed: SEED, numRuns: 400 });
  let sent = 0;
  let replies = 0;
  let reconnects = 0;
  // A refused peer gets its error and close frames at once, but the scheduler stops reading it and
  // cuts its socket only REFUSAL_LINGER_MS later; until then it holds one of the address's slots
  // for peers before their hello. Its close frame read, the peer is done: the next frame goes on a
  // new connection (one sent into the linger would wait it out), and a new connection waits for a
  // slot, i.e. for the oldest refused socket to be cut.
  const lingering = new Set<Promise<number>>();
  const slots = DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS - 1;
  for (const authenticated of [false, true]) {
    const connect = async (): Promise<{ peer: RawPeer; open: boolean }> => {
      while (!authenticated && lingering.size >= slots) await Promise.race(lingering);
      const conn = { peer: await attacker(authenticated), open: true };
      void conn.peer.closed.then(() => {
        conn.open = false;
      });
      return conn;
    };
    let conn = await connect();
    for (const bytes of sample) {
      if (conn.open && conn.peer.ws.readyState !== WebSocket.OPEN) {
        const closed = conn.peer.closed;
        lingering.add(closed);
        void closed.then(() => lingering.delete(closed));
        conn.open = false;
      }
      if (!conn.open) {
        // Refused, or too many bad frames: disconnected, as it should be. Come back and go on.
        reconnects++;
        conn = await connect();
      }
      const { peer } = conn;
      peer.raw(bytes);
      sent++;
      const reply = await Promise.race([peer.next(), peer.closed.then(() => undefined)]);
      if (reply) {
        replies++;
        if (reply.type === 'error') t.ok(ErrorCodes.includes(reply.error.code), `a code: ${reply.error.code}`);
      }
      // Stay under the rate limit: this test is about shapes, the next one about floods.
      await new Promise((r) => setTimeout(r, 2));
    }
    conn.peer.ws.close();
  }
  t.ok(replies > sent / 2, `answered (${replies} replies to ${sent} frames, ${reconnects} reconnections after too many bad frames)`);
  t.equal((await beside.result<CountProduct>()).count, 9288 * 2, 'the artifact beside the attack completed right');
  t.ok((await wb.nodes()).every((n) => n.connected), 'every node still connected');
  const after = rssKb(pid);
  t.ok(after - before < 200_000, `scheduler memory grew by ${Math.round((after - before) / 1024)} MiB (bounded)`);
});

t.test('a flooding peer is slowed, then disconnected; others are unaffected', async (t) => {
  const flood = await attacker(true);
  const bystander = await attacker(true);
  let refusedWith: string | undefined;
  flood.ws.on('message', () => {});
  const code = flood.closed;
  const frame = packr.pack({ type: 'listProjects', reqId: 1 });
  const started = Date.now();
  let pumping = true;
  const pump = async () => {
    while (pumping && flood.ws.readyState === flood.ws.OPEN) {
      for (let i = 0; i < 200; i++) flood.raw(frame);
      await new Promise((r) => setImmediate(r));
    }
  };
  void pump();
  try {
    await within(
      (async () => {
        for (;;) {
          const m = await Promise.race([flood.next(), code.then(() => undefined)]);
          if (!m) break;
          if (m.type === 'error') refusedWith = m.error.code;
        }
      })(),
      { what: 'the flooding peer to be disconnected' },
    );
  } finally {
    pumping = false;
  }
  t.equal(await code, 1008, 'disconnected');
  t.equal(refusedWith, 'RATE_LIMITED', 'told why');
  // A lower bound that holds at any speed: the scheduler disconnects only after the peer has
  // been over its rate for disconnect_after_ms by its own clock, all of it after `started`.
  t.ok(Date.now() - started >= DISCONNECT_AFTER_MS, 'not at once: slowed first');
  bystander.msg({ type: 'listNodes', reqId: 9 });
  t.match(await bystander.next(), { type: 'nodeList', reqId: 9 }, 'the peer beside it is served');
  t.equal((await wb.projects()).length, 1);
  bystander.ws.close();
});
