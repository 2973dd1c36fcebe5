import { KelidError } from '../model/errors.js';
import type { ErrorCode } from '../model/errors.js';

// The one place that reads CKR_* values. pkcs11js throws two shapes: `Pkcs11Error` (name
// "Pkcs11Error", `.code` = the CK_RV, `.message` = "CKR_NAME") and, from C_SetAttributeValue /
// C_CreateObject / C_CopyObject, a plain `Error("CKR_NAME:123")`. Both are handled here.

/** CK_RV values we name (PKCS#11 v2.40 / 3.0). */
export const CKR: Readonly<Record<string, number>> = {
  CKR_OK: 0x0,
  CKR_CANCEL: 0x1,
  CKR_HOST_MEMORY: 0x2,
  CKR_SLOT_ID_INVALID: 0x3,
  CKR_GENERAL_ERROR: 0x5,
  CKR_FUNCTION_FAILED: 0x6,
  CKR_ARGUMENTS_BAD: 0x7,
  CKR_ATTRIBUTE_READ_ONLY: 0x10,
  CKR_ATTRIBUTE_SENSITIVE: 0x11,
  CKR_ATTRIBUTE_TYPE_INVALID: 0x12,
  CKR_ATTRIBUTE_VALUE_INVALID: 0x13,
  CKR_DATA_INVALID: 0x20,
  CKR_DATA_LEN_RANGE: 0x21,
  CKR_DEVICE_ERROR: 0x30,
  CKR_DEVICE_MEMORY: 0x31,
  CKR_DEVICE_REMOVED: 0x32,
  CKR_FUNCTION_CANCELED: 0x50,
  CKR_FUNCTION_NOT_SUPPORTED: 0x54,
  CKR_KEY_HANDLE_INVALID: 0x60,
  CKR_KEY_SIZE_RANGE: 0x62,
  CKR_KEY_TYPE_INCONSISTENT: 0x63,
  CKR_KEY_FUNCTION_NOT_PERMITTED: 0x68,
  CKR_MECHANISM_INVALID: 0x70,
  CKR_MECHANISM_PARAM_INVALID: 0x71,
  CKR_OBJECT_HANDLE_INVALID: 0x82,
  CKR_OPERATION_ACTIVE: 0x90,
  CKR_OPERATION_NOT_INITIALIZED: 0x91,
  CKR_PIN_INCORRECT: 0xa0,
  CKR_PIN_INVALID: 0xa1,
  CKR_PIN_LEN_RANGE: 0xa2,
  CKR_PIN_EXPIRED: 0xa3,
  CKR_PIN_LOCKED: 0xa4,
  CKR_SESSION_CLOSED: 0xb0,
  CKR_SESSION_COUNT: 0xb1,
  CKR_SESSION_HANDLE_INVALID: 0xb3,
  CKR_SESSION_READ_ONLY: 0xb5,
  CKR_SESSION_EXISTS: 0xb6,
  CKR_SESSION_READ_ONLY_EXISTS: 0xb7,
  CKR_SESSION_READ_WRITE_SO_EXISTS: 0xb8,
  CKR_SIGNATURE_INVALID: 0xc0,
  CKR_TEMPLATE_INCOMPLETE: 0xd0,
  CKR_TEMPLATE_INCONSISTENT: 0xd1,
  CKR_TOKEN_NOT_PRESENT: 0xe0,
  CKR_TOKEN_NOT_RECOGNIZED: 0xe1,
  CKR_TOKEN_WRITE_PROTECTED: 0xe2,
  CKR_USER_ALREADY_LOGGED_IN: 0x100,
  CKR_USER_NOT_LOGGED_IN: 0x101,
  CKR_USER_PIN_NOT_INITIALIZED: 0x102,
  CKR_USER_TYPE_INVALID: 0x103,
  CKR_USER_ANOTHER_ALREADY_LOGGED_IN: 0x104,
  CKR_USER_TOO_MANY_TYPES: 0x105,
  CKR_BUFFER_TOO_SMALL: 0x150,
  CKR_CRYPTOKI_NOT_INITIALIZED: 0x190,
  CKR_CRYPTOKI_ALREADY_INITIALIZED: 0x191,
};

