import { X509Certificate, createPrivateKey, randomBytes, sign } from 'node:crypto';
import * as fs from 'node:fs';
import { AsnConvert } from '@peculiar/asn1-schema';
import { AttributeValue, Certificate } from '@peculiar/asn1-x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthToken } from '../../../src/model/types.js';
import { createAuthToken, verifyAuthToken } from '../../../src/signing/auth-token.js';
import type { VerifyAuthTokenOptions } from '../../../src/signing/auth-token.js';
import { AUTHENTICATION_EXTENSIONS, CertChain, caExtensions } from '../../helpers/cert-chain.js';
import type { ChainCertificate } from '../../helpers/cert-chain.js';

// verifyAuthToken's trust and purpose checks against chains made by openssl: each CA or leaf below
// breaks one rule of RFC 5280 path validation or of the key-purpose rule, and the login is refused.

const origin = 'https://bank.example';
const nonce = new Uint8Array(randomBytes(32));
const SIGNING_ONLY = ['basicConstraints = critical,CA:false', 'keyUsage = critical,nonRepudiation'];
const DUAL_USE = [
  'basicConstraints = critical,CA:false',
  'keyUsage = critical,digitalSignature,nonRepudiation',
  'extendedKeyUsage = clientAuth,emailProtection',
];

let chain: CertChain;
let root: ChainCertificate;
let ca: ChainCertificate;

function token(leaf: ChainCertificate): Promise<AuthToken> {
  return createAuthToken({ signer: leaf.signer, certificate: leaf.der, origin, nonce });
}

function verify(t: AuthToken, more: Partial<VerifyAuthTokenOptions> = {}) {
  return verifyAuthToken(t, {
    expectedOrigin: origin,
    expectedNonce: nonce,
    trustedRoots: [root.der],
    intermediates: [ca.der],
    ...more,
  });
}

const untrusted = { code: 'ERR_AUTH_TOKEN_INVALID', data: { reason: 'untrusted' } };
const purpose = { code: 'ERR_AUTH_TOKEN_INVALID', data: { reason: 'purpose' } };

beforeAll(() => {
  chain = CertChain.create();
  root = chain.root('root', { subject: '/C=IR/O=Root/CN=Root' });
  ca = chain.issue('ca', root, { subject: '/C=IR/O=Bank/CN=Issuing CA', ext: caExtensions(0) });
});

afterAll(() => chain?.cleanup());

