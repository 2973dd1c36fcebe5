// X.509 certificates: accepting them from the wire (PEM or base64 DER) and reading the fields the
// agent shows, filters on and writes to a token (CKA_SUBJECT, CKA_ISSUER, CKA_SERIAL_NUMBER, CKA_ID).
import { createHash } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  AuthorityInfoAccessSyntax,
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate,
  CRLDistributionPoints,
  ExtendedKeyUsage,
  SubjectKeyIdentifier,
} from '@peculiar/asn1-x509';
import type { GeneralName } from '@peculiar/asn1-x509';
import { KelidError } from '../model/errors.js';
import {
  TAG_BIT_STRING,
  TAG_INTEGER,
  TAG_SEQUENCE,
  bytesEqual,
  contentOf,
  expectTlv,
  readChildren,
  readSingle,
  stripLeadingZeros,
  toHex,
} from './der.js';
import { formatName } from './dn.js';
import { keyIdFromSpki } from './key-id.js';
import { KEY_USAGE_NAMES, OID, extendedKeyUsageName } from './oids.js';
import { parseSpki } from './spki.js';

/** Largest certificate accepted, in DER bytes. */
export const MAX_CERTIFICATE_BYTES = 64 * 1024;
// Base64 of the maximum plus PEM line breaks and armour.
const MAX_CERTIFICATE_TEXT = 96 * 1024;

export interface CertificateDescription {
  /** RFC 4514, most significant RDN last, UTF-8 text unescaped. */
  subject: string;
  issuer: string;
  /**
   * Lowercase hex of the serial number's magnitude in whole octets, without the DER sign octet (so a
   * serial encoded `00 8f …` gives `8f…`); `00` for zero; a (non-conforming) negative serial gets `-`.
   */
  serialNumber: string;
  /** ISO 8601 UTC. */
  notBefore: string;
  notAfter: string;
  /** keyUsage bit names, in bit order; empty when the extension is absent. */
  keyUsage: string[];
  /** extendedKeyUsage names where known, dotted OIDs otherwise. */
  extendedKeyUsage: string[];
  /** Lowercase hex SHA-256 of the DER certificate. */
  fingerprintSha256: string;
  /** SubjectPublicKeyInfo DER. */
  spki: Uint8Array;
  /** Exact DER of the subject Name (CKA_SUBJECT). */
  subjectDer: Uint8Array;
  /** Exact DER of the issuer Name (CKA_ISSUER). */
  issuerDer: Uint8Array;
  /** DER INTEGER of the serial number, tag and length included (CKA_SERIAL_NUMBER). */
  serialDer: Uint8Array;
  /** basicConstraints cA. */
  isCa: boolean;
  /** Lowercase hex. */
  subjectKeyIdentifier?: string;
  /** Lowercase hex of the keyIdentifier field. */
  authorityKeyIdentifier?: string;
  ocspUrls: string[];
  caIssuerUrls: string[];
  crlUrls: string[];
  /** keyId (CKA_ID convention) of the certified key; absent for key types the agent does not handle. */
  keyId?: string;
}