const NAME_BY_CODE = new Map<number, string>(Object.entries(CKR).map(([name, code]) => [code, name]));

interface Mapping {
  code: ErrorCode;
  message: string;
  retriable?: boolean;
}

/** Every CK_RV we map deliberately. Anything else becomes ERR_INTERNAL (detail only in the log). */
export const CKR_MAPPINGS: Readonly<Record<string, Mapping>> = {
  CKR_PIN_INCORRECT: { code: 'ERR_PIN_INCORRECT', message: 'the PIN is incorrect' },
  CKR_PIN_INVALID: { code: 'ERR_PIN_POLICY', message: 'the token rejected the new PIN (invalid characters)' },
  CKR_PIN_LEN_RANGE: { code: 'ERR_PIN_POLICY', message: "the PIN length is outside the token's limits" },
  CKR_PIN_EXPIRED: { code: 'ERR_PIN_EXPIRED', message: 'the PIN has expired and must be changed' },
  CKR_PIN_LOCKED: { code: 'ERR_PIN_LOCKED', message: 'the PIN is locked' },
  CKR_USER_PIN_NOT_INITIALIZED: {
    code: 'ERR_TOKEN_NOT_INITIALIZED',
    message: 'the user PIN of this token has not been set',
  },
  CKR_DEVICE_ERROR: { code: 'ERR_DEVICE_ERROR', message: 'the token reported a device error' },
  CKR_DEVICE_MEMORY: { code: 'ERR_TOKEN_FULL', message: 'the token has no memory left' },
  CKR_DEVICE_REMOVED: { code: 'ERR_TOKEN_REMOVED', message: 'the token was removed' },
  CKR_TOKEN_NOT_PRESENT: { code: 'ERR_TOKEN_REMOVED', message: 'the token is not present' },
  CKR_TOKEN_NOT_RECOGNIZED: {
    code: 'ERR_TOKEN_NOT_FOUND',
    message: 'the token is not recognized by its module',
  },
  CKR_SLOT_ID_INVALID: { code: 'ERR_TOKEN_REMOVED', message: 'the token slot is gone' },
  CKR_SESSION_HANDLE_INVALID: { code: 'ERR_TOKEN_REMOVED', message: 'the token session was lost' },
  CKR_SESSION_CLOSED: { code: 'ERR_TOKEN_REMOVED', message: 'the token session was closed' },
  CKR_TOKEN_WRITE_PROTECTED: {
    code: 'ERR_FORBIDDEN',
    message: 'the token is write-protected',
    retriable: false,
  },
  CKR_SESSION_EXISTS: {
    code: 'ERR_BUSY',
    message: 'the token has open sessions (close other applications using it)',
  },
  CKR_SESSION_READ_ONLY_EXISTS: {
    code: 'ERR_BUSY',
    message: 'another application holds a read-only session on the token',
  },
  CKR_SESSION_COUNT: { code: 'ERR_BUSY', message: 'the token cannot open more sessions' },
  CKR_OPERATION_ACTIVE: { code: 'ERR_BUSY', message: 'another operation is active on the token' },
  CKR_USER_ANOTHER_ALREADY_LOGGED_IN: { code: 'ERR_BUSY', message: 'another user is logged in to the token' },
  CKR_MECHANISM_INVALID: {
    code: 'ERR_MECHANISM_UNSUPPORTED',
    message: 'the token does not support this mechanism',
  },
  CKR_MECHANISM_PARAM_INVALID: {
    code: 'ERR_MECHANISM_UNSUPPORTED',
    message: 'the token does not support these mechanism parameters',
  },
  CKR_KEY_SIZE_RANGE: {
    code: 'ERR_MECHANISM_UNSUPPORTED',
    message: 'the token does not support this key size',
  },
  CKR_KEY_TYPE_INCONSISTENT: {
    code: 'ERR_MECHANISM_UNSUPPORTED',
    message: 'the key type does not fit this mechanism',
  },
  CKR_KEY_FUNCTION_NOT_PERMITTED: {
    code: 'ERR_FORBIDDEN',
    message: 'the key is not allowed to do this',
    retriable: false,
  },
  CKR_FUNCTION_NOT_SUPPORTED: {
    code: 'ERR_MECHANISM_UNSUPPORTED',
    message: 'the module does not support this function',
  },
  CKR_KEY_HANDLE_INVALID: { code: 'ERR_KEY_NOT_FOUND', message: 'the key is no longer on the token' },
  CKR_OBJECT_HANDLE_INVALID: { code: 'ERR_KEY_NOT_FOUND', message: 'the object is no longer on the token' },
  CKR_DATA_LEN_RANGE: {
    code: 'ERR_INVALID_INPUT',
    message: 'the data length does not fit the key or mechanism',
  },
  CKR_DATA_INVALID: { code: 'ERR_INVALID_INPUT', message: 'the token rejected the data' },
  CKR_ATTRIBUTE_VALUE_INVALID: {
    code: 'ERR_INVALID_INPUT',
    message: 'the token rejected an attribute value',
  },
  CKR_TEMPLATE_INCONSISTENT: { code: 'ERR_INVALID_INPUT', message: 'the token rejected the object template' },
  CKR_TEMPLATE_INCOMPLETE: { code: 'ERR_INVALID_INPUT', message: 'the object template is incomplete' },
  CKR_FUNCTION_CANCELED: { code: 'ERR_USER_CANCELLED', message: 'the operation was cancelled on the device' },
  CKR_CANCEL: { code: 'ERR_USER_CANCELLED', message: 'the operation was cancelled on the device' },
  CKR_CRYPTOKI_NOT_INITIALIZED: {
    code: 'ERR_MODULE_FAILED',
    message: 'the PKCS#11 module is not initialized',
  },
  CKR_GENERAL_ERROR: { code: 'ERR_DEVICE_ERROR', message: 'the PKCS#11 module reported a general error' },
  CKR_HOST_MEMORY: { code: 'ERR_MODULE_FAILED', message: 'the PKCS#11 module ran out of memory' },
};

