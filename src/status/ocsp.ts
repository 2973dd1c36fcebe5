// OCSP (RFC 6960) client: one request per (certificate, issuer) with a nonce (RFC 8954), sent by GET
// when small (RFC 6960 appendix A.1) and by POST otherwise, and a response check that trusts only the
// issuing CA or a responder the CA delegated to (id-kp-OCSPSigning, issued by that CA).
import { createHash, randomBytes } from 'node:crypto';
import {
  BasicOCSPResponse,
  CertID,
  OCSPRequest,
  OCSPResponse,
  OCSPResponseStatus,
  Request,
  TBSRequest,
  id_pkix_ocsp_basic,
  id_pkix_ocsp_nonce,
} from '@peculiar/asn1-ocsp';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Certificate, Extension } from '@peculiar/asn1-x509';
import { describeCertificate } from '../pki/certificate.js';
import type { CertificateDescription } from '../pki/certificate.js';
import {
  TAG_BIT_STRING,
  TAG_INTEGER,
  TAG_OCTET_STRING,
  TAG_SEQUENCE,
  bytesEqual,
  contentOf,
  readChildren,
  readSingle,
  stripLeadingZeros,
} from '../pki/der.js';
import { fetchBytes } from './http-fetch.js';
import type { FetchBytesOptions } from './http-fetch.js';
import { verifySignature } from './signature.js';
import { StatusSourceError } from './source-error.js';

const SHA1_OID = '1.3.14.3.2.26';
const CERT_ID_HASHES: Readonly<Record<string, string>> = {
  [SHA1_OID]: 'sha1',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};

/** RFC 5280 CRLReason names, by value (7 is unused). */
export const CRL_REASON_NAMES: Readonly<Record<number, string>> = {
  0: 'unspecified',
  1: 'keyCompromise',
  2: 'cACompromise',
  3: 'affiliationChanged',
  4: 'superseded',
  5: 'cessationOfOperation',
  6: 'certificateHold',
  8: 'removeFromCRL',
  9: 'privilegeWithdrawn',
  10: 'aACompromise',
};

// RFC 6960 appendix A.1: GET only when the URL-encoded base64 request is under 255 bytes.
const MAX_GET_REQUEST = 255;
/** RFC 8954: 1 to 32 octets. */
const NONCE_BYTES = 32;

export interface OcspRequest {
  der: Uint8Array;
  nonce: Uint8Array;
}

export interface OcspCheckResult {
  status: 'good' | 'revoked' | 'unknown';
  thisUpdate: Date;
  nextUpdate?: Date;
  producedAt: Date;
  revokedAt?: Date;
  reason?: string;
}

export interface OcspVerifyOptions {
  certificate: CertificateDescription;
  issuer: CertificateDescription;
  /** The nonce sent in the request, if any. */
  nonce?: Uint8Array;
  /** Refuse responses without a nonce (default: accept them if they are fresh, as RFC 5019 allows). */
  requireNonce?: boolean;
  now: Date;
  clockSkewMs: number;
  /** Largest age of a response that has neither nextUpdate nor our nonce. */
  maxAgeMs: number;
}

function sha(name: string, data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash(name).update(data).digest());
}

/** The subjectPublicKey BIT STRING value (without the unused-bits octet): what OCSP key hashes cover. */
function subjectPublicKeyBits(spki: Uint8Array): Uint8Array {
  const seq = readSingle(spki, TAG_SEQUENCE, 'SubjectPublicKeyInfo');
  const bits = readChildren(spki, seq)[1];
  if (!bits || bits.tag !== TAG_BIT_STRING) throw new StatusSourceError('ocsp-malformed', 'malformed SPKI');
  return contentOf(spki, bits).subarray(1);
}

function serialContent(certificate: CertificateDescription): Uint8Array {
  const tlv = readSingle(certificate.serialDer, TAG_INTEGER, 'serialNumber');
  return contentOf(certificate.serialDer, tlv);
}

/** An OCSPRequest for one certificate, with a fresh random nonce; CertID hashes are SHA-1 (RFC 5019). */
export function buildOcspRequest(
  certificate: CertificateDescription,
  issuer: CertificateDescription,
  nonce: Uint8Array = new Uint8Array(randomBytes(NONCE_BYTES)),
): OcspRequest {
  const certId = new CertID({
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: SHA1_OID, parameters: null }),
    issuerNameHash: new OctetString(sha('sha1', issuer.subjectDer)),
    issuerKeyHash: new OctetString(sha('sha1', subjectPublicKeyBits(issuer.spki))),
    // Uint8Array.from copies: `.slice()` on a Buffer is a view of its (pooled) memory.
    serialNumber: Uint8Array.from(serialContent(certificate)).buffer,
  });
  const nonceExtension = new Extension({
    extnID: id_pkix_ocsp_nonce,
    critical: false,
    extnValue: new OctetString(AsnConvert.serialize(new OctetString(nonce))),
  });
  const request = new OCSPRequest({
    tbsRequest: new TBSRequest({
      requestList: [new Request({ reqCert: certId })],
      requestExtensions: [nonceExtension],
    }),
  });
  return { der: new Uint8Array(AsnConvert.serialize(request)), nonce };
}

