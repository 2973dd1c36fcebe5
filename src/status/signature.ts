// Signature checks for OCSP responses, CRLs and delegated responder certificates, by X.509
// AlgorithmIdentifier. SHA-1 signatures are refused: the OCSP nonce is chosen by the requester, which
// is exactly the attacker-controlled prefix a SHA-1 collision needs.
import { constants, createPublicKey, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { AsnConvert, AsnProp, AsnPropTypes } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier } from '@peculiar/asn1-x509';
import { StatusSourceError } from './source-error.js';

const HASH_BY_OID: Readonly<Record<string, string>> = {
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};

const RSA_PKCS1: Readonly<Record<string, string>> = {
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
};

const ECDSA: Readonly<Record<string, string>> = {
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
};

const RSASSA_PSS = '1.2.840.113549.1.1.10';
const MGF1 = '1.2.840.113549.1.1.8';
const ED25519 = '1.3.101.112';
const SHA1 = '1.3.14.3.2.26';

// RFC 4055 RSASSA-PSS-params, with the DEFAULTs (SHA-1, MGF1-SHA-1, salt 20) that the parser fills in.
class RsaPssParams {
  @AsnProp({ type: AlgorithmIdentifier, context: 0, optional: true })
  hashAlgorithm?: AlgorithmIdentifier;

  @AsnProp({ type: AlgorithmIdentifier, context: 1, optional: true })
  maskGenAlgorithm?: AlgorithmIdentifier;

  @AsnProp({ type: AsnPropTypes.Integer, context: 2, optional: true })
  saltLength?: number;

  @AsnProp({ type: AsnPropTypes.Integer, context: 3, optional: true })
  trailerField?: number;
}

function unsupported(message: string): StatusSourceError {
  return new StatusSourceError('unsupported-algorithm', message);
}

function pssParameters(algorithm: AlgorithmIdentifier): { hash: string; saltLength: number } {
  if (!algorithm.parameters) throw unsupported('RSASSA-PSS without parameters (SHA-1) is not accepted');
  let params: RsaPssParams;
  try {
    params = AsnConvert.parse(algorithm.parameters, RsaPssParams);
  } catch (cause) {
    throw new StatusSourceError('unsupported-algorithm', 'malformed RSASSA-PSS parameters', { cause });
  }
  const hashOid = params.hashAlgorithm?.algorithm ?? SHA1;
  const hash = HASH_BY_OID[hashOid];
  if (!hash) throw unsupported(`RSASSA-PSS hash ${hashOid} is not accepted`);
  // Node's PSS verification uses MGF1 with the message hash: anything else cannot be checked here.
  const mgf = params.maskGenAlgorithm;
  if (!mgf || mgf.algorithm !== MGF1 || !mgf.parameters) throw unsupported('RSASSA-PSS mask generation');
  const mgfHash = AsnConvert.parse(mgf.parameters, AlgorithmIdentifier).algorithm;
  if (mgfHash !== hashOid) throw unsupported('RSASSA-PSS with MGF1 over a different hash');
  if ((params.trailerField ?? 1) !== 1) throw unsupported('RSASSA-PSS trailer field');
  return { hash, saltLength: params.saltLength ?? 20 };
}

// A signature that cannot even be decoded (bad DER, wrong length) is simply not a valid signature.
function safely(check: () => boolean): boolean {
  try {
    return check();
  } catch {
    return false;
  }
}

function publicKey(spki: Uint8Array): KeyObject {
  try {
    return createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  } catch (cause) {
    throw new StatusSourceError('unsupported-algorithm', 'unusable public key', { cause });
  }
}

/**
 * Whether `signature` over `data` verifies with the key in `spki` under `algorithm`: RSA PKCS#1 v1.5,
 * RSASSA-PSS or ECDSA with SHA-256/384/512, or Ed25519. Throws `unsupported-algorithm` for anything
 * else, or when the key type does not fit the algorithm.
 */
export function verifySignature(
  spki: Uint8Array,
  algorithm: AlgorithmIdentifier,
  data: Uint8Array,
  signature: Uint8Array,
): boolean {
  const key = publicKey(spki);
  const keyType = key.asymmetricKeyType;
  const oid = algorithm.algorithm;
  const rsaHash = RSA_PKCS1[oid];
  if (rsaHash) {
    if (keyType !== 'rsa') throw unsupported(`${oid} needs an RSA key`);
    return safely(() => verify(rsaHash, data, { key, padding: constants.RSA_PKCS1_PADDING }, signature));
  }
  if (oid === RSASSA_PSS) {
    if (keyType !== 'rsa' && keyType !== 'rsa-pss') throw unsupported('RSASSA-PSS needs an RSA key');
    const { hash, saltLength } = pssParameters(algorithm);
    return safely(() =>
      verify(hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength }, signature),
    );
  }
  const ecHash = ECDSA[oid];
  if (ecHash) {
    if (keyType !== 'ec') throw unsupported(`${oid} needs an EC key`);
    return safely(() => verify(ecHash, data, { key, dsaEncoding: 'der' }, signature));
  }
  if (oid === ED25519) {
    if (keyType !== 'ed25519') throw unsupported('Ed25519 needs an Ed25519 key');
    return safely(() => verify(null, data, key, signature));
  }
  throw unsupported(`signature algorithm ${oid} is not accepted`);
}
