// RFC 3161 time-stamp client (HTTP transport of RFC 3161 section 3.4).
import { randomBytes } from 'node:crypto';
import { ContentInfo, SignedData } from '@peculiar/asn1-cms';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  MessageImprint,
  PKIStatus,
  PKIStatusInfo,
  TSTInfo,
  TimeStampReq,
  id_ct_tstInfo,
} from '@peculiar/asn1-tsp';
import { AlgorithmIdentifier } from '@peculiar/asn1-x509';
import { KelidError, type KelidErrorOptions } from '../model/errors.js';
import { DIGEST_OID, TAG_SEQUENCE, bytesEqual, bytesOf, readChildren, readSingle } from '../pki/der.js';
import type { DigestAlgorithm } from '../model/types.js';
// The status layer's fetcher: one HTTP client for every outgoing fetch (deadline, byte limit, proxy).
import { fetchBytes } from '../status/http-fetch.js';
import type { ProxySetting } from '../status/proxy.js';
import { StatusSourceError } from '../status/source-error.js';
import { digest, isDigestAlgorithm, toArrayBuffer } from './algorithms.js';

const ID_SIGNED_DATA = '1.2.840.113549.1.7.2';

export interface TimestampOptions {
  /** Hash used for the message imprint. */
  hash: DigestAlgorithm;
  /** Whole exchange, connection to last byte. Default 10 000. */
  timeoutMs?: number;
  /** Largest accepted response body. Default 256 KiB. */
  maxResponseBytes?: number;
  /** Optional TSA policy OID to ask for. */
  policy?: string;
  /** Config `proxy`: null or absent reads HTTPS_PROXY, HTTP_PROXY and NO_PROXY. */
  proxy?: ProxySetting;
}

function fail(message: string, options: KelidErrorOptions = {}): KelidError {
  return new KelidError('ERR_TIMESTAMP_FAILED', message, { retriable: false, ...options });
}

// INTEGER contents compare by value: ignore leading zero octets.
function integerEqual(a: Uint8Array, b: Uint8Array): boolean {
  const strip = (x: Uint8Array): Uint8Array => {
    let i = 0;
    while (i < x.length - 1 && x[i] === 0) i++;
    return x.subarray(i);
  };
  return bytesEqual(strip(a), strip(b));
}

function describeStatus(info: PKIStatusInfo): string {
  const parts = [`status ${PKIStatus[info.status] ?? info.status}`];
  const flags = info.failInfo?.toJSON() ?? [];
  if (flags.length) parts.push(flags.join(','));
  const text = info.statusString
    ?.join(' ')
    .replace(/[^\x20-\x7e]/g, '?')
    .slice(0, 200);
  if (text) parts.push(`"${text}"`);
  return parts.join('; ');
}

/** Checks a TimeStampResp and returns its TimeStampToken bytes exactly as the TSA sent them. */
function extractToken(
  body: Uint8Array,
  imprint: Uint8Array,
  hash: DigestAlgorithm,
  nonce: Uint8Array,
): Uint8Array {
  let token: Uint8Array;
  let tstInfo: TSTInfo;
  try {
    const top = readSingle(body, TAG_SEQUENCE, 'TimeStampResp');
    const [statusTlv, tokenTlv] = readChildren(body, top);
    if (statusTlv === undefined) throw new TypeError('not a TimeStampResp');
    const status = AsnConvert.parse(bytesOf(body, statusTlv), PKIStatusInfo);
    if (status.status !== PKIStatus.granted && status.status !== PKIStatus.grantedWithMods) {
      throw fail(`the TSA refused the request (${describeStatus(status)})`);
    }
    if (tokenTlv === undefined) throw new TypeError('granted response without a token');
    token = bytesOf(body, tokenTlv).slice();
    const contentInfo = AsnConvert.parse(token, ContentInfo);
    if (contentInfo.contentType !== ID_SIGNED_DATA) throw new TypeError('token is not SignedData');
    const signedData = AsnConvert.parse(contentInfo.content, SignedData);
    const encap = signedData.encapContentInfo;
    if (encap.eContentType !== id_ct_tstInfo || !encap.eContent?.single) {
      throw new TypeError('token does not carry a TSTInfo');
    }
    tstInfo = AsnConvert.parse(encap.eContent.single, TSTInfo);
  } catch (e) {
    if (e instanceof KelidError && e.code === 'ERR_TIMESTAMP_FAILED') throw e;
    throw fail('the TSA sent a malformed time-stamp response', { cause: e });
  }
  if (!tstInfo.nonce || !integerEqual(new Uint8Array(tstInfo.nonce), nonce)) {
    throw fail('the time-stamp token does not answer this request (nonce mismatch)');
  }
  const mi = tstInfo.messageImprint;
  if (
    mi.hashAlgorithm.algorithm !== DIGEST_OID[hash] ||
    !bytesEqual(new Uint8Array(mi.hashedMessage.buffer), imprint)
  ) {
    throw fail('the time-stamp token covers other data (message imprint mismatch)');
  }
  return token;
}

