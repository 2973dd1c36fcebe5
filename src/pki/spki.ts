// SubjectPublicKeyInfo ↔ the key material PKCS#11 exposes (CKA_MODULUS/CKA_PUBLIC_EXPONENT,
// CKA_EC_PARAMS/CKA_EC_POINT).
import { ECDH } from 'node:crypto';
import { KelidError } from '../model/errors.js';
import {
  TAG_BIT_STRING,
  TAG_INTEGER,
  TAG_NULL,
  TAG_OCTET_STRING,
  TAG_OID,
  TAG_SEQUENCE,
  concatBytes,
  contentOf,
  decodeOid,
  encodeOid,
  encodeTlv,
  encodeUnsignedInteger,
  readChildren,
  readSingle,
  readTlv,
  unsignedIntegerContent,
} from './der.js';
import { OID } from './oids.js';

export type NamedCurve = 'P-256' | 'P-384' | 'P-521';

interface CurveInfo {
  oid: string;
  name: string;
  /** OpenSSL name, for node:crypto ECDH point conversion. */
  nodeName: string;
  /** Byte length of a field element (and of the group order for these curves). */
  size: number;
}

const CURVES: readonly CurveInfo[] = [
  { oid: '1.2.840.10045.3.1.7', name: 'P-256', nodeName: 'prime256v1', size: 32 },
  { oid: '1.3.132.0.34', name: 'P-384', nodeName: 'secp384r1', size: 48 },
  { oid: '1.3.132.0.35', name: 'P-521', nodeName: 'secp521r1', size: 66 },
  { oid: '1.3.132.0.10', name: 'secp256k1', nodeName: 'secp256k1', size: 32 },
  { oid: '1.3.36.3.3.2.8.1.1.7', name: 'brainpoolP256r1', nodeName: 'brainpoolP256r1', size: 32 },
  { oid: '1.3.36.3.3.2.8.1.1.11', name: 'brainpoolP384r1', nodeName: 'brainpoolP384r1', size: 48 },
  { oid: '1.3.36.3.3.2.8.1.1.13', name: 'brainpoolP512r1', nodeName: 'brainpoolP512r1', size: 64 },
];

export interface RsaPublicKeyInfo {
  keyType: 'RSA';
  /** Unsigned big-endian, no leading zero octet (as CKA_MODULUS). */
  modulus: Uint8Array;
  /** Unsigned big-endian, no leading zero octet (as CKA_PUBLIC_EXPONENT). */
  publicExponent: Uint8Array;
  /** Bit length of the modulus. */
  modulusLength: number;
}

export interface EcPublicKeyInfo {
  keyType: 'EC';
  /** `P-256`, `P-384`, `P-521`, another known curve name, or the dotted curve OID. */
  namedCurve: string;
  curveOid: string;
  /** DER OBJECT IDENTIFIER of the curve (as CKA_EC_PARAMS). */
  ecParams: Uint8Array;
  /** Raw uncompressed point 04‖X‖Y (compressed input points are decompressed). */
  point: Uint8Array;
  /** Byte length of a coordinate; also the length of r and s in an r‖s ECDSA signature. */
  size: number;
}

export type PublicKeyInfo = RsaPublicKeyInfo | EcPublicKeyInfo;

function invalid(message: string): KelidError {
  return new KelidError('ERR_INVALID_INPUT', message);
}

function curveByOid(oid: string): CurveInfo | undefined {
  return CURVES.find((c) => c.oid === oid);
}

function curveByName(name: string): CurveInfo {
  const curve = CURVES.find((c) => c.name === name);
  if (!curve) throw new KelidError('ERR_MECHANISM_UNSUPPORTED', `unsupported curve ${name}`);
  return curve;
}

function bitLength(magnitude: Uint8Array): number {
  if (magnitude.length === 0 || magnitude[0] === 0) return 0;
  return (magnitude.length - 1) * 8 + (32 - Math.clz32(magnitude[0]!));
}

