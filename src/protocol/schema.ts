import { Ajv } from 'ajv';
import type { ValidateFunction } from 'ajv';
import { DIGEST_LENGTH } from '../pki/der.js';
import type { DigestAlgorithm } from '../model/types.js';

// Parameter schemas of PROTOCOL.md section 3: every object closed (additionalProperties false), every
// string and array bounded. What a schema cannot say (decoded lengths, "exactly one of") is checked by
// the helpers below, which throw InvalidParams (JSON-RPC -32602). No message ever echoes a value.

/** A parameter problem: the dispatcher answers JSON-RPC `-32602` with this message. */
export class InvalidParams extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidParams';
  }
}

export type JsonSchema = Record<string, unknown>;

// validateSchema off: checking each schema against the JSON Schema meta-schema compiled that
// meta-schema on the first request (tens of ms); test/unit/protocol/method-schemas.test.ts checks them.
const ajv = new Ajv({
  strict: true,
  allErrors: false,
  allowUnionTypes: true,
  validateFormats: false,
  validateSchema: false,
});

/**
 * A params validator that compiles its schema on first use: compiling all eighteen at start-up was
 * the largest part of the agent's start time. A schema error shows on the first call (the protocol tests call every method).
 */
export function compileParams(schema: JsonSchema): ValidateFunction {
  let compiled: ValidateFunction | undefined;
  const validate = ((data: unknown) => {
    compiled ??= ajv.compile(schema);
    const ok = compiled(data);
    validate.errors = compiled.errors;
    return ok;
  }) as ValidateFunction;
  return validate;
}

/** Validate params; throws InvalidParams naming the first problem's location, never its value. */
export function validateParams(validate: ValidateFunction, params: unknown): void {
  if (validate(params)) return;
  const e = validate.errors?.[0];
  if (!e) throw new InvalidParams('invalid params');
  const where = e.instancePath === '' ? 'params' : `params${e.instancePath.replace(/\//g, '.')}`;
  let what = e.message ?? 'is invalid';
  if (e.keyword === 'additionalProperties') {
    const extra = (e.params as { additionalProperty?: unknown }).additionalProperty;
    what =
      typeof extra === 'string' && /^[A-Za-z0-9_$-]{1,64}$/.test(extra)
        ? `has unknown member "${extra}"`
        : 'has an unknown member';
  } else if (e.keyword === 'pattern') {
    what = 'has an invalid format';
  }
  throw new InvalidParams(`${where} ${what}`);
}

// Standard base64 with padding (PROTOCOL.md section 1).
const BASE64_PATTERN = '^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$';

/** A base64 string of at most `maxBytes` decoded bytes (and at least `minBytes`). */
export function base64(maxBytes: number, minBytes = 1): JsonSchema {
  return {
    type: 'string',
    minLength: Math.ceil(minBytes / 3) * 4,
    maxLength: Math.ceil(maxBytes / 3) * 4,
    pattern: BASE64_PATTERN,
  };
}

