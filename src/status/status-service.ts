// Certificate status: the cache first, then OCSP at each AIA responder, then the CRL at each
// distribution point, all within one deadline. Every answer used is signed by the certificate's issuer
// (or its delegated OCSP responder), and an issuer is used only once its key verifies the certificate's
// signature; when no source gives an answer, ERR_STATUS_UNAVAILABLE lists why (or, for pages, says
// only that: the reasons stay in the local log).
//
// Answers are cached by the SHA-256 of the whole certificate. The certificate's signature is part of
// those bytes and only the issuer's key verifies it, so an entry can only be written by a check that
// verified that very certificate against the key that signed it: a look-alike (same issuer name, AKI
// and serial, signed by a fake CA) hashes differently and can never answer for the real one.
import { createHash } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate } from '@peculiar/asn1-x509';
import type { StatusCheckOptions, StatusChecker } from '../model/services.js';
import { KelidError, isKelidError } from '../model/errors.js';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import { describeCertificate } from '../pki/certificate.js';
import type { CertificateDescription } from '../pki/certificate.js';
import { bytesEqual } from '../pki/der.js';
import type { Status } from '../model/types.js';
import { parseCertificateBundle } from './certificate-bundle.js';
import { crlStatus, fetchCrl, verifyCrl } from './crl.js';
import type { VerifiedCrl } from './crl.js';
import { OPEN_POLICY, fetchBytes } from './http-fetch.js';
import type { FetchPolicy } from './http-fetch.js';
import { buildOcspRequest, queryOcsp, verifyOcspResponse } from './ocsp.js';
import type { ProxySetting } from './proxy.js';
import { verifySignature } from './signature.js';
import { StatusSourceError } from './source-error.js';
import type { StatusAttempt, StatusFailureReason } from './source-error.js';
import { StatusCache } from './status-cache.js';

export { checkBeforeSigning, createRevocationCheck } from './signing-policy.js';
export type { EnforceOnSign, SigningStatusCheck } from './signing-policy.js';
export type { StatusCheckOptions, StatusChecker } from '../model/services.js';
export type { StatusAttempt, StatusFailureReason } from './source-error.js';

const MINUTE = 60_000;

export interface StatusServiceOptions {
  /** State directory for the persistent cache (`<stateDir>/status-cache/`); memory only when absent. */
  stateDir?: string;
  /** Deadline for one whole check (issuer download, OCSP, CRL). Default 5 s. */
  timeoutMs?: number;
  /** Allowed clock difference with responders for thisUpdate/nextUpdate. Default 5 min. */
  clockSkewMs?: number;
  /**
   * Let checks of caller-supplied certificates (`callerSupplied`) reach loopback, private and
   * link-local addresses (config `revocation.allowPrivateNetworks`). Default false.
   */
  allowPrivateNetworks?: boolean;
  /**
   * ERR_STATUS_UNAVAILABLE without per-source details (URLs, reasons), which go to the log instead:
   * what the agent sends to pages. Default false (the CLI and tests see the details).
   */
  coarseErrors?: boolean;
  now?: () => Date;
  logger?: Logger;
  /** How long an answer without nextUpdate is kept. Default 5 min. */
  defaultTtlMs?: number;
  /**
   * How long an `unknown` answer is kept, whatever its nextUpdate. Default 5 min: a responder that has
   * not learnt of a certificate issued minutes ago soon will, and a day-long `unknown` would stop it
   * signing under require-good. `good` and `revoked` are kept until nextUpdate; failures are not kept.
   */
  unknownTtlMs?: number;
  /** Upper bound on how long any answer is kept, whatever its nextUpdate. Default 24 h. */
  maxCacheTtlMs?: number;
  /** Config `proxy` (proxy.ts): null or absent reads HTTPS_PROXY, HTTP_PROXY and NO_PROXY. */
  proxy?: ProxySetting;
  /** `auto` (default): GET for small OCSP requests, POST otherwise. */
  ocspRequestMethod?: 'auto' | 'post';
  /** Refuse OCSP responses that do not echo the nonce. Default false (RFC 5019 responders omit it). */
  requireNonce?: boolean;
  /** Response size limits. Defaults: OCSP 1 MiB, CRL 10 MiB, issuer certificates 1 MiB. */
  maxOcspBytes?: number;
  maxCrlBytes?: number;
  maxIssuerBytes?: number;
}

export interface StatusServiceStats {
  /** HTTP requests started (OCSP, CRL, caIssuers), successful or not. */
  networkRequests: number;
  /** Checks answered from the cache. */
  cacheHits: number;
}

interface CachedCrl {
  crl: VerifiedCrl;
  expiresAt: number;
  fetchedAt: number;
}

