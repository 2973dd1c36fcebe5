// Verifying a signature over a precomputed digest (sign.raw, sign.batch raw): node:crypto verifies only
// over data it hashes itself, and the agent never sees the data behind a page's digest. RSA uses the
// public operation of node:crypto (RSA_NO_PADDING) and checks the encoding here (RFC 8017 sections
// 8.2.2 and 9.1.2); ECDSA (P-256, P-384) is checked with BigInt arithmetic (SEC 1 section 4.1.4).
// Verification only: every input is public, so constant time does not matter here.
import { constants, createHash, publicDecrypt, type KeyObject } from 'node:crypto';
import { DIGEST_LENGTH, DIGEST_NODE_NAME, encodeDigestInfo } from '../pki/der.js';
import type { DigestAlgorithm, SignatureScheme } from '../protocol/types.js';

/** Whether `signature` is a `scheme` signature (PSS salt = hash length, ECDSA DER) of `digest` by `key`. */
export function verifyDigestSignature(
  key: KeyObject,
  scheme: SignatureScheme,
  algorithm: DigestAlgorithm,
  digest: Uint8Array,
  signature: Uint8Array,
): boolean {
  if (digest.length !== DIGEST_LENGTH[algorithm]) return false;
  try {
    if (scheme === 'ECDSA') return key.asymmetricKeyType === 'ec' && verifyEcdsa(key, digest, signature);
    if (key.asymmetricKeyType !== 'rsa') return false;
    const bits = key.asymmetricKeyDetails?.modulusLength;
    if (bits === undefined) return false;
    const k = Math.ceil(bits / 8);
    if (signature.length !== k) return false;
    const em = new Uint8Array(publicDecrypt({ key, padding: constants.RSA_NO_PADDING }, signature));
    if (em.length !== k) return false;
    return scheme === 'RSASSA-PKCS1-v1_5'
      ? pkcs1Matches(em, encodeDigestInfo(digest, algorithm))
      : pssMatches(em, bits - 1, algorithm, digest);
  } catch {
    return false;
  }
}

function pkcs1Matches(em: Uint8Array, digestInfo: Uint8Array): boolean {
  const pad = em.length - digestInfo.length - 3;
  if (pad < 8 || em[0] !== 0x00 || em[1] !== 0x01 || em[2 + pad] !== 0x00) return false;
  for (let i = 2; i < 2 + pad; i++) if (em[i] !== 0xff) return false;
  return Buffer.from(em.subarray(3 + pad)).equals(Buffer.from(digestInfo));
}

function mgf1(hash: string, seed: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let counter = 0, offset = 0; offset < length; counter++) {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(counter);
    const block = createHash(hash).update(seed).update(c).digest();
    out.set(block.subarray(0, Math.min(block.length, length - offset)), offset);
    offset += block.length;
  }
  return out;
}

function pssMatches(raw: Uint8Array, emBits: number, algorithm: DigestAlgorithm, mHash: Uint8Array): boolean {
  const hash = DIGEST_NODE_NAME[algorithm];
  const hLen = DIGEST_LENGTH[algorithm];
  const sLen = hLen;
  const emLen = Math.ceil(emBits / 8);
  // The RSA output is k bytes; when emBits is a multiple of 8 the leading byte is outside EM and zero.
  if (raw.length > emLen && raw.subarray(0, raw.length - emLen).some((b) => b !== 0)) return false;
  const em = raw.subarray(raw.length - emLen);
  if (emLen < hLen + sLen + 2 || em[emLen - 1] !== 0xbc) return false;
  const maskedDb = em.subarray(0, emLen - hLen - 1);
  const h = em.subarray(emLen - hLen - 1, emLen - 1);
  const topMask = 0xff >> (8 * emLen - emBits);
  if ((maskedDb[0]! & ~topMask) !== 0) return false;
  const db = mgf1(hash, h, maskedDb.length).map((m, i) => m ^ maskedDb[i]!);
  db[0]! &= topMask;
  const ps = emLen - hLen - sLen - 2;
  for (let i = 0; i < ps; i++) if (db[i] !== 0) return false;
  if (db[ps] !== 0x01) return false;
  const salt = db.subarray(db.length - sLen);
  const h2 = createHash(hash).update(new Uint8Array(8)).update(mHash).update(salt).digest();
  return h2.equals(Buffer.from(h));
}

interface Curve {
  p: bigint;
  n: bigint;
  gx: bigint;
  gy: bigint;
  bits: number;
}

// SEC 2 / FIPS 186-4 domain parameters (a = -3 for both).
const CURVES: Readonly<Record<string, Curve>> = {
  prime256v1: {
    p: 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn,
    n: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
    gx: 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n,
    gy: 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n,
    bits: 256,
  },
  secp384r1: {
    p: 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffffn,
    n: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
    gx: 0xaa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7n,
    gy: 0x3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5fn,
    bits: 384,
  },
};

