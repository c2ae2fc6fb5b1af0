import type { DataEngine } from './engine.ts';

/**
 * The key under which an attempt's view of the engine (`forAttempt`, engine.ts) answers with the
 * engine itself. In a module of its own so that what needs only the key (lib/ops/models/data.ts,
 * which the compute threads load) does not load DuckDB.
 */
export const BEHIND = Symbol('the engine behind an attempt view');

/**
 * The engine itself behind an attempt's view (`forAttempt`), or the engine it is given: the key of
 * caches that outlive one attempt (lib/ops/models/data.ts keeps model datasets across rounds).
 */
export function engineBehind(engine: DataEngine): DataEngine {
  return ((engine as unknown as Record<symbol, DataEngine | undefined>)[BEHIND] ?? engine) as DataEngine;
}