/** Normalize an EC point to uncompressed form, checking that it lies on the curve when the curve is known. */
function uncompressedPoint(point: Uint8Array, curve: CurveInfo | undefined): Uint8Array {
  const first = point[0];
  if (curve) {
    const expected = first === 0x04 ? 2 * curve.size + 1 : curve.size + 1;
    if ((first !== 0x02 && first !== 0x03 && first !== 0x04) || point.length !== expected) {
      throw invalid('EC point has the wrong form or length for its curve');
    }
    try {
      return new Uint8Array(
        ECDH.convertKey(point, curve.nodeName, undefined, undefined, 'uncompressed') as Buffer,
      );
    } catch (cause) {
      throw new KelidError('ERR_INVALID_INPUT', 'EC point is not on its curve', { cause });
    }
  }
  if (first === 0x04 && point.length % 2 === 1 && point.length >= 3) return point.slice();
  throw new KelidError('ERR_MECHANISM_UNSUPPORTED', 'compressed point on an unsupported curve');
}

/** Parse a SubjectPublicKeyInfo (RSA with NULL or absent parameters, id-RSASSA-PSS, or named-curve EC). */
export function parseSpki(spki: Uint8Array): PublicKeyInfo {
  const outer = readSingle(spki, TAG_SEQUENCE, 'SubjectPublicKeyInfo');
  const [alg, key, ...rest] = readChildren(spki, outer);
  if (!alg || alg.tag !== TAG_SEQUENCE || !key || key.tag !== TAG_BIT_STRING || rest.length > 0) {
    throw invalid('malformed SubjectPublicKeyInfo');
  }
  const [oidTlv, params, ...more] = readChildren(spki, alg);
  if (!oidTlv || oidTlv.tag !== TAG_OID || more.length > 0) throw invalid('malformed AlgorithmIdentifier');
  const algorithm = decodeOid(contentOf(spki, oidTlv));
  const bits = contentOf(spki, key);
  if (bits.length < 2 || bits[0] !== 0) throw invalid('malformed subjectPublicKey BIT STRING');
  const keyBytes = bits.subarray(1);

  if (algorithm === OID.rsaEncryption || algorithm === OID.rsassaPss) {
    if (
      algorithm === OID.rsaEncryption &&
      params &&
      !(params.tag === TAG_NULL && params.end === params.contentStart)
    ) {
      throw invalid('rsaEncryption parameters must be NULL or absent');
    }
    const seq = readSingle(keyBytes, TAG_SEQUENCE, 'RSAPublicKey');
    const ints = readChildren(keyBytes, seq);
    if (ints.length !== 2 || ints.some((t) => t.tag !== TAG_INTEGER)) throw invalid('malformed RSAPublicKey');
    const modulus = unsignedIntegerContent(contentOf(keyBytes, ints[0]!), 'modulus').slice();
    const publicExponent = unsignedIntegerContent(contentOf(keyBytes, ints[1]!), 'publicExponent').slice();
    if (modulus[0] === 0 || publicExponent[0] === 0)
      throw invalid('RSA modulus and exponent must be positive');
    return { keyType: 'RSA', modulus, publicExponent, modulusLength: bitLength(modulus) };
  }

  if (algorithm === OID.ecPublicKey) {
    if (!params || params.tag !== TAG_OID) {
      throw new KelidError('ERR_MECHANISM_UNSUPPORTED', 'only named-curve EC keys are supported');
    }
    const ecParams = spki.slice(params.start, params.end);
    const curveOid = decodeOid(contentOf(spki, params));
    const curve = curveByOid(curveOid);
    const point = uncompressedPoint(keyBytes, curve);
    return {
      keyType: 'EC',
      namedCurve: curve?.name ?? curveOid,
      curveOid,
      ecParams,
      point,
      size: curve?.size ?? (point.length - 1) / 2,
    };
  }
  throw new KelidError('ERR_MECHANISM_UNSUPPORTED', `unsupported public key algorithm ${algorithm}`);
}

