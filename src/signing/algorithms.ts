// Object identifiers, AlgorithmIdentifier builders and digest helpers shared by every signing format.
import { constants, createHash, verify, type KeyObject } from 'node:crypto';
import { AsnConvert, AsnProp, AsnPropTypes, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier } from '@peculiar/asn1-x509';
import { KelidError } from '../errors.js';
import type { DigestAlgorithm, SignatureScheme } from '../protocol/types.js';

export const OID = {
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
  rsaEncryption: '1.2.840.113549.1.1.1',
  mgf1: '1.2.840.113549.1.1.8',
  rsassaPss: '1.2.840.113549.1.1.10',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  sha384WithRSAEncryption: '1.2.840.113549.1.1.12',
  sha512WithRSAEncryption: '1.2.840.113549.1.1.13',
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  ecdsaWithSHA384: '1.2.840.10045.4.3.3',
  ecdsaWithSHA512: '1.2.840.10045.4.3.4',
} as const;

interface DigestInfoEntry {
  oid: string;
  length: number;
  nodeName: string;
  rsaPkcs1Oid: string;
  ecdsaOid: string;
}

const DIGESTS: Readonly<Record<DigestAlgorithm, DigestInfoEntry>> = {
  'SHA-256': {
    oid: OID.sha256,
    length: 32,
    nodeName: 'sha256',
    rsaPkcs1Oid: OID.sha256WithRSAEncryption,
    ecdsaOid: OID.ecdsaWithSHA256,
  },
  'SHA-384': {
    oid: OID.sha384,
    length: 48,
    nodeName: 'sha384',
    rsaPkcs1Oid: OID.sha384WithRSAEncryption,
    ecdsaOid: OID.ecdsaWithSHA384,
  },
  'SHA-512': {
    oid: OID.sha512,
    length: 64,
    nodeName: 'sha512',
    rsaPkcs1Oid: OID.sha512WithRSAEncryption,
    ecdsaOid: OID.ecdsaWithSHA512,
  },
};

export function isDigestAlgorithm(value: unknown): value is DigestAlgorithm {
  return typeof value === 'string' && Object.hasOwn(DIGESTS, value);
}

export function digestLength(algorithm: DigestAlgorithm): number {
  return DIGESTS[algorithm].length;
}

/** Node's name for the hash (`sha256`, ...), for `createHash` and `crypto.verify`. */
export function nodeHashName(algorithm: DigestAlgorithm): string {
  return DIGESTS[algorithm].nodeName;
}

export function digestOid(algorithm: DigestAlgorithm): string {
  return DIGESTS[algorithm].oid;
}

export function digestAlgorithmFromOid(oid: string): DigestAlgorithm | undefined {
  for (const [name, entry] of Object.entries(DIGESTS)) {
    if (entry.oid === oid) return name as DigestAlgorithm;
  }
  return undefined;
}

export function digest(algorithm: DigestAlgorithm, data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash(DIGESTS[algorithm].nodeName).update(data).digest());
}

/** Throws ERR_INVALID_INPUT unless `value` is exactly as long as a `algorithm` digest. */
export function assertDigestLength(value: Uint8Array, algorithm: DigestAlgorithm): void {
  const expected = DIGESTS[algorithm].length;
  if (value.length !== expected) {
    throw new KelidError(
      'ERR_INVALID_INPUT',
      `digest is ${value.length} bytes; ${algorithm} needs ${expected}`,
    );
  }
}

export function defaultScheme(keyType: 'RSA' | 'EC'): SignatureScheme {
  return keyType === 'RSA' ? 'RSASSA-PKCS1-v1_5' : 'ECDSA';
}

/** The scheme to use for `keyType`, refusing combinations the key cannot do (ERR_INVALID_INPUT). */
export function resolveScheme(keyType: 'RSA' | 'EC', scheme?: SignatureScheme): SignatureScheme {
  const chosen = scheme ?? defaultScheme(keyType);
  const ok = keyType === 'RSA' ? chosen === 'RSASSA-PKCS1-v1_5' || chosen === 'RSA-PSS' : chosen === 'ECDSA';
  if (!ok)
    throw new KelidError('ERR_INVALID_INPUT', `scheme ${chosen} cannot be used with an ${keyType} key`);
  return chosen;
}

/**
 * SHA-2 AlgorithmIdentifier with absent parameters (RFC 5754 section 2: SHOULD omit). This is also
 * the DER form of the ESS default `{ algorithm id-sha256 }`.
 */
export function digestAlgorithmIdentifier(algorithm: DigestAlgorithm): AlgorithmIdentifier {
  return new AlgorithmIdentifier({ algorithm: DIGESTS[algorithm].oid });
}

