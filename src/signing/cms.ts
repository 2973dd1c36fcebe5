// CMS SignedData with CAdES baseline attributes (RFC 5652, ETSI EN 319 122-1 B-B; B-T with a
// signature time-stamp). The outer structures are assembled with pki/der.ts so that certificates and
// time-stamp tokens are copied byte for byte.
import { X509Certificate, createHash, createPublicKey, type KeyObject } from 'node:crypto';
import {
  AsnConvert,
  AsnIntegerArrayBufferConverter,
  AsnProp,
  AsnPropTypes,
  OctetString,
} from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, GeneralName, GeneralNames, Name, PolicyInformation } from '@peculiar/asn1-x509';
import { KelidError, toKelidError } from '../model/errors.js';
import {
  TAG_SEQUENCE,
  bytesOf,
  compareBytes,
  concatBytes,
  contentOf,
  encodeOid,
  encodeSmallInteger,
  encodeTime,
  encodeTlv,
  readChildren,
  readSingle,
} from '../pki/der.js';
import type { DigestAlgorithm, SignatureScheme } from '../model/types.js';
import {
  assertDigestLength,
  digest,
  digestAlgorithmIdentifier,
  isDigestAlgorithm,
  resolveScheme,
  signatureAlgorithmIdentifier,
  toArrayBuffer,
  verifySignature,
} from './algorithms.js';
import type { DigestSigner } from '../pki/signer.js';

export const CMS_OID = {
  data: '1.2.840.113549.1.7.1',
  signedData: '1.2.840.113549.1.7.2',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  signingTime: '1.2.840.113549.1.9.5',
  signingCertificateV2: '1.2.840.113549.1.9.16.2.47',
  signatureTimeStampToken: '1.2.840.113549.1.9.16.2.14',
} as const;

// RFC 5035 (ESS) structures; @peculiar/asn1-ess is not installed.

/** `IssuerSerial ::= SEQUENCE { issuer GeneralNames, serialNumber CertificateSerialNumber }` */
export class IssuerSerial {
  @AsnProp({ type: GeneralNames })
  issuer = new GeneralNames();

  @AsnProp({ type: AsnPropTypes.Integer, converter: AsnIntegerArrayBufferConverter })
  serialNumber = new ArrayBuffer(0);
}

/**
 * `ESSCertIDv2 ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier DEFAULT {algorithm id-sha256},
 * certHash OCTET STRING, issuerSerial IssuerSerial OPTIONAL }` — `hashAlgorithm` is left undefined
 * for SHA-256 so that DER omits the default.
 */
export class EssCertIdV2 {
  @AsnProp({ type: AlgorithmIdentifier, optional: true })
  hashAlgorithm?: AlgorithmIdentifier;

  @AsnProp({ type: OctetString })
  certHash = new OctetString();

  @AsnProp({ type: IssuerSerial, optional: true })
  issuerSerial?: IssuerSerial;
}

/** `SigningCertificateV2 ::= SEQUENCE { certs SEQUENCE OF ESSCertIDv2, policies SEQUENCE OF PolicyInformation OPTIONAL }` */
export class SigningCertificateV2 {
  @AsnProp({ type: EssCertIdV2, repeated: 'sequence' })
  certs: EssCertIdV2[] = [];

  @AsnProp({ type: PolicyInformation, repeated: 'sequence', optional: true })
  policies?: PolicyInformation[];
}

export interface CmsSignOptions {
  signer: DigestSigner;
  /** Signer certificate, DER. Its public key must be the signer's. */
  certificate: Uint8Array;
  /** Further certificates to include (intermediates, root), DER. */
  chain?: Uint8Array[];
  digestAlgorithm: DigestAlgorithm;
  /** Default: RSASSA-PKCS1-v1_5 for RSA keys, ECDSA for EC keys. */
  scheme?: SignatureScheme;
  /** The data to sign. Exactly one of `content` and `digest`. */
  content?: Uint8Array;
  /** A precomputed digest of the data; the result is then always detached. */
  digest?: Uint8Array;
  /** Leave the content out of the result (only meaningful with `content`; default false). */
  detached?: boolean;
  /** Default: now. */
  signingTime?: Date;
  /** Returns a TimeStampToken (ContentInfo DER) over the signature value; makes the result CAdES-B-T. */
  timestamp?: (signatureValue: Uint8Array) => Promise<Uint8Array>;
}

