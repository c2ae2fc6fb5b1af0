import { start, stop } from 'nact';
import { send, spawnActor } from '../lib/kit/actors.ts';
import type { Logger } from '../lib/log.ts';
import { type Cleanup, median, now, type Row, rate, ratio, spread } from './util.ts';

/**
 * 1. Local actor dispatch: N messages sent in a burst to one actor (spawnActor + send) that
 * counts them, against the same counting function called (a) in a plain loop and (b) once
 * per `setImmediate` hop, chained, which is the mechanism nact uses for every message.
 */

interface Counter {
  n: number;
}
type Tick = { kind: 'tick' };

export async function benchDispatch(opts: { log: Logger; cleanup: Cleanup; messages: number; repeats: number }): Promise<Row[]> {
  const { log, messages: N, repeats } = opts;
  const system = start();
  opts.cleanup.add('nact system (dispatch)', () => stop(system));

  const count = (s: Counter): Counter => {
    s.n++;
    return s;
  };

  const actorRun = (rep: number): Promise<number> =>
    new Promise((resolve) => {
      let t0 = 0;
      const ref = spawnActor<Counter, Tick>(
        system,
        `counter-${rep}`,
        (s) => {
          count(s);
          if (s.n === N) resolve((N / (now() - t0)) * 1000);
          return s;
        },
        { log, initialState: () => ({ n: 0 }), onCrash: 'stop' },
      );
      const tick: Tick = { kind: 'tick' };
      t0 = now();
      for (let i = 0; i < N; i++) send(ref, tick);
    });

  const immediateRun = (): Promise<number> =>
    new Promise((resolve) => {
      const s: Counter = { n: 0 };
      const t0 = now();
      const hop = () => {
        count(s);
        if (s.n === N) resolve((N / (now() - t0)) * 1000);
        else setImmediate(hop);
      };
      setImmediate(hop);
    });

  const callRun = (): number => {
    // Ten times N, so the loop runs long enough to be timed.
    const s: Counter = { n: 0 };
    const calls = N * 10;
    const t0 = now();
    for (let i = 0; i < calls; i++) count(s);
    const dt = now() - t0;
    if (s.n !== calls) throw new Error('counting went wrong');
    return (calls / dt) * 1000;
  };

  // Warm-up: JIT each path once, then interleave the repeats so drift hits all alike.
  await actorRun(-1);
  await immediateRun();
  callRun();
  const actor: number[] = [];
  const immediate: number[] = [];
  const calls: number[] = [];
  for (let r = 0; r < repeats; r++) {
    actor.push(await actorRun(r));
    immediate.push(await immediateRun());
    calls.push(callRun());
  }
  const a = median(actor);
  const im = median(immediate);
  const c = median(calls);
  process.stdout.write(
    `[dispatch] ${N} msgs x ${repeats}: actor ${rate(a)}/s (spread ${(spread(actor) * 100).toFixed(0)}%), ` +
      `setImmediate chain ${rate(im)}/s, function call ${rate(c)}/s\n`,
  );
  return [
    {
      figure: 'actor dispatch (spawnActor+send), msgs/s',
      value: rate(a),
      baseline: rate(im),
      ratio: ratio(a / im),
      note: 'baseline: chained setImmediate hop per msg',
    },
    {
      figure: 'actor dispatch vs plain function call',
      value: rate(a),
      baseline: rate(c),
      ratio: ratio(a / c),
      note: 'baseline: direct call in a loop',
    },
  ];
}
