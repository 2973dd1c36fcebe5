import { ECDH, createHash, generateKeyPairSync, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  BasicConstraints,
  Certificate,
  Extension,
  Extensions,
  SubjectPublicKeyInfo,
  TBSCertificate,
  Validity,
} from '@peculiar/asn1-x509';
import { describe, expect, it } from 'vitest';
import {
  MAX_CERTIFICATE_BYTES,
  describeCertificate,
  parseCertificateInput,
  publicKeysEqual,
} from '../../../src/pki/certificate.js';
import { encodeTlv } from '../../../src/pki/der.js';
import { nameFromSubject } from '../../../src/pki/dn.js';
import { keyIdFromSpki } from '../../../src/pki/key-id.js';

const issuerKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const subjectKey = generateKeyPairSync('rsa', { modulusLength: 2048 });

const spkiOf = (key: KeyObject): Uint8Array => new Uint8Array(key.export({ type: 'spki', format: 'der' }));

interface CertOptions {
  serial?: number[];
  extensions?: Extension[];
  spki?: Uint8Array;
  version?: number;
}

/** A certificate built with asn1-x509 and signed by node:crypto. */
function makeCertificate(options: CertOptions = {}): Uint8Array {
  const signatureAlgorithm = new AlgorithmIdentifier({ algorithm: '1.2.840.10045.4.3.2' });
  const tbs = new TBSCertificate({
    version: options.version ?? 2,
    serialNumber: Uint8Array.from(options.serial ?? [0x01, 0x02]).buffer,
    signature: signatureAlgorithm,
    issuer: nameFromSubject('CN=Test CA,O=کانون,C=IR'),
    validity: new Validity({
      notBefore: new Date('2025-01-02T03:04:05Z'),
      notAfter: new Date('2035-01-02T03:04:05Z'),
    }),
    subject: nameFromSubject('CN=علی رضایی,C=IR'),
    subjectPublicKeyInfo: AsnConvert.parse(
      options.spki ?? spkiOf(subjectKey.publicKey),
      SubjectPublicKeyInfo,
    ),
    extensions: options.extensions ? new Extensions(options.extensions) : undefined,
  });
  const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
  const cert = new Certificate({
    tbsCertificate: tbs,
    signatureAlgorithm,
    signatureValue: sign('sha256', tbsDer, issuerKey.privateKey).buffer as ArrayBuffer,
  });
  return new Uint8Array(AsnConvert.serialize(cert));
}

