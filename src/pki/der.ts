// Small DER reader/writer for the structures that must stay byte-exact (Names, SPKI, ECDSA-Sig-Value,
// DigestInfo, the outer CSR SEQUENCE; CMS certificates, signed attributes and time-stamp tokens, where
// re-encoding through a schema library could change bytes someone else signed). Higher-level
// structures use @peculiar/asn1-*.
import { KelidError } from '../model/errors.js';
import type { DigestAlgorithm } from '../model/types.js';
import { OID } from './oids.js';

export const TAG_BOOLEAN = 0x01;
export const TAG_INTEGER = 0x02;
export const TAG_BIT_STRING = 0x03;
export const TAG_OCTET_STRING = 0x04;
export const TAG_NULL = 0x05;
export const TAG_OID = 0x06;
export const TAG_UTF8_STRING = 0x0c;
export const TAG_PRINTABLE_STRING = 0x13;
export const TAG_IA5_STRING = 0x16;
export const TAG_UTC_TIME = 0x17;
export const TAG_GENERALIZED_TIME = 0x18;
export const TAG_SEQUENCE = 0x30;
export const TAG_SET = 0x31;

/** One decoded TLV: offsets into the buffer it was read from. */
export interface Tlv {
  /** First identifier octet (class, constructed bit and, for low tag numbers, the number). */
  tag: number;
  start: number;
  contentStart: number;
  end: number;
}

function malformed(what: string): KelidError {
  return new KelidError('ERR_INVALID_INPUT', `malformed DER: ${what}`);
}

/** Read one TLV at `offset`, not extending past `limit`. Indefinite lengths are refused (not DER). */
export function readTlv(der: Uint8Array, offset = 0, limit = der.length): Tlv {
  let p = offset;
  if (p >= limit) throw malformed('unexpected end of data');
  const tag = der[p++]!;
  if ((tag & 0x1f) === 0x1f) {
    // High tag number form: base-128 continuation octets.
    let count = 0;
    for (;;) {
      if (p >= limit) throw malformed('truncated tag');
      const b = der[p++]!;
      if (++count > 4) throw malformed('tag number too large');
      if ((b & 0x80) === 0) break;
    }
  }
  if (p >= limit) throw malformed('truncated length');
  const first = der[p++]!;
  let length: number;
  if (first < 0x80) {
    length = first;
  } else if (first === 0x80) {
    throw malformed('indefinite length');
  } else {
    const n = first & 0x7f;
    if (n > 4) throw malformed('length too large');
    if (p + n > limit) throw malformed('truncated length');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + der[p++]!;
  }
  if (length > limit - p) throw malformed('content extends past the end');
  return { tag, start: offset, contentStart: p, end: p + length };
}

/** Read a TLV that must have the given tag. */
export function expectTlv(der: Uint8Array, offset: number, limit: number, tag: number, what: string): Tlv {
  const tlv = readTlv(der, offset, limit);
  if (tlv.tag !== tag) throw malformed(`expected ${what}`);
  return tlv;
}

/** The TLVs directly inside a constructed TLV. */
export function readChildren(der: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let p = parent.contentStart;
  while (p < parent.end) {
    const child = readTlv(der, p, parent.end);
    out.push(child);
    p = child.end;
  }
  return out;
}

/** Parse `der` as exactly one TLV with the given tag, with nothing after it. */
export function readSingle(der: Uint8Array, tag: number, what: string): Tlv {
  const tlv = expectTlv(der, 0, der.length, tag, what);
  if (tlv.end !== der.length) throw malformed(`trailing data after ${what}`);
  return tlv;
}

export function contentOf(der: Uint8Array, tlv: Tlv): Uint8Array {
  return der.subarray(tlv.contentStart, tlv.end);
}

export function bytesOf(der: Uint8Array, tlv: Tlv): Uint8Array {
  return der.subarray(tlv.start, tlv.end);
}

