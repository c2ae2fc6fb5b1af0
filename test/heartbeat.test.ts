// A heartbeat must find a dead peer, and must not cut a live one because this process was busy:
// when the event loop was stalled, the timer fires before the pong waiting in the socket is read.
import t from 'tap';
import { Heartbeat } from '../lib/transport/heartbeat.ts';

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
