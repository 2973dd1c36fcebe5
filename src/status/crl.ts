// CRL (RFC 5280 sections 5 and 6.3) as the fallback source: a complete, direct CRL from the
// certificate's distribution point, signed by the certificate's issuer and not past nextUpdate. Delta,
// indirect and reason-partitioned CRLs are refused rather than half-understood.
import { AsnConvert } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, IssuingDistributionPoint } from '@peculiar/asn1-x509';
import type { CertificateDescription } from '../pki/certificate.js';
import {
  TAG_BIT_STRING,
  TAG_BOOLEAN,
  TAG_GENERALIZED_TIME,
  TAG_INTEGER,
  TAG_OCTET_STRING,
  TAG_OID,
  TAG_SEQUENCE,
  TAG_UTC_TIME,
  bytesEqual,
  contentOf,
  decodeOid,
  readChildren,
  readSingle,
  stripLeadingZeros,
  toHex,
} from '../pki/der.js';
import type { Tlv } from '../pki/der.js';
import { fetchBytes } from './http-fetch.js';
import type { FetchBytesOptions } from './http-fetch.js';
import { CRL_REASON_NAMES } from './ocsp.js';
import { verifySignature } from './signature.js';
import { StatusSourceError } from './source-error.js';

// Large CRLs (national CAs publish hundreds of thousands of entries) are walked as DER directly:
// a schema parser would build an object per entry, and @peculiar/asn1-schema refuses past a node count.

const EXT = {
  cRLNumber: '2.5.29.20',
  deltaCRLIndicator: '2.5.29.27',
  issuingDistributionPoint: '2.5.29.28',
  authorityKeyIdentifier: '2.5.29.35',
  freshestCRL: '2.5.29.46',
  reasonCode: '2.5.29.21',
  invalidityDate: '2.5.29.24',
  certificateIssuer: '2.5.29.29',
} as const;

const KNOWN_CRL_EXTENSIONS: ReadonlySet<string> = new Set([
  EXT.cRLNumber,
  EXT.issuingDistributionPoint,
  EXT.authorityKeyIdentifier,
  EXT.freshestCRL,
]);
const KNOWN_ENTRY_EXTENSIONS: ReadonlySet<string> = new Set([EXT.reasonCode, EXT.invalidityDate]);

interface RawExtension {
  id: string;
  critical: boolean;
  value: Uint8Array;
}

export interface VerifiedCrl {
  thisUpdate: Date;
  nextUpdate?: Date;
  /** Scope from issuingDistributionPoint (complete CRLs only). */
  onlyContainsUserCerts: boolean;
  onlyContainsCACerts: boolean;
  /** Revoked serials (lowercase hex, no leading zero octets) → revocation time and reason code. */
  entries: ReadonlyMap<string, { revokedAt: Date; reason?: number }>;
}

export interface CrlCheckResult {
  status: 'good' | 'revoked';
  thisUpdate: Date;
  nextUpdate?: Date;
  revokedAt?: Date;
  reason?: string;
}

function malformed(message: string, cause?: unknown): StatusSourceError {
  return new StatusSourceError('crl-malformed', message, cause === undefined ? {} : { cause });
}

function unsupported(message: string): StatusSourceError {
  return new StatusSourceError('crl-unsupported', message);
}

/** DER of a CRL given as DER or PEM (`X509 CRL`). */
export function crlDer(bytes: Uint8Array): Uint8Array {
  if (bytes[0] === TAG_SEQUENCE) return bytes;
  const text = Buffer.from(bytes).toString('latin1');
  const match = /-----BEGIN X509 CRL-----([A-Za-z0-9+/=\s]+)-----END X509 CRL-----/.exec(text);
  if (!match) throw malformed('neither DER nor PEM');
  return new Uint8Array(Buffer.from(match[1]!.replace(/\s/g, ''), 'base64'));
}

/** UTCTime or GeneralizedTime (RFC 5280 section 4.1.2.5: UTC, seconds present). */
function parseTime(der: Uint8Array, tlv: Tlv): Date {
  const text = Buffer.from(contentOf(der, tlv)).toString('latin1');
  let m: RegExpExecArray | null;
  let year: number;
  if (tlv.tag === TAG_UTC_TIME && (m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text))) {
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else if (
    tlv.tag === TAG_GENERALIZED_TIME &&
    (m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.\d+)?Z$/.exec(text))
  ) {
    year = Number(m[1]);
  } else {
    throw malformed('malformed time');
  }
  const [, , mo, d, h, mi, sec] = m.map(Number);
  const t = Date.UTC(year, mo! - 1, d!, h!, mi!, sec!);
  if (Number.isNaN(t)) throw malformed('malformed time');
  return new Date(t);
}

function isTime(tlv: Tlv | undefined): tlv is Tlv {
  return tlv?.tag === TAG_UTC_TIME || tlv?.tag === TAG_GENERALIZED_TIME;
}

