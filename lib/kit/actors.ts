import { type ActorContext, type Ref, type SupervisionContext, dispatch, spawn } from 'nact';
import type { Logger } from '../log.ts';
import './nact-patch.ts';

// Our thin typed layer over nact: every actor is named (nact's anonymous names collide),
// and every actor has an onCrash that logs through pino and returns a decision
// (nact's default policy console.logs and stops the actor; a throwing onCrash is an unhandled rejection).

export type { Ref } from 'nact';
export type Ctx<M> = ActorContext<M, Ref<unknown>>;
export type Handler<S, M> = (state: S, msg: M, ctx: Ctx<M>) => S | Promise<S>;
export type CrashDecision = 'reset' | 'resume' | 'stop';

export interface ActorOptions<S, M> {
  log: Logger;
  /** Built again on every reset: load from the durable store here, not from memory. */
  initialState: (ctx: Ctx<M>) => S;
  /** What to do when the handler throws (a bug): default reset. */
  onCrash?: CrashDecision | ((msg: M | undefined, err: Error | undefined) => CrashDecision);
  afterStop?: (state: S) => void;
}

export function spawnActor<S, M>(parent: Ref<unknown>, name: string, handler: Handler<S, M>, opts: ActorOptions<S, M>): Ref<M> {
  const onCrash = (msg: M | undefined, err: Error | undefined, ctx: SupervisionContext<M, Ref<unknown>>) => {
    try {
      const decision = typeof opts.onCrash === 'function' ? opts.onCrash(msg, err) : (opts.onCrash ?? 'reset');
      opts.log.error(
        { err, actor: ctx.path.toString(), msgKind: (msg as { kind?: unknown } | undefined)?.kind, decision },
        'actor crashed',
      );
      return decision === 'reset' ? ctx.reset : decision === 'resume' ? ctx.resume : ctx.stop;
    } catch {
      return ctx.reset;
    }
  };
  const props: Record<string, unknown> = {
    initialStateFunc: opts.initialState,
    onCrash,
  };
  if (opts.afterStop) props.afterStop = (state: S) => opts.afterStop?.(state);
  // nact's typings cannot infer through our generic handler; the cast stays in this one place.
  return spawn(parent as Ref<never>, handler as never, name, props as never) as unknown as Ref<M>;
}

export function send<M>(ref: Ref<M>, msg: M): void {
  dispatch(ref, msg);
}

/** A stable shard for a key, so no parent ever has thousands of direct children. */
export function shardOf(key: string, shards: number): number {
  let h = 2166136261;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return (h >>> 0) % shards;
}
