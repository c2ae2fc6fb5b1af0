// A scheduler that refuses a peer (too many connections from one address, as when a thousand
// simulated workers dial at once) accepts the socket and closes it. Such a peer must back off
// like one whose dial failed, not redial at the first step for ever: the backoff is reset only
// when the session is established (the scheduler's welcome).
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { WebSocketServer } from 'ws';
import { Client } from '../lib/transport/client.ts';
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
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
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
