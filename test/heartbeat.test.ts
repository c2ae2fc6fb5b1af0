// A heartbeat must find a dead peer, and must not cut a live one because this process was busy:
// when the event loop was stalled, the timer fires before the pong waiting in the socket is read.
import t from 'tap';
import { Heartbeat } from '../lib/transport/heartbeat.ts';
import { within } from './helpers/cluster.ts';

const turn = () => new Promise((resolve) => setImmediate(resolve));

function probe() {
  const calls: string[] = [];
  const heartbeat = new Heartbeat({ ping: () => calls.push('ping'), terminate: () => calls.push('terminate') }, 3_600_000);
  heartbeat.start(); // the interval is an hour: the test drives the ticks
  return { calls, heartbeat };
}

t.test('a peer that answers no ping is terminated at the next tick', async (t) => {
  const { calls, heartbeat } = probe();
  t.teardown(() => heartbeat.stop());
  heartbeat.tick();
  await turn();
  heartbeat.tick();
  await turn();
  t.same(calls, ['ping', 'terminate']);
});

t.test('a pong read in the same turn as a late tick keeps the peer', async (t) => {
  const { calls, heartbeat } = probe();
  t.teardown(() => heartbeat.stop());
  heartbeat.tick();
  await turn();
  heartbeat.tick(); // late: the process was stalled, and the pong is still unread in the socket
  heartbeat.heard(); // this turn's I/O reads it, before the tick is judged
  await turn();
  t.same(calls, ['ping', 'ping'], 'pinged again, not terminated');
});

// A peer sending one large frame over a slow link: its pong to our ping queues behind the frame's
// bytes (a control frame cannot cut into a frame), so none is read for as long as the frame takes
// to arrive. The bytes arriving are its proof of life: it must not be cut mid-frame. The same
// happens to a peer whose frame waited for the in-flight budget (its reading paused, then resumed
// with the rest of the frame and the pong still to read): hostile-load's big authenticated frames
// were closed 1006 now and then under a loaded CI.
t.test('a peer whose large frame trickles in over several heartbeat intervals is not cut', async (t) => {
  const { startServer } = await import('../lib/transport/server.ts');
  const { encode } = await import('../protocols/codec.ts');
  const { default: WebSocket } = await import('ws');
  const HEARTBEAT_MS = 100;
  const received: string[] = [];
  let closedWith: number | undefined;
  const server = await startServer({
    host: '127.0.0.1',
    port: 0,
    heartbeatMs: HEARTBEAT_MS,
    onConnection: (peer) => {
      peer.authenticated('workbench');
      peer.attach({ onMessage: (m) => received.push(m.type), onClose: (code) => (closedWith = code) });
    },
  });
  t.teardown(() => server.close());
  // autoPong off: a pong written by the client library would land inside our hand-written frame.
  const ws = new WebSocket(server.url, { perMessageDeflate: false, autoPong: false });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const outcome = new Promise<Buffer>((resolve, reject) => {
    ws.once('message', (data) => resolve(data as Buffer));
    ws.once('close', (code) => reject(new Error(`closed with ${code} before the reply`)));
  });
  outcome.catch(() => {}); // judged below
  const socket = (ws as unknown as { _socket: import('node:net').Socket })._socket;
  // listProjects with a 2 MiB name the schema refuses: the frame is read whole, then answered.
  const payload = Buffer.from(encode({ type: 'listProjects', reqId: 1, pad: 'x'.repeat(2 * 1024 * 1024) } as never));
  const mask = Buffer.from([1, 2, 3, 4]);
  const masked = Buffer.from(payload);
  for (let i = 0; i < masked.length; i++) masked[i] = (masked[i] as number) ^ (mask[i & 3] as number);
  const head = Buffer.alloc(14);
  head[0] = 0x82; // FIN, binary
  head[1] = 0x80 | 127; // masked, 64-bit length
  head.writeBigUInt64BE(BigInt(payload.length), 2);
  mask.copy(head, 10);
  socket.write(head);
  // Over ~8 heartbeat intervals, in 16 pieces: the server reads bytes all along, never a pong.
  const pieces = 16;
  const step = Math.ceil(masked.length / pieces);
  for (let i = 0; i < pieces; i++) {
    socket.write(masked.subarray(i * step, Math.min(masked.length, (i + 1) * step)));
    await new Promise((r) => setTimeout(r, HEARTBEAT_MS / 2)); // the link's pace, not a synchronization
  }
  const reply = await within(outcome, { what: 'the reply to the frame' });
  t.ok(reply.length > 0, 'the frame was read whole and answered');
  t.equal(closedWith, undefined, 'the server kept the peer');
  ws.close();
});

// The other way: a scheduler sending a worker or a workbench one large frame (a result, a status of
// 1,000 jobs) over a slow link. The client's heartbeat must count the bytes too.
t.test('a client receiving a large frame that trickles in over several heartbeat intervals keeps its connection', async (t) => {
  const { WebSocketServer } = await import('ws');
  const { Client } = await import('../lib/transport/client.ts');
  const { encode } = await import('../protocols/codec.ts');
  const HEARTBEAT_MS = 100;
  // autoPong off: a pong written by the server library would land inside our hand-written frame.
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, autoPong: false });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => wss.close(() => resolve())));
  const url = `ws://127.0.0.1:${(wss.address() as import('node:net').AddressInfo).port}`;
  let closedWith: number | undefined;
  // The frame is one the schema refuses (a field too many): read whole, the client answers with an error.
  const answered = new Promise<void>((resolve) => {
    wss.on('connection', async (ws) => {
      ws.once('message', () => resolve());
      const socket = (ws as unknown as { _socket: import('node:net').Socket })._socket;
      const payload = Buffer.from(encode({ type: 'listProjects', reqId: 1, pad: 'y'.repeat(2 * 1024 * 1024) } as never));
      const head = Buffer.alloc(10);
      head[0] = 0x82; // FIN, binary; a server's frames are not masked
      head[1] = 127;
      head.writeBigUInt64BE(BigInt(payload.length), 2);
      socket.write(head);
      const pieces = 16;
      const step = Math.ceil(payload.length / pieces);
      for (let i = 0; i < pieces && !socket.destroyed; i++) {
        socket.write(payload.subarray(i * step, Math.min(payload.length, (i + 1) * step)));
        await new Promise((r) => setTimeout(r, HEARTBEAT_MS / 2)); // the link's pace, not a synchronization
      }
    });
  });
  const cut = new Promise<void>((_, reject) => {
    const client = new Client({
      urls: [url],
      reconnect: false,
      heartbeatMs: HEARTBEAT_MS,
      onOpen: () => {},
      onMessage: () => {},
      onClose: (code) => {
        closedWith = code;
        reject(new Error(`the client closed (${code}) before reading the frame whole`));
      },
    });
    t.teardown(() => client.close());
    void client.start();
  });
  cut.catch(() => {}); // judged below
  await within(Promise.race([answered, cut]), { what: "the client's answer to the frame" });
  t.equal(closedWith, undefined, 'the client kept the connection while the frame came, and answered it');
});
