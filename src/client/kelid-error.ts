import type { PinState } from '../model/types.js';
import type { AgentErrorCode, KelidErrorCode, SdkErrorCode } from './error-codes.js';
import { userMessageFor } from './user-messages.js';
import type { UserMessageLanguage } from './user-messages.js';

export type { AgentErrorCode, KelidErrorCode, SdkErrorCode };

const SDK_RETRIABLE: ReadonlySet<string> = new Set([
  'ERR_AGENT_UNREACHABLE',
  'ERR_DISCONNECTED',
  'ERR_TIMEOUT',
  'ERR_ABORTED',
]);

/** Constructor options of {@link KelidError}. */
export interface KelidErrorOptions {
  /** Whether trying again (after the user acts) can succeed; defaults from the code. */
  retriable?: boolean;
  /** The `error.data` object of the agent's answer, or SDK details such as `hint`. */
  data?: Record<string, unknown>;
  /** The underlying error, if any. */
  cause?: unknown;
}

/**
 * The one error type of the SDK: every rejected promise carries a `KelidError`.
 *
 * @example
 * ```ts
 * try {
 *   await client.signCms({ certificateId, content: 'hello', summary: 'Contract 42' });
 * } catch (e) {
 *   if (e instanceof KelidError && e.code === 'ERR_PIN_INCORRECT' && e.pin?.finalTry) warnUser();
 * }
 * ```
 */
export class KelidError extends Error {
  /** Stable, machine-readable code (see {@link AgentErrorCode} and {@link SdkErrorCode}). */
  readonly code: KelidErrorCode;
  /** Whether the same call may succeed if tried again (after the user acts: re-plug, retype, allow). */
  readonly retriable: boolean;
  /**
   * PIN state after a failed PIN attempt (`ERR_PIN_INCORRECT`, `ERR_PIN_LOCKED`), when the agent sent it:
   * `finalTry` means the next wrong PIN locks the token; `locked` means it is locked now.
   */
  readonly pin?: PinState;
  /** Extra details: the agent's `error.data` (without `code`/`retriable`/`pin`), or SDK details. */
  readonly data: Record<string, unknown>;
  /** JSON-RPC error code of the answer (-32000 for agent errors); absent for SDK-side errors. */
  readonly rpcCode?: number;

  constructor(code: KelidErrorCode, message: string, options: KelidErrorOptions & { rpcCode?: number } = {}) {
    super(message);
    this.name = 'KelidError';
    this.code = code;
    this.retriable = options.retriable ?? SDK_RETRIABLE.has(code);
    this.data = options.data ?? {};
    if (options.rpcCode !== undefined) this.rpcCode = options.rpcCode;
    if (options.cause !== undefined) {
      Object.defineProperty(this, 'cause', { value: options.cause, enumerable: false, configurable: true });
    }
    const pin = this.data['pin'];
    if (isPinState(pin)) this.pin = pin;
  }

  /** True when the user said no or let the request expire: usually nothing to report, just stop. */
  get userCancelled(): boolean {
    return this.code === 'ERR_USER_CANCELLED' || this.code === 'ERR_CONSENT_TIMEOUT';
  }

  /**
   * A text to show the user, in Persian (`fa`, default) or English: what happened and what to do, as a
   * help desk would say it. A wrong PIN on the last try before the lock gets its own warning; codes
   * this SDK does not know get a general text. `message` stays the developer's text.
   */
  userMessage(lang: UserMessageLanguage = 'fa'): string {
    return userMessageFor(this.code, lang, this.pin?.finalTry ?? false);
  }
}

function isPinState(v: unknown): v is PinState {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    typeof o['countLow'] === 'boolean' &&
    typeof o['finalTry'] === 'boolean' &&
    typeof o['locked'] === 'boolean' &&
    typeof o['toBeChanged'] === 'boolean'
  );
}

const RPC_CODES: Record<number, SdkErrorCode> = {
  [-32700]: 'ERR_PARSE_ERROR',
  [-32600]: 'ERR_INVALID_REQUEST',
  [-32601]: 'ERR_METHOD_NOT_FOUND',
  [-32602]: 'ERR_INVALID_PARAMS',
};

/** Turn a JSON-RPC `error` member into a {@link KelidError}. */
export function errorFromRpc(error: unknown): KelidError {
  if (typeof error !== 'object' || error === null) {
    return new KelidError('ERR_PROTOCOL', 'the agent sent a malformed error');
  }
  const e = error as { code?: unknown; message?: unknown; data?: unknown };
  const rpcCode = typeof e.code === 'number' ? e.code : undefined;
  const message = typeof e.message === 'string' ? e.message : 'error';
  const data =
    typeof e.data === 'object' && e.data !== null ? { ...(e.data as Record<string, unknown>) } : {};
  let code: string | undefined = typeof data['code'] === 'string' ? data['code'] : undefined;
  const retriable = typeof data['retriable'] === 'boolean' ? data['retriable'] : undefined;
  delete data['code'];
  delete data['retriable'];
  if (code === undefined) code = (rpcCode !== undefined ? RPC_CODES[rpcCode] : undefined) ?? 'ERR_INTERNAL';
  return new KelidError(code, message, { rpcCode, data, retriable: retriable ?? false });
}
