/** Sent in `challenge`, the hellos and `welcome`; a peer with any other version is refused (exact match). */
// 2: assignJob inputs may carry their bytes (`data`), so small products need no fetch.
export const PROTOCOL_VERSION = 2;