export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** DER order of SET OF elements: their encodings compared as octet strings. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function encodeLength(length: number): Uint8Array {
  if (length < 0x80) return Uint8Array.of(length);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

/** Encode a TLV with a single-octet tag. */
export function encodeTlv(tag: number, ...content: readonly Uint8Array[]): Uint8Array {
  const body = concatBytes(...content);
  return concatBytes(Uint8Array.of(tag), encodeLength(body.length), body);
}

/** Drop leading zero octets (keeps one octet for zero). */
export function stripLeadingZeros(bytes: Uint8Array): Uint8Array {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  return bytes.subarray(i);
}

/** DER INTEGER from an unsigned big-endian magnitude (PKCS#11 CKA_MODULUS style). */
export function encodeUnsignedInteger(magnitude: Uint8Array): Uint8Array {
  const m = stripLeadingZeros(magnitude.length === 0 ? Uint8Array.of(0) : magnitude);
  return encodeTlv(TAG_INTEGER, m[0]! & 0x80 ? concatBytes(Uint8Array.of(0), m) : m);
}

/** DER INTEGER for a small non-negative number (CMS version fields). */
export function encodeSmallInteger(value: number): Uint8Array {
  if (!Number.isInteger(value) || value < 0 || value > 127) throw new TypeError('small integers only');
  return encodeTlv(TAG_INTEGER, Uint8Array.of(value));
}

/** RFC 5280 section 4.1.2.5 rule, also used by CMS signingTime: UTCTime for 1950–2049, else GeneralizedTime. */
export function encodeTime(date: Date): Uint8Array {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '');
  const year = date.getUTCFullYear();
  if (year >= 1950 && year < 2050) {
    return encodeTlv(TAG_UTC_TIME, new TextEncoder().encode(`${digits.slice(2)}Z`));
  }
  return encodeTlv(TAG_GENERALIZED_TIME, new TextEncoder().encode(`${digits}Z`));
}

/**
 * The unsigned magnitude of a non-negative DER INTEGER's content octets; refuses negative values and
 * non-minimal encodings.
 */
export function unsignedIntegerContent(content: Uint8Array, what: string): Uint8Array {
  if (content.length === 0) throw malformed(`empty INTEGER (${what})`);
  if (content[0]! & 0x80) throw malformed(`negative INTEGER (${what})`);
  if (content.length > 1 && content[0] === 0 && (content[1]! & 0x80) === 0) {
    throw malformed(`non-minimal INTEGER (${what})`);
  }
  return stripLeadingZeros(content);
}

const OID_PATTERN = /^[0-2](\.(0|[1-9][0-9]*))+$/;

export function isDottedOid(text: string): boolean {
  if (text.length > 200 || !OID_PATTERN.test(text)) return false;
  const arcs = text.split('.');
  return !(Number(arcs[0]) < 2 && Number(arcs[1]) >= 40) && arcs.every((a) => a.length <= 15);
}

/** Content octets of an OBJECT IDENTIFIER. */
export function encodeOidContent(oid: string): Uint8Array {
  if (!isDottedOid(oid)) throw new KelidError('ERR_INVALID_INPUT', `not a dotted object identifier: ${oid}`);
  const arcs = oid.split('.').map((a) => BigInt(a));
  const values = [arcs[0]! * 40n + arcs[1]!, ...arcs.slice(2)];
  const out: number[] = [];
  for (const v of values) {
    const chunk: number[] = [Number(v & 0x7fn)];
    for (let n = v >> 7n; n > 0n; n >>= 7n) chunk.unshift(Number(n & 0x7fn) | 0x80);
    out.push(...chunk);
  }
  return Uint8Array.from(out);
}

export function encodeOid(oid: string): Uint8Array {
  return encodeTlv(TAG_OID, encodeOidContent(oid));
}

export function decodeOid(content: Uint8Array): string {
  if (content.length === 0 || content.length > 100) throw malformed('OBJECT IDENTIFIER length');
  const values: bigint[] = [];
  let v = 0n;
  let started = false;
  for (const b of content) {
    if (!started && b === 0x80) throw malformed('non-minimal OBJECT IDENTIFIER arc');
    v = (v << 7n) | BigInt(b & 0x7f);
    started = true;
    if ((b & 0x80) === 0) {
      values.push(v);
      v = 0n;
      started = false;
    }
  }
  if (started) throw malformed('truncated OBJECT IDENTIFIER');
  const first = values[0]!;
  const head = first < 80n ? [first / 40n, first % 40n] : [2n, first - 80n];
  return [...head, ...values.slice(1)].join('.');
}