// RFC 4055: RSASSA-PSS-params. trailerField is always trailerFieldBC (the DEFAULT), so it is omitted.
class RsaPssParams {
  @AsnProp({ type: AlgorithmIdentifier, context: 0 })
  hashAlgorithm = new AlgorithmIdentifier();

  @AsnProp({ type: AlgorithmIdentifier, context: 1 })
  maskGenAlgorithm = new AlgorithmIdentifier();

  @AsnProp({ type: AsnPropTypes.Integer, context: 2 })
  saltLength = 20;
}

/**
 * RSASSA-PSS-params for `algorithm` as the DigestSigner produces it: MGF1 with the same hash and a
 * salt as long as the hash. Hash identifiers carry NULL parameters, as RFC 4055 defines them and as
 * OpenSSL writes them.
 */
export function rsaPssParams(algorithm: DigestAlgorithm): Uint8Array {
  const hash = new AlgorithmIdentifier({ algorithm: DIGESTS[algorithm].oid, parameters: null });
  const params = new RsaPssParams();
  params.hashAlgorithm = hash;
  params.maskGenAlgorithm = new AlgorithmIdentifier({
    algorithm: OID.mgf1,
    parameters: AsnConvert.serialize(hash),
  });
  params.saltLength = DIGESTS[algorithm].length;
  return new Uint8Array(AsnConvert.serialize(params));
}

export interface SignatureAlgorithmOptions {
  /**
   * For RSASSA-PKCS1-v1_5: `rsaEncryption` (what CMS signers such as OpenSSL write in SignerInfo) or
   * `withHash` (sha256WithRSAEncryption..., what certificates and CSRs use). Default `withHash`.
   */
  rsaPkcs1Form?: 'rsaEncryption' | 'withHash';
}

/** AlgorithmIdentifier for a signature made by a DigestSigner with `scheme` over `digestAlgorithm`. */
export function signatureAlgorithmIdentifier(
  scheme: SignatureScheme,
  digestAlgorithm: DigestAlgorithm,
  options: SignatureAlgorithmOptions = {},
): AlgorithmIdentifier {
  const entry = DIGESTS[digestAlgorithm];
  switch (scheme) {
    case 'RSASSA-PKCS1-v1_5':
      return new AlgorithmIdentifier({
        algorithm: options.rsaPkcs1Form === 'rsaEncryption' ? OID.rsaEncryption : entry.rsaPkcs1Oid,
        parameters: null,
      });
    case 'RSA-PSS':
      return new AlgorithmIdentifier({
        algorithm: OID.rsassaPss,
        parameters: toArrayBuffer(rsaPssParams(digestAlgorithm)),
      });
    case 'ECDSA':
      // RFC 5758 section 3.2: parameters MUST be absent.
      return new AlgorithmIdentifier({ algorithm: entry.ecdsaOid });
  }
}

class DigestInfo {
  @AsnProp({ type: AlgorithmIdentifier })
  digestAlgorithm = new AlgorithmIdentifier();

  @AsnProp({ type: OctetString })
  digest = new OctetString();
}

/**
 * DER DigestInfo (RFC 8017 section 9.2) — the input of a raw RSASSA-PKCS1-v1_5 operation such as
 * CKM_RSA_PKCS. Hash parameters are NULL, as RFC 8017 writes them.
 */
export function encodeDigestInfo(algorithm: DigestAlgorithm, value: Uint8Array): Uint8Array {
  assertDigestLength(value, algorithm);
  const info = new DigestInfo();
  info.digestAlgorithm = new AlgorithmIdentifier({ algorithm: DIGESTS[algorithm].oid, parameters: null });
  info.digest = new OctetString(value);
  return new Uint8Array(AsnConvert.serialize(info));
}

/**
 * Verifies a signature as a DigestSigner makes it (PSS salt = hash length, ECDSA DER-encoded) over
 * `data`, which is hashed here. False on any mismatch, including a key of the wrong type.
 */
export function verifySignature(
  key: KeyObject,
  scheme: SignatureScheme,
  algorithm: DigestAlgorithm,
  data: Uint8Array,
  signature: Uint8Array,
): boolean {
  const hash = DIGESTS[algorithm].nodeName;
  try {
    switch (scheme) {
      case 'RSASSA-PKCS1-v1_5':
        if (key.asymmetricKeyType !== 'rsa') return false;
        return verify(hash, data, { key, padding: constants.RSA_PKCS1_PADDING }, signature);
      case 'RSA-PSS':
        if (key.asymmetricKeyType !== 'rsa') return false;
        return verify(
          hash,
          data,
          { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: DIGESTS[algorithm].length },
          signature,
        );
      case 'ECDSA':
        if (key.asymmetricKeyType !== 'ec') return false;
        return verify(hash, data, { key, dsaEncoding: 'der' }, signature);
    }
  } catch {
    return false;
  }
}

export function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}