function parseExtensions(der: Uint8Array, seq: Tlv): RawExtension[] {
  if (seq.tag !== TAG_SEQUENCE) throw malformed('malformed extensions');
  return readChildren(der, seq).map((ext) => {
    const fields = readChildren(der, ext);
    const [id, second, third] = fields;
    if (ext.tag !== TAG_SEQUENCE || id?.tag !== TAG_OID) throw malformed('malformed extension');
    const critical = second?.tag === TAG_BOOLEAN && contentOf(der, second)[0] !== 0;
    const value = second?.tag === TAG_BOOLEAN ? third : second;
    if (value?.tag !== TAG_OCTET_STRING) throw malformed('malformed extension');
    return { id: decodeOid(contentOf(der, id)), critical, value: contentOf(der, value) };
  });
}

interface ParsedCrl {
  tbs: Uint8Array;
  issuer: Uint8Array;
  signatureAlgorithm: AlgorithmIdentifier;
  signature: Uint8Array;
  thisUpdate: Date;
  nextUpdate?: Date;
  revoked?: Tlv;
  extensions: RawExtension[];
}

function parseCrl(der: Uint8Array): ParsedCrl {
  const outer = readSingle(der, TAG_SEQUENCE, 'CertificateList');
  const [tbs, algorithm, signature, extra] = readChildren(der, outer);
  if (
    tbs?.tag !== TAG_SEQUENCE ||
    algorithm?.tag !== TAG_SEQUENCE ||
    signature?.tag !== TAG_BIT_STRING ||
    extra
  ) {
    throw malformed('malformed CRL');
  }
  const fields = readChildren(der, tbs);
  let i = fields[0]?.tag === TAG_INTEGER ? 1 : 0;
  const innerAlgorithm = fields[i++];
  const issuer = fields[i++];
  const thisUpdate = fields[i++];
  if (innerAlgorithm?.tag !== TAG_SEQUENCE || issuer?.tag !== TAG_SEQUENCE || !isTime(thisUpdate)) {
    throw malformed('malformed TBSCertList');
  }
  // RFC 5280 section 5.1.1.2: the two signature algorithm fields must match.
  if (
    !bytesEqual(
      der.subarray(innerAlgorithm.start, innerAlgorithm.end),
      der.subarray(algorithm.start, algorithm.end),
    )
  ) {
    throw malformed('inconsistent signature algorithms');
  }
  const next = fields[i];
  const nextUpdate = isTime(next) ? parseTime(der, next) : undefined;
  if (nextUpdate) i++;
  let revoked: Tlv | undefined;
  if (fields[i]?.tag === TAG_SEQUENCE) revoked = fields[i++];
  let extensions: RawExtension[] = [];
  const explicit = fields[i];
  if (explicit?.tag === 0xa0) {
    const inner = readChildren(der, explicit)[0];
    if (!inner) throw malformed('malformed crlExtensions');
    extensions = parseExtensions(der, inner);
    i++;
  }
  if (i !== fields.length) throw malformed('unexpected fields in TBSCertList');
  const sig = contentOf(der, signature);
  if (sig.length === 0 || sig[0] !== 0) throw malformed('malformed CRL signature');
  return {
    tbs: der.subarray(tbs.start, tbs.end),
    issuer: der.subarray(issuer.start, issuer.end),
    signatureAlgorithm: AsnConvert.parse(der.subarray(algorithm.start, algorithm.end), AlgorithmIdentifier),
    signature: sig.subarray(1),
    thisUpdate: parseTime(der, thisUpdate),
    ...(nextUpdate ? { nextUpdate } : {}),
    ...(revoked ? { revoked } : {}),
    extensions,
  };
}

function hasCrlSign(issuer: CertificateDescription): boolean {
  // keyUsage absent: no restriction (RFC 5280 section 4.2.1.3).
  return issuer.keyUsage.length === 0 || issuer.keyUsage.includes('cRLSign');
}

function scopeOf(extensions: readonly RawExtension[]): { users: boolean; cas: boolean } {
  const scope = { users: false, cas: false };
  for (const ext of extensions) {
    if (ext.id === EXT.deltaCRLIndicator) throw unsupported('delta CRLs are not used');
    if (ext.id === EXT.issuingDistributionPoint) {
      let idp: IssuingDistributionPoint;
      try {
        idp = AsnConvert.parse(ext.value, IssuingDistributionPoint);
      } catch (cause) {
        throw malformed('malformed issuingDistributionPoint', cause);
      }
      if (idp.indirectCRL) throw unsupported('indirect CRLs are not used');
      if (idp.onlySomeReasons) throw unsupported('reason-partitioned CRLs are not used');
      if (idp.onlyContainsAttributeCerts) throw unsupported('attribute certificate CRL');
      scope.users = idp.onlyContainsUserCerts;
      scope.cas = idp.onlyContainsCACerts;
    } else if (ext.critical && !KNOWN_CRL_EXTENSIONS.has(ext.id)) {
      throw unsupported(`unknown critical CRL extension ${ext.id}`);
    }
  }
  return scope;
}

/**
 * Parse a CRL (DER or PEM) and check that `issuer` issued and signed it and that it is a complete,
 * direct CRL. Freshness is checked per lookup ({@link crlStatus}), so a cached CRL can be reused.
 */
