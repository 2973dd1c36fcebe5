import { X509Certificate, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthToken, DigestAlgorithm, SignatureScheme } from '../../../src/model/types.js';
import { authSignedData, createAuthToken, verifyAuthToken } from '../../../src/signing/auth-token.js';
import {
  AUTHENTICATION_LEAF,
  createSigningPki,
  issueWithDates,
  openssl,
  opensslStatus,
  type SigningPki,
} from './test-pki.js';

let dir: string;
let pki: SigningPki;
let expired: Uint8Array;
const origin = 'https://rp.example:8443';
const nonce = new Uint8Array(randomBytes(48));

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-auth-'));
  pki = await createSigningPki(dir, AUTHENTICATION_LEAF);
  expired = await issueWithDates(
    pki,
    pki.leaves.p256.keyPath,
    'Expired Signer',
    new Date('2020-01-01T00:00:00Z'),
    new Date('2020-02-01T00:00:00Z'),
    AUTHENTICATION_LEAF,
  );
});

afterAll(async () => {
  await pki?.cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

function trust() {
  return { trustedRoots: [pki.root], intermediates: [pki.intermediate] };
}

function flipSignatureByte(token: AuthToken): AuthToken {
  const sig = Buffer.from(token.signature, 'base64');
  sig[sig.length - 5]! ^= 0x01;
  return { ...token, signature: sig.toString('base64') };
}

const CASES: [
  kind: 'rsa' | 'p256' | 'p384',
  scheme: SignatureScheme | undefined,
  alg: DigestAlgorithm | undefined,
  name: string,
][] = [
  ['rsa', undefined, undefined, 'RS256'],
  ['rsa', 'RSA-PSS', 'SHA-256', 'PS256'],
  ['rsa', 'RSASSA-PKCS1-v1_5', 'SHA-512', 'RS512'],
  ['p256', undefined, undefined, 'ES256'],
  ['p384', undefined, undefined, 'ES384'],
];

describe('createAuthToken', () => {
  describe('#createAuthToken', () => {
    it.each(CASES)(
      'signs (%s, %s, %s) as %s, and openssl dgst -verify accepts the signature',
      async (kind, scheme, alg, name) => {
        const leaf = pki.leaves[kind];
        const token = await createAuthToken({
          signer: leaf.signer,
          certificate: leaf.der,
          origin,
          nonce,
          scheme,
          digestAlgorithm: alg,
        });
        expect(token).toMatchObject({ format: 'kelid-auth:1', origin, signatureAlgorithm: name });
        expect(Buffer.from(token.certificate, 'base64')).toEqual(Buffer.from(leaf.der));

        const hash = `-sha${name.slice(2)}`;
        fs.writeFileSync(path.join(dir, `${name}.msg`), authSignedData(origin, nonce));
        fs.writeFileSync(path.join(dir, `${name}.sig`), Buffer.from(token.signature, 'base64'));
        openssl(['x509', '-in', leaf.certPath, '-noout', '-pubkey', '-out', `${name}.pub`], dir);
        const pss = name.startsWith('PS')
          ? ['-sigopt', 'rsa_padding_mode:pss', '-sigopt', `rsa_pss_saltlen:${Number(name.slice(2)) / 8}`]
          : [];
        const result = opensslStatus(
          ['dgst', hash, '-verify', `${name}.pub`, ...pss, '-signature', `${name}.sig`, `${name}.msg`],
          dir,
        );
        expect(result.output).toContain('Verified OK');
      },
    );

    it('refuses a certificate of another key (ERR_CERTIFICATE_MISMATCH)', async () => {
      await expect(
        createAuthToken({ signer: pki.leaves.p256.signer, certificate: pki.leaves.p384.der, origin, nonce }),
      ).rejects.toMatchObject({ code: 'ERR_CERTIFICATE_MISMATCH' });
    });

    it('refuses a hash that does not fit the curve (ERR_INVALID_INPUT)', async () => {
      await expect(
        createAuthToken({
          signer: pki.leaves.p256.signer,
          certificate: pki.leaves.p256.der,
          origin,
          nonce,
          digestAlgorithm: 'SHA-384',
        }),
      ).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
    });
  });
});

describe('verifyAuthToken', () => {
  describe('#verifyAuthToken', () => {
    it.each(CASES)(
      'accepts a good token (%s, %s, %s → %s) chained to the trusted root',
      async (kind, scheme, alg, name) => {
        const leaf = pki.leaves[kind];
        const token = await createAuthToken({
          signer: leaf.signer,
          certificate: leaf.der,
          origin,
          nonce,
          scheme,
          digestAlgorithm: alg,
        });
        // A relying party receives JSON.
        const received: unknown = JSON.parse(JSON.stringify(token));
        const result = await verifyAuthToken(received, {
          expectedOrigin: origin,
          expectedNonce: nonce,
          ...trust(),
        });
        const x509 = new X509Certificate(leaf.der);
        expect(result.signatureAlgorithm).toBe(name);
        expect(result.origin).toBe(origin);
        expect(result.certificate.subject).toContain(`CN=Signer ${kind}`);
        expect(result.certificate.serialNumber).toBe(x509.serialNumber.toUpperCase());
        expect(result.certificate.notAfter.getTime()).toBe(new Date(x509.validTo).getTime());
      },
    );

    it('refuses to verify without roots; accepts without a trust check only with dangerouslyAcceptAnyIssuer', async () => {
      const leaf = pki.leaves.p256;
      const token = await createAuthToken({ signer: leaf.signer, certificate: leaf.der, origin, nonce });
      await expect(
        verifyAuthToken(token, { expectedOrigin: origin, expectedNonce: nonce }),
      ).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
      await expect(
        verifyAuthToken(token, {
          expectedOrigin: origin,
          expectedNonce: nonce,
          dangerouslyAcceptAnyIssuer: true,
        }),
      ).resolves.toMatchObject({
        signatureAlgorithm: 'ES256',
      });
    });

    it('refuses a token for another origin (reason origin)', async () => {
      const leaf = pki.leaves.rsa;
      const token = await createAuthToken({ signer: leaf.signer, certificate: leaf.der, origin, nonce });
      await expect(
        verifyAuthToken(token, { expectedOrigin: 'https://rp.example', expectedNonce: nonce, ...trust() }),
      ).rejects.toMatchObject({ code: 'ERR_AUTH_TOKEN_INVALID', data: { reason: 'origin' } });
      // Rewriting the origin field does not help: the signature covers the origin.
      await expect(
        verifyAuthToken(
          { ...token, origin: 'https://rp.example' },
          { expectedOrigin: 'https://rp.example', expectedNonce: nonce, ...trust() },
        ),
      ).rejects.toMatchObject({ code: 'ERR_AUTH_TOKEN_INVALID', data: { reason: 'signature' } });
    });

    it('refuses a token for another nonce (reason signature)', async () => {
      const leaf = pki.leaves.p384;
      const token = await createAuthToken({ signer: leaf.signer, certificate: leaf.der, origin, nonce });
      const otherNonce = Uint8Array.from(nonce);
      otherNonce[0]! ^= 0x01;
      await expect(
        verifyAuthToken(token, { expectedOrigin: origin, expectedNonce: otherNonce, ...trust() }),
      ).rejects.toMatchObject({ code: 'ERR_AUTH_TOKEN_INVALID', data: { reason: 'signature' } });
    });

    it.each(['rsa', 'p256'] as const)('refuses a modified signature (%s)', async (kind) => {
      const leaf = pki.leaves[kind];
      const token = await createAuthToken({ signer: leaf.signer, certificate: leaf.der, origin, nonce });
      await expect(
        verifyAuthToken(flipSignatureByte(token), {
          expectedOrigin: origin,
          expectedNonce: nonce,
          ...trust(),
        }),
      ).rejects.toMatchObject({ code: 'ERR_AUTH_TOKEN_INVALID', data: { reason: 'signature' } });
    });

    it('refuses a token whose certificate was swapped for another one (reason signature)', async () => {
      const token = await createAuthToken({
        signer: pki.leaves.p256.signer,
        certificate: pki.leaves.p256.der,
        origin,
        nonce,
      });
      const other = await issueWithDates(
        pki,
        pki.leaves.p256.keyPath,
        'Same Key Other Cert',
        new Date('2024-01-01T00:00:00Z'),
        new Date('2099-01-01T00:00:00Z'),
        AUTHENTICATION_LEAF,
      );
      // Same key, other certificate: the signature still verifies (it binds the key, not the certificate).
      await expect(
        verifyAuthToken(
          { ...token, certificate: Buffer.from(other).toString('base64') },
          { expectedOrigin: origin, expectedNonce: nonce, ...trust() },
        ),
      ).resolves.toMatchObject({ certificate: { subject: 'CN=Same Key Other Cert' } });
      await expect(
        verifyAuthToken(
          {
            ...token,
            certificate: Buffer.from(pki.leaves.rsa.der).toString('base64'),
            signatureAlgorithm: 'RS256',
          },
          { expectedOrigin: origin, expectedNonce: nonce, ...trust() },
        ),
      ).rejects.toMatchObject({ code: 'ERR_AUTH_TOKEN_INVALID', data: { reason: 'signature' } });
    });

    it('refuses an algorithm that does not fit the key (reason algorithm)', async () => {
      const token = await createAuthToken({
        signer: pki.leaves.p384.signer,
        certificate: pki.leaves.p384.der,
        origin,
        nonce,
      });
      await expect(
        verifyAuthToken(
          { ...token, signatureAlgorithm: 'ES256' },
          { expectedOrigin: origin, expectedNonce: nonce, ...trust() },
        ),
      ).rejects.toMatchObject({ code: 'ERR_AUTH_TOKEN_INVALID', data: { reason: 'algorithm' } });
      await expect(
        verifyAuthToken(
          { ...token, signatureAlgorithm: 'RS384' },
          { expectedOrigin: origin, expectedNonce: nonce, ...trust() },
        ),
      ).rejects.toMatchObject({ code: 'ERR_AUTH_TOKEN_INVALID', data: { reason: 'algorithm' } });
    });

    it('refuses an expired certificate (ERR_CERTIFICATE_EXPIRED)', async () => {
      expect(new Date(new X509Certificate(expired).validTo).getTime()).toBeLessThan(Date.now());
      const token = await createAuthToken({
        signer: pki.leaves.p256.signer,
        certificate: expired,
        origin,
        nonce,
      });
      await expect(
        verifyAuthToken(token, { expectedOrigin: origin, expectedNonce: nonce, ...trust() }),
      ).rejects.toMatchObject({ code: 'ERR_CERTIFICATE_EXPIRED' });
      // The same token is fine at a time inside the certificate's validity (chain certificates excluded).
      await expect(
        verifyAuthToken(token, {
          expectedOrigin: origin,
          expectedNonce: nonce,
          now: new Date('2020-01-15T00:00:00Z'),
          dangerouslyAcceptAnyIssuer: true,
        }),
      ).resolves.toMatchObject({ signatureAlgorithm: 'ES256' });
    });

    it('refuses a valid certificate at a time after its notAfter (ERR_CERTIFICATE_EXPIRED)', async () => {
      const leaf = pki.leaves.rsa;
      const token = await createAuthToken({ signer: leaf.signer, certificate: leaf.der, origin, nonce });
      const later = new Date(Date.now() + 30 * 86_400_000);
      await expect(
        verifyAuthToken(token, { expectedOrigin: origin, expectedNonce: nonce, now: later, ...trust() }),
      ).rejects.toMatchObject({ code: 'ERR_CERTIFICATE_EXPIRED' });
    });

    it('refuses a certificate that does not chain to the trusted roots (reason untrusted)', async () => {
      const leaf = pki.leaves.p256;
      const token = await createAuthToken({ signer: leaf.signer, certificate: leaf.der, origin, nonce });
      // Missing intermediate.
      await expect(
        verifyAuthToken(token, { expectedOrigin: origin, expectedNonce: nonce, trustedRoots: [pki.root] }),
      ).rejects.toMatchObject({ code: 'ERR_AUTH_TOKEN_INVALID', data: { reason: 'untrusted' } });
      // Another root.
      const otherDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-auth-other-'));
      const other = await createSigningPki(otherDir);
      try {
        await expect(
          verifyAuthToken(token, {
            expectedOrigin: origin,
            expectedNonce: nonce,
            trustedRoots: [other.root],
            intermediates: [other.intermediate, pki.intermediate],
          }),
        ).rejects.toMatchObject({ code: 'ERR_AUTH_TOKEN_INVALID', data: { reason: 'untrusted' } });
      } finally {
        await other.cleanup();
        fs.rmSync(otherDir, { recursive: true, force: true });
      }
      // The intermediate alone is not a trust anchor unless listed as one.
      await expect(
        verifyAuthToken(token, {
          expectedOrigin: origin,
          expectedNonce: nonce,
          trustedRoots: [pki.intermediate],
        }),
      ).resolves.toMatchObject({ signatureAlgorithm: 'ES256' });
    });
  });
});
