import { constants, createHash, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { DigestAlgorithm } from '../../../src/model/types.js';
import { NodeDigestSigner } from '../../helpers/node-signer.js';

const HASHES: Array<[DigestAlgorithm, string, number]> = [
  ['SHA-256', 'sha256', 32],
  ['SHA-384', 'sha384', 48],
  ['SHA-512', 'sha512', 64],
];

const data = Buffer.from('the document');
const digestOf = (hash: string): Uint8Array => new Uint8Array(createHash(hash).update(data).digest());

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('NodeDigestSigner', () => {
  const rsa = NodeDigestSigner.generate({ name: 'RSA', modulusLength: 2048 });
  // 1537 bits: emLen is one octet shorter than the modulus, the EMSA-PSS edge case.
  const oddRsa = NodeDigestSigner.generate({ name: 'RSA', modulusLength: 1537 });

  describe('#signDigest', () => {
    it.each(HASHES)('makes RSASSA-PKCS1-v1_5 %s signatures node:crypto verifies', async (alg, hash) => {
      const sig = await rsa.signDigest(digestOf(hash), alg, 'RSASSA-PKCS1-v1_5');
      expect(verify(hash, data, rsa.publicKeyObject, sig)).toBe(true);
    });

    it.each(HASHES)('makes RSA-PSS %s signatures with salt = hash length', async (alg, hash, hLen) => {
      for (const signer of [rsa, oddRsa]) {
        const sig = await signer.signDigest(digestOf(hash), alg, 'RSA-PSS');
        const key = { key: signer.publicKeyObject, padding: constants.RSA_PKCS1_PSS_PADDING };
        expect(verify(hash, data, { ...key, saltLength: hLen }, sig)).toBe(true);
        expect(verify(hash, data, { ...key, saltLength: hLen + 1 }, sig)).toBe(false);
      }
    });

    it.each([
      ['P-256', 'SHA-256', 'sha256'],
      ['P-256', 'SHA-512', 'sha512'],
      ['P-384', 'SHA-384', 'sha384'],
      ['P-384', 'SHA-256', 'sha256'],
      ['P-521', 'SHA-512', 'sha512'],
    ] as const)(
      'makes DER ECDSA %s signatures over %s digests that node:crypto verifies',
      async (curve, alg, hash) => {
        const signer = NodeDigestSigner.generate({ name: 'EC', namedCurve: curve });
        for (let i = 0; i < 4; i++) {
          const sig = await signer.signDigest(digestOf(hash), alg, 'ECDSA');
          expect(sig[0]).toBe(0x30);
          expect(verify(hash, data, signer.publicKeyObject, sig)).toBe(true);
        }
      },
    );

    it('records each call', async () => {
      const signer = NodeDigestSigner.generate({ name: 'EC', namedCurve: 'P-256' });
      await signer.signDigest(digestOf('sha256'), 'SHA-256', 'ECDSA');
      expect(signer.calls).toEqual([
        { digest: digestOf('sha256'), digestAlgorithm: 'SHA-256', scheme: 'ECDSA' },
      ]);
    });

    it('refuses a digest of the wrong length', async () => {
      expect(await codeOf(rsa.signDigest(digestOf('sha256'), 'SHA-384', 'RSASSA-PKCS1-v1_5'))).toBe(
        'ERR_INVALID_INPUT',
      );
    });

    it('refuses a scheme that does not fit the key', async () => {
      expect(await codeOf(rsa.signDigest(digestOf('sha256'), 'SHA-256', 'ECDSA'))).toBe(
        'ERR_MECHANISM_UNSUPPORTED',
      );
    });
  });
});
