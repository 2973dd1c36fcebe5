// Verifying a signature over a precomputed digest (sign.raw, sign.batch raw): node:crypto verifies only
// over data it hashes itself, and the agent never sees the data behind a page's digest. RSA uses the
// public operation of node:crypto (RSA_NO_PADDING) and checks the encoding here (RFC 8017 sections
// 8.2.2 and 9.1.2); ECDSA (P-256, P-384) with @noble/curves.
import { constants, createHash, publicDecrypt, type KeyObject } from 'node:crypto';
import type { p256 } from '@noble/curves/nist.js';
import { DIGEST_LENGTH, DIGEST_NODE_NAME, encodeDigestInfo } from '../pki/der.js';
import type { DigestAlgorithm, SignatureScheme } from '../model/types.js';

/** Whether `signature` is a `scheme` signature (PSS salt = hash length, ECDSA DER) of `digest` by `key`. */
export async function verifyDigestSignature(
  key: KeyObject,
  scheme: SignatureScheme,
  algorithm: DigestAlgorithm,
  digest: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  if (digest.length !== DIGEST_LENGTH[algorithm]) return false;
  // Outside the try: a library that fails to load is an install fault, not a bad signature.
  const curves = scheme === 'ECDSA' ? await loadCurves() : undefined;
  try {
    if (curves) return key.asymmetricKeyType === 'ec' && verifyEcdsa(curves, key, digest, signature);
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

// @noble/curves (audited, no dependencies) verifies over a digest we pass in (prehash: false); it
// truncates a longer digest to the curve's size as SEC 1 says. lowS: false, as OpenSSL and tokens
// produce either half.
// Loaded on the first ECDSA check, not at start-up: about 25 ms and 3 MiB an agent that never
// signs raw digests need not pay.
type Curves = Readonly<Record<string, typeof p256>>;
let curvesLoaded: Promise<Curves> | undefined;
function loadCurves(): Promise<Curves> {
  curvesLoaded ??= import('@noble/curves/nist.js').then(({ p256, p384 }) => ({
    prime256v1: p256,
    secp384r1: p384,
  }));
  return curvesLoaded;
}

type EcPoint = ReturnType<typeof p256.Point.fromBytes>;

// A certificate key signs again and again: its point is decoded once and given a wNAF table (window
// 8), which makes a verification about four times faster than decoding the point every time.
const POINTS = new Map<string, EcPoint>();
const MAX_POINTS = 32;

function pointOf(curveName: string, curve: typeof p256, key: KeyObject): EcPoint | undefined {
  const jwk = key.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string' || typeof jwk.y !== 'string') return undefined;
  const id = `${curveName}:${jwk.x}:${jwk.y}`;
  let point = POINTS.get(id);
  if (point === undefined) {
    // fromBytes refuses a point that is not on the curve.
    point = curve.Point.fromBytes(
      Buffer.concat([Buffer.from([0x04]), Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url')]),
    );
    point.precompute(8, false);
    if (POINTS.size >= MAX_POINTS) POINTS.delete(POINTS.keys().next().value as string);
    POINTS.set(id, point);
  }
  return point;
}

/** SEC 1 section 4.1.4 over a precomputed digest: R = (e/s)·G + (r/s)·Q, then R.x mod n must equal r. */
function verifyEcdsa(curves: Curves, key: KeyObject, digest: Uint8Array, signature: Uint8Array): boolean {
  const curveName = key.asymmetricKeyDetails?.namedCurve ?? '';
  const curve = curves[curveName];
  if (!curve) return false;
  const Q = pointOf(curveName, curve, key);
  if (Q === undefined || Q.is0()) return false;
  const { r, s } = curve.Signature.fromBytes(signature, 'der');
  const Fn = curve.Point.Fn;
  if (!Fn.isValidNot0(r) || !Fn.isValidNot0(s)) return false;
  // The digest as an integer, its leftmost BITS(n) bits when it is longer (SHA-512 on P-256), mod n.
  let e = BigInt(`0x${Buffer.from(digest).toString('hex')}`);
  const excess = digest.length * 8 - Fn.BITS;
  if (excess > 0) e >>= BigInt(excess);
  e = Fn.create(e);
  const w = Fn.inv(s);
  const R = curve.Point.BASE.multiplyUnsafe(Fn.create(e * w)).add(Q.multiplyUnsafe(Fn.create(r * w)));
  if (R.is0()) return false;
  return Fn.create(R.toAffine().x) === r;
}
