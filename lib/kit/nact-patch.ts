// nact's per-message and per-stop garbage, cut at the source (nact 7.6.2, its only release; its
// Actor class is what `spawn` builds). Loaded once by lib/kit/actors.ts, before any actor exists.
//
// Measured at 1,000 workers with V8's sampling heap profiler (garbage included,
// bench/scale-memory.ts --alloc-profile): of ~40 MiB allocated per 1,001-job artifact by the
// scheduler, ~12 MiB were nact copying an actor's children map into every message's context
// (`new Map(childReferences)`: a supervisor with 32 shard parents copies 32 entries, two iterator
// objects each, for every message it handles) and ~3 MiB its `stop` (`delete this.parent` turns
// the stopped actor's properties into a dictionary): scavenges, CPU, and (with V8's own heap
// sizing) RSS under load (docs/PERFORMANCE.md, "The scheduler's memory").
//
// What changes, and why each keeps nact's behaviour:
// - `ctx.children` is built when read, not for every message: a getter making the same copy. Our
//   one reader (the supervisor's reset) reads it inside the call that got the context, after
//   nact stopped the old children, as before; nact's supervision and stop contexts (spreads of a
//   context) still get their copy when made. (nact's persistent actor, unused here, spreads a
//   context too and would lose `children`.)
// - `stop` sets `parent` to undefined instead of deleting it (nact only ever tests it for truth).
// - a message's turn: the handler's result is awaited only when it is a promise (a synchronous
//   handler's state is taken at once, then the next message), and the turn is queued as the actor
//   and message themselves instead of a fresh async closure and two promises per message.
//   A throw, or a rejected promise, goes to the actor's supervision as before.
// - turns run from one queue, many per immediate: nact gave each message a setImmediate of its
//   own, so a cascade of N hops (a report -> its JobActor -> the supervisor -> the next job's
//   actor -> ...) took N turns of the event loop, each an epoll syscall and the loop's phases (~18
//   per tiny round). Each actor still handles one message at a time, in the order sent (its next
//   message is queued only once its state is set), and turns run in the order they were queued;
//   a stopped actor's queued turn is skipped (nact cleared its immediate). At most TURNS_PER_DRAIN
//   turns run before the loop gets its turn: sockets and timers are never held for long.
import { stop } from 'nact';
import nactActor from 'nact/lib/actor.js';

interface ActorInternals {
  parent?: { reference: unknown; childStopped(child: unknown): void };
  path: unknown;
  reference: unknown;
  name: string;
  log: unknown;
  state: unknown;
  busy: boolean;
  stopped: boolean;
  immediate: NodeJS.Immediate | undefined;
  children: Map<string, { stop(): void }>;
  childReferences: Map<string, unknown>;
  mailbox: { toArray(): unknown[] };
  f: (this: unknown, state: unknown, message: unknown, ctx: unknown) => unknown;
  afterStop(state: unknown, ctx: unknown): void;
  createContext(sender: unknown): object;
  createContextWithMailbox(sender: unknown): object;
  clearImmediate(): void;
  clearTimeout(): void;
  afterMessage(): void;
  processNext(): void;
  handleFault(message: unknown, sender: unknown, error: unknown): void;
}

const Actor = (nactActor as unknown as { Actor: { prototype: ActorInternals } }).Actor;

/** Set once the patch is in (tests check it is). */
export const nactPatched = typeof Actor?.prototype?.createContext === 'function';

/** A message's context: nact's fields, and its children copied only when read. */
class Context {
  readonly parent: unknown;
  readonly path: unknown;
  readonly self: unknown;
  readonly name: string;
  readonly log: unknown;
  readonly #actor: ActorInternals;
  constructor(
    actor: ActorInternals,
    readonly sender: unknown,
  ) {
    this.parent = actor.parent ? actor.parent.reference : undefined;
    this.path = actor.path;
    this.self = actor.reference;
    this.name = actor.name;
    this.log = actor.log;
    this.#actor = actor;
  }
  get children(): Map<string, unknown> {
    return new Map(this.#actor.childReferences);
  }
}

function settle(actor: ActorInternals, next: unknown): void {
  actor.state = next;
  actor.afterMessage();
  actor.processNext();
}

function turn(actor: ActorInternals, message: unknown, sender: unknown): void {
  let next: unknown;
  try {
    const ctx = actor.createContext(sender);
    next = actor.f.call(ctx, actor.state, message, ctx);
    if (next === null || typeof (next as { then?: unknown }).then !== 'function') {
      settle(actor, next);
      return;
    }
  } catch (e) {
    actor.handleFault(message, sender, e);
    return;
  }
  (next as PromiseLike<unknown>).then(
    (value) => {
      try {
        settle(actor, value);
      } catch (e) {
        actor.handleFault(message, sender, e);
      }
    },
    (e) => actor.handleFault(message, sender, e),
  );
}

/** Turns run by one immediate before the event loop gets its turn (I/O, timers) again. */
const TURNS_PER_DRAIN = 256;

/** Turns due, in the order they were queued: actor, message, sender, flat (no object per turn). */
let due: unknown[] = [];
let head = 0;
let draining = false;

function drain(): void {
  let turns = 0;
  // Turns queued meanwhile (the cascade) are run by this loop too: `draining` stays set.
  while (head < due.length && turns++ < TURNS_PER_DRAIN) {
    const actor = due[head] as ActorInternals;
    const message = due[head + 1];
    const sender = due[head + 2];
    due[head] = due[head + 1] = due[head + 2] = undefined;
    head += 3;
    if (!actor.stopped) turn(actor, message, sender);
  }
  if (head < due.length) {
    setImmediate(drain);
    return;
  }
  // A burst's array is not kept at its peak size.
  if (due.length > 3_000) due = [];
  else due.length = 0;
  head = 0;
  draining = false;
}

function schedule(): void {
  if (draining) return;
  draining = true;
  setImmediate(drain);
}

if (nactPatched) {
  const proto = Actor.prototype;
  proto.createContext = function (this: ActorInternals, sender: unknown) {
    return new Context(this, sender);
  };
  // The supervision and stop contexts are spreads of a context (own fields only): their copy of
  // the children is made here, as nact made it.
  proto.createContextWithMailbox = function (this: ActorInternals, sender: unknown) {
    return { ...this.createContext(sender), children: new Map(this.childReferences), mailbox: this.mailbox.toArray() };
  };
  (proto as unknown as { handleMessage(message: unknown, sender: unknown): void }).handleMessage = function (
    this: ActorInternals,
    message: unknown,
    sender: unknown,
  ) {
    this.busy = true;
    due.push(this, message, sender);
    schedule();
  };
  (proto as unknown as { stop(): void }).stop = function (this: ActorInternals) {
    const context = this.createContextWithMailbox(this);
    this.clearImmediate();
    this.clearTimeout();
    this.parent?.childStopped(this);
    this.parent = undefined;
    for (const child of [...this.children.values()]) stop(child as never);
    this.stopped = true;
    setImmediate(() => this.afterStop(this.state, context));
  };
}
