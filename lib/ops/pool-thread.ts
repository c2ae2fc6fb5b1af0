// The entry of a compute pool thread (lib/ops/pool.ts), as built: dist/pool-thread.js.
// From the sources, pool.ts starts pool-thread-tsx.mjs instead, which registers tsx first (on
// Node 20 a worker thread does not inherit the loader of the thread that started it).
import { runComputeTask } from './compute.ts';

/** One task: `{ task, args }` -> its outcome (errors as data). */
export default ({ task, args }: { task: string; args: unknown }) => runComputeTask(task, args);
