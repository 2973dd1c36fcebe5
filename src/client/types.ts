// Parameters and results of the SDK's methods (PROTOCOL.md section 3). Binary inputs accept bytes;
// binary results stay in their wire form (standard base64 strings) — see fromBase64/toPem.

import type {
  AuthToken,
  Certificate,
  CertificateFilter,
  CertificateUse,
  DigestAlgorithm,
  Key,
  KeyAlgorithm,
  KeyPurpose,
  SignatureScheme,
  Status,
  Tier,
  Token,
} from '../model/types.js';
import type { Bytes } from './encoding.js';

/** Result of {@link KelidClient.info}. */
export interface AgentInfo {
  name: 'kelid';
  /**
   * The agent's exact version. Absent on `unknown`-tier connections (Kelid extension): any page can
   * ask, and an exact version tells it which known holes to try; `protocol` is always there.
   */
  version?: string;
  protocol: number;
  /** This page's origin as the agent saw it in the handshake. */
  origin: string;
  /** This connection's tier: `unknown` may only call `info` and `requestAccess`. */
  tier: Tier;
  /** Loaded PKCS#11 modules (only for `ra` and console connections). */
  modules?: unknown[];
  /** A newer Kelid from the signed update manifest (console connections only; Kelid extension). */
  update?: { latest: string; download: string };
}

/** Options of {@link KelidClient.listCertificates}. */
export interface ListCertificatesParams {
  /** Only this token's certificates. */
  tokenId?: string;
  filter?: CertificateFilter;
}

/** A certificate given by the page: PEM or base64 DER text, or DER bytes. */
export type CertificateInput = string | Bytes;

/** Parameters of {@link KelidClient.certificateStatus}: a certificate on a token, or one the page has. */
export type CertificateStatusParams =
  { certificateId: string } | { certificate: CertificateInput; issuer?: CertificateInput };

/** Parameters of {@link KelidClient.signRaw}. */
export interface SignRawParams {
  certificateId: string;
  /** The hash of the data; its length must match `digestAlgorithm`. */
  digest: Bytes;
  digestAlgorithm: DigestAlgorithm;
  /** Default: `RSASSA-PKCS1-v1_5` for RSA keys, `ECDSA` for EC keys. */
  scheme?: SignatureScheme;
  /** 1–500 characters shown to the user, labelled as coming from this page's origin. */
  summary: string;
}

/** Result of {@link KelidClient.signRaw}. */
export interface SignRawResult {
  /** Base64 signature (DER for ECDSA). */
  signature: string;
  /** Name of the algorithm used, e.g. `sha256WithRSAEncryption`. */
  signatureAlgorithm: string;
}

/** Parameters of {@link KelidClient.signCms}: exactly one of `content` and `digest`. */
export interface SignCmsParams {
  certificateId: string;
  /** The data to sign (strings are encoded as UTF-8); at most the agent's message size. */
  content?: Bytes | string;
  /** Instead of `content`: its hash, which makes the signature detached. */
  digest?: Bytes;
  /** Default `SHA-256`. */
  digestAlgorithm?: DigestAlgorithm;
  /** Leave the content out of the CMS (default `true`; always so with `digest`): `false` embeds it. */
  detached?: boolean;
  /** Add the CA chain from the token to the CMS. */
  includeChain?: boolean;
  /** Add an RFC 3161 signature time-stamp (CAdES-B-T) from the agent's configured TSA. */
  timestamp?: boolean;
  /** 1–500 characters shown to the user, labelled as coming from this page's origin. */
  summary: string;
}

/** Result of {@link KelidClient.signCms}. */
export interface SignCmsResult {
  /** Base64 DER of the CMS SignedData (CAdES-B-B, or B-T with `timestamp`). */
  cms: string;
}

/** One document of a batch. */
export interface BatchItem {
  /** The document's hash; its length must match the batch's `digestAlgorithm`. */
  digest: Bytes;
  /** 1–500 characters describing this document. */
  summary: string;
}

