// What a caller asks of a certificate request (tokens.createCsr, `kelid csr`): the subject, its
// alternative names and usages, and the signature algorithm. pki/csr.ts builds the DER from it.

import type { DigestAlgorithm, SignatureScheme } from './types.js';

/** One attribute of a subject given as an array. */
export interface NameAttribute {
  /** Short name (`CN`, `O`, `OU`, `C`, `L`, `ST`, `serialNumber`, `emailAddress`, …) or a dotted OID. */
  type: string;
  value: string;
}

/**
 * A subject: RFC 4514 text, or an array in the same order as that text (most significant RDN last:
 * `[{type:'CN',…}, {type:'O',…}, {type:'C',…}]`). An array element that is itself an array is one
 * multi-valued RDN.
 */
export type SubjectInput = string | ReadonlyArray<NameAttribute | ReadonlyArray<NameAttribute>>;

export type SubjectAltNameType = 'email' | 'dns' | 'uri' | 'ip' | 'upn';

export interface SubjectAltName {
  type: SubjectAltNameType;
  value: string;
}

/** Both fields optional; defaults depend on the key (see {@link resolveCsrSignatureAlgorithm}). */
export interface CsrSignatureAlgorithm {
  scheme?: SignatureScheme;
  digestAlgorithm?: DigestAlgorithm;
}

/** What a caller asks for; everything except the key. */
export interface CsrRequest {
  subject: SubjectInput;
  subjectAltNames?: readonly SubjectAltName[];
  /** keyUsage names (`digitalSignature`, `nonRepudiation`/`contentCommitment`, …); marked critical. */
  keyUsage?: readonly string[];
  /** extendedKeyUsage names (`clientAuth`, `documentSigning`, …) or dotted OIDs. */
  extendedKeyUsage?: readonly string[];
  signatureAlgorithm?: CsrSignatureAlgorithm;
}
