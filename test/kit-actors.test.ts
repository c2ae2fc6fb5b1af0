// Why: lib/kit/nact-patch.ts replaces three of nact's Actor methods (a message's turn, its context,
// stop) to cut the garbage per message; nact's behaviour must stay what the actors rely on: one
// message at a time in order, sync and async handlers, a context's children copied (when read),
// crash supervision (reset) for a throw and for a rejection, and stop (afterStop, the parent's children).
// It also runs the turns of all actors from one queue, many per event-loop turn (a cascade of hops
// costs one turn of the loop, not one each), within a bound that lets sockets and timers in.
import { start, stop } from 'nact';
import pino from 'pino';
import t from 'tap';
import { type Ctx, send, spawnActor } from '../lib/kit/actors.ts';
import { nactPatched } from '../lib/kit/nact-patch.ts';
import { until } from './helpers/cluster.ts';

const log = pino({ level: 'silent' });

t.test('the patch is in, and messages are handled one at a time, in order, sync or async', async (t) => {
  t.ok(nactPatched, 'nact Actor methods replaced');
  const system = start();
  t.teardown(() => stop(system));
  const seen: number[] = [];
  let running = 0;
  let overlapped = false;
  const ref = spawnActor<number, number>(
    system,
    'ordered',
    async (s, m) => {
      if (++running > 1) overlapped = true;
      if (m % 3 === 0) await new Promise((r) => setImmediate(r));
      seen.push(m);
      running--;
      return s + m;
    },
    { log, initialState: () => 0 },
  );
  const sums: number[] = [];
  const probe = spawnActor<number, number>(
    system,
    'sync',
    (s, m) => {
      sums.push(s + m);
      return s + m;
    },
    { log, initialState: () => 0 },
  );
  for (let i = 1; i <= 20; i++) {
    send(ref, i);
    send(probe, i);
  }
  await until(() => seen.length === 20 && sums.length === 20, 10_000, 'all 40 messages handled');
  t.same(seen, Array.from({ length: 20 }, (_, i) => i + 1), 'in the order sent');
  t.notOk(overlapped, 'never two at once');
  t.equal(sums.at(-1), 210, 'the state carried from message to message');
});

t.test("a context's children are the actor's, copied when read", async (t) => {
  const system = start();
  t.teardown(() => stop(system));
  const sizes: number[] = [];
  let copiesDistinct = false;
  const parent = spawnActor<null, 'count' | 'spawn' | 'stopOne'>(
    system,
    'parent',
    (s, m, ctx: Ctx<'count' | 'spawn' | 'stopOne'>) => {
      if (m === 'spawn') for (let i = 0; i < 3; i++) spawnActor<null, never>(ctx.self, `child-${i}`, (x) => x, { log, initialState: () => null });
      if (m === 'stopOne') {
        const first = ctx.children.get('child-0');
        if (first) stop(first);
      }
      if (m === 'count') {
        const a = ctx.children;
        a.clear(); // a copy: the actor's own children are untouched
        copiesDistinct = ctx.children !== a;
        sizes.push(ctx.children.size);
      }
      return s;
    },
    { log, initialState: () => null },
  );
  send(parent, 'count');
  send(parent, 'spawn');
  send(parent, 'count');
  send(parent, 'stopOne');
  send(parent, 'count');
  await until(() => sizes.length === 3, 10_000, 'three counts');
  t.same(sizes, [0, 3, 2]);
  t.ok(copiesDistinct, 'each read is its own copy');
});

t.test('a throw and a rejection go to supervision (reset), and the actor carries on', async (t) => {
  const system = start();
  t.teardown(() => stop(system));
  const states: number[] = [];
  let inits = 0;
  const ref = spawnActor<number, number | 'throw' | 'reject'>(
    system,
    'crashy',
    (s, m) => {
      if (m === 'throw') throw new Error('bug');
      if (m === 'reject') return Promise.reject(new Error('async bug'));
      states.push(s + m);
      return s + m;
    },
    {
      log,
      initialState: () => {
        inits++;
        return 100;
      },
      onCrash: 'reset',
    },
  );
  send(ref, 1);
  send(ref, 'throw');
  send(ref, 2);
  send(ref, 'reject');
  send(ref, 3);
  await until(() => states.length === 3, 10_000, 'three sums');
  t.same(states, [101, 102, 103], 'each crash reset the state, the next message was handled');
  t.equal(inits, 3);
});

