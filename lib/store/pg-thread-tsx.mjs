// The entry of the PostgreSQL bridge's thread when the node runs from the TypeScript sources
// (through tsx): on Node 20 a worker thread does not inherit the tsx loader of the thread that
// started it, so it registers its own, then loads the entry the build compiles (pg-thread.ts).
import { register } from 'tsx/esm/api';

register();
await import('./pg-thread.ts');