export const DIGEST_LENGTH: Readonly<Record<DigestAlgorithm, number>> = {
  'SHA-256': 32,
  'SHA-384': 48,
  'SHA-512': 64,
};

export const DIGEST_OID: Readonly<Record<DigestAlgorithm, string>> = {
  'SHA-256': OID.sha256,
  'SHA-384': OID.sha384,
  'SHA-512': OID.sha512,
};

/** node:crypto hash names. */
export const DIGEST_NODE_NAME: Readonly<Record<DigestAlgorithm, string>> = {
  'SHA-256': 'sha256',
  'SHA-384': 'sha384',
  'SHA-512': 'sha512',
};

/** AlgorithmIdentifier for a SHA-2 hash, with NULL parameters as OpenSSL and RFC 8017 DigestInfo use. */
export function digestAlgorithmIdentifier(digestAlgorithm: DigestAlgorithm): Uint8Array {
  return encodeTlv(TAG_SEQUENCE, encodeOid(DIGEST_OID[digestAlgorithm]), Uint8Array.of(TAG_NULL, 0));
}

function checkDigest(digest: Uint8Array, digestAlgorithm: DigestAlgorithm): void {
  const expected = DIGEST_LENGTH[digestAlgorithm];
  if (expected === undefined) throw new KelidError('ERR_INVALID_INPUT', 'unsupported digest algorithm');
  if (digest.length !== expected) {
    throw new KelidError('ERR_INVALID_INPUT', `${digestAlgorithm} digest must be ${expected} bytes`);
  }
}

/**
 * DigestInfo (RFC 8017 section 9.2) for RSASSA-PKCS1-v1_5 with CKM_RSA_PKCS, which pads but does not
 * add the DigestInfo itself.
 */
export function encodeDigestInfo(digest: Uint8Array, digestAlgorithm: DigestAlgorithm): Uint8Array {
  checkDigest(digest, digestAlgorithm);
  return encodeTlv(
    TAG_SEQUENCE,
    digestAlgorithmIdentifier(digestAlgorithm),
    encodeTlv(TAG_OCTET_STRING, digest),
  );
}

/** ECDSA r‖s (PKCS#11 CKM_ECDSA output, IEEE P1363) → DER ECDSA-Sig-Value. */
export function ecdsaRawToDer(raw: Uint8Array): Uint8Array {
  if (raw.length === 0 || raw.length % 2 !== 0 || raw.length > 264) {
    throw new KelidError('ERR_INVALID_INPUT', 'ECDSA r||s signature must have two halves of equal length');
  }
  const half = raw.length / 2;
  return encodeTlv(
    TAG_SEQUENCE,
    encodeUnsignedInteger(raw.subarray(0, half)),
    encodeUnsignedInteger(raw.subarray(half)),
  );
}

/**
 * DER ECDSA-Sig-Value → r‖s, each left-padded to `size` octets (the byte length of the curve order:
 * 32 for P-256, 48 for P-384, 66 for P-521).
 */
export function ecdsaDerToRaw(der: Uint8Array, size: number): Uint8Array {
  const seq = readSingle(der, TAG_SEQUENCE, 'ECDSA-Sig-Value');
  const parts = readChildren(der, seq);
  if (parts.length !== 2 || parts.some((p) => p.tag !== TAG_INTEGER)) {
    throw malformed('ECDSA-Sig-Value must hold two INTEGERs');
  }
  const out = new Uint8Array(size * 2);
  parts.forEach((p, i) => {
    const value = unsignedIntegerContent(contentOf(der, p), i === 0 ? 'r' : 's');
    if (value.length > size) throw malformed('ECDSA signature value longer than the curve order');
    out.set(value, size * (i + 1) - value.length);
  });
  return out;
}

/** PEM with 64-character lines and a trailing newline. */
export function encodePem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