/**
 * Asks the RFC 3161 TSA at `url` for a time-stamp over `data` (for CAdES-B-T: the SignerInfo
 * signature value). Sends a TimeStampReq with a fresh nonce and certReq, and checks the status,
 * the nonce and the message imprint of the answer. Returns the TimeStampToken (ContentInfo DER).
 * Errors are `ERR_TIMESTAMP_FAILED` (retriable for network failures, timeouts and HTTP 5xx).
 */
export async function requestTimestamp(
  url: string,
  data: Uint8Array,
  options: TimestampOptions,
): Promise<Uint8Array> {
  const hash = options.hash;
  if (!isDigestAlgorithm(hash)) throw new KelidError('ERR_INVALID_INPUT', 'unsupported time-stamp hash');
  let target: URL;
  try {
    target = new URL(url);
  } catch (e) {
    throw new KelidError('ERR_INVALID_INPUT', 'the TSA URL is not a URL', { cause: e });
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    throw new KelidError('ERR_INVALID_INPUT', 'the TSA URL must be http or https');
  }
  const timeoutMs = options.timeoutMs ?? 10_000;
  const limit = options.maxResponseBytes ?? 256 * 1024;

  const imprint = digest(hash, data);
  // 128-bit positive INTEGER whose first octet is non-zero, so DER keeps it as is.
  const nonce = new Uint8Array(randomBytes(16));
  nonce[0] = 0x40 | (nonce[0]! & 0x3f);
  const request = new TimeStampReq({
    version: 1,
    messageImprint: new MessageImprint({
      // NULL parameters, as `openssl ts -query` writes them; some TSAs refuse absent ones.
      hashAlgorithm: new AlgorithmIdentifier({ algorithm: DIGEST_OID[hash], parameters: null }),
      hashedMessage: new OctetString(imprint),
    }),
    nonce: toArrayBuffer(nonce),
    certReq: true,
    ...(options.policy ? { reqPolicy: options.policy } : {}),
  });
  const body = new Uint8Array(AsnConvert.serialize(request));

  let responseBody: Uint8Array;
  try {
    responseBody = await fetchBytes(target.href, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/timestamp-query', accept: 'application/timestamp-reply' },
      maxBytes: limit,
      timeoutMs,
      followRedirects: false,
      ...(options.proxy !== undefined ? { proxy: options.proxy } : {}),
    });
  } catch (e) {
    throw tsaFailure(e, timeoutMs, limit);
  }
  return extractToken(responseBody, imprint, hash, nonce);
}

function tsaFailure(e: unknown, timeoutMs: number, limit: number): KelidError {
  if (!(e instanceof StatusSourceError))
    return fail('could not reach the TSA', { cause: e, retriable: true });
  switch (e.reason) {
    case 'http-status': {
      const status = e.httpStatus ?? 0;
      return fail(`the TSA answered HTTP ${status}`, { retriable: status >= 500 || status === 429 });
    }
    case 'too-large':
      return fail(`time-stamp response is larger than ${limit} bytes`);
    case 'timeout':
      return fail(`the TSA did not answer within ${timeoutMs} ms`, { cause: e, retriable: true });
    case 'redirect-refused':
      return fail('the TSA answered with a redirect', { cause: e });
    default:
      return fail('could not reach the TSA', { cause: e, retriable: true });
  }
}
