import type { ErrorCode } from './types.js';

/**
 * Every failure that crosses a layer boundary is a {@link KelidError} whose `code` is one of the wire
 * codes of PROTOCOL.md section 6. Messages never contain PINs, document contents or stack traces.
 */
export type { ErrorCode };

/** Codes a caller may reasonably retry after the user acts (re-plug, retype, wait). */
const RETRIABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'ERR_BUSY',
  'ERR_RATE_LIMITED',
  'ERR_USER_CANCELLED',
  'ERR_CONSENT_TIMEOUT',
  'ERR_TOKEN_NOT_FOUND',
  'ERR_TOKEN_REMOVED',
  'ERR_PIN_INCORRECT',
  'ERR_STATUS_UNAVAILABLE',
  'ERR_MODULE_FAILED',
  'ERR_DEVICE_ERROR',
]);

export interface KelidErrorOptions {
  cause?: unknown;
  retriable?: boolean;
  /** Extra fields for the wire `data` object (never secrets). */
  data?: Record<string, unknown>;
}

export class KelidError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly data: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: KelidErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KelidError';
    this.code = code;
    this.retriable = options.retriable ?? RETRIABLE.has(code);
    this.data = options.data ?? {};
  }

  /** Plain form used to carry the error across the module-host channel. */
  toJSON(): SerializedKelidError {
    return { code: this.code, message: this.message, retriable: this.retriable, data: this.data };
  }

  static fromJSON(e: SerializedKelidError): KelidError {
    return new KelidError(e.code, e.message, { retriable: e.retriable, data: e.data });
  }
}

export interface SerializedKelidError {
  code: ErrorCode;
  message: string;
  retriable: boolean;
  data: Record<string, unknown>;
}

export function isKelidError(e: unknown, code?: ErrorCode): e is KelidError {
  return e instanceof KelidError && (code === undefined || e.code === code);
}

/** Wrap anything thrown below a layer boundary; unknown errors become ERR_INTERNAL with the cause kept. */
export function toKelidError(e: unknown, fallbackMessage = 'internal error'): KelidError {
  if (e instanceof KelidError) return e;
  return new KelidError('ERR_INTERNAL', fallbackMessage, { cause: e });
}
