import { X509Certificate, createPublicKey } from 'node:crypto';
import { KelidError, isKelidError } from '../model/errors.js';
import { publicKeysEqual } from '../pki/certificate.js';
import { bytesEqual } from '../pki/der.js';
import { DEFAULT_DUAL_USE, assertCertificateUse } from '../pki/key-purpose.js';
import type { CertificateUse, DualUseMode } from '../pki/key-purpose.js';
import type {
  AuthToken,
  Certificate,
  CertificateFilter,
  DigestAlgorithm,
  SignatureScheme,
  Status,
  Token,
} from '../model/types.js';
import type {
  SigningApi,
  SigningIntent,
  SigningPreflight,
  SigningWarning,
  PinEntry,
} from '../model/services.js';
import { listCertificateObjects, listCertificates } from '../tokens/certificate-store.js';
import type { CertificateObject } from '../tokens/certificate-store.js';
import { findSigningKey, listPrivateKeys, signingKeySearches } from '../tokens/key-store.js';
import { Pkcs11Signer } from '../tokens/token-signer.js';
import { failedBeforeLogin } from '../tokens/token-service.js';
import type { TokenService } from '../tokens/token-service.js';
import { normalizePinEntry } from '../tokens/pin-policy.js';
import { assertDigestLength, resolveScheme } from './algorithms.js';
import { createAuthToken } from './auth-token.js';
import { signCms } from './cms.js';
import { verifyDigestSignature } from './digest-verify.js';
import type { ProxySetting } from '../status/proxy.js';
import { requestTimestamp } from './timestamp.js';

function signedBy(certificate: Uint8Array, issuer: Uint8Array): boolean {
  try {
    return new X509Certificate(certificate).verify(new X509Certificate(issuer).publicKey);
  } catch {
    return false;
  }
}

/** Revocation check before signing (wired to the status service and `revocation.enforceOnSign`). */
export type RevocationCheck = (
  certificate: Uint8Array,
  issuers: Uint8Array[],
) => Promise<{ status?: Status; warning?: SigningWarning }>;

export interface SigningServiceOptions {
  tsaUrl?: string | null;
  revocationCheck?: RevocationCheck;
  now?: () => Date;
  timestampTimeoutMs?: number;
  /** Config `proxy` for the TSA (null or absent: from the environment). */
  proxy?: ProxySetting;
  /** Config `keyPurpose.dualUse` (default `signing`). */
  dualUse?: DualUseMode;
}

const HASH_SUFFIX: Record<DigestAlgorithm, string> = { 'SHA-256': '256', 'SHA-384': '384', 'SHA-512': '512' };

/** JOSE-style name of what a raw signature is (`RS256`, `PS384`, `ES256`, …). */
export function signatureAlgorithmName(scheme: SignatureScheme, digestAlgorithm: DigestAlgorithm): string {
  const prefix = scheme === 'RSASSA-PKCS1-v1_5' ? 'RS' : scheme === 'RSA-PSS' ? 'PS' : 'ES';
  return prefix + HASH_SUFFIX[digestAlgorithm];
}

interface Located {
  token: Token;
  certificate: Certificate;
  /** The certificate as parsed when it was read from the token (its DER in `object.der`). */
  object: CertificateObject;
  /** Every certificate object on its token, as read with it (key purposes, chain). */
  objects: CertificateObject[];
}

/** A certificate's location, trusted while the token's contents cannot have changed under us. */
interface CachedLocation {
  tokenId: string;
  certificate: Certificate;
  object: CertificateObject;
  objects: CertificateObject[];
  /** Issuers found among `objects`, once computed. */
  chain?: Uint8Array[];
  generation: number;
  at: number;
}

/**
 * How long a certificate's location on a token is trusted without listing the tokens again. Our own
 * writes and token removals invalidate it at once (TokenService.generation); this bounds how long a
 * change made by another program (pkcs11-tool) goes unseen. The key itself is always looked up and
 * checked against the certificate's public key before a signature.
 */
const LOCATION_TTL_MS = 30_000;
const MAX_LOCATIONS = 256;

