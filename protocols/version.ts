/** Sent in `hello` and `welcome`; peers with another major version are refused. */
export const PROTOCOL_VERSION = 1;
