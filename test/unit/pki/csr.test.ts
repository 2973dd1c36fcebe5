import { constants, createHash, createPublicKey, verify } from 'node:crypto';
import { CertificationRequest } from '@peculiar/asn1-csr';
import { AsnConvert } from '@peculiar/asn1-schema';
import { ExtendedKeyUsage, Extensions, KeyUsage, SubjectAlternativeName } from '@peculiar/asn1-x509';
import { describe, expect, it } from 'vitest';
import { KelidError } from '../../../src/model/errors.js';
import {
  createCsr,
  ipAddressBytes,
  resolveCsrSignatureAlgorithm,
  validateCsrRequest,
} from '../../../src/pki/csr.js';
import type { CsrOptions, CsrRequest } from '../../../src/pki/csr.js';
import { encodeName } from '../../../src/pki/dn.js';
import type { DigestSigner } from '../../../src/pki/signer.js';
import { NodeDigestSigner } from '../../helpers/node-signer.js';

const SUBJECT = 'CN=علی رضایی,O=کانون سردفتران,C=IR';

const signers = {
  rsa: NodeDigestSigner.generate({ name: 'RSA', modulusLength: 2048 }),
  p256: NodeDigestSigner.generate({ name: 'EC', namedCurve: 'P-256' }),
  p384: NodeDigestSigner.generate({ name: 'EC', namedCurve: 'P-384' }),
  p521: NodeDigestSigner.generate({ name: 'EC', namedCurve: 'P-521' }),
};

const SIG_OIDS: Record<string, { hash: string; pss?: boolean }> = {
  '1.2.840.113549.1.1.11': { hash: 'sha256' },
  '1.2.840.113549.1.1.12': { hash: 'sha384' },
  '1.2.840.113549.1.1.13': { hash: 'sha512' },
  '1.2.840.10045.4.3.2': { hash: 'sha256' },
  '1.2.840.10045.4.3.3': { hash: 'sha384' },
  '1.2.840.10045.4.3.4': { hash: 'sha512' },
};

/** Parse with asn1-csr and verify with node:crypto — none of our DER code involved. */
function parseAndVerify(der: Uint8Array, pss?: { hash: string; saltLength: number }): CertificationRequest {
  const csr = AsnConvert.parse(der, CertificationRequest);
  const spki = AsnConvert.serialize(csr.certificationRequestInfo.subjectPKInfo);
  const key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  const info = Buffer.from(csr.certificationRequestInfoRaw!);
  const signature = Buffer.from(csr.signature);
  const ok = pss
    ? verify(
        pss.hash,
        info,
        { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: pss.saltLength },
        signature,
      )
    : verify(SIG_OIDS[csr.signatureAlgorithm.algorithm]!.hash, info, key, signature);
  expect(ok).toBe(true);
  return csr;
}