/** SPKI (rsaEncryption, NULL parameters) from CKA_MODULUS and CKA_PUBLIC_EXPONENT. */
export function rsaSpki(modulus: Uint8Array, publicExponent: Uint8Array): Uint8Array {
  if (!modulus.some((b) => b !== 0) || !publicExponent.some((b) => b !== 0)) {
    throw invalid('RSA modulus and exponent must be positive');
  }
  const rsaPublicKey = encodeTlv(
    TAG_SEQUENCE,
    encodeUnsignedInteger(modulus),
    encodeUnsignedInteger(publicExponent),
  );
  return encodeTlv(
    TAG_SEQUENCE,
    encodeTlv(TAG_SEQUENCE, encodeOid(OID.rsaEncryption), Uint8Array.of(TAG_NULL, 0)),
    encodeTlv(TAG_BIT_STRING, Uint8Array.of(0), rsaPublicKey),
  );
}

/** CKA_EC_PARAMS (DER OBJECT IDENTIFIER) for a named curve. */
export function ecParamsForCurve(namedCurve: NamedCurve): Uint8Array {
  return encodeOid(curveByName(namedCurve).oid);
}

/** The curve named by CKA_EC_PARAMS. */
export function curveFromEcParams(ecParams: Uint8Array): NamedCurve {
  const tlv = readSingle(ecParams, TAG_OID, 'EC parameters OBJECT IDENTIFIER');
  const curve = curveByOid(decodeOid(contentOf(ecParams, tlv)));
  if (!curve || !['P-256', 'P-384', 'P-521'].includes(curve.name)) {
    throw new KelidError('ERR_MECHANISM_UNSUPPORTED', 'unsupported EC curve');
  }
  return curve.name as NamedCurve;
}

/**
 * The raw point from CKA_EC_POINT, which PKCS#11 specifies as a DER OCTET STRING but some modules
 * return unwrapped. The curve makes the two forms unambiguous (their lengths differ).
 */
export function unwrapEcPoint(ecPoint: Uint8Array, namedCurve: NamedCurve): Uint8Array {
  const { size } = curveByName(namedCurve);
  const isRaw = (p: Uint8Array): boolean =>
    (p[0] === 0x04 && p.length === 2 * size + 1) ||
    ((p[0] === 0x02 || p[0] === 0x03) && p.length === size + 1);
  if (isRaw(ecPoint)) return ecPoint.slice();
  if (ecPoint[0] === TAG_OCTET_STRING) {
    const tlv = readTlv(ecPoint);
    if (tlv.end === ecPoint.length) {
      const inner = contentOf(ecPoint, tlv);
      if (isRaw(inner)) return inner.slice();
    }
  }
  throw invalid(`EC point does not match curve ${namedCurve}`);
}

/** DER OCTET STRING wrapping of a raw point, the CKA_EC_POINT form. */
export function wrapEcPoint(point: Uint8Array): Uint8Array {
  return encodeTlv(TAG_OCTET_STRING, point);
}

/** SPKI (id-ecPublicKey, named curve) from CKA_EC_PARAMS or a curve name, and CKA_EC_POINT (raw or DER-wrapped). */
export function ecSpki(curve: NamedCurve | Uint8Array, ecPoint: Uint8Array): Uint8Array {
  const namedCurve = typeof curve === 'string' ? curve : curveFromEcParams(curve);
  const point = uncompressedPoint(unwrapEcPoint(ecPoint, namedCurve), curveByName(namedCurve));
  return encodeTlv(
    TAG_SEQUENCE,
    encodeTlv(TAG_SEQUENCE, encodeOid(OID.ecPublicKey), ecParamsForCurve(namedCurve)),
    encodeTlv(TAG_BIT_STRING, concatBytes(Uint8Array.of(0), point)),
  );
}