export interface CkrValue {
  name: string;
  value: number;
}

/** Extract the CK_RV from either pkcs11js error form; undefined when `e` is not a PKCS#11 error. */
export function readCkr(e: unknown): CkrValue | undefined {
  if (!(e instanceof Error)) return undefined;
  const withCode = e as Error & { code?: unknown };
  if (e.name === 'Pkcs11Error' && typeof withCode.code === 'number') {
    const name = /^CKR_[A-Z0-9_]+/.exec(e.message)?.[0] ?? NAME_BY_CODE.get(withCode.code) ?? 'CKR_UNKNOWN';
    return { name, value: withCode.code };
  }
  const m = /(CKR_[A-Z0-9_]+):(\d+)/.exec(e.message);
  if (m) return { name: m[1]!, value: Number(m[2]) };
  return undefined;
}

/** Name of a CK_RV value (for logs). */
export function ckrName(value: number): string {
  return NAME_BY_CODE.get(value) ?? `CKR_0x${value.toString(16)}`;
}

/**
 * Map anything a pkcs11js call threw to a KelidError. `operation` names the PKCS#11 function for the
 * message (never arguments: they may be PINs). The CKR name is kept in `data.ckr` for the log and
 * for callers that must tell e.g. CKR_PIN_EXPIRED apart.
 */
export function mapPkcs11Error(e: unknown, operation: string): KelidError {
  if (e instanceof KelidError) return e;
  const ckr = readCkr(e);
  if (!ckr) {
    return new KelidError('ERR_MODULE_FAILED', `${operation} failed inside the PKCS#11 module`, {
      cause: e instanceof Error ? new Error(e.message) : undefined,
    });
  }
  const mapping = CKR_MAPPINGS[ckr.name];
  if (!mapping) {
    return new KelidError('ERR_INTERNAL', `${operation} failed (${ckr.name})`, { data: { ckr: ckr.name } });
  }
  const options: { data: Record<string, unknown>; retriable?: boolean } = { data: { ckr: ckr.name } };
  if (mapping.retriable !== undefined) options.retriable = mapping.retriable;
  return new KelidError(mapping.code, mapping.message, options);
}

/** True when the error says a CK_RV of this name (works on mapped KelidErrors and raw errors). */
export function hasCkr(e: unknown, name: string): boolean {
  if (e instanceof KelidError) return e.data.ckr === name;
  return readCkr(e)?.name === name;
}
