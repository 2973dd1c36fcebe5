// A DigestSigner backed by a node:crypto private key, for tests that need a signer without a token.
// It signs precomputed digests the way a PKCS#11 token does with CKM_RSA_PKCS (DigestInfo + PKCS#1
// v1.5 padding), CKM_RSA_PKCS_PSS (salt = hash length, MGF1 with the same hash) and CKM_ECDSA, and
// returns ECDSA signatures DER-encoded as the DigestSigner role requires.
import {
  constants,
  createECDH,
  createHash,
  createPublicKey,
  generateKeyPairSync,
  privateEncrypt,
  randomBytes,
} from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { KelidError } from '../../src/model/errors.js';
import type { DigestAlgorithm, SignatureScheme } from '../../src/model/types.js';
import type { DigestSigner } from '../../src/pki/signer.js';
import { DIGEST_LENGTH, DIGEST_NODE_NAME, ecdsaRawToDer, encodeDigestInfo } from '../../src/pki/der.js';

export type NodeSignerAlgorithm =
  { name: 'RSA'; modulusLength: number } | { name: 'EC'; namedCurve: 'P-256' | 'P-384' | 'P-521' };

interface CurveParams {
  nodeName: string;
  size: number;
  order: bigint;
}

const CURVES: Record<string, CurveParams> = {
  'P-256': {
    nodeName: 'prime256v1',
    size: 32,
    order: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
  },
  'P-384': {
    nodeName: 'secp384r1',
    size: 48,
    order:
      0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
  },
  'P-521': {
    nodeName: 'secp521r1',
    size: 66,
    order:
      0x01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409n,
  },
};

function toBigInt(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt(`0x${Buffer.from(bytes).toString('hex')}`);
}

function toBytes(value: bigint, size: number): Buffer {
  return Buffer.from(value.toString(16).padStart(size * 2, '0'), 'hex');
}

function bitLength(n: bigint): number {
  return n.toString(2).length;
}

function modPow(base: bigint, exp: bigint, mod: bigint): bigint {
  let result = 1n;
  let b = base % mod;
  for (let e = exp; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % mod;
    b = (b * b) % mod;
  }
  return result;
}

function mgf1(seed: Buffer, length: number, hash: string): Buffer {
  const out: Buffer[] = [];
  for (let counter = 0; out.length * createHash(hash).digest().length < length; counter++) {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(counter);
    out.push(createHash(hash).update(seed).update(c).digest());
  }
  return Buffer.concat(out).subarray(0, length);
}

export class NodeDigestSigner implements DigestSigner {
  readonly publicKey: Uint8Array;
  readonly keyType: 'RSA' | 'EC';
  /** Every signDigest call, in order (for tests that check what was signed). */
  readonly calls: Array<{ digest: Uint8Array; digestAlgorithm: DigestAlgorithm; scheme: SignatureScheme }> =
    [];

  constructor(readonly privateKey: KeyObject) {
    const type = privateKey.asymmetricKeyType;
    if (privateKey.type !== 'private' || (type !== 'rsa' && type !== 'ec')) {
      throw new TypeError('NodeDigestSigner needs an RSA or EC private key');
    }
    this.keyType = type === 'rsa' ? 'RSA' : 'EC';
    this.publicKey = new Uint8Array(createPublicKey(privateKey).export({ type: 'spki', format: 'der' }));
  }

  static generate(algorithm: NodeSignerAlgorithm): NodeDigestSigner {
    const { privateKey } =
      algorithm.name === 'RSA'
        ? generateKeyPairSync('rsa', { modulusLength: algorithm.modulusLength })
        : generateKeyPairSync('ec', { namedCurve: algorithm.namedCurve });
    return new NodeDigestSigner(privateKey);
  }

  get publicKeyObject(): KeyObject {
    return createPublicKey(this.privateKey);
  }

  /** PKCS#8 PEM of the private key, for handing to openssl in cross-checks. */
  privateKeyPem(): string {
    return this.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  }

