import { createHash } from 'node:crypto';
import { KelidError, isKelidError } from '../model/errors.js';
import type { RawMechanism } from '../pkcs11/host-protocol.js';
import { CKG_MGF1, CKM, CKM_HASH, CK_PARAMS_RSA_PSS } from '../pkcs11/templates.js';
import type { MechanismSpec } from '../pkcs11/host-protocol.js';
import { DIGEST_LENGTH, DIGEST_NODE_NAME, ecdsaRawToDer, encodeDigestInfo } from '../pki/der.js';
import type { DigestAlgorithm, SignatureScheme } from '../model/types.js';
import type { DigestSigner } from '../pki/signer.js';
import type { TokenSession } from './token-service.js';

/** Work per signMany call: bounds how long a cancel waits (the host yields within it). */
const SIGN_RUN_BUDGET_MS = 50;
/** Inputs sent with the first signMany call, and at most with any (the IPC message stays small). */
const SIGN_RUN_FIRST_ITEMS = 64;
const SIGN_RUN_MAX_ITEMS = 4096;

/** RSA PKCS#1 v1.5 hash-and-sign mechanisms: the token hashes the message itself. */
const HASH_AND_SIGN: Readonly<Record<DigestAlgorithm, number>> = {
  'SHA-256': CKM.SHA256_RSA_PKCS,
  'SHA-384': CKM.SHA384_RSA_PKCS,
  'SHA-512': CKM.SHA512_RSA_PKCS,
};

export interface TokenKeyRef {
  /** Private key object handle (valid only in the session that found it). */
  handle: string;
  keyType: 'RSA' | 'EC';
  publicKey: Uint8Array;
  alwaysAuthenticate: boolean;
}

/** Pick the PKCS#11 mechanism for a scheme from what the token reports; hashing is done by the host. */
export function mechanismFor(
  keyType: 'RSA' | 'EC',
  scheme: SignatureScheme,
  digestAlgorithm: DigestAlgorithm,
  available: ReadonlySet<number>,
): MechanismSpec {
  const need = (m: number, what: string): void => {
    if (!available.has(m))
      throw new KelidError('ERR_MECHANISM_UNSUPPORTED', `the token does not support ${what}`);
  };
  if (keyType === 'EC') {
    if (scheme !== 'ECDSA')
      throw new KelidError('ERR_MECHANISM_UNSUPPORTED', `${scheme} does not apply to EC keys`);
    need(CKM.ECDSA, 'ECDSA');
    return { mechanism: CKM.ECDSA };
  }
  if (scheme === 'RSASSA-PKCS1-v1_5') {
    need(CKM.RSA_PKCS, 'RSA PKCS#1 v1.5 signatures');
    return { mechanism: CKM.RSA_PKCS };
  }
  if (scheme === 'RSA-PSS') {
    need(CKM.RSA_PKCS_PSS, 'RSA-PSS signatures');
    return {
      mechanism: CKM.RSA_PKCS_PSS,
      parameter: {
        type: CK_PARAMS_RSA_PSS,
        hashAlg: CKM_HASH[digestAlgorithm],
        mgf: CKG_MGF1[digestAlgorithm],
        saltLen: DIGEST_LENGTH[digestAlgorithm],
      },
    };
  }
  throw new KelidError('ERR_MECHANISM_UNSUPPORTED', `${scheme} does not apply to RSA keys`);
}

/**
 * A {@link DigestSigner} over a private key on a token, used inside one logged-in session. Keys with
 * CKA_ALWAYS_AUTHENTICATE get a context-specific login for every signature, with the PIN the user
 * typed for this consented operation.
 */
export class Pkcs11Signer implements DigestSigner {
  readonly publicKey: Uint8Array;
  readonly keyType: 'RSA' | 'EC';

  private constructor(
    private readonly session: TokenSession,
    private readonly key: TokenKeyRef,
    private readonly available: ReadonlySet<number>,
    private readonly contextPin: string | null | undefined,
  ) {
    this.publicKey = key.publicKey;
    this.keyType = key.keyType;
  }

  /** `contextPin` null: the context login goes through the token's PIN pad as well. */
  static async create(
    session: TokenSession,
    key: TokenKeyRef,
    contextPin?: string | null,
  ): Promise<Pkcs11Signer> {
    const mechs: RawMechanism[] = await session.mechanisms();
    if (key.alwaysAuthenticate && contextPin === undefined) {
      throw new TypeError('a key with CKA_ALWAYS_AUTHENTICATE needs the PIN for its context login');
    }
    const available = new Set(mechs.map((m) => m.type));
    // tpm2-pkcs11 lists CKM_RSA_PKCS with CKF_SIGN but performs it as an RSA decryption, which a
    // sign-only key may not do: only its hash-and-sign mechanisms sign PKCS#1 v1.5 (quirk).
    if (session.moduleSpec.quirks?.rsaPkcsSignsDigest === false) available.delete(CKM.RSA_PKCS);
    return new Pkcs11Signer(session, key, available, key.alwaysAuthenticate ? contextPin : undefined);
  }