function invalid(message: string, cause?: unknown): KelidError {
  return new KelidError('ERR_INVALID_INPUT', message, cause === undefined ? {} : { cause });
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([^-]*)-----END ([A-Z0-9 ]+)-----/g;

function decodeBase64(text: string): Uint8Array {
  const compact = text.replace(/[\r\n\t ]/g, '');
  if (compact.length === 0 || !BASE64.test(compact)) throw invalid('certificate is not valid base64');
  return new Uint8Array(Buffer.from(compact, 'base64'));
}

function decodeText(text: string): Uint8Array {
  if (text.length > MAX_CERTIFICATE_TEXT) throw invalid('certificate is too large');
  if (!text.includes('-----BEGIN')) return decodeBase64(text);
  const blocks = [...text.matchAll(PEM_BLOCK)];
  if (blocks.length === 0) throw invalid('malformed PEM');
  if (blocks.length > 1) throw invalid('expected exactly one PEM block');
  const [, begin, body, end] = blocks[0]!;
  if (begin !== end || (begin !== 'CERTIFICATE' && begin !== 'X509 CERTIFICATE')) {
    throw invalid('PEM block is not a CERTIFICATE');
  }
  if (body!.includes(':')) throw invalid('PEM headers are not supported');
  return decodeBase64(body!);
}

function parseCertificate(der: Uint8Array): Certificate {
  try {
    return AsnConvert.parse(der, Certificate);
  } catch (cause) {
    throw invalid('not an X.509 certificate', cause);
  }
}

/**
 * DER bytes of one certificate given as PEM, base64 DER or DER bytes. Refuses anything else
 * (other PEM blocks such as private keys, several certificates, trailing data, oversized input).
 */
export function parseCertificateInput(input: string | Uint8Array): Uint8Array {
  let der: Uint8Array;
  if (typeof input === 'string') {
    der = decodeText(input);
  } else if (input instanceof Uint8Array) {
    if (input.length > MAX_CERTIFICATE_TEXT) throw invalid('certificate is too large');
    der =
      input[0] === TAG_SEQUENCE ? Uint8Array.from(input) : decodeText(Buffer.from(input).toString('latin1'));
  } else {
    throw invalid('certificate must be a string');
  }
  if (der.length > MAX_CERTIFICATE_BYTES) throw invalid('certificate is too large');
  readSingle(der, TAG_SEQUENCE, 'Certificate');
  parseCertificate(der);
  return der;
}

interface RawParts {
  serial: Uint8Array;
  issuer: Uint8Array;
  subject: Uint8Array;
  spki: Uint8Array;
}

// Exact byte ranges of the fields a token stores; re-serializing a parsed Name could change them.
function rawParts(der: Uint8Array): RawParts {
  const cert = readSingle(der, TAG_SEQUENCE, 'Certificate');
  const tbs = expectTlv(der, cert.contentStart, cert.end, TAG_SEQUENCE, 'TBSCertificate');
  const fields = readChildren(der, tbs);
  const start = fields[0]?.tag === 0xa0 ? 1 : 0;
  const [serial, signature, issuer, validity, subject, spki] = fields.slice(start);
  if (
    serial?.tag !== TAG_INTEGER ||
    [signature, issuer, validity, subject, spki].some((t) => t?.tag !== TAG_SEQUENCE)
  ) {
    throw invalid('malformed TBSCertificate');
  }
  return {
    serial: der.slice(serial.start, serial.end),
    issuer: der.slice(issuer!.start, issuer!.end),
    subject: der.slice(subject!.start, subject!.end),
    spki: der.slice(spki!.start, spki!.end),
  };
}

function serialHex(serialDer: Uint8Array): string {
  const tlv = readSingle(serialDer, TAG_INTEGER, 'serialNumber');
  const content = contentOf(serialDer, tlv);
  if (content.length === 0) throw invalid('empty serialNumber');
  if ((content[0]! & 0x80) === 0) return toHex(stripLeadingZeros(content));
  // Two's complement magnitude of a negative serial.
  let v = 0n;
  for (const b of content) v = (v << 8n) | BigInt(b);
  let hex = ((1n << BigInt(content.length * 8)) - v).toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  return `-${hex}`;
}

function keyUsageNames(value: Uint8Array): string[] {
  const tlv = readSingle(value, TAG_BIT_STRING, 'keyUsage');
  const content = contentOf(value, tlv);
  if (content.length === 0 || content[0]! > 7) throw invalid('malformed keyUsage');
  const bits = content.subarray(1);
  return KEY_USAGE_NAMES.filter((_, i) => ((bits[i >> 3] ?? 0) & (0x80 >> (i & 7))) !== 0);
}

function uris(names: readonly GeneralName[] | undefined): string[] {
  return (names ?? []).flatMap((n) =>
    n.uniformResourceIdentifier === undefined ? [] : [n.uniformResourceIdentifier],
  );
}

function parseExtension<T>(value: ArrayBuffer, type: new () => T, name: string): T {
  try {
    return AsnConvert.parse(value, type);
  } catch (cause) {
    throw invalid(`malformed ${name} extension`, cause);
  }
}

// Descriptions by SHA-256 of the DER: the same few certificates are parsed on every signature, and
// ASN.1 parsing is most of the agent's CPU time per request. Bounded; emptied when full.
const DESCRIPTIONS = new Map<string, CertificateDescription>();
const MAX_DESCRIPTIONS = 512;

/** The fields of a DER certificate that the agent shows, filters on, and stores on a token. */
export function describeCertificate(der: Uint8Array): CertificateDescription {
  const fingerprint = createHash('sha256').update(der).digest('hex');
  let d = DESCRIPTIONS.get(fingerprint);
  if (!d) {
    d = parseDescription(der, fingerprint);
    if (DESCRIPTIONS.size >= MAX_DESCRIPTIONS) DESCRIPTIONS.clear();
    DESCRIPTIONS.set(fingerprint, d);
  }
  // Callers get their own arrays; the byte fields are shared and never written to.
  return {
    ...d,
    keyUsage: [...d.keyUsage],
    extendedKeyUsage: [...d.extendedKeyUsage],
    ocspUrls: [...d.ocspUrls],
    caIssuerUrls: [...d.caIssuerUrls],
    crlUrls: [...d.crlUrls],
  };
}

function parseDescription(der: Uint8Array, fingerprint: string): CertificateDescription {
  const cert = parseCertificate(der);
  const raw = rawParts(der);
  const tbs = cert.tbsCertificate;
  const description: CertificateDescription = {
    subject: formatName(raw.subject),
    issuer: formatName(raw.issuer),
    serialNumber: serialHex(raw.serial),
    notBefore: tbs.validity.notBefore.getTime().toISOString(),
    notAfter: tbs.validity.notAfter.getTime().toISOString(),
    keyUsage: [],
    extendedKeyUsage: [],
    fingerprintSha256: fingerprint,
    spki: raw.spki,
    subjectDer: raw.subject,
    issuerDer: raw.issuer,
    serialDer: raw.serial,
    isCa: false,
    ocspUrls: [],
    caIssuerUrls: [],
    crlUrls: [],
  };
  const seen = new Set<string>();
  for (const ext of tbs.extensions ?? []) {
    if (seen.has(ext.extnID)) throw invalid(`duplicate extension ${ext.extnID}`);
    seen.add(ext.extnID);
    const value = ext.extnValue.buffer;
    switch (ext.extnID) {
      case OID.keyUsage:
        description.keyUsage = keyUsageNames(new Uint8Array(value));
        break;
      case OID.extendedKeyUsage:
        description.extendedKeyUsage = parseExtension(value, ExtendedKeyUsage, 'extendedKeyUsage').map(
          extendedKeyUsageName,
        );
        break;
      case OID.basicConstraints:
        description.isCa = parseExtension(value, BasicConstraints, 'basicConstraints').cA;
        break;
      case OID.subjectKeyIdentifier:
        description.subjectKeyIdentifier = toHex(
          new Uint8Array(parseExtension(value, SubjectKeyIdentifier, 'subjectKeyIdentifier').buffer),
        );
        break;
      case OID.authorityKeyIdentifier: {
        const aki = parseExtension(value, AuthorityKeyIdentifier, 'authorityKeyIdentifier');
        if (aki.keyIdentifier)
          description.authorityKeyIdentifier = toHex(new Uint8Array(aki.keyIdentifier.buffer));
        break;
      }
      case OID.authorityInfoAccess:
        for (const ad of parseExtension(value, AuthorityInfoAccessSyntax, 'authorityInfoAccess')) {
          const target =
            ad.accessMethod === OID.ocsp
              ? description.ocspUrls
              : ad.accessMethod === OID.caIssuers
                ? description.caIssuerUrls
                : undefined;
          target?.push(...uris([ad.accessLocation]));
        }
        break;
      case OID.crlDistributionPoints:
        for (const dp of parseExtension(value, CRLDistributionPoints, 'cRLDistributionPoints')) {
          description.crlUrls.push(...uris(dp.distributionPoint?.fullName));
        }
        break;
      default:
        break;
    }
  }
  try {
    description.keyId = keyIdFromSpki(raw.spki);
  } catch {
    // Ed25519 and other key types: no keyId, the certificate is still described.
  }
  return description;
}

/**
 * Whether two SubjectPublicKeyInfos hold the same key: RSA modulus and exponent (NULL or absent
 * parameters alike), or EC curve and point (compressed or not). Keys of different types are unequal.
 */
export function publicKeysEqual(spkiA: Uint8Array, spkiB: Uint8Array): boolean {
  const a = parseSpki(spkiA);
  const b = parseSpki(spkiB);
  if (a.keyType === 'RSA' && b.keyType === 'RSA') {
    return bytesEqual(a.modulus, b.modulus) && bytesEqual(a.publicExponent, b.publicExponent);
  }
  if (a.keyType === 'EC' && b.keyType === 'EC') {
    return a.curveOid === b.curveOid && bytesEqual(a.point, b.point);
  }
  return false;
}

/** The SPKI of a DER certificate, byte-exact. */
export function certificateSpki(der: Uint8Array): Uint8Array {
  return rawParts(der).spki;
}