function matchesFilter(c: Certificate, f: CertificateFilter | undefined): boolean {
  if (!f) return true;
  if (
    f.keyUsage &&
    !f.keyUsage.every((u) => c.keyUsage.includes(u === 'contentCommitment' ? 'nonRepudiation' : u))
  )
    return false;
  if (f.extendedKeyUsage && !f.extendedKeyUsage.every((u) => c.extendedKeyUsage.includes(u))) return false;
  if (f.issuer !== undefined && !c.issuer.toLowerCase().includes(f.issuer.toLowerCase())) return false;
  if (f.validAt !== undefined) {
    const t = Date.parse(f.validAt);
    if (Number.isNaN(t)) throw new KelidError('ERR_INVALID_INPUT', 'filter.validAt is not an ISO 8601 time');
    if (t < Date.parse(c.notBefore) || t > Date.parse(c.notAfter)) return false;
  }
  if (f.hasPrivateKey !== undefined && c.hasPrivateKey !== f.hasPrivateKey) return false;
  if (f.use !== undefined && !c.allowedUses.includes(f.use)) return false;
  return true;
}

/**
 * Raw, CMS/CAdES, batch and login-token signatures with keys on tokens. Each call is one consented
 * operation: one session, one login, the signature(s), logout.
 */
export class SigningService implements SigningApi {
  private readonly now: () => Date;
  private readonly dualUse: DualUseMode;
  readonly #located = new Map<string, CachedLocation>();

  constructor(
    private readonly tokens: TokenService,
    private readonly options: SigningServiceOptions = {},
  ) {
    this.now = options.now ?? (() => new Date());
    this.dualUse = options.dualUse ?? DEFAULT_DUAL_USE;
  }

  async listCertificates(options: { tokenId?: string; filter?: CertificateFilter }): Promise<Certificate[]> {
    const tokenIds = options.tokenId
      ? [options.tokenId]
      : (await this.tokens.listTokens()).filter((t) => t.initialized).map((t) => t.tokenId);
    const out: Certificate[] = [];
    for (const tokenId of tokenIds) {
      const certs = await this.tokens.withSession(tokenId, { readWrite: false }, (s) =>
        listCertificates(s, this.dualUse),
      );
      out.push(...certs.filter((c) => matchesFilter(c, options.filter)));
    }
    return out;
  }

  /**
   * Where a certificate is, with its token's certificate objects. A location read less than
   * {@link LOCATION_TTL_MS} ago under the same token generation is used as it is: with `fresh`, the
   * token is read again (its PIN state, that it is still there); without, the sign step's own round
   * trip does that ({@link TokenService.withLogin}).
   */
  private async locate(certificateId: string, fresh: boolean): Promise<Located> {
    if (!/^[0-9a-f]{32}$/.test(certificateId))
      throw new KelidError('ERR_INVALID_INPUT', 'certificateId is malformed');
    const cached = this.#cached(certificateId);
    if (cached) {
      try {
        const token = fresh
          ? await this.tokens.getToken(cached.tokenId)
          : await this.#knownToken(cached.tokenId);
        return located(token, cached);
      } catch (e) {
        if (!isKelidError(e, 'ERR_TOKEN_NOT_FOUND')) throw e;
      }
    }
    this.#located.delete(certificateId);
    for (const token of (await this.tokens.listTokens()).filter((t) => t.initialized)) {
      const generation = this.tokens.generation;
      const found = await this.tokens.withSession(token.tokenId, { readWrite: false }, async (s) => {
        const objects = await listCertificateObjects(s);
        return { objects, certs: await listCertificates(s, this.dualUse, objects) };
      });
      const i = found.certs.findIndex((c) => c.certificateId === certificateId);
      const certificate = found.certs[i];
      if (certificate) {
        if (this.#located.size >= MAX_LOCATIONS) this.#located.clear();
        // listCertificates keeps the order of the objects it was given.
        const entry: CachedLocation = {
          tokenId: token.tokenId,
          certificate,
          object: found.objects[i]!,
          objects: found.objects,
          generation,
          at: performance.now(),
        };
        this.#located.set(certificateId, entry);
        return located(token, entry);
      }
    }
    throw new KelidError('ERR_CERTIFICATE_NOT_FOUND', 'no connected token holds this certificate');
  }

  #cached(certificateId: string): CachedLocation | undefined {
    const cached = this.#located.get(certificateId);
    if (
      cached &&
      cached.generation === this.tokens.generation &&
      performance.now() - cached.at < LOCATION_TTL_MS
    )
      return cached;
    return undefined;
  }

