// CRL (RFC 5280 sections 5 and 6.3) as the fallback source: a complete, direct CRL from the
// certificate's distribution point, signed by the certificate's issuer and not past nextUpdate. Delta,
// indirect and reason-partitioned CRLs are refused rather than half-understood.
import { AsnConvert } from '@peculiar/asn1-schema';
import { CertificateList, IssuingDistributionPoint } from '@peculiar/asn1-x509';
import type { Extension } from '@peculiar/asn1-x509';
import type { CertificateDescription } from '../pki/certificate.js';
import {
  TAG_BIT_STRING,
  TAG_INTEGER,
  TAG_SEQUENCE,
  bytesEqual,
  contentOf,
  readChildren,
  readSingle,
  stripLeadingZeros,
} from '../pki/der.js';
import { fetchBytes } from './http-fetch.js';
import { CRL_REASON_NAMES } from './ocsp.js';
import { verifySignature } from './signature.js';
import { StatusSourceError } from './source-error.js';

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

export interface VerifiedCrl {
  list: CertificateList;
  thisUpdate: Date;
  nextUpdate?: Date;
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

interface RawCrl {
  tbs: Uint8Array;
  issuer: Uint8Array;
  signature: Uint8Array;
}

function rawCrl(der: Uint8Array): RawCrl {
  const outer = readSingle(der, TAG_SEQUENCE, 'CertificateList');
  const [tbs, , signature] = readChildren(der, outer);
  if (tbs?.tag !== TAG_SEQUENCE || signature?.tag !== TAG_BIT_STRING) throw malformed('malformed CRL');
  const fields = readChildren(der, tbs);
  const start = fields[0]?.tag === TAG_INTEGER ? 1 : 0;
  const issuer = fields[start + 1];
  if (issuer?.tag !== TAG_SEQUENCE) throw malformed('malformed CRL issuer');
  const sig = contentOf(der, signature);
  if (sig.length === 0 || sig[0] !== 0) throw malformed('malformed CRL signature');
  return {
    tbs: der.subarray(tbs.start, tbs.end),
    issuer: der.subarray(issuer.start, issuer.end),
    signature: sig.subarray(1),
  };
}

function hasCrlSign(issuer: CertificateDescription): boolean {
  // keyUsage absent: no restriction (RFC 5280 section 4.2.1.3).
  return issuer.keyUsage.length === 0 || issuer.keyUsage.includes('cRLSign');
}

function checkScope(extensions: readonly Extension[] | undefined): IssuingDistributionPoint | undefined {
  let idp: IssuingDistributionPoint | undefined;
  for (const ext of extensions ?? []) {
    if (ext.extnID === EXT.deltaCRLIndicator) throw unsupported('delta CRLs are not used');
    if (ext.extnID === EXT.issuingDistributionPoint) {
      try {
        idp = AsnConvert.parse(ext.extnValue, IssuingDistributionPoint);
      } catch (cause) {
        throw malformed('malformed issuingDistributionPoint', cause);
      }
      if (idp.indirectCRL) throw unsupported('indirect CRLs are not used');
      if (idp.onlySomeReasons) throw unsupported('reason-partitioned CRLs are not used');
      if (idp.onlyContainsAttributeCerts) throw unsupported('attribute certificate CRL');
    } else if (ext.critical && !KNOWN_CRL_EXTENSIONS.has(ext.extnID)) {
      throw unsupported(`unknown critical CRL extension ${ext.extnID}`);
    }
  }
  return idp;
}

/**
 * Parse a CRL (DER or PEM) and check that `issuer` issued and signed it and that it is a complete,
 * direct CRL. Freshness is checked per lookup ({@link crlStatus}), so a cached CRL can be reused.
 */
export function verifyCrl(bytes: Uint8Array, issuer: CertificateDescription): VerifiedCrl {
  const der = crlDer(bytes);
  let list: CertificateList;
  let raw: RawCrl;
  try {
    list = AsnConvert.parse(der, CertificateList);
    raw = rawCrl(der);
  } catch (cause) {
    if (cause instanceof StatusSourceError) throw cause;
    throw malformed('not a CRL', cause);
  }
  if (!bytesEqual(raw.issuer, issuer.subjectDer)) {
    throw new StatusSourceError('crl-wrong-issuer', 'the CRL was not issued by the certificate issuer');
  }
  if (!hasCrlSign(issuer)) {
    throw new StatusSourceError('crl-unauthorized-signer', 'the issuer key may not sign CRLs');
  }
  if (!verifySignature(issuer.spki, list.signatureAlgorithm, raw.tbs, raw.signature)) {
    throw new StatusSourceError('crl-bad-signature', 'the CRL signature does not verify');
  }
  checkScope(list.tbsCertList.crlExtensions);
  const nextUpdate = list.tbsCertList.nextUpdate?.getTime();
  return { list, thisUpdate: list.tbsCertList.thisUpdate.getTime(), ...(nextUpdate ? { nextUpdate } : {}) };
}

/** Fetch a CRL over http(s), bounded in size and time. */
export async function fetchCrl(
  url: string,
  options: { maxBytes: number; timeoutMs?: number; signal?: AbortSignal; fetch?: typeof fetch },
): Promise<Uint8Array> {
  return fetchBytes(url, {
    method: 'GET',
    maxBytes: options.maxBytes,
    headers: { accept: 'application/pkix-crl' },
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
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
  const idp = checkScope(crl.list.tbsCertList.crlExtensions);
  if (idp?.onlyContainsCACerts && !certificate.isCa) throw unsupported('the CRL covers CA certificates only');
  if (idp?.onlyContainsUserCerts && certificate.isCa) throw unsupported('the CRL covers end entities only');

  const serialTlv = readSingle(certificate.serialDer, TAG_INTEGER, 'serialNumber');
  const serial = stripLeadingZeros(contentOf(certificate.serialDer, serialTlv));
  const result: CrlCheckResult = {
    status: 'good',
    thisUpdate: crl.thisUpdate,
    ...(crl.nextUpdate ? { nextUpdate: crl.nextUpdate } : {}),
  };
  for (const entry of crl.list.tbsCertList.revokedCertificates ?? []) {
    for (const ext of entry.crlEntryExtensions ?? []) {
      if (ext.extnID === EXT.certificateIssuer) throw unsupported('indirect CRL entries are not used');
      if (ext.critical && !KNOWN_ENTRY_EXTENSIONS.has(ext.extnID)) {
        throw unsupported(`unknown critical CRL entry extension ${ext.extnID}`);
      }
    }
    if (!bytesEqual(stripLeadingZeros(new Uint8Array(entry.userCertificate)), serial)) continue;
    const reasonExt = entry.crlEntryExtensions?.find((e) => e.extnID === EXT.reasonCode);
    const code = reasonExt ? reasonCode(reasonExt) : undefined;
    // removeFromCRL belongs to delta CRLs; in a complete CRL it means "no longer revoked".
    if (code === 8) continue;
    result.status = 'revoked';
    result.revokedAt = entry.revocationDate.getTime();
    if (code !== undefined) result.reason = CRL_REASON_NAMES[code] ?? String(code);
    return result;
  }
  return result;
}

function reasonCode(ext: Extension): number {
  const value = new Uint8Array(ext.extnValue.buffer);
  // CRLReason ::= ENUMERATED, one content octet for every defined value.
  if (value.length !== 3 || value[0] !== 0x0a || value[1] !== 1) throw malformed('malformed reasonCode');
  return value[2]!;
}