interface Answer {
  status: Status['status'];
  thisUpdate: Date;
  nextUpdate?: Date;
  revokedAt?: Date;
  reason?: string;
}

const MAX_CACHED_CRLS = 4;
const MAX_CACHED_ISSUER_URLS = 32;

function fallbackReason(source: StatusAttempt['source']): StatusFailureReason {
  return source === 'ocsp' ? 'ocsp-malformed' : source === 'crl' ? 'crl-malformed' : 'issuer-not-found';
}

export class StatusService implements StatusChecker {
  readonly stats: StatusServiceStats = { networkRequests: 0, cacheHits: 0 };
  private readonly cache: StatusCache;
  private readonly crls = new Map<string, CachedCrl>();
  private readonly issuerDownloads = new Map<string, Uint8Array[]>();
  private readonly inFlight = new Map<string, Promise<Status>>();
  private readonly logger: Logger;
  private readonly now: () => Date;
  private readonly timeoutMs: number;
  private readonly clockSkewMs: number;
  private readonly defaultTtlMs: number;
  private readonly unknownTtlMs: number;
  private readonly maxCacheTtlMs: number;

  constructor(private readonly options: StatusServiceOptions = {}) {
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? (() => new Date());
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.clockSkewMs = options.clockSkewMs ?? 5 * MINUTE;
    this.defaultTtlMs = options.defaultTtlMs ?? 5 * MINUTE;
    this.unknownTtlMs = options.unknownTtlMs ?? 5 * MINUTE;
    this.maxCacheTtlMs = options.maxCacheTtlMs ?? 24 * 60 * MINUTE;
    this.cache = new StatusCache({
      ...(options.stateDir !== undefined ? { stateDir: options.stateDir } : {}),
      logger: this.logger,
    });
  }

  /**
   * The revocation status of a DER certificate. Throws ERR_INVALID_INPUT for a certificate that cannot
   * be parsed and ERR_STATUS_UNAVAILABLE (with `data.attempts`) when no source gives a usable answer.
   */
  async check(certificate: Uint8Array, options: StatusCheckOptions = {}): Promise<Status> {
    let description: CertificateDescription;
    let parsed: Certificate;
    try {
      description = describeCertificate(certificate);
      parsed = AsnConvert.parse(certificate, Certificate);
    } catch (e) {
      if (isKelidError(e)) throw e;
      throw new KelidError('ERR_INVALID_INPUT', 'not an X.509 certificate', { cause: e });
    }
    const key = cacheKey(description);
    const now = this.now();
    const cached = this.cache.get(key, now);
    if (cached && this.fresh(cached, now, options.maxAgeMs)) {
      this.stats.cacheHits++;
      return cached;
    }
    // Only an identical check may share a running one: a page's check (other issuers, a narrower
    // network) failing must not become the answer to the token's own check of the same certificate.
    const issuers = options.issuers ?? [];
    const callerSupplied = options.callerSupplied ?? false;
    const runKey = checkKey(certificate, issuers, callerSupplied);
    const pending = this.inFlight.get(runKey);
    if (pending) return pending;
    const policy: FetchPolicy = callerSupplied
      ? { allowPrivateNetworks: this.options.allowPrivateNetworks ?? false, crossHostRedirects: false }
      : OPEN_POLICY;
    const coarse = callerSupplied || (this.options.coarseErrors ?? false);
    const maxAgeMs = options.maxAgeMs;
    const run = this.checkUncached(
      certificate,
      description,
      parsed,
      issuers,
      key,
      policy,
      coarse,
      maxAgeMs,
    ).finally(() => this.inFlight.delete(runKey));
    this.inFlight.set(runKey, run);
    return run;
  }

