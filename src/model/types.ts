// Wire objects of PROTOCOL.md section 4. Shared by the agent and the browser SDK: no Node types here.

/** The wire error codes of PROTOCOL.md section 6 (`error.data.code`), shared by the agent and the SDK. */
export type ErrorCode =
  | 'ERR_FORBIDDEN'
  | 'ERR_ORIGIN_DENIED'
  | 'ERR_RATE_LIMITED'
  | 'ERR_BUSY'
  | 'ERR_USER_CANCELLED'
  | 'ERR_CONSENT_TIMEOUT'
  | 'ERR_TOKEN_NOT_FOUND'
  | 'ERR_TOKEN_REMOVED'
  | 'ERR_TOKEN_NOT_INITIALIZED'
  | 'ERR_PIN_INCORRECT'
  | 'ERR_PIN_LOCKED'
  | 'ERR_PIN_POLICY'
  | 'ERR_PIN_EXPIRED'
  | 'ERR_KEY_NOT_FOUND'
  | 'ERR_CERTIFICATE_NOT_FOUND'
  | 'ERR_CERTIFICATE_MISMATCH'
  | 'ERR_CERTIFICATE_REVOKED'
  | 'ERR_CERTIFICATE_EXPIRED'
  | 'ERR_STATUS_UNAVAILABLE'
  | 'ERR_MECHANISM_UNSUPPORTED'
  | 'ERR_TOKEN_FULL'
  | 'ERR_MODULE_FAILED'
  | 'ERR_DEVICE_ERROR'
  | 'ERR_INVALID_INPUT'
  | 'ERR_TIMESTAMP_FAILED'
  | 'ERR_AUTH_TOKEN_INVALID'
  | 'ERR_KEY_PURPOSE'
  | 'ERR_INTERNAL';

/** PIN state as decoded from CK_TOKEN_INFO flags (wire `userPin`/`soPin`, and the `pin` of PIN errors). */
export interface PinState {
  countLow: boolean;
  finalTry: boolean;
  locked: boolean;
  toBeChanged: boolean;
}

export interface Token {
  /** Opaque and per origin: valid only for the origin that received it (PROTOCOL.md section 4). */
  tokenId: string;
  moduleId: string;
  label: string;
  manufacturer: string;
  model: string;
  /** `""` for the `site` tier (it would name the token the same way for every site). */
  serialNumber: string;
  /** `""` for the `site` tier. */
  slotDescription: string;
  initialized: boolean;
  userPinInitialized: boolean;
  readOnly: boolean;
  protectedAuthenticationPath: boolean;
  pinLength: { min: number; max: number };
  userPin: PinState;
  soPin: PinState;
  /**
   * Present when wrong PINs lock the whole device rather than this token (a TPM's dictionary-attack
   * lockout, shared by every token of the module, never shown by the PIN flags): the SO-PIN does
   * not unblock it. `locked` is then what Kelid saw at the last login, not a flag.
   */
  lockout?: 'device-wide';
}

export type KeyAlgorithm =
  { name: 'RSA'; modulusLength: 2048 | 3072 | 4096 } | { name: 'EC'; namedCurve: 'P-256' | 'P-384' };

export interface Key {
  keyId: string;
  tokenId: string;
  label: string;
  algorithm: KeyAlgorithm | { name: 'RSA'; modulusLength: number } | { name: 'EC'; namedCurve: string };
  /** SubjectPublicKeyInfo, base64 DER. */
  publicKey: string;
  hasCertificate: boolean;
  local: boolean;
  alwaysAuthenticate: boolean;
}

export type CertificateCategory = 'user' | 'authority' | 'other';

export interface Certificate {
  /** Opaque and per origin: valid only for the origin that received it (PROTOCOL.md section 4). */
  certificateId: string;
  tokenId: string;
  keyId: string;
  label: string;
  subject: string;
  issuer: string;
  serialNumber: string;
  notBefore: string;
  notAfter: string;
  keyUsage: string[];
  extendedKeyUsage: string[];
  fingerprintSha256: string;
  /** DER, base64. */
  certificate: string;
  hasPrivateKey: boolean;
  category: CertificateCategory;
  /**
   * Extension: the certificate's purpose by the key-purpose rule (PROTOCOL.md section 4):
   * `signing`, `authentication`, `dual-use` or `none`.
   */
  keyPurpose: KeyPurpose;
  /**
   * Extension: what this agent lets the certificate do (its `keyPurpose` under config
   * `keyPurpose.dualUse`): `raw` (sign.raw, sign.batch raw), `cms` (sign.cms, sign.batch cms),
   * `authentication` (auth.challenge).
   */
  allowedUses: CertificateUse[];
}

/** The key-purpose rule's classes (PROTOCOL.md section 4). */
export type KeyPurpose = 'signing' | 'authentication' | 'dual-use' | 'none';

/** What a call needs: `raw` (sign.raw, sign.batch raw), `cms` (sign.cms, sign.batch cms), `authentication` (auth.challenge). */
export type CertificateUse = 'raw' | 'cms' | 'authentication';

export interface Status {
  status: 'good' | 'revoked' | 'unknown';
  source: 'ocsp' | 'crl';
  checkedAt: string;
  thisUpdate: string;
  nextUpdate?: string;
  revokedAt?: string;
  reason?: string;
}

export type DigestAlgorithm = 'SHA-256' | 'SHA-384' | 'SHA-512';
export type SignatureScheme = 'RSASSA-PKCS1-v1_5' | 'RSA-PSS' | 'ECDSA';

export interface AuthToken {
  format: 'kelid-auth:1';
  origin: string;
  /** Signer certificate, DER base64. */
  certificate: string;
  signatureAlgorithm: string;
  /** Signature, base64 (DER for ECDSA). */
  signature: string;
}

export type Tier = 'unknown' | 'site' | 'ra' | 'console';

export type SecretNeed = 'userPin' | 'soPin' | 'oldUserPin' | 'newUserPin' | 'oldSoPin' | 'newSoPin';

/** Certificate filter of `certificates.list`; all given conditions must hold. */
export interface CertificateFilter {
  /** keyUsage bit names that must all be set, e.g. `['nonRepudiation']`. */
  keyUsage?: string[];
  /** extendedKeyUsage names or dotted OIDs that must all be present. */
  extendedKeyUsage?: string[];
  /** Issuer DN (RFC 4514) the certificate must have. */
  issuer?: string;
  /** ISO 8601 time at which the certificate must be valid (e.g. now). */
  validAt?: string;
  /** Only certificates whose private key is on the token. */
  hasPrivateKey?: boolean;
  /**
   * Only certificates the agent lets do this (`Certificate.allowedUses`): `raw` (signRaw, signBatch
   * raw), `cms` (signCms, signBatch cms), `authentication` (authChallenge).
   */
  use?: CertificateUse;
}
