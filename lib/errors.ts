import { type ErrorCode, type WireError, wireError } from '../protocols/errors.ts';

/**
 * An error raised in lib/ that knows its wire code. Receivers branch on `code`
 * (via `isFdlError`), never on `instanceof`, so copies of this module never confuse them.
 */
export class FdlError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly path: string | undefined;
  readonly isFdlError = true;

  constructor(code: ErrorCode, message: string, options: { path?: string; retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FdlError';
    this.code = code;
    this.path = options.path;
    this.retryable = options.retryable ?? wireError(code, '').retryable;
  }
}

export function isFdlError(e: unknown): e is FdlError {
  return typeof e === 'object' && e !== null && (e as { isFdlError?: unknown }).isFdlError === true;
}

/** Anything thrown -> the error that crosses the wire. Unknown errors are retryable. */
export function toWireError(e: unknown, fallback: ErrorCode = 'INTERNAL'): WireError {
  if (isFdlError(e)) {
    const w = wireError(e.code, e.message, e.path);
    w.retryable = e.retryable;
    return w;
  }
  const message = e instanceof Error ? e.message : String(e);
  return wireError(fallback, message);
}
