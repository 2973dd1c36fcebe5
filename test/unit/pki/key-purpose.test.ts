import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../src/config.js';
import { allowedUses, assertCertificateUse, keyPurposeOf } from '../../../src/pki/key-purpose.js';
import type { DualUseMode, KeyPurpose } from '../../../src/pki/key-purpose.js';

describe('keyPurposeOf', () => {
  it.each<[string[], string[], KeyPurpose]>([
    [['digitalSignature', 'nonRepudiation'], [], 'signing'],
    [['nonRepudiation'], [], 'signing'],
    [['contentCommitment'], [], 'signing'],
    [['digitalSignature'], ['emailProtection'], 'signing'],
    [['digitalSignature'], ['documentSigning', '1.2.3.4'], 'signing'],
    [[], ['emailProtection'], 'signing'],
    [['digitalSignature'], ['clientAuth'], 'authentication'],
    [['digitalSignature'], ['clientAuth', 'emailProtection'], 'authentication'],
    [[], ['clientAuth'], 'authentication'],
    [['digitalSignature'], [], 'authentication'],
    [['digitalSignature', 'keyEncipherment'], ['1.3.6.1.5.5.7.3.2'], 'authentication'],
    [['digitalSignature', 'nonRepudiation'], ['clientAuth'], 'dual-use'],
    [['nonRepudiation'], ['clientAuth', 'emailProtection'], 'dual-use'],
    [['digitalSignature', 'nonRepudiation'], ['anyExtendedKeyUsage'], 'dual-use'],
    [[], [], 'dual-use'],
    [['keyEncipherment'], ['clientAuth'], 'none'],
    [['keyCertSign', 'cRLSign'], [], 'none'],
  ])('keyUsage %j, extendedKeyUsage %j → %s', (keyUsage, extendedKeyUsage, purpose) => {
    expect(keyPurposeOf({ keyUsage, extendedKeyUsage })).toBe(purpose);
  });
});

describe('allowedUses', () => {
  it('never gives one certificate both a raw signature and a login, in any mode', () => {
    for (const purpose of ['signing', 'authentication', 'dual-use', 'none'] as const) {
      for (const mode of ['signing', 'authentication', 'cms-and-authentication'] as const) {
        const uses = allowedUses(purpose, mode);
        expect(uses.includes('raw') && uses.includes('authentication')).toBe(false);
      }
    }
  });

  it.each<[DualUseMode, string[]]>([
    ['signing', ['raw', 'cms']],
    ['authentication', ['authentication']],
    ['cms-and-authentication', ['cms', 'authentication']],
  ])('dual-use under %s → %j', (mode, uses) => {
    expect(allowedUses('dual-use', mode)).toEqual(uses);
  });
});

describe('assertCertificateUse', () => {
  it('throws ERR_KEY_PURPOSE naming the purpose and the use', () => {
    const login = { keyUsage: ['digitalSignature'], extendedKeyUsage: ['clientAuth'] };
    expect(() => assertCertificateUse(login, 'raw', 'signing')).toThrow(
      expect.objectContaining({
        code: 'ERR_KEY_PURPOSE',
        data: { keyPurpose: 'authentication', use: 'raw' },
      }),
    );
    expect(() => assertCertificateUse(login, 'authentication', 'signing')).not.toThrow();
  });
});

describe('config keyPurpose', () => {
  it('defaults to dualUse "signing" and refuses unknown values and keys', () => {
    expect(resolveConfig({}).keyPurpose).toEqual({ dualUse: 'signing' });
    expect(resolveConfig({ keyPurpose: { dualUse: 'cms-and-authentication' } }).keyPurpose.dualUse).toBe(
      'cms-and-authentication',
    );
    expect(() => resolveConfig({ keyPurpose: { dualUse: 'both' } })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_INPUT' }),
    );
    expect(() => resolveConfig({ keyPurpose: { dualUse: 'signing', raw: true } })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_INPUT' }),
    );
  });
});
