/** Tunables of the plan room, with their units. */

/**
 * How long a submit waits for known holders of the project's data that are away before it fails
 * with HOLDERS_MISSING (config: plan.holder_wait_ms): long enough for a worker's reconnect
 * backoff (at most 10 s) after a restart, short of the workbench's request timeout (60 s).
 */
export const DEFAULT_HOLDER_WAIT_MS = 30_000;

/** The most a scheduler's config may set `plan.holder_wait_ms` to: 10 minutes. */
export const MAX_HOLDER_WAIT_MS = 600_000;
