import { z } from 'zod';

/**
 * Wire error codes: stable strings a receiver branches on (never `instanceof`).
 * Each one is documented in docs/PROTOCOL.md, "Error codes".
 */
export const ErrorCodes = [
  'BAD_FRAME', // not decodable msgpack, or not a map with a string `type`
  'UNKNOWN_MESSAGE', // a `type` this protocol does not define
  'INVALID_MESSAGE', // a known `type` with missing or wrong fields
  'PROTOCOL_VERSION_MISMATCH',
  'NOT_AUTHENTICATED', // a message other than `hello` before the handshake
  'AUTH_FAILED', // a bad or revoked token, a bad signature, or a node id pinned to another key
  'FORBIDDEN', // authenticated, but not allowed to touch this project, job or resource
  'RATE_LIMITED', // too many frames; the peer is slowed, then disconnected
  'UNEXPECTED_MESSAGE', // a valid message this peer may not send in its role
  'UNKNOWN_PROJECT',
  'UNKNOWN_ARTIFACT',
  'UNKNOWN_JOB',
  'UNKNOWN_RESOURCE',
  'INVALID_ARTIFACT', // refused at submit time: the plan cannot be built
  'NO_WORKERS', // no worker has ever announced data for the project
  'HOLDERS_MISSING', // submitArtifact: known holders of the project's data stayed away past the scheduler's plan.holder_wait_ms
  'RESULT_NOT_READY',
  'ARTIFACT_NOT_FINISHED', // deleteArtifact on an artifact still SCHEDULED or RUNNING: cancel it first
  'QUOTA_EXCEEDED', // submitArtifact past the workbench token's artifacts in flight
  'DOWNLOAD_FORBIDDEN', // the node's allow_resource_download is false
  'CHECKSUM_MISMATCH',
  'CHUNK_CORRUPT', // a resourceChunk failed its crc32: refused, and asked again from its offset
  'RESOURCE_TOO_LARGE', // a product or resource over the scheduler's store.max_resource_bytes (the message names both sizes)
  'OPERATION_FAILED', // the operation threw on the worker
  'BAD_QUERY', // a query names a feature the data does not have, or a wrong value
  'PRIVACY_REFUSED', // the node's privacy rules refuse it: budget exhausted, or noise required
  'DATA_UNAVAILABLE',
  'ATTEMPT_TIMEOUT',
  'WORKER_LOST', // the job's worker was away longer than the grace time
  'STORE_WRITE_FAILED', // the scheduler or the initiator could not write a product or its private state durably (disk full, permissions...)
  'CANCELLED', // the artifact was cancelled
  'TOO_MANY_BAD_FRAMES',
  'FRAME_TOO_LARGE', // a frame, or the bytes before the hello, above the size allowed; the socket is closed
  'TOO_MANY_CONNECTIONS', // the scheduler's connection caps are reached (in total, unauthenticated, or from one address)
  'SHUTTING_DOWN',
  'INTERNAL',
] as const;

export const ErrorCodeSchema = z.enum(ErrorCodes);
export type ErrorCode = z.infer<typeof ErrorCodeSchema>;

/** Errors cross the wire as data; `retryable` is decided where the error is raised. */
export const WireErrorSchema = z
  .object({
    code: ErrorCodeSchema,
    message: z.string().max(10_000),
    retryable: z.boolean(),
    /** The step or field at fault, when there is one (e.g. "steps[1].operation.features[0]"). */
    path: z.string().max(1_000).optional(),
  })
  .strict();
export type WireError = z.infer<typeof WireErrorSchema>;

const NON_RETRYABLE: ReadonlySet<ErrorCode> = new Set([
  'CANCELLED',
  'PRIVACY_REFUSED',
  'AUTH_FAILED',
  'FORBIDDEN',
  'BAD_QUERY',
  'INVALID_ARTIFACT',
  'UNKNOWN_PROJECT',
  'PROTOCOL_VERSION_MISMATCH',
  'DOWNLOAD_FORBIDDEN',
  'FRAME_TOO_LARGE', // the same frame is refused again
  'RESOURCE_TOO_LARGE', // the same product is refused again
]);

/** The one place a wire error is made from its code. */
export function wireError(code: ErrorCode, message: string, path?: string): WireError {
  const err: WireError = { code, message, retryable: !NON_RETRYABLE.has(code) };
  if (path !== undefined) err.path = path;
  return err;
}

/**
 * The one way a field path is written in errors: `steps[0].operation.features[1]` (names
 * joined by dots, list indices in brackets), whether it comes from a schema or the planner.
 */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}