describe('verifyAuthToken', () => {
  describe('#verifyAuthToken trust anchors', () => {
    it('refuses to run without trustedRoots, or with none, unless dangerouslyAcceptAnyIssuer (ERR_INVALID_INPUT)', async () => {
      const leaf = chain.issue('anchorless', ca);
      const t = await token(leaf);
      const base = { expectedOrigin: origin, expectedNonce: nonce };
      await expect(verifyAuthToken(t, base)).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
      await expect(verifyAuthToken(t, { ...base, trustedRoots: [] })).rejects.toMatchObject({
        code: 'ERR_INVALID_INPUT',
      });
      await expect(verifyAuthToken(t, { ...base, dangerouslyAcceptAnyIssuer: true })).resolves.toMatchObject({
        origin,
      });
    });

    it('accepts a clientAuth leaf under root → CA (pathlen 0)', async () => {
      const leaf = chain.issue('alice', ca, { subject: '/C=IR/O=Bank/CN=alice' });
      const result = await verify(await token(leaf));
      expect(result.certificate.subject).toContain('CN=alice');
    });

    it('refuses a leaf whose intermediate is not a CA (basicConstraints cA false or absent)', async () => {
      for (const [name, ext] of [
        ['not-ca', ['basicConstraints = critical,CA:false', 'keyUsage = critical,keyCertSign']],
        ['no-bc', ['keyUsage = critical,keyCertSign']],
      ] as const) {
        const fake = chain.issue(name, root, { ext: [...ext] });
        const leaf = chain.issue(`${name}-leaf`, fake);
        await expect(verify(await token(leaf), { intermediates: [fake.der] })).rejects.toMatchObject(
          untrusted,
        );
      }
    });

    it('refuses a CA whose keyUsage lacks keyCertSign', async () => {
      const noSign = chain.issue('no-certsign', root, {
        ext: ['basicConstraints = critical,CA:true', 'keyUsage = critical,digitalSignature,cRLSign'],
      });
      const leaf = chain.issue('no-certsign-leaf', noSign);
      await expect(verify(await token(leaf), { intermediates: [noSign.der] })).rejects.toMatchObject(
        untrusted,
      );
    });

    it('refuses a path that exceeds a pathLenConstraint of 0 (root → CA pathlen 0 → sub-CA → leaf)', async () => {
      const sub = chain.issue('sub-ca', ca, { ext: caExtensions() });
      const leaf = chain.issue('sub-leaf', sub);
      await expect(verify(await token(leaf), { intermediates: [ca.der, sub.der] })).rejects.toMatchObject(
        untrusted,
      );
      // The same sub-CA under a CA that allows one more level is fine.
      const ca1 = chain.issue('ca-pathlen-1', root, { ext: caExtensions(1) });
      const sub1 = chain.issue('sub-ca-1', ca1, { ext: caExtensions() });
      const leaf1 = chain.issue('sub-leaf-1', sub1);
      await expect(verify(await token(leaf1), { intermediates: [ca1.der, sub1.der] })).resolves.toBeDefined();
    });

    it('refuses an intermediate that is expired at now', async () => {
      const shortCa = chain.issue('short-ca', root, { ext: caExtensions(0), days: 1 });
      const leaf = chain.issue('short-leaf', shortCa, { days: 20 });
      const t = await token(leaf);
      await expect(verify(t, { intermediates: [shortCa.der] })).resolves.toBeDefined();
      const later = new Date(Date.now() + 3 * 86_400_000);
      await expect(verify(t, { intermediates: [shortCa.der], now: later })).rejects.toMatchObject(untrusted);
    });

    it('refuses a subject outside a permitted directoryName subtree (C=IR, O=Bank)', async () => {
      const constrained = chain.issue('dir-ca', root, {
        subject: '/C=IR/O=Bank/CN=Bank CA',
        ext: [
          ...caExtensions(),
          'nameConstraints = critical,permitted;dirName:dir_sect',
          '[dir_sect]',
          'C = IR',
          'O = Bank',
        ],
      });
      const inside = chain.issue('dir-in', constrained, { subject: '/C=IR/O=Bank/CN=alice' });
      const outside = chain.issue('dir-out', constrained, { subject: '/C=IR/O=Evil/CN=mallory' });
      const opts = { intermediates: [constrained.der] };
      await expect(verify(await token(inside), opts)).resolves.toBeDefined();
      await expect(verify(await token(outside), opts)).rejects.toMatchObject(untrusted);
    });

    it('refuses a dNSName in an excluded subtree and an rfc822Name outside a permitted one', async () => {
      const constrained = chain.issue('dns-ca', root, {
        ext: [
          ...caExtensions(),
          'nameConstraints = critical,excluded;DNS:evil.example,permitted;email:.bank.example',
        ],
      });
      const opts = { intermediates: [constrained.der] };
      const ok = chain.issue('dns-ok', constrained, {
        ext: [
          ...AUTHENTICATION_EXTENSIONS,
          'subjectAltName = DNS:www.good.example,email:alice@mail.bank.example',
        ],
      });
      const badDns = chain.issue('dns-bad', constrained, {
        ext: [...AUTHENTICATION_EXTENSIONS, 'subjectAltName = DNS:login.evil.example'],
      });
      const badMail = chain.issue('mail-bad', constrained, {
        ext: [...AUTHENTICATION_EXTENSIONS, 'subjectAltName = email:mallory@evil.example'],
      });
      const badSubjectMail = chain.issue('mail-subject-bad', constrained, {
        subject: '/CN=mallory/emailAddress=mallory@evil.example',
      });
      await expect(verify(await token(ok), opts)).resolves.toBeDefined();
      for (const leaf of [badDns, badMail, badSubjectMail]) {
        await expect(verify(await token(leaf), opts)).rejects.toMatchObject(untrusted);
      }
    });

    it('refuses a critical name constraint of a type it does not check (iPAddress)', async () => {
      const constrained = chain.issue('ip-ca', root, {
        ext: [...caExtensions(), 'nameConstraints = critical,permitted;IP:10.0.0.0/255.0.0.0'],
      });
      const leaf = chain.issue('ip-leaf', constrained);
      await expect(verify(await token(leaf), { intermediates: [constrained.der] })).rejects.toMatchObject(
        untrusted,
      );
    });
  });

  describe('#verifyAuthToken key purpose', () => {
    it('refuses a signing certificate (nonRepudiation only), with a good chain (reason purpose)', async () => {
      const leaf = chain.issue('signer', ca, { ext: SIGNING_ONLY });
      await expect(verify(await token(leaf))).rejects.toMatchObject(purpose);
      // Not even with the loud opt-out of the trust check.
      await expect(
        verifyAuthToken(await token(leaf), {
          expectedOrigin: origin,
          expectedNonce: nonce,
          dangerouslyAcceptAnyIssuer: true,
        }),
      ).rejects.toMatchObject(purpose);
    });

    it('refuses digitalSignature + nonRepudiation without clientAuth (reason purpose)', async () => {
      const leaf = chain.issue('qualified', ca, {
        ext: ['basicConstraints = critical,CA:false', 'keyUsage = critical,digitalSignature,nonRepudiation'],
      });
      await expect(verify(await token(leaf))).rejects.toMatchObject(purpose);
    });

    it('accepts digitalSignature without any extendedKeyUsage', async () => {
      const leaf = chain.issue('plain-auth', ca, {
        ext: ['basicConstraints = critical,CA:false', 'keyUsage = critical,digitalSignature'],
      });
      await expect(verify(await token(leaf))).resolves.toBeDefined();
    });

    it('accepts a dual-use certificate only with acceptDualUseCertificates', async () => {
      const leaf = chain.issue('dual', ca, { ext: DUAL_USE });
      const t = await token(leaf);
      await expect(verify(t)).rejects.toMatchObject(purpose);
      await expect(verify(t, { acceptDualUseCertificates: true })).resolves.toMatchObject({ origin });
    });
  });
});