  /**
   * The whole message is at hand (CSR, CMS signed attributes, login token). Kelid signs the digest it
   * computed itself (CKM_RSA_PKCS, CKM_ECDSA, CKM_RSA_PKCS_PSS: one path with sign.raw and batches,
   * and the digest the user consented to is the one signed); RSA PKCS#1 v1.5 falls back to the
   * token's hash-and-sign mechanism (CKM_SHA*_RSA_PKCS) when the module cannot sign a digest
   * (quirk `rsaPkcsSignsDigest: false`) or fails with a device error doing it.
   */
  async signMessage(
    message: Uint8Array,
    digestAlgorithm: DigestAlgorithm,
    scheme: SignatureScheme,
  ): Promise<Uint8Array> {
    const hashAndSign =
      this.keyType === 'RSA' &&
      scheme === 'RSASSA-PKCS1-v1_5' &&
      this.available.has(HASH_AND_SIGN[digestAlgorithm])
        ? HASH_AND_SIGN[digestAlgorithm]
        : undefined;
    if (hashAndSign !== undefined && !this.available.has(CKM.RSA_PKCS)) {
      return this.signWith({ mechanism: hashAndSign }, message);
    }
    const digest = new Uint8Array(createHash(DIGEST_NODE_NAME[digestAlgorithm]).update(message).digest());
    try {
      return await this.signDigest(digest, digestAlgorithm, scheme);
    } catch (e) {
      if (hashAndSign === undefined || !isKelidError(e, 'ERR_DEVICE_ERROR')) throw e;
      return this.signWith({ mechanism: hashAndSign }, message);
    }
  }

  /** What the token signs for a digest: the DigestInfo (RSA PKCS#1 v1.5) or the digest itself. */
  private input(digest: Uint8Array, digestAlgorithm: DigestAlgorithm, scheme: SignatureScheme): Uint8Array {
    if (digest.length !== DIGEST_LENGTH[digestAlgorithm]) {
      throw new KelidError(
        'ERR_INVALID_INPUT',
        `a ${digestAlgorithm} digest is ${DIGEST_LENGTH[digestAlgorithm]} bytes`,
      );
    }
    // A copy of exactly the digest: a Buffer may be a view into Node's 8 KiB pool, and the IPC to the
    // module host would send the whole pool with every digest.
    return scheme === 'RSASSA-PKCS1-v1_5'
      ? encodeDigestInfo(digest, digestAlgorithm)
      : new Uint8Array(digest);
  }

  private output(signature: Uint8Array): Uint8Array {
    return this.keyType === 'EC' ? ecdsaRawToDer(signature) : signature;
  }

  /**
   * Sign many digests in order: the host signs runs of them per call (one IPC round trip per run of
   * about {@link SIGN_RUN_BUDGET_MS}, not per signature). `signal` is checked between runs; the
   * signatures made before it fired are returned.
   */
  async signDigests(
    digests: readonly Uint8Array[],
    digestAlgorithm: DigestAlgorithm,
    scheme: SignatureScheme,
    signal?: { readonly aborted: boolean },
  ): Promise<Uint8Array[]> {
    const mechanism = mechanismFor(this.keyType, scheme, digestAlgorithm, this.available);
    const inputs = digests.map((d) => this.input(d, digestAlgorithm, scheme));
    const out: Uint8Array[] = [];
    if (this.contextPin !== undefined) {
      // Always-authenticate keys need a context login per signature: one at a time.
      for (const d of digests) {
        if (signal?.aborted) break;
        out.push(await this.signDigest(d, digestAlgorithm, scheme));
      }
      return out;
    }
    // Send about twice what the last run signed, so little is sent twice.
    let send = SIGN_RUN_FIRST_ITEMS;
    while (out.length < inputs.length && !signal?.aborted) {
      const { signatures } = await this.session.call('signMany', {
        mechanism,
        key: this.key.handle,
        data: inputs.slice(out.length, out.length + send),
        budgetMs: SIGN_RUN_BUDGET_MS,
      });
      if (signatures.length === 0) throw new KelidError('ERR_INTERNAL', 'the module host signed nothing');
      for (const s of signatures) out.push(this.output(s));
      send = Math.min(SIGN_RUN_MAX_ITEMS, Math.max(SIGN_RUN_FIRST_ITEMS, 2 * signatures.length));
    }
    return out;
  }

  async signDigest(
    digest: Uint8Array,
    digestAlgorithm: DigestAlgorithm,
    scheme: SignatureScheme,
  ): Promise<Uint8Array> {
    const data = this.input(digest, digestAlgorithm, scheme);
    return this.signWith(mechanismFor(this.keyType, scheme, digestAlgorithm, this.available), data);
  }

  private async signWith(mechanism: MechanismSpec, data: Uint8Array): Promise<Uint8Array> {
    const params: {
      mechanism: MechanismSpec;
      key: string;
      data: Uint8Array;
      contextPin?: string | null;
    } = {
      mechanism,
      key: this.key.handle,
      data,
    };
    if (this.contextPin !== undefined) params.contextPin = this.contextPin;
    const { signature } = await this.session.call('sign', params);
    return this.output(signature);
  }
}