  private async checkUncached(
    der: Uint8Array,
    description: CertificateDescription,
    parsed: Certificate,
    issuers: readonly Uint8Array[],
    key: string,
    policy: FetchPolicy,
    coarse: boolean,
    maxAgeMs: number | undefined,
  ): Promise<Status> {
    const deadline = Date.now() + this.timeoutMs;
    const signal = AbortSignal.timeout(Math.max(1, Math.floor(this.timeoutMs)));
    const net: Net = {
      signal,
      policy,
      onRequest: () => void this.stats.networkRequests++,
      ...(this.options.proxy !== undefined ? { proxy: this.options.proxy } : {}),
    };
    const attempts: StatusAttempt[] = [];
    const issuer = await this.findIssuer(der, description, parsed, issuers, net, attempts);
    if (!issuer) throw this.unavailable(description, attempts, coarse);

    const ocspUrls = description.ocspUrls;
    const crlUrls = description.crlUrls;
    if (ocspUrls.length === 0 && crlUrls.length === 0) {
      attempts.push({
        source: 'none',
        reason: 'no-source',
        message: 'no OCSP URL and no CRL distribution point',
      });
    }
    for (const url of ocspUrls) {
      // Leave half of what remains for the CRL, so a hanging responder cannot use up the fallback's time.
      const remaining = deadline - Date.now();
      const budget = crlUrls.length > 0 ? remaining / 2 : remaining;
      try {
        const answer = await this.askOcsp(url, description, issuer, net, budget);
        return this.finish(key, 'ocsp', answer);
      } catch (e) {
        attempts.push(this.attempt('ocsp', url, e));
      }
    }
    for (const url of crlUrls) {
      try {
        const answer = await this.askCrl(url, description, issuer, net, deadline - Date.now(), maxAgeMs);
        return this.finish(key, 'crl', answer);
      } catch (e) {
        attempts.push(this.attempt('crl', url, e));
      }
    }
    throw this.unavailable(description, attempts, coarse);
  }

  private async askOcsp(
    url: string,
    certificate: CertificateDescription,
    issuer: CertificateDescription,
    net: Net,
    timeoutMs: number,
  ): Promise<Answer> {
    const request = buildOcspRequest(certificate, issuer);
    const response = await queryOcsp(url, request.der, {
      ...net,
      method: this.options.ocspRequestMethod ?? 'auto',
      maxBytes: this.options.maxOcspBytes ?? 1024 * 1024,
      timeoutMs,
    });
    return verifyOcspResponse(response, {
      certificate,
      issuer,
      nonce: request.nonce,
      requireNonce: this.options.requireNonce ?? false,
      now: this.now(),
      clockSkewMs: this.clockSkewMs,
      maxAgeMs: this.defaultTtlMs,
    });
  }

  private async askCrl(
    url: string,
    certificate: CertificateDescription,
    issuer: CertificateDescription,
    net: Net,
    timeoutMs: number,
    maxAgeMs: number | undefined,
  ): Promise<Answer> {
    // Keyed by the verified issuer's key too: a CRL is reused only for certificates of the key that
    // signed it.
    const key = `${url} ${sha256Hex(issuer.spki)}`;
    const now = this.now();
    let entry = this.crls.get(key);
    const stale = maxAgeMs !== undefined && entry !== undefined && now.getTime() - entry.fetchedAt > maxAgeMs;
    if (!entry || entry.expiresAt <= now.getTime() || stale) {
      this.crls.delete(key);
      const bytes = await fetchCrl(url, {
        ...net,
        maxBytes: this.options.maxCrlBytes ?? 10 * 1024 * 1024,
        timeoutMs,
      });
      const crl = verifyCrl(bytes, issuer);
      entry = { crl, expiresAt: this.expiry(crl.nextUpdate, now).getTime(), fetchedAt: now.getTime() };
      this.crls.set(key, entry);
      while (this.crls.size > MAX_CACHED_CRLS) this.crls.delete(this.crls.keys().next().value!);
    }
    return crlStatus(entry.crl, certificate, this.now(), this.clockSkewMs);
  }

  /** The issuer among the candidates, else from the certificate's AIA caIssuers URLs. */
  private async findIssuer(
    der: Uint8Array,
    description: CertificateDescription,
    parsed: Certificate,
    candidates: readonly Uint8Array[],
    net: Net,
    attempts: StatusAttempt[],
  ): Promise<CertificateDescription | undefined> {
    const pick = (list: readonly Uint8Array[]): CertificateDescription | undefined => {
      for (const candidate of list) {
        const found = issuerOf(candidate, description, parsed);
        if (found) return found;
      }
      return undefined;
    };
    const direct = pick(
      bytesEqual(description.subjectDer, description.issuerDer) ? [der, ...candidates] : candidates,
    );
    if (direct) return direct;
    for (const url of description.caIssuerUrls) {
      try {
        let certs = this.issuerDownloads.get(url);
        if (!certs) {
          const bytes = await fetchBytes(url, {
            ...net,
            maxBytes: this.options.maxIssuerBytes ?? 1024 * 1024,
            timeoutMs: this.timeoutMs,
          });
          certs = parseCertificateBundle(bytes);
          this.issuerDownloads.set(url, certs);
          while (this.issuerDownloads.size > MAX_CACHED_ISSUER_URLS) {
            this.issuerDownloads.delete(this.issuerDownloads.keys().next().value!);
          }
        }
        const found = pick(certs);
        if (found) return found;
        attempts.push({
          source: 'issuer',
          url,
          reason: 'issuer-not-found',
          message: 'no issuer at this URL',
        });
      } catch (e) {
        attempts.push(this.attempt('issuer', url, e));
      }
    }
    attempts.push({
      source: 'issuer',
      reason: 'issuer-not-found',
      message: 'the issuer certificate is not known',
    });
    return undefined;
  }

