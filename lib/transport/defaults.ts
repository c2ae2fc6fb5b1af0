/** Tunables of the transport room, with their units. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;
/** A resource over this many bytes moves in chunks (config: streaming.threshold_bytes); up to it, in one frame. */
export const DEFAULT_STREAM_THRESHOLD_BYTES = 1024 * 1024;
/** The bytes of one resourceChunk (config: streaming.chunk_bytes). */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;
/** Room a frame needs around a chunk's or an inline resource's bytes (its other fields). */
export const FRAME_OVERHEAD_BYTES = 64 * 1024;
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;
/** Bad frames tolerated from one peer within the window before it is disconnected. */
export const DEFAULT_BAD_FRAME_LIMIT = 20;
export const DEFAULT_BAD_FRAME_WINDOW_MS = 10_000;
export const DEFAULT_RECONNECT_INITIAL_MS = 200;
export const DEFAULT_RECONNECT_MAX_MS = 10_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
/**
 * A submit's reply may be held while the scheduler waits for away holders of the project's data
 * (its `plan.holder_wait_ms`, at most 10 minutes): the workbench waits this long for it. A lost
 * connection still fails it at once.
 */
export const DEFAULT_SUBMIT_TIMEOUT_MS = 11 * 60_000;
/** Per-connection frame rate: a peer above it is slowed (its socket paused), then disconnected. */
export const DEFAULT_RATE_LIMIT_FRAMES_PER_SECOND = 5_000;
export const DEFAULT_RATE_LIMIT_BURST = 10_000;
/** A peer kept over its rate this long is disconnected. */
export const DEFAULT_RATE_LIMIT_DISCONNECT_MS = 5_000;

// ---------------------------------------------------------------- what the scheduler admits (docs/SECURITY.md, "Limits")

/**
 * Bytes a connection may send before its hello is accepted (all its frames together). A hello
 * carries the worker's metadata: measured, 2 data sources of 9 features take 7 KiB, 400
 * features (a fifth with 32 categories) 97 KiB, 3 200 features 755 KiB; 1 MiB fits the last.
 */
export const DEFAULT_PRE_AUTH_MAX_BYTES = 1024 * 1024;
/**
 * The shape of a frame before the hello is accepted: the deepest hello is 7 levels
 * (projects, data sources, features, categories), its longest list `holding`.
 */
export const PRE_AUTH_FRAME_SHAPE = { maxDepth: 16, maxContainerLength: 16_384, maxElements: 262_144, maxStringBytes: 65_536 } as const;
/** A connection that has not completed its hello in this time is closed. */
export const DEFAULT_HELLO_TIMEOUT_MS = 10_000;
/** Connections in total: 1 000 workers and their workbenches, with room. */
export const DEFAULT_MAX_CONNECTIONS = 4_096;
/** From one remote address: a simulated cluster of 1 000 workers on one host still fits. */
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 1_024;
/** Connections still before their hello: each may hold up to the pre-auth bytes. */
export const DEFAULT_MAX_UNAUTHENTICATED = 64;
export const DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS = 16;
/** Bytes of frames being received, over all peers; above it, peers wait (their sockets are not read). */
export const DEFAULT_MAX_IN_FLIGHT_BYTES = 256 * 1024 * 1024;
/** A workbench session with no data frame either way for this long is closed (workers stay: they heartbeat and wait for work). */
export const DEFAULT_WORKBENCH_IDLE_TIMEOUT_MS = 30 * 60_000;
/** A refused peer gets its error and close frames, then this long to answer before its socket is cut. */
export const REFUSAL_LINGER_MS = 1_000;

/**
 * An artifact's progress pushes (its jobs' transitions) go at most this often to its watchers
 * (config: progress_interval_ms; 0: after every barrier, as before). A final state goes at once
 * with what was queued before it, so an artifact done within this time costs one push in all.
 * A person watching sees no difference at 50 ms; a tiny round (2 ms) stops paying a frame, its
 * encoding and a wake-up of the workbench's process per round.
 */
export const DEFAULT_PROGRESS_INTERVAL_MS = 50;