function pemOf(der: Uint8Array, label = 'CERTIFICATE'): string {
  const b64 = Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

const der = makeCertificate();

describe('certificate', () => {
  describe('#parseCertificateInput', () => {
    it.each<[string, string | Uint8Array]>([
      ['PEM', pemOf(der)],
      ['PEM with CRLF and text around it', `subject=CN=x\r\n${pemOf(der).replace(/\n/g, '\r\n')}trailer\n`],
      ['base64 DER on one line', Buffer.from(der).toString('base64')],
      ['base64 DER with line breaks', Buffer.from(der).toString('base64').replace(/.{76}/g, '$&\n')],
      ['DER bytes', der],
      ['PEM as bytes', Buffer.from(pemOf(der))],
    ])('accepts %s', (_label, input) => {
      expect(Buffer.from(parseCertificateInput(input))).toEqual(Buffer.from(der));
    });

    it.each<[string, unknown]>([
      ['an empty string', ''],
      ['garbage', 'hello, world'],
      ['base64 of something else', Buffer.from('not a certificate at all').toString('base64')],
      ['base64 with a stray character', `${Buffer.from(der).toString('base64')}*`],
      ['unpadded base64', Buffer.from(der).toString('base64').replace(/=+$/, '').slice(0, -1)],
      ['two certificates', pemOf(der) + pemOf(der)],
      ['a private key', pemOf(new Uint8Array(spkiOf(subjectKey.publicKey)), 'PRIVATE KEY')],
      ['a PEM with mismatched armour', pemOf(der).replace('END CERTIFICATE', 'END X509 CRL')],
      ['DER with a trailing byte', Buffer.concat([der, Buffer.of(0)])],
      ['a DER SEQUENCE that is not a certificate', encodeTlv(0x30, encodeTlv(0x02, Uint8Array.of(1)))],
      ['an oversized input', 'A'.repeat(200_000)],
      ['oversized DER', encodeTlv(0x30, new Uint8Array(MAX_CERTIFICATE_BYTES))],
      ['a number', 42],
    ])('refuses %s', (_label, input) => {
      expect(codeOf(() => parseCertificateInput(input as string))).toBe('ERR_INVALID_INPUT');
    });
  });

  describe('#describeCertificate', () => {
    it('reads names, validity, fingerprint and key', () => {
      const d = describeCertificate(der);
      expect(d.subject).toBe('CN=علی رضایی,C=IR');
      expect(d.issuer).toBe('CN=Test CA,O=کانون,C=IR');
      expect(d.notBefore).toBe('2025-01-02T03:04:05.000Z');
      expect(d.notAfter).toBe('2035-01-02T03:04:05.000Z');
      expect(d.fingerprintSha256).toBe(createHash('sha256').update(der).digest('hex'));
      expect(Buffer.from(d.spki)).toEqual(Buffer.from(spkiOf(subjectKey.publicKey)));
      expect(d.keyId).toBe(keyIdFromSpki(spkiOf(subjectKey.publicKey)));
      const tbs = AsnConvert.parse(der, Certificate).tbsCertificate;
      expect(Buffer.from(d.subjectDer)).toEqual(Buffer.from(AsnConvert.serialize(tbs.subject)));
      expect(Buffer.from(d.issuerDer)).toEqual(Buffer.from(AsnConvert.serialize(tbs.issuer)));
    });

    it.each([
      ['a short serial', [0x01, 0x02], '0102', '02020102'],
      ['a serial with the sign octet', [0x00, 0x8f, 0x01], '8f01', '0203008f01'],
      ['a zero serial', [0x00], '00', '020100'],
      ['a negative serial', [0xff, 0x01], '-ff', '0202ff01'],
    ])('reads %s', (_label, serial, hex, serialDer) => {
      const d = describeCertificate(makeCertificate({ serial }));
      expect(d.serialNumber).toBe(hex);
      expect(Buffer.from(d.serialDer).toString('hex')).toBe(serialDer);
    });

    it('gives empty usage lists and isCa false for a v1 certificate', () => {
      const d = describeCertificate(makeCertificate({ version: 0 }));
      expect(d).toMatchObject({
        keyUsage: [],
        extendedKeyUsage: [],
        isCa: false,
        ocspUrls: [],
        crlUrls: [],
        caIssuerUrls: [],
      });
      expect(d.subjectKeyIdentifier).toBeUndefined();
    });

    it('reads basicConstraints cA', () => {
      const bc = new Extension({
        extnID: '2.5.29.19',
        critical: true,
        extnValue: new OctetString(AsnConvert.serialize(new BasicConstraints({ cA: true }))),
      });
      expect(describeCertificate(makeCertificate({ extensions: [bc] })).isCa).toBe(true);
    });

    it('refuses a certificate with a duplicated extension', () => {
      const bc = new Extension({
        extnID: '2.5.29.19',
        critical: true,
        extnValue: new OctetString(AsnConvert.serialize(new BasicConstraints({ cA: false }))),
      });
      expect(codeOf(() => describeCertificate(makeCertificate({ extensions: [bc, bc] })))).toBe(
        'ERR_INVALID_INPUT',
      );
    });

    it('refuses a malformed keyUsage', () => {
      const ku = new Extension({
        extnID: '2.5.29.15',
        critical: true,
        extnValue: new OctetString(Uint8Array.of(4, 1, 0)),
      });
      expect(codeOf(() => describeCertificate(makeCertificate({ extensions: [ku] })))).toBe(
        'ERR_INVALID_INPUT',
      );
    });

    it('describes a certificate for a key type without keyId', () => {
      const ed = generateKeyPairSync('ed25519').publicKey;
      const d = describeCertificate(makeCertificate({ spki: spkiOf(ed) }));
      expect(d.keyId).toBeUndefined();
      expect(Buffer.from(d.spki)).toEqual(Buffer.from(spkiOf(ed)));
    });

    it('refuses garbage', () => {
      expect(codeOf(() => describeCertificate(Uint8Array.of(1, 2, 3)))).toBe('ERR_INVALID_INPUT');
    });
  });

  describe('#publicKeysEqual', () => {
    const rsaSpki = spkiOf(subjectKey.publicKey);

    it('treats RSA keys with NULL and absent parameters as equal', () => {
      // Drop the NULL (05 00) after the rsaEncryption OID and fix the lengths by re-encoding.
      const jwk = subjectKey.publicKey.export({ format: 'jwk' });
      const rsaPublicKey = encodeTlv(
        0x30,
        encodeTlv(0x02, Buffer.concat([Buffer.of(0), Buffer.from(jwk.n!, 'base64url')])),
        encodeTlv(0x02, Buffer.from(jwk.e!, 'base64url')),
      );
      const rsaOid = Buffer.from('06092a864886f70d010101', 'hex');
      const absent = encodeTlv(
        0x30,
        encodeTlv(0x30, rsaOid),
        encodeTlv(0x03, Uint8Array.of(0), rsaPublicKey),
      );
      expect(Buffer.from(absent)).not.toEqual(Buffer.from(rsaSpki));
      expect(publicKeysEqual(absent, rsaSpki)).toBe(true);
    });

    it('treats compressed and uncompressed EC points as equal', () => {
      const ec = issuerKey.publicKey;
      const jwk = ec.export({ format: 'jwk' });
      const point = Buffer.concat([
        Buffer.of(4),
        Buffer.from(jwk.x!, 'base64url'),
        Buffer.from(jwk.y!, 'base64url'),
      ]);
      const compressed = ECDH.convertKey(point, 'prime256v1', undefined, undefined, 'compressed') as Buffer;
      const uncompressedSpki = spkiOf(ec);
      // Same AlgorithmIdentifier, other BIT STRING.
      const alg = uncompressedSpki.subarray(2, 2 + 2 + uncompressedSpki[3]!);
      const compressedSpki = encodeTlv(0x30, alg, encodeTlv(0x03, Uint8Array.of(0), compressed));
      expect(publicKeysEqual(compressedSpki, uncompressedSpki)).toBe(true);
    });

    it('tells different keys apart', () => {
      const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
      expect(publicKeysEqual(rsaSpki, spkiOf(other))).toBe(false);
      expect(publicKeysEqual(rsaSpki, spkiOf(issuerKey.publicKey))).toBe(false);
      const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey;
      expect(publicKeysEqual(spkiOf(issuerKey.publicKey), spkiOf(p384))).toBe(false);
    });

    it('refuses garbage', () => {
      expect(codeOf(() => publicKeysEqual(Uint8Array.of(0x30, 0), rsaSpki))).toBe('ERR_INVALID_INPUT');
    });
  });
});