// Review of issue 13 (attacker's view): certificates a relying party must not accept, and encodings
// that must not turn a certificate into a login certificate.
describe('verifyAuthToken (review attacks)', () => {
  const UNKNOWN_CRITICAL = '1.3.6.1.4.1.99999.1 = critical,ASN1:NULL';

  it('refuses a leaf with a critical extension it does not understand (RFC 5280 6.1.3)', async () => {
    // A CA marks a certificate "only for X" with a critical extension: a verifier that cannot read
    // it must not use the certificate for anything, logins included.
    const leaf = chain.issue('critical-leaf', ca, { ext: [...AUTHENTICATION_EXTENSIONS, UNKNOWN_CRITICAL] });
    await expect(verify(await token(leaf))).rejects.toMatchObject(untrusted);
  });

  it('refuses a CA with a critical extension it does not understand', async () => {
    const odd = chain.issue('critical-ca', root, { ext: [...caExtensions(), UNKNOWN_CRITICAL] });
    const leaf = chain.issue('under-critical-ca', odd);
    await expect(verify(await token(leaf), { intermediates: [odd.der] })).rejects.toMatchObject(untrusted);
  });

  it('still accepts a leaf whose unknown extension is not critical', async () => {
    const leaf = chain.issue('noncritical-leaf', ca, {
      ext: [...AUTHENTICATION_EXTENSIONS, '1.3.6.1.4.1.99999.1 = ASN1:NULL'],
    });
    await expect(verify(await token(leaf))).resolves.toMatchObject({ origin });
  });

  it('refuses a subject whose value it cannot compare with an excluded directoryName (a NumericString O=1234)', async () => {
    // A name-constrained sub-CA (excluded C=IR, O=1234) issues a leaf whose O is the same text in a
    // string type outside DirectoryString (NumericString, which OpenSSL accepts in names). The relying
    // party reads "O=1234" (node:crypto decodes it), so the encoding must not carry the name past the
    // constraint.
    const constrained = chain.issue('excl-ca', root, {
      ext: [
        ...caExtensions(),
        'nameConstraints = critical,excluded;dirName:excl_sect',
        '[excl_sect]',
        'C = IR',
        'O = 1234',
      ],
    });
    const opts = { intermediates: [constrained.der] };
    const plain = chain.issue('excl-plain', constrained, { subject: '/C=IR/O=1234/CN=mallory' });
    await expect(verify(await token(plain), opts)).rejects.toMatchObject(untrusted);

    const cert = AsnConvert.parse(plain.der, Certificate);
    for (const rdn of cert.tbsCertificate.subject)
      for (const atv of rdn)
        if (atv.type === '2.5.4.10') {
          const numeric = Buffer.concat([Buffer.from([0x12, 4]), Buffer.from('1234', 'ascii')]);
          atv.value = new AttributeValue({ anyValue: new Uint8Array(numeric).buffer });
        }
    const tbs = Buffer.from(AsnConvert.serialize(cert.tbsCertificate));
    const caKey = createPrivateKey(fs.readFileSync(constrained.keyPath));
    cert.signatureValue = new Uint8Array(sign('sha256', tbs, caKey)).buffer;
    const der = new Uint8Array(AsnConvert.serialize(cert));
    const disguised = { ...plain, der };
    const t = await token(disguised);
    expect(new X509Certificate(der).subject).toContain('O=1234');
    await expect(verify(t, opts)).rejects.toMatchObject(untrusted);
  });

  it('held: a loop of cross-signed CAs with no way to a trusted root ends, untrusted', async () => {
    const a = chain.root('loop-a', { subject: '/CN=Loop A' });
    const b = chain.root('loop-b', { subject: '/CN=Loop B' });
    const aByB = chain.issue('loop-a-by-b', b, {
      subject: '/CN=Loop A',
      keyPath: a.keyPath,
      ext: caExtensions(),
    });
    const bByA = chain.issue('loop-b-by-a', a, {
      subject: '/CN=Loop B',
      keyPath: b.keyPath,
      ext: caExtensions(),
    });
    const leaf = chain.issue('loop-leaf', aByB);
    await expect(
      verify(await token(leaf), { intermediates: [aByB.der, bByA.der, a.der, b.der] }),
    ).rejects.toMatchObject(untrusted);
  });

  it('held: a self-signed root given only as an intermediate is no trust anchor', async () => {
    const other = chain.root('other-root', { subject: '/CN=Other Root' });
    const leaf = chain.issue('other-leaf', other);
    await expect(verify(await token(leaf), { intermediates: [other.der, ca.der] })).rejects.toMatchObject(
      untrusted,
    );
  });

  it('held: name constraints bind two levels down (a sub-CA inside the subtree issues a leaf outside it)', async () => {
    const constrained = chain.issue('nc2-ca', root, {
      subject: '/C=IR/O=Bank/CN=Bank CA',
      ext: [
        ...caExtensions(),
        'nameConstraints = critical,permitted;dirName:nc2_sect',
        '[nc2_sect]',
        'C = IR',
        'O = Bank',
      ],
    });
    const sub = chain.issue('nc2-sub', constrained, {
      subject: '/C=IR/O=Bank/CN=Branch CA',
      ext: caExtensions(),
    });
    const outside = chain.issue('nc2-out', sub, { subject: '/C=IR/O=Evil/CN=mallory' });
    const inside = chain.issue('nc2-in', sub, { subject: '/C=IR/O=Bank/CN=alice' });
    const opts = { intermediates: [constrained.der, sub.der] };
    await expect(verify(await token(inside), opts)).resolves.toBeDefined();
    await expect(verify(await token(outside), opts)).rejects.toMatchObject(untrusted);
  });

  it('held: a keyUsage with no bit set and no extendedKeyUsage is no login certificate; keyAgreement + clientAuth neither', async () => {
    const emptyKu = chain.issue('empty-ku', ca, {
      ext: ['basicConstraints = critical,CA:false', '2.5.29.15 = critical,DER:03:01:00'],
    });
    await expect(verify(await token(emptyKu))).rejects.toMatchObject(purpose);
    const agreement = chain.issue('agreement', ca, {
      ext: [
        'basicConstraints = critical,CA:false',
        'keyUsage = critical,keyAgreement',
        'extendedKeyUsage = clientAuth',
      ],
    });
    await expect(verify(await token(agreement))).rejects.toMatchObject(purpose);
  });
});
