import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { type ComputeOutcome, type ComputeTaskName, unwrapOutcome } from './compute.ts';
import { type Compute, DEFAULT_INLINE_WORK } from './context.ts';

/**
 * A worker node's pool of threads for the JavaScript-heavy half of operations (model training,
 * cross-validation, evaluation: lib/ops/compute.ts), so that a long training never holds up the
 * node's event loop (heartbeats, status, other jobs' data reads). Data reads stay on the main
 * thread, where the DataEngine lives; arguments and results are structured-cloned (typed arrays
 * are copied, so nothing the engine caches is ever detached; a cached model dataset sits on
 * SharedArrayBuffers, which are shared, not copied: lib/ops/models/data.ts). A task too small to
 * be worth the trip runs inline instead (`DEFAULT_INLINE_WORK`, lib/ops/context.ts).
 *
 * Cancel: a task whose signal aborts is dropped from the queue, or, running, has its thread
 * terminated (piscina starts a fresh one in its place): a cancelled training stops computing.
 */

/** The default pool size: one thread per core but one (the main thread's), at least one. */
export function defaultComputeThreads(): number {
  return Math.max(1, availableParallelism() - 1);
}

/** How long an idle thread is kept (threads start on first use and load the ops in each). */
export const DEFAULT_COMPUTE_IDLE_MS = 5 * 60_000;

/** The thread's entry: the compiled one beside a compiled pool.js, else the sources' (through tsx). */
const THREAD_ENTRY = new URL(import.meta.url.endsWith('.ts') ? './pool-thread-tsx.mjs' : './pool-thread.js', import.meta.url).href;

export class ComputePool implements Compute {
  readonly threads: number;
  /** Tasks this small run inline (lib/ops/context.ts, `offload`); 0 ships every task that tells its work. */
  readonly inlineWork: number;
  readonly #pool: Piscina;

  constructor(threads: number, idleTimeoutMs = DEFAULT_COMPUTE_IDLE_MS, inlineWork = DEFAULT_INLINE_WORK) {
    if (!(Number.isInteger(threads) && threads >= 1)) throw new RangeError(`a compute pool needs at least 1 thread, not ${threads}`);
    this.threads = threads;
    this.inlineWork = inlineWork;
    this.#pool = new Piscina({ filename: THREAD_ENTRY, minThreads: 0, maxThreads: threads, idleTimeout: idleTimeoutMs });
  }

  async run(task: ComputeTaskName, args: unknown, signal?: AbortSignal): Promise<unknown> {
    signal?.throwIfAborted();
    const outcome = (await this.#pool.run({ task, args }, signal ? { signal } : {})) as ComputeOutcome;
    return unwrapOutcome(outcome);
  }

  /** Ends every thread (running tasks reject). */
  close(): Promise<void> {
    return this.#pool.destroy();
  }
}

/** What a node holds of a pool: it runs tasks on it and closes it when it stops. */
export interface ComputeHandle extends Compute {
  readonly threads: number;
  close(): Promise<void>;
}

/** The pool of `threads` threads, or undefined for 0 (operations then run inline, on the main thread). */
export function computePool(threads: number): ComputePool | undefined {
  return threads === 0 ? undefined : new ComputePool(threads);
}

/**
 * One pool for the workers of one process (`fdl node --config a --config b ...`, as `fdl simulate`
 * packs them): a pool of its own per worker put a thread, a V8 isolate of ~15 MiB, under each of
 * 50 workers, for cores that are no more numerous. A task is a pure function of its arguments
 * (lib/ops/compute.ts), so sharing the threads shares no state between the workers. Each worker
 * gets a handle; the last one closed ends the threads.
 */
export function shareCompute(pool: ComputeHandle | undefined, users: number): ComputeHandle[] {
  if (!pool) return [];
  let open = users;
  let closed: Promise<void> | undefined;
  return Array.from({ length: users }, () => {
    let mine = false;
    return {
      threads: pool.threads,
      ...(pool.inlineWork === undefined ? {} : { inlineWork: pool.inlineWork }),
      run: (task, args, signal) => pool.run(task, args, signal),
      close: () => {
        if (!mine) {
          mine = true;
          open--;
        }
        if (open > 0) return Promise.resolve();
        closed ??= pool.close();
        return closed;
      },
    };
  });
}