interface ParsedCertificate {
  der: Uint8Array;
  issuer: Uint8Array;
  serial: Uint8Array;
  serialContent: Uint8Array;
  publicKey: KeyObject;
}

function parseCertificate(der: Uint8Array, what: string): ParsedCertificate {
  try {
    const cert = new X509Certificate(der);
    const top = readSingle(der, TAG_SEQUENCE, 'Certificate');
    const [tbs] = readChildren(der, top);
    if (tbs?.tag !== TAG_SEQUENCE) throw new TypeError('not a certificate');
    const fields = readChildren(der, tbs);
    const offset = fields[0]?.tag === 0xa0 ? 1 : 0; // [0] EXPLICIT version
    const serial = fields[offset];
    const issuer = fields[offset + 2];
    if (serial?.tag !== 0x02 || issuer?.tag !== 0x30) throw new TypeError('not a certificate');
    return {
      der,
      issuer: bytesOf(der, issuer),
      serial: bytesOf(der, serial),
      serialContent: contentOf(der, serial),
      publicKey: cert.publicKey,
    };
  } catch (e) {
    throw new KelidError('ERR_INVALID_INPUT', `${what} is not a DER X.509 certificate`, { cause: e });
  }
}

function attribute(oid: string, value: Uint8Array): Uint8Array {
  return encodeTlv(0x30, encodeOid(oid), encodeTlv(0x31, value));
}

function signingCertificateV2(cert: ParsedCertificate): Uint8Array {
  const id = new EssCertIdV2();
  id.certHash = new OctetString(createHash('sha256').update(cert.der).digest());
  id.issuerSerial = new IssuerSerial();
  id.issuerSerial.issuer = new GeneralNames([
    new GeneralName({ directoryName: AsnConvert.parse(cert.issuer, Name) }),
  ]);
  id.issuerSerial.serialNumber = toArrayBuffer(cert.serialContent);
  const value = new SigningCertificateV2();
  value.certs = [id];
  return new Uint8Array(AsnConvert.serialize(value));
}

function validate(o: CmsSignOptions): void {
  if (!isDigestAlgorithm(o.digestAlgorithm)) {
    throw new KelidError('ERR_INVALID_INPUT', 'digestAlgorithm must be SHA-256, SHA-384 or SHA-512');
  }
  if ((o.content === undefined) === (o.digest === undefined)) {
    throw new KelidError('ERR_INVALID_INPUT', 'exactly one of content and digest is required');
  }
  if (o.digest !== undefined) {
    assertDigestLength(o.digest, o.digestAlgorithm);
    if (o.detached === false) {
      throw new KelidError('ERR_INVALID_INPUT', 'a signature over a digest is always detached');
    }
  }
  if (o.signingTime !== undefined && Number.isNaN(o.signingTime.getTime())) {
    throw new KelidError('ERR_INVALID_INPUT', 'signingTime is not a valid date');
  }
}

/**
 * Signs `content` (or a precomputed `digest`) as CMS SignedData with the CAdES-B-B signed attributes
 * contentType (id-data), signingTime, messageDigest and ESS signingCertificateV2, and — when
 * `timestamp` is given — the unsigned signature time-stamp of CAdES-B-T. Returns ContentInfo DER.
 */
