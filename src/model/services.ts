// What the protocol layer (methods, consent) needs from the services below it. The agent's
// composition root (cli/commands/serve.ts) builds one AgentServices from the real services;
// protocol tests may build one over SoftHSM too. PINs are parameters of one call only.

import type { EventEmitter } from 'node:events';
import type { CsrRequest } from './csr.js';
import type {
  AuthToken,
  Certificate,
  CertificateFilter,
  CertificateUse,
  DigestAlgorithm,
  Key,
  KeyAlgorithm,
  SignatureScheme,
  Status,
  Token,
} from './types.js';

/** What a signing call is about to do (checked before its consent prompt). */
export interface SigningIntent {
  use: CertificateUse;
  /** sign.batch (keys with CKA_ALWAYS_AUTHENTICATE need a PIN pad). */
  batch?: boolean;
}

/**
 * A PIN for one login, or `null` when the token has a protected authentication path (a PIN pad
 * reader): the module collects the PIN on the reader's keypad and Kelid never sees it.
 */
export type PinEntry = string | null;

/** What the consent UI should warn about before a signature (from the revocation policy). */
export type SigningWarning = 'status-unknown' | 'status-unavailable';

export interface SigningPreflight {
  token: Token;
  certificate: Certificate;
  status?: Status;
  warning?: SigningWarning;
}

export interface SigningApi {
  listCertificates(options: { tokenId?: string; filter?: CertificateFilter }): Promise<Certificate[]>;
  /** Locate a certificate by id and apply the revocation/expiry policy; throws ERR_CERTIFICATE_* codes. */
  preflight(certificateId: string, intent?: SigningIntent): Promise<SigningPreflight>;
  signRaw(
    certificateId: string,
    userPin: PinEntry,
    input: { digest: Uint8Array; digestAlgorithm: DigestAlgorithm; scheme?: SignatureScheme },
  ): Promise<{ signature: Uint8Array; signatureAlgorithm: string }>;
  signCms(
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
  ): Promise<{ cms: Uint8Array }>;
  /** One login for all items; stops after the current item when `signal` aborts. */
  signBatch(
    certificateId: string,
    userPin: PinEntry,
    input: {
      format: 'raw' | 'cms';
      digestAlgorithm: DigestAlgorithm;
      scheme?: SignatureScheme;
      digests: Uint8Array[];
    },
    options?: { signal?: AbortSignal },
  ): Promise<{ results: Array<{ signature: Uint8Array } | { cms: Uint8Array }>; cancelled: boolean }>;
  authChallenge(
    certificateId: string,
    userPin: PinEntry,
    input: { origin: string; nonce: Uint8Array },
  ): Promise<AuthToken>;
}

export interface ProvisioningApi {
  initToken(tokenId: string, input: { label: string; soPin: string; userPin: string }): Promise<Token>;
  changePin(tokenId: string, role: 'user' | 'so', oldPin: string, newPin: string): Promise<void>;
  unblockPin(tokenId: string, soPin: string, newUserPin: string): Promise<void>;
  generateKey(
    tokenId: string,
    userPin: PinEntry,
    request: { algorithm: KeyAlgorithm; label?: string; alwaysAuthenticate?: boolean; csr?: CsrRequest },
  ): Promise<{ key: Key; csr?: string }>;
  createCsr(tokenId: string, userPin: PinEntry, keyId: string, request: CsrRequest): Promise<string>;
  importCertificate(
    tokenId: string,
    userPin: PinEntry,
    input: { certificate: string; chain?: string[]; label?: string },
  ): Promise<Certificate>;
  listKeys(tokenId: string): Promise<Key[]>;
  listCertificates(tokenId: string): Promise<Certificate[]>;
  deleteObjects(
    tokenId: string,
    userPin: PinEntry,
    keyId: string,
    scope: 'certificate' | 'keypair' | 'all',
  ): Promise<number>;
  /**
   * Effective PIN rules for the consent UI (policy narrowed by the token's own limits); `token`: the
   * token as just read (a signing preflight's), so that it is not read again.
   */
  pinRules(
    tokenId: string,
    token?: Token,
  ): Promise<{
    user: { minLength: number; maxLength: number; charset: string };
    so: { minLength: number; maxLength: number; charset: string };
  }>;
}

export interface StatusApi {
  /**
   * Status of a certificate on a token (by id) or given by the caller (DER), with optional issuer DER.
   * `hooks.onCertificate` gets the token certificate's DER once it is found (for the audit line).
   */
  checkCertificateId(
    certificateId: string,
    hooks?: { onCertificate?(der: Uint8Array): void },
  ): Promise<Status>;
  checkCertificate(certificate: Uint8Array, issuer?: Uint8Array): Promise<Status>;
}

export interface AgentServices {
  listTokens(): Promise<Token[]>;
  getToken(tokenId: string): Promise<Token>;
  /** Emits `changed` with `{added: Token[], removed: string[]}` (hot-plug). */
  tokenEvents: EventEmitter;
  modules(): ModuleStatus[];
  provisioning: ProvisioningApi;
  signing: SigningApi;
  status: StatusApi;
}

/** The services a running agent holds: released by `close` when it stops. */
export type RunningAgentServices = AgentServices & { close(): Promise<void> };

export interface StatusCheckOptions {
  /** Candidate issuer certificates (DER): the token's authority certificates or the caller's. */
  issuers?: readonly Uint8Array[];
  /**
   * The certificate (and its issuers) come from a page, not from a token: its URLs reach public
   * addresses only (unless `allowPrivateNetworks`), redirects stay on the same host, and a failure is
   * reported without details.
   */
  callerSupplied?: boolean;
  /**
   * Ignore a cached status (and a cached CRL) fetched more than this long ago and ask again: the
   * signing policy's `revocation.maxAgeSeconds`.
   */
  maxAgeMs?: number;
}

/** The role the signing policy and the protocol methods depend on. */
export interface StatusChecker {
  check(certificate: Uint8Array, options?: StatusCheckOptions): Promise<Status>;
}

/** Where a module's path came from: the config file, Kelid's list of known modules, p11-kit's registry. */
export type ModuleSource = 'config' | 'known' | 'p11-kit';

/** What C_GetInfo says of a module. */
export interface ModuleInfo {
  manufacturer: string;
  libraryDescription: string;
  libraryVersion: string;
  cryptokiVersion: string;
}

/** A module's state, as `agent.modules` and `kelid doctor` show it. */
export interface ModuleStatus {
  id: string;
  name: string;
  path: string;
  source: ModuleSource;
  state: 'loaded' | 'failed' | 'starting' | 'restarting' | 'stopped';
  reason?: string;
  info?: ModuleInfo;
}
