/** Sent in `challenge`, the hellos and `welcome`; a peer with any other version is refused (exact match). */
export const PROTOCOL_VERSION = 1;
