// AlgorithmIdentifier builders and digest helpers shared by every signing format. The OIDs and digest
// tables themselves live in pki/oids.ts and pki/der.ts.
import { constants, createHash, verify, type KeyObject } from 'node:crypto';
import { AsnConvert, AsnProp, AsnPropTypes } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier } from '@peculiar/asn1-x509';
import { KelidError } from '../model/errors.js';
import { DIGEST_LENGTH, DIGEST_NODE_NAME, DIGEST_OID } from '../pki/der.js';
import { OID } from '../pki/oids.js';
import type { DigestAlgorithm, SignatureScheme } from '../model/types.js';

/** The signature algorithm OIDs that pair with each hash. */
const SIGNATURE_OIDS: Readonly<Record<DigestAlgorithm, { rsaPkcs1: string; ecdsa: string }>> = {
  'SHA-256': { rsaPkcs1: OID.sha256WithRSAEncryption, ecdsa: OID.ecdsaWithSHA256 },
  'SHA-384': { rsaPkcs1: OID.sha384WithRSAEncryption, ecdsa: OID.ecdsaWithSHA384 },
  'SHA-512': { rsaPkcs1: OID.sha512WithRSAEncryption, ecdsa: OID.ecdsaWithSHA512 },
};

export function isDigestAlgorithm(value: unknown): value is DigestAlgorithm {
  return typeof value === 'string' && Object.hasOwn(DIGEST_OID, value);
}

export function digestAlgorithmFromOid(oid: string): DigestAlgorithm | undefined {
  for (const [name, digestOid] of Object.entries(DIGEST_OID)) {
    if (digestOid === oid) return name as DigestAlgorithm;
  }
  return undefined;
}

export function digest(algorithm: DigestAlgorithm, data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash(DIGEST_NODE_NAME[algorithm]).update(data).digest());
}

/** Throws ERR_INVALID_INPUT unless `value` is exactly as long as a `algorithm` digest. */
export function assertDigestLength(value: Uint8Array, algorithm: DigestAlgorithm): void {
  const expected = DIGEST_LENGTH[algorithm];
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
  return new AlgorithmIdentifier({ algorithm: DIGEST_OID[algorithm] });
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
  const hash = new AlgorithmIdentifier({ algorithm: DIGEST_OID[algorithm], parameters: null });
  const params = new RsaPssParams();
  params.hashAlgorithm = hash;
  params.maskGenAlgorithm = new AlgorithmIdentifier({
    algorithm: OID.mgf1,
    parameters: AsnConvert.serialize(hash),
  });
  params.saltLength = DIGEST_LENGTH[algorithm];
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
  const oids = SIGNATURE_OIDS[digestAlgorithm];
  switch (scheme) {
    case 'RSASSA-PKCS1-v1_5':
      return new AlgorithmIdentifier({
        algorithm: options.rsaPkcs1Form === 'rsaEncryption' ? OID.rsaEncryption : oids.rsaPkcs1,
        parameters: null,
      });
    case 'RSA-PSS':
      return new AlgorithmIdentifier({
        algorithm: OID.rsassaPss,
        parameters: toArrayBuffer(rsaPssParams(digestAlgorithm)),
      });
    case 'ECDSA':
      // RFC 5758 section 3.2: parameters MUST be absent.
      return new AlgorithmIdentifier({ algorithm: oids.ecdsa });
  }
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
  const hash = DIGEST_NODE_NAME[algorithm];
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
          { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: DIGEST_LENGTH[algorithm] },
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
