import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { DigestAlgorithm, SignatureScheme } from '../../../src/model/types.js';
import { signCms, type CmsSignOptions } from '../../../src/signing/cms.js';
import type { DigestSigner } from '../../../src/pki/signer.js';

// Input validation happens before the certificate or the signer is touched.
function signer(keyType: 'RSA' | 'EC'): DigestSigner {
  const { publicKey } =
    keyType === 'EC'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : generateKeyPairSync('rsa', { modulusLength: 1024 });
  return {
    publicKey: new Uint8Array(publicKey.export({ format: 'der', type: 'spki' })),
    keyType,
    signDigest(_d: Uint8Array, _a: DigestAlgorithm, _s: SignatureScheme): Promise<Uint8Array> {
      throw new Error('must not be called');
    },
  };
}

const ec = signer('EC');
const base: CmsSignOptions = { signer: ec, certificate: new Uint8Array(0), digestAlgorithm: 'SHA-256' };

describe('signCms', () => {
  describe('#signCms', () => {
    it.each<[string, Partial<CmsSignOptions>]>([
      ['neither content nor digest', {}],
      ['both content and digest', { content: new Uint8Array(3), digest: new Uint8Array(32) }],
      ['a digest shorter than SHA-256', { digest: new Uint8Array(31) }],
      ['a SHA-256 digest for SHA-384', { digest: new Uint8Array(32), digestAlgorithm: 'SHA-384' }],
      ['an attached signature over a digest', { digest: new Uint8Array(32), detached: false }],
      [
        'an unknown digest algorithm',
        { content: new Uint8Array(3), digestAlgorithm: 'SHA-1' as DigestAlgorithm },
      ],
      ['RSA-PSS with an EC key', { content: new Uint8Array(3), scheme: 'RSA-PSS' }],
      ['ECDSA with an RSA key', { content: new Uint8Array(3), scheme: 'ECDSA', signer: signer('RSA') }],
      ['an invalid signingTime', { content: new Uint8Array(3), signingTime: new Date(Number.NaN) }],
      ['bytes that are not a certificate', { content: new Uint8Array(3) }],
    ])('refuses %s (ERR_INVALID_INPUT)', async (_name, patch) => {
      await expect(signCms({ ...base, ...patch })).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
    });
  });
});