function extensionsOf(csr: CertificationRequest): Extensions {
  const attr = csr.certificationRequestInfo.attributes.find((a) => a.type === '1.2.840.113549.1.9.14');
  return AsnConvert.parse(attr!.values[0]!, Extensions);
}

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('createCsr', () => {
  describe('#createCsr', () => {
    it.each([
      ['RSA', signers.rsa, '1.2.840.113549.1.1.11'],
      ['P-256', signers.p256, '1.2.840.10045.4.3.2'],
      ['P-384', signers.p384, '1.2.840.10045.4.3.3'],
      ['P-521', signers.p521, '1.2.840.10045.4.3.4'],
    ])('signs a %s request with the default algorithm', async (_label, signer, oid) => {
      const result = await createCsr({ signer, subject: SUBJECT });
      const csr = parseAndVerify(result.der);
      expect(csr.signatureAlgorithm.algorithm).toBe(oid);
      expect(Buffer.from(AsnConvert.serialize(csr.certificationRequestInfo.subjectPKInfo))).toEqual(
        Buffer.from(signer.publicKey),
      );
      expect(Buffer.from(AsnConvert.serialize(csr.certificationRequestInfo.subject))).toEqual(
        Buffer.from(encodeName(SUBJECT)),
      );
    });

    it('writes NULL parameters for sha256WithRSAEncryption and none for ECDSA', async () => {
      const rsa = AsnConvert.parse(
        (await createCsr({ signer: signers.rsa, subject: 'CN=x' })).der,
        CertificationRequest,
      );
      // asn1-x509 reads NULL parameters as null and absent ones as undefined.
      expect(rsa.signatureAlgorithm.parameters).toBeNull();
      const ec = AsnConvert.parse(
        (await createCsr({ signer: signers.p256, subject: 'CN=x' })).der,
        CertificationRequest,
      );
      expect(ec.signatureAlgorithm.parameters).toBeUndefined();
    });

    it.each([
      ['SHA-256', 'sha256', 32],
      ['SHA-384', 'sha384', 48],
      ['SHA-512', 'sha512', 64],
    ] as const)('signs RSA-PSS with %s and salt = hash length', async (digestAlgorithm, hash, saltLength) => {
      const result = await createCsr({
        signer: signers.rsa,
        subject: SUBJECT,
        signatureAlgorithm: { scheme: 'RSA-PSS', digestAlgorithm },
      });
      expect(result).toMatchObject({ scheme: 'RSA-PSS', digestAlgorithm });
      const csr = parseAndVerify(result.der, { hash, saltLength });
      expect(csr.signatureAlgorithm.algorithm).toBe('1.2.840.113549.1.1.10');
    });

    it('honours an explicit digest for RSASSA-PKCS1-v1_5', async () => {
      const result = await createCsr({
        signer: signers.rsa,
        subject: 'CN=x',
        signatureAlgorithm: { digestAlgorithm: 'SHA-512' },
      });
      expect(parseAndVerify(result.der).signatureAlgorithm.algorithm).toBe('1.2.840.113549.1.1.13');
      expect(signers.rsa.calls.at(-1)).toMatchObject({
        digestAlgorithm: 'SHA-512',
        scheme: 'RSASSA-PKCS1-v1_5',
      });
    });

    it('puts SANs, a critical keyUsage and extendedKeyUsage into an extensionRequest', async () => {
      const result = await createCsr({
        signer: signers.p256,
        subject: SUBJECT,
        subjectAltNames: [
          { type: 'email', value: 'ali@example.ir' },
          { type: 'dns', value: 'www.example.ir' },
          { type: 'uri', value: 'https://example.ir/ali' },
          { type: 'ip', value: '192.0.2.7' },
          { type: 'ip', value: '2001:db8::1' },
          { type: 'upn', value: 'علی@example.ir' },
        ],
        keyUsage: ['digitalSignature', 'contentCommitment', 'nonRepudiation'],
        extendedKeyUsage: ['clientAuth', 'documentSigning', 'smartcardLogon', '1.2.3.4', 'clientAuth'],
      });
      const exts = extensionsOf(parseAndVerify(result.der));
      const byId = new Map(exts.map((e) => [e.extnID, e]));

      const ku = byId.get('2.5.29.15')!;
      expect(ku.critical).toBe(true);
      expect(AsnConvert.parse(ku.extnValue, KeyUsage).toJSON()).toEqual([
        'digitalSignature',
        'nonRepudiation',
      ]);

      const eku = byId.get('2.5.29.37')!;
      expect(eku.critical).toBe(false);
      expect([...AsnConvert.parse(eku.extnValue, ExtendedKeyUsage)]).toEqual([
        '1.3.6.1.5.5.7.3.2',
        '1.3.6.1.5.5.7.3.36',
        '1.3.6.1.4.1.311.20.2.2',
        '1.2.3.4',
      ]);

      const san = [...AsnConvert.parse(byId.get('2.5.29.17')!.extnValue, SubjectAlternativeName)];
      expect(san.map((g) => g.rfc822Name ?? g.dNSName ?? g.uniformResourceIdentifier ?? g.iPAddress)).toEqual(
        ['ali@example.ir', 'www.example.ir', 'https://example.ir/ali', '192.0.2.7', '2001:db8::1', undefined],
      );
      const upn = san[5]!.otherName!;
      expect(upn.typeId).toBe('1.3.6.1.4.1.311.20.2.3');
      // [0] EXPLICIT UTF8String
      expect(Buffer.from(upn.value)).toEqual(
        Buffer.concat([Buffer.of(0x0c, Buffer.byteLength('علی@example.ir')), Buffer.from('علی@example.ir')]),
      );
    });

    it('converts an internationalized DNS name to its A-label form', async () => {
      const result = await createCsr({
        signer: signers.p256,
        subject: 'CN=x',
        subjectAltNames: [{ type: 'dns', value: 'کانون.ایران' }],
      });
      const exts = extensionsOf(parseAndVerify(result.der));
      const [name] = AsnConvert.parse(exts[0]!.extnValue, SubjectAlternativeName);
      expect(name!.dNSName).toMatch(/^xn--[a-z0-9-]+\.xn--[a-z0-9-]+$/);
    });

    it('leaves the attributes empty without extensions', async () => {
      const csr = parseAndVerify((await createCsr({ signer: signers.p256, subject: 'CN=x' })).der);
      expect(csr.certificationRequestInfo.attributes.length).toBe(0);
    });

    it('hands the signer the digest of the CertificationRequestInfo', async () => {
      const signer = NodeDigestSigner.generate({ name: 'EC', namedCurve: 'P-256' });
      const result = await createCsr({ signer, subject: 'CN=x' });
      const csr = AsnConvert.parse(result.der, CertificationRequest);
      const expected = createHash('sha256').update(Buffer.from(csr.certificationRequestInfoRaw!)).digest();
      expect(Buffer.from(signer.calls[0]!.digest)).toEqual(expected);
    });

    it('returns PEM of the same DER', async () => {
      const result = await createCsr({ signer: signers.p256, subject: 'CN=x' });
      expect(result.pem).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n/);
      const body = result.pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s/g, '');
      expect(Buffer.from(body, 'base64')).toEqual(Buffer.from(result.der));
    });

    it('passes on the signer’s KelidError unchanged', async () => {
      const signer: DigestSigner = {
        publicKey: signers.rsa.publicKey,
        keyType: 'RSA',
        signDigest: () => Promise.reject(new KelidError('ERR_PIN_INCORRECT', 'wrong PIN')),
      };
      expect(await codeOf(createCsr({ signer, subject: 'CN=x' }))).toBe('ERR_PIN_INCORRECT');
    });

    it('wraps other signer failures as ERR_INTERNAL', async () => {
      const signer: DigestSigner = {
        publicKey: signers.rsa.publicKey,
        keyType: 'RSA',
        signDigest: () => Promise.reject(new Error('boom')),
      };
      expect(await codeOf(createCsr({ signer, subject: 'CN=x' }))).toBe('ERR_INTERNAL');
    });

    it('refuses a signature made by another key', async () => {
      const other = NodeDigestSigner.generate({ name: 'EC', namedCurve: 'P-256' });
      const signer: DigestSigner = {
        publicKey: signers.p256.publicKey,
        keyType: 'EC',
        signDigest: (d, a, s) => other.signDigest(d, a, s),
      };
      expect(await codeOf(createCsr({ signer, subject: 'CN=x' }))).toBe('ERR_INTERNAL');
    });

    it('refuses an ECDSA signature that is not DER', async () => {
      const signer: DigestSigner = {
        publicKey: signers.p256.publicKey,
        keyType: 'EC',
        signDigest: () => Promise.resolve(new Uint8Array(64).fill(1)),
      };
      expect(await codeOf(createCsr({ signer, subject: 'CN=x' }))).toBe('ERR_INTERNAL');
    });

    it.each<[string, Partial<CsrOptions>]>([
      ['an empty subject', { subject: '' }],
      ['a bad country', { subject: 'CN=x,C=Iran' }],
      ['an unknown keyUsage', { keyUsage: ['signing'] }],
      ['an unknown extendedKeyUsage', { extendedKeyUsage: ['login'] }],
      ['an unknown SAN type', { subjectAltNames: [{ type: 'x400' as 'dns', value: 'a' }] }],
      ['a DNS name with a space', { subjectAltNames: [{ type: 'dns', value: 'a b.ir' }] }],
      ['a wildcard on a single label', { subjectAltNames: [{ type: 'dns', value: '*.ir' }] }],
      ['a non-ASCII email', { subjectAltNames: [{ type: 'email', value: 'علی@example.ir' }] }],
      ['an email without @', { subjectAltNames: [{ type: 'email', value: 'example.ir' }] }],
      ['a relative URI', { subjectAltNames: [{ type: 'uri', value: '/path' }] }],
      ['an IP with a zone', { subjectAltNames: [{ type: 'ip', value: 'fe80::1%eth0' }] }],
      ['an IP out of range', { subjectAltNames: [{ type: 'ip', value: '256.1.1.1' }] }],
      ['a UPN with a control character', { subjectAltNames: [{ type: 'upn', value: 'a\u0000@b' }] }],
      ['ECDSA with an RSA key', { signatureAlgorithm: { scheme: 'ECDSA' } }],
      ['an unknown digest', { signatureAlgorithm: { digestAlgorithm: 'SHA-1' as 'SHA-256' } }],
      ['a keyUsage that is not an array', { keyUsage: 'digitalSignature' as unknown as string[] }],
    ])('refuses %s before signing', async (_label, overrides) => {
      const signer = signers.rsa;
      const before = signer.calls.length;
      expect(await codeOf(createCsr({ signer, subject: 'CN=x', ...overrides }))).toBe('ERR_INVALID_INPUT');
      expect(signer.calls).toHaveLength(before);
    });

    it('refuses RSA-PSS with an EC key', async () => {
      expect(
        await codeOf(
          createCsr({ signer: signers.p256, subject: 'CN=x', signatureAlgorithm: { scheme: 'RSA-PSS' } }),
        ),
      ).toBe('ERR_INVALID_INPUT');
    });
  });

  describe('#validateCsrRequest', () => {
    const request: CsrRequest = {
      subject: SUBJECT,
      keyUsage: ['digitalSignature'],
      signatureAlgorithm: { scheme: 'RSA-PSS' },
    };

    it('accepts a request that fits the key algorithm', () => {
      expect(() => validateCsrRequest(request, { name: 'RSA', modulusLength: 2048 })).not.toThrow();
    });

    it('refuses a scheme that does not fit the key algorithm', async () => {
      expect(await codeOf(() => validateCsrRequest(request, { name: 'EC', namedCurve: 'P-256' }))).toBe(
        'ERR_INVALID_INPUT',
      );
    });

    it('refuses bad input without a key algorithm', async () => {
      expect(await codeOf(() => validateCsrRequest({ subject: 'CN=x', keyUsage: ['nope'] }))).toBe(
        'ERR_INVALID_INPUT',
      );
    });
  });

  describe('#resolveCsrSignatureAlgorithm', () => {
    it.each([
      [
        { name: 'RSA', modulusLength: 3072 },
        { scheme: 'RSASSA-PKCS1-v1_5', digestAlgorithm: 'SHA-256' },
      ],
      [
        { name: 'EC', namedCurve: 'P-256' },
        { scheme: 'ECDSA', digestAlgorithm: 'SHA-256' },
      ],
      [
        { name: 'EC', namedCurve: 'P-384' },
        { scheme: 'ECDSA', digestAlgorithm: 'SHA-384' },
      ],
    ] as const)('defaults for %j', (key, expected) => {
      expect(resolveCsrSignatureAlgorithm(key)).toEqual(expected);
    });
  });

  describe('#ipAddressBytes', () => {
    it.each([
      ['192.0.2.7', 'c0000207'],
      ['::1', '00000000000000000000000000000001'],
      ['2001:db8::', '20010db8000000000000000000000000'],
      ['::ffff:10.1.2.3', '00000000000000000000ffff0a010203'],
      ['2001:db8:1:2:3:4:5:6', '20010db8000100020003000400050006'],
    ])('encodes %s', (ip, hex) => {
      expect(Buffer.from(ipAddressBytes(ip)).toString('hex')).toBe(hex);
    });
  });
});