/** Decode a base64 string already checked by {@link base64}; bounds its decoded length. */
export function decodeBase64(value: string, what: string, minBytes: number, maxBytes: number): Uint8Array {
  const bytes = Buffer.from(value, 'base64');
  if (bytes.length < minBytes || bytes.length > maxBytes) {
    throw new InvalidParams(
      minBytes === maxBytes
        ? `${what} must be ${minBytes} bytes`
        : `${what} must be between ${minBytes} and ${maxBytes} bytes`,
    );
  }
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decode a digest and check that its length is exactly the output length of `digestAlgorithm`. */
export function decodeDigest(value: string, digestAlgorithm: DigestAlgorithm, what = 'digest'): Uint8Array {
  const length = DIGEST_LENGTH[digestAlgorithm];
  const bytes = Buffer.from(value, 'base64');
  if (bytes.length !== length)
    throw new InvalidParams(`${what} must be ${length} bytes for ${digestAlgorithm}`);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// Opaque ids are derived hashes today; the bound leaves room without accepting arbitrary text.
export const tokenId: JsonSchema = {
  type: 'string',
  minLength: 1,
  maxLength: 128,
  pattern: '^[A-Za-z0-9_-]+$',
};
export const certificateId: JsonSchema = tokenId;
/** Hex CKA_ID (lower-case). */
export const keyId: JsonSchema = {
  type: 'string',
  minLength: 2,
  maxLength: 128,
  pattern: '^(?:[0-9a-f]{2})+$',
};
export const digestAlgorithm: JsonSchema = { enum: ['SHA-256', 'SHA-384', 'SHA-512'] };
export const signatureScheme: JsonSchema = { enum: ['RSASSA-PKCS1-v1_5', 'RSA-PSS', 'ECDSA'] };
/** A base64 digest: at most 64 bytes (SHA-512); the exact length is checked with decodeDigest. */
export const digest: JsonSchema = base64(64, 20);

// Plain text shown to the user verbatim: no control characters (tab and newline allowed), no bidi
// embeddings, overrides or isolates, which could make the text read differently from what it is or
// spill over the origin label next to it. ZWNJ and the LRM/RLM marks (common in Persian) are fine.
const PLAIN_TEXT_PATTERN =
  '^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f\\u202a-\\u202e\\u2066-\\u2069]*$';

/** `summary`: 1–500 characters of plain text. */
export const summary: JsonSchema = {
  type: 'string',
  minLength: 1,
  maxLength: 500,
  pattern: PLAIN_TEXT_PATTERN,
};
export const plainText = (maxLength: number): JsonSchema => ({
  type: 'string',
  minLength: 1,
  maxLength,
  pattern: PLAIN_TEXT_PATTERN,
});

/** A label written to the token (the service checks the 32-byte UTF-8 limit). */
export const label: JsonSchema = plainText(64);

/** A certificate as PEM or base64 DER (at most 64 KiB of DER). */
export const certificateText: JsonSchema = {
  type: 'string',
  minLength: 1,
  maxLength: 96 * 1024,
  pattern: '^[A-Za-z0-9+/=\\r\\n \\t-]+$',
};

const nameAttribute: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'value'],
  properties: {
    type: {
      type: 'string',
      minLength: 1,
      maxLength: 64,
      pattern: '^(?:[A-Za-z][A-Za-z0-9]*|[0-2](?:\\.[0-9]+)+)$',
    },
    value: { type: 'string', minLength: 1, maxLength: 256 },
  },
};

/** RFC 4514 text, or an array of attributes (an inner array is a multi-valued RDN). */
export const subject: JsonSchema = {
  oneOf: [
    { type: 'string', minLength: 1, maxLength: 2048 },
    {
      type: 'array',
      minItems: 1,
      maxItems: 32,
      items: { oneOf: [nameAttribute, { type: 'array', minItems: 1, maxItems: 8, items: nameAttribute }] },
    },
  ],
};

export const subjectAltNames: JsonSchema = {
  type: 'array',
  maxItems: 32,
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['type', 'value'],
    properties: {
      type: { enum: ['email', 'dns', 'uri', 'ip', 'upn'] },
      value: { type: 'string', minLength: 1, maxLength: 512 },
    },
  },
};

const usageName: JsonSchema = { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9.]+$' };
export const usageList: JsonSchema = { type: 'array', maxItems: 16, items: usageName };

export const csrSignatureAlgorithm: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  properties: { scheme: signatureScheme, digestAlgorithm },
};

/** The CSR fields shared by `csr.create` and `keys.generate`'s `csr`. */
export const csrFields: Record<string, JsonSchema> = {
  subject,
  subjectAltNames,
  keyUsage: usageList,
  extendedKeyUsage: usageList,
  signatureAlgorithm: csrSignatureAlgorithm,
};

export const keyAlgorithm: JsonSchema = {
  oneOf: [
    {
      type: 'object',
      additionalProperties: false,
      required: ['name', 'modulusLength'],
      properties: { name: { const: 'RSA' }, modulusLength: { enum: [2048, 3072, 4096] } },
    },
    {
      type: 'object',
      additionalProperties: false,
      required: ['name', 'namedCurve'],
      properties: { name: { const: 'EC' }, namedCurve: { enum: ['P-256', 'P-384'] } },
    },
  ],
};

/** A closed object schema. */
export function object(properties: Record<string, JsonSchema>, required: string[] = []): JsonSchema {
  return { type: 'object', additionalProperties: false, required, properties };
}

/** An ISO 8601 time (the value is parsed by the service). */
export const isoTime: JsonSchema = {
  type: 'string',
  minLength: 10,
  maxLength: 40,
  pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9:.]+(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?$',
};
