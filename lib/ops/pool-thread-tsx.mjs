// The entry of a compute pool thread when the node runs from the TypeScript sources (through
// tsx: the tests, FDL_FROM_SOURCE=1). Plain JavaScript because on Node 20 a worker thread does
// not inherit the tsx loader of the thread that started it: it registers its own, then loads
// the entry the build compiles (pool-thread.ts).
import { register } from 'tsx/esm/api';

register();
const entry = await import('./pool-thread.ts');

export default entry.default;