/** The GET form of a request to `url`, or undefined when the request is too large for GET. */
export function ocspGetUrl(url: string, requestDer: Uint8Array): string | undefined {
  const encoded = encodeURIComponent(Buffer.from(requestDer).toString('base64'));
  if (encoded.length >= MAX_GET_REQUEST) return undefined;
  return url.endsWith('/') ? `${url}${encoded}` : `${url}/${encoded}`;
}

export interface OcspQueryOptions extends Omit<FetchBytesOptions, 'method' | 'body' | 'headers'> {
  /** `auto`: GET for small requests, POST otherwise. */
  method?: 'auto' | 'post';
}

/** Send a DER OCSPRequest to a responder and return the DER response body. */
export async function queryOcsp(
  url: string,
  requestDer: Uint8Array,
  options: OcspQueryOptions,
): Promise<Uint8Array> {
  const { method, ...common } = options;
  const getUrl = method === 'post' ? undefined : ocspGetUrl(url, requestDer);
  if (getUrl) {
    return fetchBytes(getUrl, { ...common, method: 'GET', headers: { accept: 'application/ocsp-response' } });
  }
  return fetchBytes(url, {
    ...common,
    method: 'POST',
    body: requestDer,
    headers: { 'content-type': 'application/ocsp-request', accept: 'application/ocsp-response' },
  });
}

interface RawBasicResponse {
  tbs: Uint8Array;
  responderName?: Uint8Array;
  responderKeyHash?: Uint8Array;
  certs: Uint8Array[];
}

// Exact bytes of what is signed, of the responder id and of the embedded certificates: comparing or
// verifying re-serialized structures could disagree with what the responder signed.
function rawBasicResponse(der: Uint8Array): RawBasicResponse {
  const outer = readSingle(der, TAG_SEQUENCE, 'BasicOCSPResponse');
  const [tbs, , , certsField] = readChildren(der, outer);
  if (!tbs || tbs.tag !== TAG_SEQUENCE) throw new StatusSourceError('ocsp-malformed', 'malformed response');
  const out: RawBasicResponse = { tbs: der.subarray(tbs.start, tbs.end), certs: [] };
  for (const field of readChildren(der, tbs)) {
    if (field.tag === 0xa1) {
      out.responderName = contentOf(der, field);
      break;
    }
    if (field.tag === 0xa2) {
      const inner = readChildren(der, field)[0];
      if (!inner || inner.tag !== TAG_OCTET_STRING)
        throw new StatusSourceError('ocsp-malformed', 'bad KeyHash');
      out.responderKeyHash = contentOf(der, inner);
      break;
    }
    if (field.tag !== 0xa0) break;
  }
  if (certsField?.tag === 0xa0) {
    const seq = readChildren(der, certsField)[0];
    if (seq?.tag === TAG_SEQUENCE) {
      out.certs = readChildren(der, seq).map((c) => der.subarray(c.start, c.end));
    }
  }
  return out;
}

function matchesResponder(raw: RawBasicResponse, candidate: CertificateDescription): boolean {
  if (raw.responderName) return bytesEqual(raw.responderName, candidate.subjectDer);
  if (raw.responderKeyHash) {
    return bytesEqual(raw.responderKeyHash, sha('sha1', subjectPublicKeyBits(candidate.spki)));
  }
  return false;
}

function unauthorized(message: string): StatusSourceError {
  return new StatusSourceError('ocsp-unauthorized-signer', message);
}

/** The key that may sign responses about `issuer`'s certificates: the CA's own, or a delegate's. */
function responderKey(raw: RawBasicResponse, o: OcspVerifyOptions): Uint8Array {
  if (matchesResponder(raw, o.issuer)) return o.issuer.spki;
  for (const der of raw.certs) {
    let description: CertificateDescription;
    let parsed: Certificate;
    try {
      description = describeCertificate(der);
      parsed = AsnConvert.parse(der, Certificate);
    } catch {
      continue;
    }
    if (!matchesResponder(raw, description)) continue;
    // RFC 6960 section 4.2.2.2: a delegated responder is issued directly by the CA and carries
    // id-kp-OCSPSigning.
    if (!bytesEqual(description.issuerDer, o.issuer.subjectDer)) {
      throw unauthorized('the responder certificate was not issued by the certificate issuer');
    }
    const tbs = parsed.tbsCertificateRaw;
    if (
      !tbs ||
      !verifySignature(
        o.issuer.spki,
        parsed.signatureAlgorithm,
        new Uint8Array(tbs),
        new Uint8Array(parsed.signatureValue),
      )
    ) {
      throw unauthorized('the responder certificate is not signed by the certificate issuer');
    }
    if (!description.extendedKeyUsage.includes('ocspSigning')) {
      throw unauthorized('the responder certificate lacks id-kp-OCSPSigning');
    }
    const now = o.now.getTime();
    if (
      now + o.clockSkewMs < Date.parse(description.notBefore) ||
      now - o.clockSkewMs > Date.parse(description.notAfter)
    ) {
      throw unauthorized('the responder certificate is expired or not yet valid');
    }
    return description.spki;
  }
  throw unauthorized('the response is signed neither by the issuer nor by a certificate it carries');
}