t.test("stop gives afterStop the last state and takes the actor out of its parent's children", async (t) => {
  const system = start();
  t.teardown(() => stop(system));
  const stopped: string[] = [];
  const counts: number[] = [];
  const parent = spawnActor<null, 'count'>(
    system,
    'p',
    (s, _m, ctx) => {
      counts.push(ctx.children.size);
      return s;
    },
    { log, initialState: () => null },
  );
  const child = spawnActor<number, number>(parent, 'c', (s, m) => s + m, { log, initialState: () => 0, afterStop: (s) => stopped.push(`child ${s}`) });
  send(child, 5);
  send(parent, 'count');
  await until(() => counts.length === 1, 10_000, 'the parent counted');
  stop(child);
  send(parent, 'count');
  await until(() => stopped.length === 1 && counts.length === 2, 10_000, 'the child stopped, the parent counted again');
  t.same(stopped, ['child 5']);
  t.same(counts, [1, 0]);
});

/** A ring of `size` actors passing a counter on until it reaches `hops`; resolves with the turns of the event loop it took. */
function relay(system: ReturnType<typeof start>, name: string, size: number, hops: number): { done: Promise<void>; loopTurns: () => number } {
  let loopTurns = 0;
  let finished = false;
  const count = () => {
    if (finished) return;
    loopTurns++;
    setImmediate(count);
  };
  let resolve: () => void = () => {};
  const done = new Promise<void>((r) => {
    resolve = r;
  });
  const ring: Array<ReturnType<typeof spawnActor<null, number>>> = [];
  for (let i = 0; i < size; i++) {
    ring.push(
      spawnActor<null, number>(
        system,
        `${name}-${i}`,
        (s, m) => {
          if (m === hops) {
            finished = true;
            resolve();
          } else send(ring[(i + 1) % size] as (typeof ring)[number], m + 1);
          return s;
        },
        { log, initialState: () => null },
      ),
    );
  }
  send(ring[0] as (typeof ring)[number], 1);
  setImmediate(count);
  return { done, loopTurns: () => loopTurns };
}

t.test('a cascade of hops runs in one turn of the event loop, and a long one lets the loop in', async (t) => {
  const system = start();
  t.teardown(() => stop(system));
  // 100 hops across 10 actors: nact gave each hop an immediate of its own (100 turns of the loop).
  const short = relay(system, 'short', 10, 100);
  await short.done;
  t.ok(short.loopTurns() <= 1, `100 hops in ${short.loopTurns()} turn(s) of the loop`);
  // 5,000 hops: the loop gets its turns in between (I/O and timers are not held up by a long cascade).
  const long = relay(system, 'long', 10, 5_000);
  await long.done;
  t.ok(long.loopTurns() >= 5_000 / 256 - 1, `5,000 hops let the loop in ${long.loopTurns()} times`);
  t.ok(long.loopTurns() < 100, 'but not once per hop');
});

t.test("a stopped actor's queued messages are not handled", async (t) => {
  const system = start();
  t.teardown(() => stop(system));
  const handled: number[] = [];
  const recorder = (name: string) =>
    spawnActor<null, number>(
      system,
      name,
      (s, m) => {
        handled.push(m);
        return s;
      },
      { log, initialState: () => null },
    );
  const ref = recorder('stopped-with-mail');
  send(ref, 1);
  stop(ref);
  send(recorder('after'), 2);
  await until(() => handled.includes(2), 10_000, 'the message sent after the stop, to another actor');
  t.same(handled, [2], 'the stopped actor handled nothing');
});