export async function signCms(o: CmsSignOptions): Promise<Uint8Array> {
  validate(o);
  const alg = o.digestAlgorithm;
  const scheme = resolveScheme(o.signer.keyType, o.scheme);
  const cert = parseCertificate(o.certificate, 'certificate');
  const chain = (o.chain ?? []).map((c, i) => parseCertificate(c, `chain[${i}]`));

  let signerKey: KeyObject;
  try {
    signerKey = createPublicKey({ key: Buffer.from(o.signer.publicKey), format: 'der', type: 'spki' });
  } catch (e) {
    throw new KelidError('ERR_INTERNAL', 'the signer public key is not a SubjectPublicKeyInfo', { cause: e });
  }
  if (!signerKey.equals(cert.publicKey)) {
    throw new KelidError('ERR_CERTIFICATE_MISMATCH', 'the certificate does not belong to the signing key');
  }

  const messageDigest = o.digest ?? digest(alg, o.content!);
  const signedAttributes = [
    attribute(CMS_OID.contentType, encodeOid(CMS_OID.data)),
    attribute(CMS_OID.signingTime, encodeTime(o.signingTime ?? new Date())),
    attribute(CMS_OID.messageDigest, encodeTlv(0x04, messageDigest)),
    attribute(CMS_OID.signingCertificateV2, signingCertificateV2(cert)),
  ].sort(compareBytes);
  // RFC 5652 section 5.4: the signature covers the DER SET OF (tag 0x31), not the [0] IMPLICIT form.
  const signedAttrsContent = concatBytes(...signedAttributes);
  const signedAttrsSet = encodeTlv(0x31, signedAttrsContent);

  let signature: Uint8Array;
  try {
    signature = o.signer.signMessage
      ? await o.signer.signMessage(signedAttrsSet, alg, scheme)
      : await o.signer.signDigest(digest(alg, signedAttrsSet), alg, scheme);
  } catch (e) {
    throw toKelidError(e, 'signing failed');
  }
  // A faulty token (or an RSA-CRT fault) must not yield a signature that leaks or fails later.
  if (!verifySignature(cert.publicKey, scheme, alg, signedAttrsSet, signature)) {
    throw new KelidError('ERR_DEVICE_ERROR', 'the token returned a signature that does not verify');
  }

  let unsignedAttrs: Uint8Array[] = [];
  if (o.timestamp) {
    let token: Uint8Array;
    try {
      token = await o.timestamp(signature);
    } catch (e) {
      if (e instanceof KelidError) throw e;
      throw new KelidError('ERR_TIMESTAMP_FAILED', 'time-stamping failed', { cause: e, retriable: false });
    }
    try {
      readSingle(token, TAG_SEQUENCE, 'TimeStampToken');
    } catch (e) {
      throw new KelidError('ERR_TIMESTAMP_FAILED', 'the time-stamp token is not DER', {
        cause: e,
        retriable: false,
      });
    }
    unsignedAttrs = [encodeTlv(0xa1, attribute(CMS_OID.signatureTimeStampToken, token))];
  }

  const signatureAlgorithm = new Uint8Array(
    AsnConvert.serialize(signatureAlgorithmIdentifier(scheme, alg, { rsaPkcs1Form: 'rsaEncryption' })),
  );
  const digestAlgorithm = new Uint8Array(AsnConvert.serialize(digestAlgorithmIdentifier(alg)));
  const signerInfo = encodeTlv(
    0x30,
    encodeSmallInteger(1), // v1: sid is issuerAndSerialNumber
    encodeTlv(0x30, cert.issuer, cert.serial),
    digestAlgorithm,
    encodeTlv(0xa0, signedAttrsContent),
    signatureAlgorithm,
    encodeTlv(0x04, signature),
    ...unsignedAttrs,
  );

  const attached = o.content !== undefined && o.detached !== true;
  const encapContentInfo = encodeTlv(
    0x30,
    encodeOid(CMS_OID.data),
    ...(attached ? [encodeTlv(0xa0, encodeTlv(0x04, o.content!))] : []),
  );
  const signedData = encodeTlv(
    0x30,
    encodeSmallInteger(1), // v1: id-data content, only X.509 certificates, v1 SignerInfo
    encodeTlv(0x31, digestAlgorithm),
    encapContentInfo,
    encodeTlv(0xa0, cert.der, ...chain.map((c) => c.der)),
    encodeTlv(0x31, signerInfo),
  );
  return encodeTlv(0x30, encodeOid(CMS_OID.signedData), encodeTlv(0xa0, signedData));
}