  async signDigest(
    digest: Uint8Array,
    digestAlgorithm: DigestAlgorithm,
    scheme: SignatureScheme,
  ): Promise<Uint8Array> {
    if (digest.length !== DIGEST_LENGTH[digestAlgorithm]) {
      throw new KelidError('ERR_INVALID_INPUT', `digest length does not match ${digestAlgorithm}`);
    }
    if ((this.keyType === 'EC') !== (scheme === 'ECDSA')) {
      throw new KelidError(
        'ERR_MECHANISM_UNSUPPORTED',
        `${scheme} is not available for ${this.keyType} keys`,
      );
    }
    this.calls.push({ digest: digest.slice(), digestAlgorithm, scheme });
    switch (scheme) {
      case 'RSASSA-PKCS1-v1_5':
        return new Uint8Array(
          privateEncrypt(
            { key: this.privateKey, padding: constants.RSA_PKCS1_PADDING },
            encodeDigestInfo(digest, digestAlgorithm),
          ),
        );
      case 'RSA-PSS':
        return this.signPss(digest, digestAlgorithm);
      case 'ECDSA':
        return this.signEcdsa(digest);
    }
  }

  // EMSA-PSS-ENCODE (RFC 8017 section 9.1.1) followed by the raw RSA private-key operation.
  private signPss(mHash: Uint8Array, digestAlgorithm: DigestAlgorithm): Uint8Array {
    const hash = DIGEST_NODE_NAME[digestAlgorithm];
    const hLen = DIGEST_LENGTH[digestAlgorithm];
    const modBits = this.privateKey.asymmetricKeyDetails!.modulusLength!;
    const k = Math.ceil(modBits / 8);
    const emBits = modBits - 1;
    const emLen = Math.ceil(emBits / 8);
    if (emLen < 2 * hLen + 2) {
      throw new KelidError(
        'ERR_MECHANISM_UNSUPPORTED',
        `the key is too small for RSA-PSS with ${digestAlgorithm}`,
      );
    }
    const salt = randomBytes(hLen);
    const h = createHash(hash).update(Buffer.alloc(8)).update(mHash).update(salt).digest();
    const db = Buffer.concat([Buffer.alloc(emLen - 2 * hLen - 2), Buffer.of(1), salt]);
    const mask = mgf1(h, emLen - hLen - 1, hash);
    for (let i = 0; i < db.length; i++) db[i]! ^= mask[i]!;
    db[0]! &= 0xff >> (8 * emLen - emBits);
    const em = Buffer.concat([Buffer.alloc(k - emLen), db, h, Buffer.of(0xbc)]);
    return new Uint8Array(privateEncrypt({ key: this.privateKey, padding: constants.RSA_NO_PADDING }, em));
  }

  // ECDSA over a precomputed digest: k·G comes from node's ECDH, the rest is modular arithmetic.
  private signEcdsa(digest: Uint8Array): Uint8Array {
    const jwk = this.privateKey.export({ format: 'jwk' });
    const curve = CURVES[jwk.crv ?? ''];
    if (!curve) throw new KelidError('ERR_MECHANISM_UNSUPPORTED', `unsupported curve ${jwk.crv}`);
    const { order: n, size } = curve;
    const d = toBigInt(Buffer.from(jwk.d!, 'base64url'));
    const qlen = bitLength(n);
    let e = toBigInt(digest);
    if (digest.length * 8 > qlen) e >>= BigInt(digest.length * 8 - qlen);
    for (;;) {
      const k = (toBigInt(randomBytes(size + 16)) % (n - 1n)) + 1n;
      const ecdh = createECDH(curve.nodeName);
      ecdh.setPrivateKey(toBytes(k, size));
      const point = ecdh.getPublicKey();
      const r = toBigInt(point.subarray(1, 1 + size)) % n;
      if (r === 0n) continue;
      const s = (modPow(k, n - 2n, n) * ((e + r * d) % n)) % n;
      if (s === 0n) continue;
      return ecdsaRawToDer(Buffer.concat([toBytes(r, size), toBytes(s, size)]));
    }
  }
}
