// A scheduler that refuses a peer (too many connections from one address, as when a thousand
// simulated workers dial at once) accepts the socket and closes it. Such a peer must back off
// like one whose dial failed, not redial at the first step for ever: the backoff is reset only
// when the session is established (the scheduler's welcome).
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { WebSocketServer } from 'ws';
import { encode } from '../protocols/codec.ts';
import type { Message } from '../protocols/messages.ts';
import { Client } from '../lib/transport/client.ts';
import { Requester } from '../lib/transport/requester.ts';
import { freePort } from '../lib/sim/cluster.ts';
import { DEFAULT_RECONNECT_INITIAL_MS } from '../lib/transport/defaults.ts';
import { waitFor } from './helpers/cluster.ts';

t.test('a peer the scheduler keeps refusing backs off exponentially', async (t) => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => wss.close(() => resolve())));
  const arrivals: number[] = [];
  wss.on('connection', (ws) => {
    arrivals.push(performance.now());
    ws.close(1013, 'too many connections'); // refused after the upgrade, as the scheduler does
  });
  const client = new Client({
    urls: [`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`],
    reconnect: true,
    random: () => 0, // the shortest delay of each step: what follows is a lower bound
    onOpen: () => {},
    onMessage: () => {},
  });
  t.teardown(() => client.close());
  await client.start();
  await waitFor(() => arrivals.length >= 4, { what: 'four dials of the refused client' });
  // Delays of at least half of 2x, 4x, 8x the initial step after the 1st, 2nd and 3rd refusal.
  const least = (DEFAULT_RECONNECT_INITIAL_MS * (2 + 4 + 8)) / 2;
  const span = (arrivals[3] as number) - (arrivals[0] as number);
  t.ok(span >= least, `the 4th dial came ${span.toFixed(0)} ms after the 1st, at least ${least} ms: the backoff grew`);
});

// An active scheduler and its standby: the client is given both URLs. A refused dial moves on to
// the next URL at once, and a lost connection is followed by a dial of the next one, so the
// client reaches whichever scheduler listens.
t.test('a client with several URLs reaches the one that listens, and follows it when it moves', async (t) => {
  const listen = async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    return { wss, url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}` };
  };
  const a = await listen();
  const b = await listen();
  // b refuses for now: its port is closed, as a standby's is.
  await new Promise<void>((resolve) => b.wss.close(() => resolve()));
  const refused: string[] = [];
  const opened: string[] = [];
  const client = new Client({
    urls: [b.url, a.url],
    reconnect: true,
    onOpen: () => opened.push(client.url),
    onMessage: () => {},
    onRetry: (_err, _delay, url) => refused.push(url),
  });
  t.teardown(() => client.close());
  await client.start();
  t.same(refused, [b.url], 'the first URL refused');
  t.same(opened, [a.url], 'the second one was dialed at once and opened');
  // a goes away and b takes over on its port.
  const port = Number(new URL(b.url).port);
  const b2 = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
  await new Promise<void>((resolve) => b2.once('listening', () => resolve()));
  t.teardown(() => {
    for (const ws of b2.clients) ws.terminate();
    return new Promise<void>((resolve) => b2.close(() => resolve()));
  });
  for (const ws of a.wss.clients) ws.terminate();
  await new Promise<void>((resolve) => a.wss.close(() => resolve()));
  await waitFor(() => opened.length === 2, { what: 'the client to open a connection to the second scheduler' });
  t.equal(opened[1], b.url, 'after the loss, the other URL');
});

t.test('without reconnection, the first dial still tries every URL before it fails', async (t) => {
  const urls = [`ws://127.0.0.1:${await freePort()}`, `ws://127.0.0.1:${await freePort()}`];
  const client = new Client({ urls, reconnect: false, onOpen: () => {}, onMessage: () => {} });
  await t.rejects(client.start(), { message: new RegExp(`^cannot reach the scheduler at ${urls.join(', ')}: `) });
});

// The Requester arms one timer for all its requests (not one per request): each still fails on its
// own deadline, a reply settles it whatever the timer, and a lost connection fails all at once.
t.test('Requester: each request fails at its own deadline, one timer for all', async (t) => {
  const requester = new Requester();
  // Its timer does not hold the process open (unref): this test's own handle does, while it waits.
  const alive = setInterval(() => {}, 1000);
  t.teardown(() => clearInterval(alive));
  const sent: Message[] = [];
  const send = (m: Message) => {
    sent.push(m);
    return true;
  };
  const long = requester.request((reqId) => ({ type: 'listNodes', reqId }), send, 60_000);
  const answered = requester.request((reqId) => ({ type: 'listProjects', reqId }), send, 80);
  const short = requester.request((reqId) => ({ type: 'listNodes', reqId }), send, 100);
  const shortest = requester.request((reqId) => ({ type: 'listNodes', reqId }), send, 50);
  t.ok(requester.settle({ type: 'projectList', reqId: (sent[1] as { reqId: number }).reqId, projects: [] }), 'a reply settles its request');
  t.same(await answered, { type: 'projectList', reqId: 2, projects: [] });
  await t.rejects(shortest, { message: 'no reply within 50 ms' });
  await t.rejects(short, { message: 'no reply within 100 ms' });
  let longSettled = false;
  void long.catch(() => {}).finally(() => {
    longSettled = true;
  });
  await new Promise((resolve) => setImmediate(resolve));
  t.notOk(longSettled, 'a request with a later deadline is still waiting');
  t.notOk(requester.settle({ type: 'nodeList', reqId: (sent[3] as { reqId: number }).reqId, nodes: [] }), 'a reply after its timeout settles nothing');
  requester.failAll('connection lost');
  await t.rejects(long, { message: 'connection lost' });
  await t.rejects(requester.request((reqId) => ({ type: 'listNodes', reqId }), () => false), { message: 'not connected to the scheduler' });
});

// The frame-rate limit protects a scheduler from its peers. A client does not police the scheduler
// it dialed: a workbench with many requests in flight (or a worker sent a burst of work) used to
// pause its own socket, then drop its own scheduler after 5 s over 5 000 frames/s, failing
// requests for nothing. 50 000 frames of 1 KiB in one write, five times the burst: all handled,
// nothing closed. (Not a proof on its own: a paced client handles whole socket reads while paused,
// so it ran 2.6 s here instead of 1.1 s and stayed under the 5 s that would have closed it.)
t.test('a client takes any frame rate from its scheduler, without pausing or closing', async (t) => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => wss.close(() => resolve())));
  const FRAMES = 50_000;
  const one = Buffer.from(encode({ type: 'error', reqId: 1, error: { code: 'INTERNAL', message: 'x'.repeat(1000), retryable: true } }));
  const framed = Buffer.concat([Buffer.from([0x82, 126, one.length >> 8, one.length & 0xff]), one]);
  wss.on('connection', (ws) => {
    (ws as unknown as { _socket: { write(b: Buffer): void } })._socket.write(Buffer.concat(Array.from({ length: FRAMES }, () => framed)));
  });
  let received = 0;
  let closed: string | undefined;
  const client = new Client({
    urls: [`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`],
    reconnect: false,
    onOpen: () => {},
    onMessage: () => {
      received++;
    },
    onClose: (code, reason) => {
      closed = `${code} ${reason}`;
    },
  });
  t.teardown(() => client.close());
  await client.start();
  await waitFor(() => received === FRAMES || closed !== undefined, { what: `${FRAMES} frames from the scheduler` });
  t.equal(closed, undefined, 'the client did not close its connection');
  t.equal(received, FRAMES, 'every frame handled');
});
