import type { DigestAlgorithm, SignatureScheme } from '../model/types.js';

/**
 * The role every signing consumer (CSR, CMS, raw, login tokens) depends on. The token implementation
 * signs on a PKCS#11 token; tests may use a Node `crypto` key. Hashing is always done by the caller
 * (SoftHSM has no CKM_ECDSA_SHA256; one code path for every token).
 */
export interface DigestSigner {
  /** Public key of the signing key, SubjectPublicKeyInfo DER. */
  readonly publicKey: Uint8Array;
  readonly keyType: 'RSA' | 'EC';
  /**
   * Sign a precomputed digest. RSASSA-PKCS1-v1_5 and RSA-PSS (salt = hash length, MGF1 with the same
   * hash) for RSA keys; ECDSA for EC keys, returned DER-encoded (SEQUENCE { r, s }).
   */
  signDigest(
    digest: Uint8Array,
    digestAlgorithm: DigestAlgorithm,
    scheme: SignatureScheme,
  ): Promise<Uint8Array>;
  /**
   * Optional: sign the message itself, hashed by the signer (a token's hash-and-sign mechanism).
   * Callers that hold the whole message (CSR, CMS signed attributes, login tokens) use it when
   * present; the result is the same signature as {@link signDigest} of the message's digest.
   */
  signMessage?(
    message: Uint8Array,
    digestAlgorithm: DigestAlgorithm,
    scheme: SignatureScheme,
  ): Promise<Uint8Array>;
}
