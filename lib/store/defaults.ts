/** Tunables of the store room (and of the admission it counts for), with their units. */

/** A finished artifact (COMPLETED, ERROR, CANCELLED) is deleted this long after it finished: 7 days. */
export const DEFAULT_FINISHED_ARTIFACT_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;
/** How often the scheduler looks for finished artifacts past their retention: hourly. */
export const DEFAULT_RETENTION_SWEEP_INTERVAL_MS = 60 * 60 * 1000;
/** Artifacts deleted per sweep message: a backlog is worked off in batches, other messages in between. */
export const RETENTION_SWEEP_BATCH = 200;
/** Artifacts one workbench token may have SCHEDULED or RUNNING at once, so one researcher cannot starve the others. */
export const DEFAULT_ARTIFACTS_IN_FLIGHT_PER_WORKBENCH = 20;
/** How many artifacts `listArtifacts` returns when it names no limit (its bound is in protocols/messages.ts). */
export const DEFAULT_ARTIFACT_LIST_LIMIT = 100;
/** Resources of at most this many bytes are rows of the database, not files (config: store.inline_resource_max_bytes). */
export const DEFAULT_INLINE_RESOURCE_MAX_BYTES = 64 * 1024;
/** A product or resource over this many bytes is refused (config: store.max_resource_bytes), naming both sizes. */
export const DEFAULT_MAX_RESOURCE_BYTES = 2 * 1024 * 1024 * 1024;
/**
 * SQLite: the group commit's WAL sync runs on the event loop while syncs take less than this (a
 * moving average of the last ones, ms), in libuv's threadpool once they take longer. Why: handing
 * a ~0.1 ms fdatasync to the threadpool costs two thread wake-ups (the pool's thread, then the loop
 * through its eventfd), ~0.15-0.2 ms a barrier on a VM, more than the sync; on a slow disk (ms per
 * sync) the loop had better handle the reports that arrive meanwhile (docs/PERFORMANCE.md).
 */
export const INLINE_SYNC_MAX_MS = 0.5;
/** PostgreSQL: a session idle this long inside its open transaction is ended by the server (a frozen process frees its locks). */
export const DEFAULT_IDLE_IN_TRANSACTION_MS = 10_000;
/**
 * PostgreSQL with a standby (config ha.lease_ms): how long the active scheduler's lease lasts
 * without a renewal or a commit. A SIGKILLed active one is replaced after at most this long plus
 * a standby's look (a quarter of it) and its start; a shorter lease fences a scheduler that
 * stalls (a long pause of its event loop, a slow database) sooner.
 */
export const DEFAULT_LEASE_MS = 4_000;