function toBig(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt(`0x${Buffer.from(bytes).toString('hex')}`);
}

function mod(a: bigint, m: bigint): bigint {
  const r = a % m;
  return r < 0n ? r + m : r;
}

function inverse(a: bigint, m: bigint): bigint {
  let [r0, r1] = [mod(a, m), m];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return mod(s0, m);
}

/** Jacobian point; z = 0 is the point at infinity. */
type Point = [x: bigint, y: bigint, z: bigint];

function double([x, y, z]: Point, p: bigint): Point {
  if (z === 0n || y === 0n) return [0n, 1n, 0n];
  const delta = mod(z * z, p);
  const gamma = mod(y * y, p);
  const beta = mod(x * gamma, p);
  const alpha = mod(3n * (x - delta) * (x + delta), p);
  const x3 = mod(alpha * alpha - 8n * beta, p);
  const z3 = mod((y + z) * (y + z) - gamma - delta, p);
  const y3 = mod(alpha * (4n * beta - x3) - 8n * gamma * gamma, p);
  return [x3, y3, z3];
}

function add(a: Point, b: Point, p: bigint): Point {
  if (a[2] === 0n) return b;
  if (b[2] === 0n) return a;
  const z1z1 = mod(a[2] * a[2], p);
  const z2z2 = mod(b[2] * b[2], p);
  const u1 = mod(a[0] * z2z2, p);
  const u2 = mod(b[0] * z1z1, p);
  const s1 = mod(a[1] * b[2] * z2z2, p);
  const s2 = mod(b[1] * a[2] * z1z1, p);
  const h = mod(u2 - u1, p);
  const r = mod(s2 - s1, p);
  if (h === 0n) return r === 0n ? double(a, p) : [0n, 1n, 0n];
  const hh = mod(h * h, p);
  const hhh = mod(h * hh, p);
  const v = mod(u1 * hh, p);
  const x3 = mod(r * r - hhh - 2n * v, p);
  const y3 = mod(r * (v - x3) - s1 * hhh, p);
  return [x3, y3, mod(a[2] * b[2] * h, p)];
}

/** DER SEQUENCE { INTEGER r, INTEGER s } with short lengths (at most P-384 sizes). */
function parseEcdsaDer(sig: Uint8Array): [bigint, bigint] | undefined {
  let i = 0;
  const len = (): number | undefined => {
    const b = sig[i++];
    if (b === undefined) return undefined;
    if (b < 0x80) return b;
    if (b === 0x81) {
      const l = sig[i++];
      return l !== undefined && l >= 0x80 ? l : undefined;
    }
    return undefined;
  };
  if (sig[i++] !== 0x30) return undefined;
  if (len() !== sig.length - i) return undefined;
  const ints: bigint[] = [];
  for (let k = 0; k < 2; k++) {
    if (sig[i++] !== 0x02) return undefined;
    const l = len();
    if (l === undefined || l === 0 || i + l > sig.length) return undefined;
    const v = sig.subarray(i, i + l);
    // Minimal DER: no negative values and no superfluous leading zero.
    if ((v[0]! & 0x80) !== 0 || (l > 1 && v[0] === 0 && (v[1]! & 0x80) === 0)) return undefined;
    ints.push(toBig(v));
    i += l;
  }
  return i === sig.length ? [ints[0]!, ints[1]!] : undefined;
}

function verifyEcdsa(key: KeyObject, digest: Uint8Array, signature: Uint8Array): boolean {
  const curve = CURVES[key.asymmetricKeyDetails?.namedCurve ?? ''];
  if (!curve) return false;
  const rs = parseEcdsaDer(signature);
  if (!rs) return false;
  const [r, s] = rs;
  const { p, n } = curve;
  if (r < 1n || r >= n || s < 1n || s >= n) return false;
  const jwk = key.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string' || typeof jwk.y !== 'string') return false;
  const q: Point = [toBig(Buffer.from(jwk.x, 'base64url')), toBig(Buffer.from(jwk.y, 'base64url')), 1n];
  let e = toBig(digest);
  const excess = digest.length * 8 - curve.bits;
  if (excess > 0) e >>= BigInt(excess);
  const w = inverse(s, n);
  const u1 = mod(e * w, n);
  const u2 = mod(r * w, n);
  const g: Point = [curve.gx, curve.gy, 1n];
  const gq = add(g, q, p);
  let acc: Point = [0n, 1n, 0n];
  for (let bit = BigInt(curve.bits - 1); bit >= 0n; bit--) {
    acc = double(acc, p);
    const b1 = (u1 >> bit) & 1n;
    const b2 = (u2 >> bit) & 1n;
    if (b1 && b2) acc = add(acc, gq, p);
    else if (b1) acc = add(acc, g, p);
    else if (b2) acc = add(acc, q, p);
  }
  if (acc[2] === 0n) return false;
  const zInv = inverse(acc[2], p);
  const x = mod(acc[0] * zInv * zInv, p);
  return mod(x, n) === r;
}
