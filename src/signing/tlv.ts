// Minimal DER reading and writing for the parts of CMS that must stay byte-exact (certificates,
// signed attributes, time-stamp tokens): re-encoding them through a schema library could change
// bytes that someone else signed.
import { KelidError } from '../errors.js';

export interface Tlv {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  contentStart: number;
  /** Offset just after the value. */
  end: number;
}

function malformed(what: string): KelidError {
  return new KelidError('ERR_INVALID_INPUT', `malformed DER: ${what}`);
}

/** Reads one DER TLV at `offset`; definite lengths and single-byte tags only. */
export function readTlv(buf: Uint8Array, offset = 0, limit = buf.length): Tlv {
  if (offset + 2 > limit) throw malformed('truncated header');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw malformed('multi-byte tag');
  let lengthByte = buf[offset + 1]!;
  let contentStart = offset + 2;
  let length: number;
  if (lengthByte < 0x80) {
    length = lengthByte;
  } else {
    lengthByte &= 0x7f;
    if (lengthByte === 0) throw malformed('indefinite length');
    if (lengthByte > 4) throw malformed('length too large');
    if (contentStart + lengthByte > limit) throw malformed('truncated length');
    length = 0;
    for (let i = 0; i < lengthByte; i++) length = length * 256 + buf[contentStart + i]!;
    contentStart += lengthByte;
  }
  const end = contentStart + length;
  if (end > limit) throw malformed('value runs past its container');
  return { tag, start: offset, contentStart, end };
}

/** Reads `buf` as exactly one TLV (no trailing bytes). */
export function readSingle(buf: Uint8Array): Tlv {
  const tlv = readTlv(buf);
  if (tlv.end !== buf.length) throw malformed('trailing bytes');
  return tlv;
}

export function childrenOf(buf: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let offset = parent.contentStart;
  while (offset < parent.end) {
    const child = readTlv(buf, offset, parent.end);
    out.push(child);
    offset = child.end;
  }
  return out;
}

export function tlvBytes(buf: Uint8Array, tlv: Tlv): Uint8Array {
  return buf.subarray(tlv.start, tlv.end);
}

export function contentBytes(buf: Uint8Array, tlv: Tlv): Uint8Array {
  return buf.subarray(tlv.contentStart, tlv.end);
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

export function encodeTlv(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const value = concatBytes(...parts);
  const n = value.length;
  let header: number[];
  if (n < 0x80) header = [tag, n];
  else {
    const lengthBytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) lengthBytes.unshift(v & 0xff);
    header = [tag, 0x80 | lengthBytes.length, ...lengthBytes];
  }
  return concatBytes(Uint8Array.from(header), value);
}

export function encodeOid(oid: string): Uint8Array {
  const arcs = oid.split('.').map((a) => {
    if (!/^\d+$/.test(a)) throw new TypeError(`bad OID ${oid}`);
    return BigInt(a);
  });
  if (arcs.length < 2) throw new TypeError(`bad OID ${oid}`);
  const values = [arcs[0]! * 40n + arcs[1]!, ...arcs.slice(2)];
  const bytes: number[] = [];
  for (const value of values) {
    const group: number[] = [Number(value & 0x7fn)];
    for (let v = value >> 7n; v > 0n; v >>= 7n) group.unshift(Number(v & 0x7fn) | 0x80);
    bytes.push(...group);
  }
  return encodeTlv(0x06, Uint8Array.from(bytes));
}

export function encodeSmallInteger(value: number): Uint8Array {
  if (!Number.isInteger(value) || value < 0 || value > 127) throw new TypeError('small integers only');
  return encodeTlv(0x02, Uint8Array.of(value));
}

/** RFC 5280 section 4.1.2.5 rule, also used by CMS signingTime: UTCTime for 1950–2049, else GeneralizedTime. */
export function encodeTime(date: Date): Uint8Array {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '');
  const year = date.getUTCFullYear();
  if (year >= 1950 && year < 2050) return encodeTlv(0x17, new TextEncoder().encode(`${digits.slice(2)}Z`));
  return encodeTlv(0x18, new TextEncoder().encode(`${digits}Z`));
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
  return a.length === b.length && compareBytes(a, b) === 0;
}
