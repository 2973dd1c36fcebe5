// Login tokens `kelid-auth:1` (PROTOCOL.md section 3, `auth.challenge`). The verifier half is meant
// for relying parties' servers: node:crypto, the key-purpose rule and path validation of pki/.
import { X509Certificate, createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { KelidError } from '../model/errors.js';
import { validateCertificatePath } from '../pki/cert-path.js';
import { describeCertificate } from '../pki/certificate.js';
import { keyPurposeOf } from '../pki/key-purpose.js';
import type { AuthToken, DigestAlgorithm, SignatureScheme } from '../model/types.js';
import { digest, isDigestAlgorithm, resolveScheme, verifySignature } from './algorithms.js';
import type { DigestSigner } from '../pki/signer.js';

export const AUTH_TOKEN_FORMAT = 'kelid-auth:1';

/**
 * JOSE-style names of the signature over {@link authSignedData}. The data is hashed with the named
 * hash and signed with the named scheme (RS = RSASSA-PKCS1-v1_5, PS = RSASSA-PSS with MGF1 of the same
 * hash and a salt of the hash length, ES = ECDSA). Unlike JOSE, ES signatures are DER-encoded
 * (SEQUENCE { r, s }), as PROTOCOL.md defines for every wire signature.
 */
export type AuthSignatureAlgorithm =
  'RS256' | 'RS384' | 'RS512' | 'PS256' | 'PS384' | 'PS512' | 'ES256' | 'ES384';

interface AlgorithmSpec {
  scheme: SignatureScheme;
  hash: DigestAlgorithm;
  /** Node's curve name, for EC. */
  curve?: string;
}

const ALGORITHMS: Readonly<Record<AuthSignatureAlgorithm, AlgorithmSpec>> = {
  RS256: { scheme: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
  RS384: { scheme: 'RSASSA-PKCS1-v1_5', hash: 'SHA-384' },
  RS512: { scheme: 'RSASSA-PKCS1-v1_5', hash: 'SHA-512' },
  PS256: { scheme: 'RSA-PSS', hash: 'SHA-256' },
  PS384: { scheme: 'RSA-PSS', hash: 'SHA-384' },
  PS512: { scheme: 'RSA-PSS', hash: 'SHA-512' },
  ES256: { scheme: 'ECDSA', hash: 'SHA-256', curve: 'prime256v1' },
  ES384: { scheme: 'ECDSA', hash: 'SHA-384', curve: 'secp384r1' },
};

const NONCE_MIN = 32;
const NONCE_MAX = 64;
const MAX_CERTIFICATE_BASE64 = 64 * 1024;
const MAX_SIGNATURE_BASE64 = 2048;

/**
 * The 64 bytes a `kelid-auth:1` signature covers: `SHA-256(origin as UTF-8) ‖ SHA-256(nonce)`.
 * The signature is an ordinary signature of these bytes with the token's `signatureAlgorithm`
 * (for example ES384: ECDSA P-384 over SHA-384 of the 64 bytes), so any RS/PS/ES verifier works.
 */
export function authSignedData(origin: string, nonce: Uint8Array): Uint8Array {
  const out = new Uint8Array(64);
  out.set(createHash('sha256').update(origin, 'utf8').digest(), 0);
  out.set(createHash('sha256').update(nonce).digest(), 32);
  return out;
}

function algorithmFor(
  key: KeyObject,
  requested: DigestAlgorithm | undefined,
  scheme: SignatureScheme,
): AuthSignatureAlgorithm {
  if (key.asymmetricKeyType === 'rsa') {
    const hash = requested ?? 'SHA-256';
    const prefix = scheme === 'RSA-PSS' ? 'PS' : 'RS';
    return `${prefix}${hash.slice(4)}` as AuthSignatureAlgorithm;
  }
  const curve = key.asymmetricKeyDetails?.namedCurve;
  const name: AuthSignatureAlgorithm | undefined =
    curve === 'prime256v1' ? 'ES256' : curve === 'secp384r1' ? 'ES384' : undefined;
  if (name === undefined)
    throw new KelidError('ERR_MECHANISM_UNSUPPORTED', `login tokens support P-256 and P-384 keys`);
  if (requested !== undefined && requested !== ALGORITHMS[name].hash) {
    throw new KelidError('ERR_INVALID_INPUT', `${name} keys sign login tokens with ${ALGORITHMS[name].hash}`);
  }
  return name;
}

export interface CreateAuthTokenOptions {
  signer: DigestSigner;
  /** Signer certificate, DER. */
  certificate: Uint8Array;
  /** The origin of the page, as fixed at the handshake. */
  origin: string;
  /** The relying party's challenge, 32–64 bytes. */
  nonce: Uint8Array;
  /** RSA only (default SHA-256). EC keys use SHA-256 for P-256 and SHA-384 for P-384. */
  digestAlgorithm?: DigestAlgorithm;
  /** RSA only: RSASSA-PKCS1-v1_5 (default, RSxxx) or RSA-PSS (PSxxx). */
  scheme?: SignatureScheme;
}

/** Signs a `kelid-auth:1` login token for `origin` and `nonce` with the signer's key. */
export async function createAuthToken(o: CreateAuthTokenOptions): Promise<AuthToken> {
  if (typeof o.origin !== 'string' || o.origin.length === 0) {
    throw new KelidError('ERR_INVALID_INPUT', 'origin is required');
  }
  if (!(o.nonce instanceof Uint8Array) || o.nonce.length < NONCE_MIN || o.nonce.length > NONCE_MAX) {
    throw new KelidError('ERR_INVALID_INPUT', `nonce must be ${NONCE_MIN}–${NONCE_MAX} bytes`);
  }
  if (o.digestAlgorithm !== undefined && !isDigestAlgorithm(o.digestAlgorithm)) {
    throw new KelidError('ERR_INVALID_INPUT', 'digestAlgorithm must be SHA-256, SHA-384 or SHA-512');
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(o.certificate);
  } catch (e) {
    throw new KelidError('ERR_INVALID_INPUT', 'certificate is not a DER X.509 certificate', { cause: e });
  }
  let signerKey: KeyObject;
  try {
    signerKey = createPublicKey({ key: Buffer.from(o.signer.publicKey), format: 'der', type: 'spki' });
  } catch (e) {
    throw new KelidError('ERR_INTERNAL', 'the signer public key is not a SubjectPublicKeyInfo', { cause: e });
  }
  if (!signerKey.equals(cert.publicKey)) {
    throw new KelidError('ERR_CERTIFICATE_MISMATCH', 'the certificate does not belong to the signing key');
  }
  const scheme = resolveScheme(o.signer.keyType, o.scheme);
  const name = algorithmFor(cert.publicKey, o.digestAlgorithm, scheme);
  const { hash } = ALGORITHMS[name];
  const data = authSignedData(o.origin, o.nonce);
  const signature = o.signer.signMessage
    ? await o.signer.signMessage(data, hash, scheme)
    : await o.signer.signDigest(digest(hash, data), hash, scheme);
  if (!verifySignature(cert.publicKey, scheme, hash, data, signature)) {
    throw new KelidError('ERR_DEVICE_ERROR', 'the token returned a signature that does not verify');
  }
  return {
    format: AUTH_TOKEN_FORMAT,
    origin: o.origin,
    certificate: Buffer.from(cert.raw).toString('base64'),
    signatureAlgorithm: name,
    signature: Buffer.from(signature).toString('base64'),
  };
}

export interface VerifyAuthTokenOptions {
  /** The origin the relying party serves the login page from; compared as an exact string. */
  expectedOrigin: string;
  /** The nonce the relying party issued for this login (single-use and short-lived: see docs/agent.md). */
  expectedNonce: Uint8Array;
  /**
   * Trust anchors (DER), required and non-empty: the certificate must chain to one of them through a
   * valid path (basicConstraints, keyCertSign, pathLenConstraint, name constraints, validity at
   * `now` and the signature of every link).
   */
  trustedRoots?: Uint8Array[];
  /** Intermediate CA certificates (DER) that may be used to reach a trusted root. */
  intermediates?: Uint8Array[];
  /** Validity reference time. Default: now. */
  now?: Date;
  /**
   * Accept tokens from dual-use certificates (nonRepudiation and clientAuth). Only safe when the
   * agents of this relying party's users run with `keyPurpose.dualUse` set to `authentication` or
   * `cms-and-authentication`: with the default (`signing`), any approved site can get a raw signature
   * from such a key, and a raw signature of the right 64 bytes is a login token.
   */
  acceptDualUseCertificates?: boolean;
  /**
   * Skip the trust check (no `trustedRoots`): anyone can make a certificate for any name, so the
   * result then proves only possession of some key. For tests and for callers that pin the key
   * themselves; never for a login.
   */
  dangerouslyAcceptAnyIssuer?: boolean;
}

export interface VerifiedAuthToken {
  origin: string;
  signatureAlgorithm: AuthSignatureAlgorithm;
  certificate: {
    subject: string;
    issuer: string;
    /** Upper-case hex. */
    serialNumber: string;
    notBefore: Date;
    notAfter: Date;
    fingerprintSha256: string;
    der: Uint8Array;
  };
}

/** `reason` goes into the error's `data` so a relying party can log why a login failed. */
function invalid(reason: string, message: string, cause?: unknown): KelidError {
  return new KelidError('ERR_AUTH_TOKEN_INVALID', message, { cause, retriable: false, data: { reason } });
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function base64Field(value: unknown, name: string, max: number): Uint8Array {
  if (typeof value !== 'string' || value.length === 0 || value.length > max || !BASE64.test(value)) {
    throw invalid('format', `${name} is not base64`);
  }
  return new Uint8Array(Buffer.from(value, 'base64'));
}

function isAuthSignatureAlgorithm(value: unknown): value is AuthSignatureAlgorithm {
  return typeof value === 'string' && Object.hasOwn(ALGORITHMS, value);
}

function validAt(cert: X509Certificate, now: Date): boolean {
  const t = now.getTime();
  return Date.parse(cert.validFrom) <= t && t <= Date.parse(cert.validTo);
}

function parseCertificates(list: Uint8Array[] | undefined, name: string): X509Certificate[] {
  return (list ?? []).map((der, i) => {
    try {
      return new X509Certificate(der);
    } catch (e) {
      throw new KelidError('ERR_INVALID_INPUT', `${name}[${i}] is not a DER X.509 certificate`, { cause: e });
    }
  });
}

/**
 * Verifies a `kelid-auth:1` login token: its shape, the origin (exact string match), the signature
 * over {@link authSignedData} of the expected origin and nonce with the certificate's key, that the
 * certificate is fit for authentication by the key-purpose rule (PROTOCOL.md section 4; dual-use only
 * with `acceptDualUseCertificates`), its validity at `now`, and a valid path to one of `trustedRoots`
 * (required: without them, or with an empty list, ERR_INVALID_INPUT unless
 * `dangerouslyAcceptAnyIssuer`). Failures are `ERR_AUTH_TOKEN_INVALID` (with `data.reason`: format,
 * origin, algorithm, signature, purpose, untrusted) or `ERR_CERTIFICATE_EXPIRED`. Revocation is not
 * checked here. The nonce must be single-use: this function cannot know whether it was used before.
 */
export async function verifyAuthToken(token: unknown, o: VerifyAuthTokenOptions): Promise<VerifiedAuthToken> {
  const now = o.now ?? new Date();
  if (
    (o.trustedRoots === undefined || o.trustedRoots.length === 0) &&
    o.dangerouslyAcceptAnyIssuer !== true
  ) {
    throw new KelidError(
      'ERR_INVALID_INPUT',
      'trustedRoots is required: a login certificate that chains to nothing proves nothing',
    );
  }
  const roots = parseCertificates(o.trustedRoots, 'trustedRoots');
  const intermediates = parseCertificates(o.intermediates, 'intermediates');

  if (typeof token !== 'object' || token === null)
    throw invalid('format', 'the login token is not an object');
  const t = token as Record<string, unknown>;
  if (t.format !== AUTH_TOKEN_FORMAT)
    throw invalid('format', `the login token format is not ${AUTH_TOKEN_FORMAT}`);
  if (typeof t.origin !== 'string') throw invalid('format', 'the login token has no origin');
  if (!isAuthSignatureAlgorithm(t.signatureAlgorithm)) {
    throw invalid('algorithm', 'the login token has an unknown signatureAlgorithm');
  }
  const certificateDer = base64Field(t.certificate, 'certificate', MAX_CERTIFICATE_BASE64);
  const signature = base64Field(t.signature, 'signature', MAX_SIGNATURE_BASE64);
  if (t.origin !== o.expectedOrigin) throw invalid('origin', 'the login token was made for another origin');

  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certificateDer);
  } catch (e) {
    throw invalid('format', 'the login token certificate is not an X.509 certificate', e);
  }
  const spec = ALGORITHMS[t.signatureAlgorithm];
  const key = cert.publicKey;
  const keyFits =
    spec.scheme === 'ECDSA'
      ? key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === spec.curve
      : key.asymmetricKeyType === 'rsa';
  if (!keyFits) throw invalid('algorithm', `${t.signatureAlgorithm} does not fit the certificate's key`);

  const data = authSignedData(o.expectedOrigin, o.expectedNonce);
  if (!verifySignature(key, spec.scheme, spec.hash, data, signature)) {
    throw invalid('signature', 'the login token signature does not verify for this origin and nonce');
  }
  // The agent refuses raw signatures only with authentication keys: a token from any other key may be
  // a raw signature a page obtained under a document-signing summary.
  let purpose: ReturnType<typeof keyPurposeOf>;
  try {
    purpose = keyPurposeOf(describeCertificate(certificateDer));
  } catch (e) {
    throw invalid('format', 'the login token certificate has malformed extensions', e);
  }
  if (purpose !== 'authentication' && !(purpose === 'dual-use' && o.acceptDualUseCertificates === true)) {
    throw invalid(
      'purpose',
      purpose === 'dual-use'
        ? 'the login certificate is dual-use (nonRepudiation and clientAuth) and acceptDualUseCertificates is not set'
        : `the login certificate is not an authentication certificate (it is ${purpose === 'none' ? 'fit for neither signing nor login' : `a ${purpose} certificate`})`,
    );
  }
  if (!validAt(cert, now)) {
    throw new KelidError('ERR_CERTIFICATE_EXPIRED', 'the login certificate is not valid at this time', {
      retriable: false,
      data: {
        notBefore: new Date(cert.validFrom).toISOString(),
        notAfter: new Date(cert.validTo).toISOString(),
      },
    });
  }
  if (roots.length > 0) {
    let result: ReturnType<typeof validateCertificatePath>;
    try {
      result = validateCertificatePath(
        certificateDer,
        roots.map((r) => new Uint8Array(r.raw)),
        intermediates.map((c) => new Uint8Array(c.raw)),
        now,
      );
    } catch (e) {
      throw invalid('untrusted', 'the certificate path could not be read', e);
    }
    if (!result.ok) {
      throw new KelidError(
        'ERR_AUTH_TOKEN_INVALID',
        `the login certificate is not trusted: ${result.detail}`,
        {
          retriable: false,
          data: { reason: 'untrusted' },
        },
      );
    }
  }
  return {
    origin: t.origin,
    signatureAlgorithm: t.signatureAlgorithm,
    certificate: {
      subject: cert.subject.split('\n').join(', '),
      issuer: cert.issuer.split('\n').join(', '),
      serialNumber: cert.serialNumber.toUpperCase(),
      notBefore: new Date(cert.validFrom),
      notAfter: new Date(cert.validTo),
      fingerprintSha256: cert.fingerprint256.replace(/:/g, '').toLowerCase(),
      der: certificateDer,
    },
  };
}