  /** The token as last read (no round trip), or read now when it is not known. */
  async #knownToken(tokenId: string): Promise<Token> {
    return this.tokens.knownToken(tokenId) ?? this.tokens.getToken(tokenId);
  }

  /** A certificate on a token with its issuers from the same token (for status checks). */
  async certificateWithIssuers(
    certificateId: string,
  ): Promise<{ der: Uint8Array; issuers: Uint8Array[]; token: Token }> {
    const loc = await this.locate(certificateId, true);
    return { der: loc.object.der, issuers: this.chainOf(certificateId, loc), token: loc.token };
  }

  /**
   * The checks made before a consent prompt: the key purpose (so the user is never asked for a PIN
   * for a call that would be refused), validity, the private key, revocation.
   */
  async preflight(certificateId: string, intent?: SigningIntent): Promise<SigningPreflight> {
    // The one read of the token before the prompt: the consent's PIN warnings come from it.
    const loc = await this.locate(certificateId, true);
    if (intent) {
      this.assertUse(loc, intent.use);
      this.assertKeyUse(loc, intent.use);
    }
    const now = this.now().getTime();
    if (now > Date.parse(loc.certificate.notAfter) || now < Date.parse(loc.certificate.notBefore)) {
      throw new KelidError('ERR_CERTIFICATE_EXPIRED', 'the certificate is expired or not yet valid');
    }
    if (!loc.certificate.hasPrivateKey)
      throw new KelidError('ERR_KEY_NOT_FOUND', 'this certificate has no private key on the token');
    if (intent?.batch && !loc.token.protectedAuthenticationPath) {
      // Private keys are private objects on most tokens (then this finds nothing and the check is made
      // again after the login); where they are visible, refuse before the prompt.
      const privates = await this.tokens
        .withSession(loc.token.tokenId, { readWrite: false }, (s) =>
          listPrivateKeys(s, loc.certificate.keyId),
        )
        .catch(() => []);
      if (privates.some((k) => k.keyId === loc.certificate.keyId && k.alwaysAuthenticate))
        throw alwaysAuthenticateRefused();
    }
    const result: SigningPreflight = { token: loc.token, certificate: loc.certificate };
    if (this.options.revocationCheck) {
      const r = await this.options.revocationCheck(loc.object.der, this.chainOf(certificateId, loc));
      if (r.status) result.status = r.status;
      if (r.warning) result.warning = r.warning;
    }
    return result;
  }

  /**
   * The certificate's issuers found among the token's certificates, nearest first. An issuer must have
   * the right name and a key that verifies the certificate's signature: a page with the `ra` tier can
   * store any certificate on a token, including a fake CA with the real one's name.
   */
  private chainOf(certificateId: string, loc: Located): Uint8Array[] {
    // Built once per cached location: the signature checks are the costly part.
    const cached = this.#located.get(certificateId);
    if (cached?.objects === loc.objects && cached.chain) return cached.chain;
    const all = loc.objects;
    const leaf = loc.object.der;
    const chain: Uint8Array[] = [];
    let currentDer = leaf;
    let current = loc.object.description;
    for (let depth = 0; depth < 8; depth++) {
      if (bytesEqual(current.issuerDer, current.subjectDer)) break;
      const child = currentDer;
      const issuer = all.find(
        (c) =>
          bytesEqual(c.description.subjectDer, current.issuerDer) &&
          !chain.some((x) => bytesEqual(x, c.der)) &&
          !bytesEqual(c.der, leaf) &&
          signedBy(child, c.der),
      );
      if (!issuer) break;
      chain.push(issuer.der);
      currentDer = issuer.der;
      current = issuer.description;
    }
    if (cached?.objects === loc.objects) cached.chain = chain;
    return chain;
  }

  /** Throws ERR_KEY_PURPOSE unless the certificate may be used for `use` (read again from its DER). */
  private assertUse(loc: Located, use: CertificateUse): void {
    assertCertificateUse(loc.object.description, use, this.dualUse);
  }

  /**
   * The purpose belongs to the key, not to one certificate: every certificate on the token for the
   * same public key must allow `use`. Otherwise a signing certificate written for a login key (by an RA
   * page's certificates.import, or by any program that writes to the token) would make that login key
   * a raw-signature oracle again. Two certificates of different purposes for one key: nothing is allowed.
   */
  private assertKeyUse(loc: Located, use: CertificateUse): void {
    const spki = loc.object.description.spki;
    for (const c of loc.objects) {
      if (bytesEqual(c.der, loc.object.der) || !sameKey(c.description.spki, spki)) continue;
      try {
        assertCertificateUse(c.description, use, this.dualUse);
      } catch (e) {
        if (!isKelidError(e, 'ERR_KEY_PURPOSE')) throw e;
        throw new KelidError(
          'ERR_KEY_PURPOSE',
          `another certificate on the token for this key does not allow this call: ${e.message}`,
          { retriable: false, data: { ...e.data, otherCertificateSha256: c.description.fingerprintSha256 } },
        );
      }
    }
  }

  /**
   * Locate (the preflight's location, not read again), check the key purpose, then one round trip
   * to the module host for session, token check, login and key search; `fn` runs inside that login,
   * and the logout goes with closing the session.
   */
  private async withSigner<T>(
    certificateId: string,
    userPin: PinEntry,
    intent: SigningIntent,
    fn: (signer: Pkcs11Signer, loc: Located) => Promise<T>,
  ): Promise<T> {
    const pin = normalizePinEntry(userPin);
    const attempt = async (loc: Located): Promise<T> => {
      // Again here, and not only in preflight: every caller of the service gets the rule.
      this.assertUse(loc, intent.use);
      this.assertKeyUse(loc, intent.use);
      const keyId = loc.certificate.keyId;
      return this.tokens.withLogin(
        loc.token.tokenId,
        { readWrite: false, role: 'user', pin, find: signingKeySearches(keyId) },
        async (s, found) => {
          const key = await findSigningKey(s, keyId, loc.object.description.spki, found);
          // One typed PIN replayed as the context login of up to 10,000 signatures would defeat what
          // CKA_ALWAYS_AUTHENTICATE is for; on a PIN pad the user authorizes each signature on the reader.
          if (intent.batch && key.alwaysAuthenticate && pin !== null) throw alwaysAuthenticateRefused();
          const signer = await Pkcs11Signer.create(s, key, pin);
          return fn(signer, loc);
        },
      );
    };
    const loc = await this.locate(certificateId, false);
    try {
      return await attempt(loc);
    } catch (e) {
      // The token went away since the preflight, before any login was tried: find the certificate
      // again (on another token it is a new location; gone, ERR_CERTIFICATE_NOT_FOUND).
      if (!failedBeforeLogin(e)) throw e;
      this.#located.delete(certificateId);
      return attempt(await this.locate(certificateId, false));
    }
  }

  async signRaw(
    certificateId: string,
    userPin: PinEntry,
    input: { digest: Uint8Array; digestAlgorithm: DigestAlgorithm; scheme?: SignatureScheme },
  ): Promise<{ signature: Uint8Array; signatureAlgorithm: string }> {
    assertDigestLength(input.digest, input.digestAlgorithm);
    return this.withSigner(certificateId, userPin, { use: 'raw' }, async (signer, loc) => {
      const scheme = resolveScheme(signer.keyType, input.scheme);
      const signature = await signer.signDigest(input.digest, input.digestAlgorithm, scheme);
      await assertVerifies(loc, scheme, input.digestAlgorithm, input.digest, signature);
      return { signature, signatureAlgorithm: signatureAlgorithmName(scheme, input.digestAlgorithm) };
    });
  }

  private timestamper(digestAlgorithm: DigestAlgorithm): (value: Uint8Array) => Promise<Uint8Array> {
    const url = this.options.tsaUrl;
    if (!url) throw new KelidError('ERR_INVALID_INPUT', 'timestamp requested but no tsaUrl is configured');
    return (value) =>
      requestTimestamp(url, value, {
        hash: digestAlgorithm,
        timeoutMs: this.options.timestampTimeoutMs ?? 10_000,
        ...(this.options.proxy !== undefined ? { proxy: this.options.proxy } : {}),
      });
  }

  async signCms(
    certificateId: string,
    userPin: PinEntry,
    input: {
      content?: Uint8Array;
      digest?: Uint8Array;
      digestAlgorithm: DigestAlgorithm;
      detached?: boolean;
      includeChain?: boolean;
      timestamp?: boolean;
    },
  ): Promise<{ cms: Uint8Array }> {
    if ((input.content === undefined) === (input.digest === undefined)) {
      throw new KelidError('ERR_INVALID_INPUT', 'give exactly one of content and digest');
    }
    if (input.digest) assertDigestLength(input.digest, input.digestAlgorithm);
    const timestamp = input.timestamp ? this.timestamper(input.digestAlgorithm) : undefined;
    return this.withSigner(certificateId, userPin, { use: 'cms' }, async (signer, loc) => {
      const chain = input.includeChain === false ? [] : this.chainOf(certificateId, loc);
      const cms = await signCms({
        signer,
        certificate: loc.object.der,
        chain,
        digestAlgorithm: input.digestAlgorithm,
        ...(input.content ? { content: input.content, detached: input.detached ?? true } : {}),
        ...(input.digest ? { digest: input.digest } : {}),
        ...(timestamp ? { timestamp } : {}),
        signingTime: this.now(),
      });
      return { cms };
    });
  }

  async signBatch(
    certificateId: string,
    userPin: PinEntry,
    input: {
      format: 'raw' | 'cms';
      digestAlgorithm: DigestAlgorithm;
      scheme?: SignatureScheme;
      digests: Uint8Array[];
    },
    options: { signal?: AbortSignal } = {},
  ): Promise<{ results: Array<{ signature: Uint8Array } | { cms: Uint8Array }>; cancelled: boolean }> {
    for (const d of input.digests) assertDigestLength(d, input.digestAlgorithm);
    const intent: SigningIntent = { use: input.format === 'raw' ? 'raw' : 'cms', batch: true };
    return this.withSigner(certificateId, userPin, intent, async (signer, loc) => {
      const scheme = resolveScheme(signer.keyType, input.scheme);
      if (input.format === 'raw') {
        const signatures = await signer.signDigests(
          input.digests,
          input.digestAlgorithm,
          scheme,
          options.signal,
        );
        // The first signature shows the key is the certificate's (checking all 10,000 would take
        // seconds of BigInt ECDSA); a token that returns garbage later is not caught here.
        if (signatures[0])
          await assertVerifies(loc, scheme, input.digestAlgorithm, input.digests[0]!, signatures[0]);
        return {
          results: signatures.map((signature) => ({ signature })),
          cancelled: signatures.length < input.digests.length,
        };
      }
      const chain = this.chainOf(certificateId, loc);
      const results: Array<{ signature: Uint8Array } | { cms: Uint8Array }> = [];
      for (const digest of input.digests) {
        if (options.signal?.aborted) return { results, cancelled: true };
        results.push({
          cms: await signCms({
            signer,
            certificate: loc.object.der,
            chain,
            digestAlgorithm: input.digestAlgorithm,
            scheme,
            digest,
            signingTime: this.now(),
          }),
        });
      }
      return { results, cancelled: false };
    });
  }

  async authChallenge(
    certificateId: string,
    userPin: PinEntry,
    input: { origin: string; nonce: Uint8Array },
  ): Promise<AuthToken> {
    return this.withSigner(certificateId, userPin, { use: 'authentication' }, (signer, loc) =>
      createAuthToken({ signer, certificate: loc.object.der, origin: input.origin, nonce: input.nonce }),
    );
  }
}

function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  try {
    return publicKeysEqual(a, b);
  } catch {
    // A key type the agent does not parse (Ed25519…) is not the signing key's type either.
    return false;
  }
}

function alwaysAuthenticateRefused(): KelidError {
  return new KelidError(
    'ERR_KEY_PURPOSE',
    'this key needs a login for every signature (CKA_ALWAYS_AUTHENTICATE): sign.batch is refused unless the token has a PIN pad',
    { retriable: false, data: { reason: 'always-authenticate' } },
  );
}

/** A raw signature leaves the agent only if it verifies with the certificate's key (as CMS and logins do). */
async function assertVerifies(
  loc: Located,
  scheme: SignatureScheme,
  digestAlgorithm: DigestAlgorithm,
  digest: Uint8Array,
  signature: Uint8Array,
): Promise<void> {
  const spki = Buffer.from(loc.object.description.spki);
  const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  if (!(await verifyDigestSignature(key, scheme, digestAlgorithm, digest, signature))) {
    throw new KelidError('ERR_DEVICE_ERROR', 'the token returned a signature that does not verify');
  }
}

function located(token: Token, c: CachedLocation): Located {
  return { token, certificate: c.certificate, object: c.object, objects: c.objects };
}
