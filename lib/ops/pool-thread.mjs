// The entry of a compute pool thread (lib/ops/pool.ts). Plain JavaScript because on Node 20 a
// worker thread does not inherit the tsx loader that bin/fdl.js registers: it registers its own,
// then loads the compute tasks (lib/ops/compute.ts).
import { register } from 'tsx/esm/api';

register();
const { runComputeTask } = await import('./compute.ts');

/** One task: `{ task, args }` -> its outcome (errors as data). */
export default ({ task, args }) => runComputeTask(task, args);