export function verifyCrl(bytes: Uint8Array, issuer: CertificateDescription): VerifiedCrl {
  const der = crlDer(bytes);
  let crl: ParsedCrl;
  try {
    crl = parseCrl(der);
  } catch (cause) {
    if (cause instanceof StatusSourceError) throw cause;
    throw malformed('not a CRL', cause);
  }
  if (!bytesEqual(crl.issuer, issuer.subjectDer)) {
    throw new StatusSourceError('crl-wrong-issuer', 'the CRL was not issued by the certificate issuer');
  }
  if (!hasCrlSign(issuer)) {
    throw new StatusSourceError('crl-unauthorized-signer', 'the issuer key may not sign CRLs');
  }
  if (!verifySignature(issuer.spki, crl.signatureAlgorithm, crl.tbs, crl.signature)) {
    throw new StatusSourceError('crl-bad-signature', 'the CRL signature does not verify');
  }
  const scope = scopeOf(crl.extensions);
  return {
    thisUpdate: crl.thisUpdate,
    ...(crl.nextUpdate ? { nextUpdate: crl.nextUpdate } : {}),
    onlyContainsUserCerts: scope.users,
    onlyContainsCACerts: scope.cas,
    entries: crl.revoked ? revokedEntries(der, crl.revoked) : new Map(),
  };
}

// One pass over the list when the CRL is accepted, so each lookup (and each cached reuse) is a map hit.
function revokedEntries(der: Uint8Array, list: Tlv): Map<string, { revokedAt: Date; reason?: number }> {
  const entries = new Map<string, { revokedAt: Date; reason?: number }>();
  try {
    for (const entry of readChildren(der, list)) {
      const [userCertificate, revocationDate, extensionsTlv] = readChildren(der, entry);
      if (entry.tag !== TAG_SEQUENCE || userCertificate?.tag !== TAG_INTEGER || !isTime(revocationDate)) {
        throw malformed('malformed CRL entry');
      }
      let reason: number | undefined;
      for (const ext of extensionsTlv ? parseExtensions(der, extensionsTlv) : []) {
        if (ext.id === EXT.certificateIssuer) throw unsupported('indirect CRL entries are not used');
        if (ext.id === EXT.reasonCode) reason = reasonCode(ext.value);
        else if (ext.critical && !KNOWN_ENTRY_EXTENSIONS.has(ext.id)) {
          throw unsupported(`unknown critical CRL entry extension ${ext.id}`);
        }
      }
      // removeFromCRL belongs to delta CRLs; in a complete CRL it means "no longer revoked".
      if (reason === 8) continue;
      entries.set(toHex(stripLeadingZeros(contentOf(der, userCertificate))), {
        revokedAt: parseTime(der, revocationDate),
        ...(reason !== undefined ? { reason } : {}),
      });
    }
  } catch (cause) {
    if (cause instanceof StatusSourceError) throw cause;
    throw malformed('malformed revokedCertificates', cause);
  }
  return entries;
}

/** Fetch a CRL over http(s), bounded in size and time. */
export async function fetchCrl(
  url: string,
  options: Omit<FetchBytesOptions, 'method' | 'body' | 'headers'>,
): Promise<Uint8Array> {
  return fetchBytes(url, { ...options, method: 'GET', headers: { accept: 'application/pkix-crl' } });
}

/** The status of `certificate` according to a verified CRL, at `now` (with the clock skew allowed). */
export function crlStatus(
  crl: VerifiedCrl,
  certificate: CertificateDescription,
  now: Date,
  clockSkewMs: number,
): CrlCheckResult {
  if (crl.thisUpdate.getTime() > now.getTime() + clockSkewMs) {
    throw new StatusSourceError('crl-not-yet-valid', 'thisUpdate is in the future');
  }
  if (crl.nextUpdate && crl.nextUpdate.getTime() < now.getTime() - clockSkewMs) {
    throw new StatusSourceError('crl-stale', 'nextUpdate has passed');
  }
  if (crl.onlyContainsCACerts && !certificate.isCa) throw unsupported('the CRL covers CA certificates only');
  if (crl.onlyContainsUserCerts && certificate.isCa) throw unsupported('the CRL covers end entities only');

  const serialTlv = readSingle(certificate.serialDer, TAG_INTEGER, 'serialNumber');
  const serial = stripLeadingZeros(contentOf(certificate.serialDer, serialTlv));
  const result: CrlCheckResult = {
    status: 'good',
    thisUpdate: crl.thisUpdate,
    ...(crl.nextUpdate ? { nextUpdate: crl.nextUpdate } : {}),
  };
  const entry = crl.entries.get(toHex(serial));
  if (!entry) return result;
  result.status = 'revoked';
  result.revokedAt = entry.revokedAt;
  if (entry.reason !== undefined) result.reason = CRL_REASON_NAMES[entry.reason] ?? String(entry.reason);
  return result;
}

function reasonCode(value: Uint8Array): number {
  // CRLReason ::= ENUMERATED, one content octet for every defined value.
  if (value.length !== 3 || value[0] !== 0x0a || value[1] !== 1) throw malformed('malformed reasonCode');
  return value[2]!;
}
