import { constants, createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { DigestAlgorithm, SignatureScheme } from '../../../src/model/types.js';
import { verifyDigestSignature } from '../../../src/signing/digest-verify.js';

const NODE_HASH: Record<DigestAlgorithm, string> = {
  'SHA-256': 'sha256',
  'SHA-384': 'sha384',
  'SHA-512': 'sha512',
};

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsaOdd = generateKeyPairSync('rsa', { modulusLength: 2049 });
const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });

type Pair = typeof rsa;
const CASES: Array<[string, Pair, SignatureScheme, DigestAlgorithm]> = [
  ['RSA-2048', rsa, 'RSASSA-PKCS1-v1_5', 'SHA-256'],
  ['RSA-2048', rsa, 'RSASSA-PKCS1-v1_5', 'SHA-512'],
  ['RSA-2048', rsa, 'RSA-PSS', 'SHA-256'],
  ['RSA-2048', rsa, 'RSA-PSS', 'SHA-384'],
  ['RSA-2049', rsaOdd, 'RSA-PSS', 'SHA-256'],
  ['P-256', p256, 'ECDSA', 'SHA-256'],
  ['P-256', p256, 'ECDSA', 'SHA-384'],
  ['P-256', p256, 'ECDSA', 'SHA-512'],
  ['P-384', p384, 'ECDSA', 'SHA-384'],
  ['P-384', p384, 'ECDSA', 'SHA-256'],
];

function nodeSign(pair: Pair, scheme: SignatureScheme, alg: DigestAlgorithm, data: Uint8Array): Uint8Array {
  const hash = NODE_HASH[alg];
  if (scheme === 'RSA-PSS') {
    const saltLength = createHash(hash).digest().length;
    return sign(hash, data, { key: pair.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength });
  }
  return sign(hash, data, { key: pair.privateKey, dsaEncoding: 'der' });
}

describe('verifyDigestSignature', () => {
  it.each(CASES)(
    'accepts node:crypto signatures (%s, %s, %s) and refuses altered ones',
    async (_n, pair, scheme, alg) => {
      for (let i = 0; i < 5; i++) {
        const data = randomBytes(100);
        const digest = createHash(NODE_HASH[alg]).update(data).digest();
        const signature = nodeSign(pair, scheme, alg, data);
        expect(await verifyDigestSignature(pair.publicKey, scheme, alg, digest, signature)).toBe(true);
        const otherDigest = Uint8Array.from(digest);
        otherDigest[3]! ^= 1;
        expect(await verifyDigestSignature(pair.publicKey, scheme, alg, otherDigest, signature)).toBe(false);
        const badSig = Uint8Array.from(signature);
        badSig[badSig.length - 2]! ^= 1;
        expect(await verifyDigestSignature(pair.publicKey, scheme, alg, digest, badSig)).toBe(false);
      }
    },
  );

  it('refuses a signature by another key, of another scheme, garbage and a digest of the wrong length', async () => {
    const data = randomBytes(10);
    const digest = createHash('sha256').update(data).digest();
    const byP256 = nodeSign(p256, 'ECDSA', 'SHA-256', data);
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(await verifyDigestSignature(other.publicKey, 'ECDSA', 'SHA-256', digest, byP256)).toBe(false);
    const pkcs1 = nodeSign(rsa, 'RSASSA-PKCS1-v1_5', 'SHA-256', data);
    expect(await verifyDigestSignature(rsa.publicKey, 'RSA-PSS', 'SHA-256', digest, pkcs1)).toBe(false);
    expect(await verifyDigestSignature(rsa.publicKey, 'ECDSA', 'SHA-256', digest, pkcs1)).toBe(false);
    expect(await verifyDigestSignature(p256.publicKey, 'ECDSA', 'SHA-256', digest, randomBytes(70))).toBe(
      false,
    );
    expect(
      await verifyDigestSignature(rsa.publicKey, 'RSASSA-PKCS1-v1_5', 'SHA-256', digest, randomBytes(256)),
    ).toBe(false);
    expect(await verifyDigestSignature(p256.publicKey, 'ECDSA', 'SHA-384', digest, byP256)).toBe(false);
  });
});
