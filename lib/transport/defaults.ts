/** Tunables of the transport room, with their units. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;
/** Bad frames tolerated from one peer within the window before it is disconnected. */
export const DEFAULT_BAD_FRAME_LIMIT = 20;
export const DEFAULT_BAD_FRAME_WINDOW_MS = 10_000;
export const DEFAULT_RECONNECT_INITIAL_MS = 200;
export const DEFAULT_RECONNECT_MAX_MS = 10_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
/** Per-connection frame rate: a peer above it is slowed (its socket paused), then disconnected. */
export const DEFAULT_RATE_LIMIT_FRAMES_PER_SECOND = 5_000;
export const DEFAULT_RATE_LIMIT_BURST = 10_000;
/** A peer kept over its rate this long is disconnected. */
export const DEFAULT_RATE_LIMIT_DISCONNECT_MS = 5_000;