/** Parameters of {@link KelidClient.signBatch}: 1–10,000 items, one consent, one PIN. */
export interface SignBatchParams {
  certificateId: string;
  format: 'raw' | 'cms';
  digestAlgorithm: DigestAlgorithm;
  scheme?: SignatureScheme;
  items: BatchItem[];
}

/** Result of {@link KelidClient.signBatch}: one entry per item, in order. */
export interface SignBatchResult {
  results: Array<{ signature: string } | { cms: string }>;
}

/** Options of {@link KelidClient.signFile}. */
export interface SignFileOptions {
  certificateId: string;
  /** Default `SHA-256`. */
  digestAlgorithm?: DigestAlgorithm;
  /** Shown to the user; default: the file's name and size. */
  summary?: string;
  includeChain?: boolean;
  timestamp?: boolean;
  /** Bytes read per step (default 4 MiB); memory use stays about twice this, whatever the file size. */
  chunkSize?: number;
  /** Called after each chunk is hashed. */
  onProgress?: (hashedBytes: number, totalBytes: number) => void;
}

/** Result of {@link KelidClient.signFile}. */
export interface SignFileResult {
  /** Base64 DER of the detached CMS SignedData. */
  cms: string;
  /** The file's hash (base64), which the CMS's messageDigest attribute carries. */
  digest: string;
  digestAlgorithm: DigestAlgorithm;
  /** Number of bytes hashed. */
  size: number;
}

/** Distinguished name: RFC 4514 text (`CN=…,O=…,C=IR`) or attribute list (values are UTF-8). */
export type SubjectInput = string | Array<{ type: string; value: string }>;

/** Subject alternative name of a CSR. */
export interface SubjectAltName {
  type: 'email' | 'dns' | 'uri' | 'ip' | 'upn';
  value: string;
}

/** What a CSR should ask for. */
export interface CsrRequest {
  subject: SubjectInput;
  subjectAltNames?: SubjectAltName[];
  /** keyUsage bit names, e.g. `['digitalSignature', 'nonRepudiation']`. */
  keyUsage?: string[];
  extendedKeyUsage?: string[];
  signatureAlgorithm?: string;
}

/** Parameters of {@link KelidClient.generateKey}. */
export interface GenerateKeyParams {
  tokenId: string;
  algorithm: KeyAlgorithm;
  label?: string;
  alwaysAuthenticate?: boolean;
  /** Also make a CSR for the new key, under the same consent. */
  csr?: CsrRequest;
}

/** Result of {@link KelidClient.generateKey}. */
export interface GenerateKeyResult {
  key: Key;
  /** PEM, when `csr` was asked for. */
  csr?: string;
}

/** Parameters of {@link KelidClient.createCsr}. */
export interface CreateCsrParams extends CsrRequest {
  tokenId: string;
  keyId: string;
}

/** Parameters of {@link KelidClient.importCertificate}. */
export interface ImportCertificateParams {
  tokenId: string;
  certificate: CertificateInput;
  /** CA certificates to store as authority certificates. */
  chain?: CertificateInput[];
  label?: string;
}

/** Parameters of {@link KelidClient.deleteObjects}. */
export interface DeleteObjectsParams {
  tokenId: string;
  keyId: string;
  /** `certificate`: the certificate only; `keypair`: the keys only; `all`: both. */
  scope: 'certificate' | 'keypair' | 'all';
}

/** `tokens.changed` notification. */
export interface TokensChanged {
  added: Token[];
  /** tokenIds of tokens that went away. */
  removed: string[];
}

export type {
  AuthToken,
  Certificate,
  CertificateFilter,
  CertificateUse,
  DigestAlgorithm,
  Key,
  KeyPurpose,
  KeyAlgorithm,
  SignatureScheme,
  Status,
  Tier,
  Token,
};
