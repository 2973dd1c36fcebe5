import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { DigestAlgorithm, SignatureScheme } from '../../../src/model/types.js';
import { authSignedData, createAuthToken, verifyAuthToken } from '../../../src/signing/auth-token.js';
import type { DigestSigner } from '../../../src/pki/signer.js';

const origin = 'https://bank.example';
const nonce = new Uint8Array(randomBytes(32));

// These paths fail before any signature is made: a signer that must not be called.
const unusedSigner: DigestSigner = {
  publicKey: new Uint8Array(
    generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'der', type: 'spki' }),
  ),
  keyType: 'EC',
  signDigest(_d: Uint8Array, _a: DigestAlgorithm, _s: SignatureScheme): Promise<Uint8Array> {
    throw new Error('must not be called');
  },
};

function goodShape(): Record<string, unknown> {
  return {
    format: 'kelid-auth:1',
    origin,
    certificate: Buffer.from('not really a certificate').toString('base64'),
    signatureAlgorithm: 'ES256',
    signature: Buffer.from('sig').toString('base64'),
  };
}

describe('authSignedData', () => {
  it('is SHA-256(origin UTF-8) followed by SHA-256(nonce)', () => {
    const persianOrigin = 'https://بانک.example';
    const data = authSignedData(persianOrigin, nonce);
    expect(data).toHaveLength(64);
    expect(Buffer.from(data.subarray(0, 32))).toEqual(
      createHash('sha256').update(Buffer.from(persianOrigin, 'utf8')).digest(),
    );
    expect(Buffer.from(data.subarray(32))).toEqual(createHash('sha256').update(nonce).digest());
  });
});

describe('createAuthToken', () => {
  describe('#createAuthToken', () => {
    it.each([0, 31, 65])('refuses a nonce of %i bytes (ERR_INVALID_INPUT)', async (n) => {
      await expect(
        createAuthToken({
          signer: unusedSigner,
          certificate: new Uint8Array(1),
          origin,
          nonce: new Uint8Array(n),
        }),
      ).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
    });

    it('refuses an empty origin and a non-certificate (ERR_INVALID_INPUT)', async () => {
      await expect(
        createAuthToken({ signer: unusedSigner, certificate: new Uint8Array(1), origin: '', nonce }),
      ).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
      await expect(
        createAuthToken({ signer: unusedSigner, certificate: new Uint8Array(10), origin, nonce }),
      ).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
    });
  });
});

describe('verifyAuthToken', () => {
  describe('#verifyAuthToken', () => {
    // The shape checks come before the trust check: no anchors needed to reach them.
    const options = { expectedOrigin: origin, expectedNonce: nonce, dangerouslyAcceptAnyIssuer: true };

    it('refuses to verify without trust anchors (ERR_INVALID_INPUT)', async () => {
      for (const trustedRoots of [undefined, []]) {
        await expect(
          verifyAuthToken(goodShape(), { expectedOrigin: origin, expectedNonce: nonce, trustedRoots }),
        ).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
      }
    });

    it.each<[string, unknown, string]>([
      ['null', null, 'format'],
      ['a string', 'kelid-auth:1', 'format'],
      ['another format', { ...goodShape(), format: 'kelid-auth:2' }, 'format'],
      ['a missing origin', { ...goodShape(), origin: undefined }, 'format'],
      ['an unknown algorithm', { ...goodShape(), signatureAlgorithm: 'none' }, 'algorithm'],
      ['an inherited algorithm name', { ...goodShape(), signatureAlgorithm: 'toString' }, 'algorithm'],
      ['a certificate that is not base64', { ...goodShape(), certificate: 'abc$' }, 'format'],
      ['an empty signature', { ...goodShape(), signature: '' }, 'format'],
      [
        'an origin that only starts like the expected one',
        { ...goodShape(), origin: `${origin}.evil` },
        'origin',
      ],
      ['an origin with other case', { ...goodShape(), origin: origin.toUpperCase() }, 'origin'],
      ['bytes that are not a certificate', goodShape(), 'format'],
    ])('refuses %s (ERR_AUTH_TOKEN_INVALID)', async (_name, token, reason) => {
      await expect(verifyAuthToken(token, options)).rejects.toMatchObject({
        code: 'ERR_AUTH_TOKEN_INVALID',
        data: { reason },
      });
    });
  });
});