function responseNonce(extensions: readonly Extension[] | undefined): Uint8Array | undefined {
  const ext = extensions?.find((e) => e.extnID === id_pkix_ocsp_nonce);
  if (!ext) return undefined;
  const value = new Uint8Array(ext.extnValue.buffer);
  try {
    return new Uint8Array(AsnConvert.parse(value, OctetString).buffer);
  } catch {
    // Pre-RFC 8954 responders put the raw nonce in extnValue.
    return value;
  }
}

function certIdMatches(id: CertID, o: OcspVerifyOptions, serial: Uint8Array): boolean {
  const hash = CERT_ID_HASHES[id.hashAlgorithm.algorithm];
  if (!hash) return false;
  return (
    bytesEqual(stripLeadingZeros(new Uint8Array(id.serialNumber)), serial) &&
    bytesEqual(new Uint8Array(id.issuerNameHash.buffer), sha(hash, o.issuer.subjectDer)) &&
    bytesEqual(new Uint8Array(id.issuerKeyHash.buffer), sha(hash, subjectPublicKeyBits(o.issuer.spki)))
  );
}

function parseOrMalformed<T>(der: Uint8Array, type: new () => T, what: string): T {
  try {
    return AsnConvert.parse(der, type);
  } catch (cause) {
    throw new StatusSourceError('ocsp-malformed', `malformed ${what}`, { cause });
  }
}

/**
 * Check a DER OCSPResponse for `o.certificate`: responder authorization, signature, nonce, the
 * matching SingleResponse and its freshness. Throws StatusSourceError with the reason it was refused.
 */
export function verifyOcspResponse(der: Uint8Array, o: OcspVerifyOptions): OcspCheckResult {
  const response = parseOrMalformed(der, OCSPResponse, 'OCSPResponse');
  if (response.responseStatus !== OCSPResponseStatus.successful) {
    const name = OCSPResponseStatus[response.responseStatus] ?? String(response.responseStatus);
    throw new StatusSourceError('ocsp-error-status', `responder answered ${name}`);
  }
  if (!response.responseBytes || response.responseBytes.responseType !== id_pkix_ocsp_basic) {
    throw new StatusSourceError('ocsp-malformed', 'not a basic OCSP response');
  }
  const basicDer = new Uint8Array(response.responseBytes.response.buffer);
  const basic = parseOrMalformed(basicDer, BasicOCSPResponse, 'BasicOCSPResponse');
  let raw: RawBasicResponse;
  try {
    raw = rawBasicResponse(basicDer);
  } catch (cause) {
    if (cause instanceof StatusSourceError) throw cause;
    throw new StatusSourceError('ocsp-malformed', 'malformed BasicOCSPResponse', { cause });
  }

  const signerKey = responderKey(raw, o);
  if (!verifySignature(signerKey, basic.signatureAlgorithm, raw.tbs, new Uint8Array(basic.signature))) {
    throw new StatusSourceError('ocsp-bad-signature', 'the response signature does not verify');
  }

  const data = basic.tbsResponseData;
  const nonce = responseNonce(data.responseExtensions);
  let nonceMatched = false;
  if (o.nonce && nonce) {
    if (!bytesEqual(nonce, o.nonce)) throw new StatusSourceError('ocsp-nonce-mismatch', 'the nonce differs');
    nonceMatched = true;
  } else if (o.nonce && o.requireNonce) {
    throw new StatusSourceError('ocsp-nonce-missing', 'the response carries no nonce');
  }

  const serial = stripLeadingZeros(serialContent(o.certificate));
  const single = data.responses.find((r) => certIdMatches(r.certID, o, serial));
  if (!single) {
    throw new StatusSourceError('ocsp-no-matching-response', 'no response for this certificate');
  }

  const now = o.now.getTime();
  const thisUpdate = single.thisUpdate;
  const nextUpdate = single.nextUpdate;
  if (thisUpdate.getTime() > now + o.clockSkewMs) {
    throw new StatusSourceError('ocsp-not-yet-valid', 'thisUpdate is in the future');
  }
  if (nextUpdate && nextUpdate.getTime() < now - o.clockSkewMs) {
    throw new StatusSourceError('ocsp-stale', 'nextUpdate has passed');
  }
  if (!nextUpdate && !nonceMatched && thisUpdate.getTime() < now - o.clockSkewMs - o.maxAgeMs) {
    throw new StatusSourceError('ocsp-stale', 'the response is too old');
  }

  const result: OcspCheckResult = {
    status: 'good',
    thisUpdate,
    producedAt: data.producedAt,
    ...(nextUpdate ? { nextUpdate } : {}),
  };
  const certStatus = single.certStatus;
  if (certStatus.revoked) {
    result.status = 'revoked';
    result.revokedAt = certStatus.revoked.revocationTime;
    const code = certStatus.revoked.revocationReason?.reason;
    if (code !== undefined) result.reason = CRL_REASON_NAMES[code] ?? String(code);
  } else if (certStatus.good === undefined) {
    result.status = 'unknown';
  }
  return result;
}