  private finish(key: string, source: Status['source'], answer: Answer): Status {
    const now = this.now();
    const status: Status = {
      status: answer.status,
      source,
      checkedAt: now.toISOString(),
      thisUpdate: answer.thisUpdate.toISOString(),
      ...(answer.nextUpdate ? { nextUpdate: answer.nextUpdate.toISOString() } : {}),
      ...(answer.revokedAt ? { revokedAt: answer.revokedAt.toISOString() } : {}),
      ...(answer.reason !== undefined ? { reason: answer.reason } : {}),
    };
    let expiresAt = this.expiry(answer.nextUpdate, now);
    if (answer.status === 'unknown') {
      expiresAt = new Date(Math.min(expiresAt.getTime(), now.getTime() + this.unknownTtlMs));
    }
    if (expiresAt.getTime() > now.getTime()) this.cache.set(key, status, expiresAt);
    return status;
  }

  // Also applied on read: a cache file written by an older agent may keep an `unknown` for a day.
  private fresh(cached: Status, now: Date, maxAgeMs: number | undefined): boolean {
    const age = now.getTime() - Date.parse(cached.checkedAt);
    if (cached.status === 'unknown' && age > this.unknownTtlMs) return false;
    return maxAgeMs === undefined || age <= maxAgeMs;
  }

  private expiry(nextUpdate: Date | undefined, now: Date): Date {
    const limit = now.getTime() + this.maxCacheTtlMs;
    const until = nextUpdate ? nextUpdate.getTime() : now.getTime() + this.defaultTtlMs;
    return new Date(Math.min(until, limit));
  }

  private attempt(source: StatusAttempt['source'], url: string, e: unknown): StatusAttempt {
    if (e instanceof StatusSourceError) {
      this.logger.debug({ source, url, reason: e.reason }, 'status source refused');
      return { source, url, reason: e.reason, message: e.message };
    }
    this.logger.warn({ source, url, err: e }, 'status source failed unexpectedly');
    return { source, url, reason: fallbackReason(source), message: 'unreadable answer' };
  }

  private unavailable(
    certificate: CertificateDescription,
    attempts: StatusAttempt[],
    coarse: boolean,
  ): KelidError {
    this.logger.warn(
      { certificateSha256: certificate.fingerprintSha256, attempts },
      'certificate status unavailable',
    );
    // Per-URL reasons would let a page map the network (which hosts answer, refuse or hang).
    if (coarse) return new KelidError('ERR_STATUS_UNAVAILABLE', 'certificate status unavailable');
    const summary = attempts.map((a) => `${a.source}: ${a.reason}`).join(', ');
    return new KelidError('ERR_STATUS_UNAVAILABLE', `certificate status unavailable (${summary})`, {
      data: { attempts },
    });
  }
}

/** The network side of one check: its deadline, what it may reach, and the request counter. */
interface Net {
  signal: AbortSignal;
  policy: FetchPolicy;
  onRequest: () => void;
  proxy?: ProxySetting;
}

function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

// The whole certificate's hash, not its issuer name, AKI and serial: those a fake CA can copy (see the
// top of this file).
function cacheKey(d: CertificateDescription): string {
  return `certificate-sha256:${d.fingerprintSha256}`;
}

function checkKey(certificate: Uint8Array, issuers: readonly Uint8Array[], callerSupplied: boolean): string {
  const hash = createHash('sha256').update(callerSupplied ? 'caller' : 'token');
  for (const der of [certificate, ...issuers]) {
    hash.update(String(der.length)).update(':').update(der);
  }
  return hash.digest('hex');
}

/** `candidate` described, if its subject is the certificate's issuer and its key signed the certificate. */
function issuerOf(
  candidate: Uint8Array,
  certificate: CertificateDescription,
  parsed: Certificate,
): CertificateDescription | undefined {
  let description: CertificateDescription;
  try {
    description = describeCertificate(candidate);
  } catch {
    return undefined;
  }
  if (!bytesEqual(description.subjectDer, certificate.issuerDer)) return undefined;
  const tbs = parsed.tbsCertificateRaw;
  if (!tbs) return undefined;
  try {
    const ok = verifySignature(
      description.spki,
      parsed.signatureAlgorithm,
      new Uint8Array(tbs),
      new Uint8Array(parsed.signatureValue),
    );
    return ok ? description : undefined;
  } catch {
    return undefined;
  }
}
