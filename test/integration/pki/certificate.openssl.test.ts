import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeCertificate, parseCertificateInput, publicKeysEqual } from '../../../src/pki/certificate.js';
import type { CertificateDescription } from '../../../src/pki/certificate.js';
import { encodeName, formatName } from '../../../src/pki/dn.js';
import { asn1parse, makeTempDir, opensslText, pemToDer, sliceOf } from './openssl.js';
import type { TempDir } from './openssl.js';

// openssl's display names → the names of PROTOCOL.md (vocabulary only; values come from openssl).
const OPENSSL_KEY_USAGE: Record<string, string> = {
  'Digital Signature': 'digitalSignature',
  'Non Repudiation': 'nonRepudiation',
  'Key Encipherment': 'keyEncipherment',
  'Data Encipherment': 'dataEncipherment',
  'Key Agreement': 'keyAgreement',
  'Certificate Sign': 'keyCertSign',
  'CRL Sign': 'cRLSign',
  'Encipher Only': 'encipherOnly',
  'Decipher Only': 'decipherOnly',
};
const OPENSSL_EKU: Record<string, string> = {
  'TLS Web Client Authentication': 'clientAuth',
  'TLS Web Server Authentication': 'serverAuth',
  'E-mail Protection': 'emailProtection',
  'Code Signing': 'codeSigning',
  'Time Stamping': 'timeStamping',
  'OCSP Signing': 'ocspSigning',
  'Microsoft Smartcard Login': 'smartcardLogon',
  // openssl 3.0 has no name for id-kp-documentSigning and prints the OID.
  '1.3.6.1.5.5.7.3.36': 'documentSigning',
};

const EXTENSIONS = [
  'keyUsage',
  'extendedKeyUsage',
  'basicConstraints',
  'subjectKeyIdentifier',
  'authorityKeyIdentifier',
  'authorityInfoAccess',
  'crlDistributionPoints',
].join(',');

/** What openssl says about a certificate, in the shape of CertificateDescription. */
function opensslView(file: string): Partial<CertificateDescription> & { spkiPem: string } {
  const x509 = (...args: string[]): string => opensslText(['x509', '-in', file, '-noout', ...args]);
  const line = (text: string, key: string): string => new RegExp(`^${key}=(.*)$`, 'm').exec(text)![1]!;
  const names = x509('-subject', '-issuer', '-nameopt', 'RFC2253,-esc_msb');
  const dates = x509('-dates', '-dateopt', 'iso_8601');
  const iso = (s: string): string => new Date(s.replace(' ', 'T')).toISOString();
  const ext = x509('-ext', EXTENSIONS);
  const block = (title: string): string | undefined =>
    new RegExp(`${title}:[^\\n]*\\n((?:    .*\\n?)+)`).exec(ext)?.[1];
  const hexOf = (s: string | undefined): string | undefined =>
    s
      ?.trim()
      .replace(/^keyid:/, '')
      .replace(/:/g, '')
      .toLowerCase();
  const list = (s: string | undefined): string[] => (s ? s.trim().split(', ') : []);
  const urls = (s: string | undefined, prefix: string): string[] =>
    [...(s ?? '').matchAll(new RegExp(`${prefix}URI:(\\S+)`, 'g'))].map((m) => m[1]!);
  const aia = block('Authority Information Access');
  return {
    subject: line(names, 'subject'),
    issuer: line(names, 'issuer'),
    serialNumber: line(x509('-serial'), 'serial').toLowerCase(),
    notBefore: iso(line(dates, 'notBefore')),
    notAfter: iso(line(dates, 'notAfter')),
    fingerprintSha256: /Fingerprint=(.*)$/m
      .exec(x509('-fingerprint', '-sha256'))![1]!
      .replace(/:/g, '')
      .toLowerCase(),
    keyUsage: list(block('X509v3 Key Usage')).map((n) => OPENSSL_KEY_USAGE[n] ?? n),
    extendedKeyUsage: list(block('X509v3 Extended Key Usage')).map((n) => OPENSSL_EKU[n] ?? n),
    isCa: /CA:TRUE/.test(block('X509v3 Basic Constraints') ?? ''),
    subjectKeyIdentifier: hexOf(block('X509v3 Subject Key Identifier')),
    authorityKeyIdentifier: hexOf(block('X509v3 Authority Key Identifier')),
    ocspUrls: urls(aia, 'OCSP - '),
    caIssuerUrls: urls(aia, 'CA Issuers - '),
    crlUrls: urls(block('X509v3 CRL Distribution Points'), ''),
    spkiPem: x509('-pubkey'),
  };
}

let tmp: TempDir;
const files: Record<'ca' | 'leaf', string> = { ca: '', leaf: '' };

beforeAll(() => {
  tmp = makeTempDir('kelid-cert-');
  const caKey = tmp.path('ca.key');
  files.ca = tmp.path('ca.crt');
  opensslText(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', caKey]);
  opensslText([
    'req',
    '-x509',
    '-new',
    '-key',
    caKey,
    '-utf8',
    '-subj',
    '/C=IR/O=کانون سردفتران/CN=Kelid Test CA',
    '-days',
    '3650',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-addext',
    'subjectKeyIdentifier=hash',
    '-out',
    files.ca,
  ]);
  const extFile = tmp.write(
    'ext.cnf',
    [
      '[leaf]',
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,nonRepudiation,keyEncipherment',
      'extendedKeyUsage=clientAuth,emailProtection,msSmartcardLogin,1.3.6.1.5.5.7.3.36,1.2.3.4.5',
      'subjectKeyIdentifier=hash',
      'authorityKeyIdentifier=keyid',
      'authorityInfoAccess=OCSP;URI:http://127.0.0.1:8888/ocsp,caIssuers;URI:http://127.0.0.1/ca.crt',
      'crlDistributionPoints=URI:http://127.0.0.1/a.crl,URI:http://127.0.0.1/b.crl',
      '',
    ].join('\n'),
  );
  const leafKey = tmp.path('leaf.key');
  opensslText(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', leafKey]);
  const csr = tmp.path('leaf.csr');
  opensslText([
    'req',
    '-new',
    '-key',
    leafKey,
    '-utf8',
    '-multivalue-rdn',
    '-out',
    csr,
    '-subj',
    '/C=IR/O=a\\, b\\+c/OU= lead/L=#hash/ST=trail /CN=x"y<z>;w\\\\v #+UID=u1',
  ]);
  files.leaf = tmp.path('leaf.crt');
  // A serial with the high bit set: DER needs a leading 00 that serialNumber must not show.
  opensslText([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    files.ca,
    '-CAkey',
    caKey,
    '-set_serial',
    '0x8f00aa11223344556677',
    '-days',
    '365',
    '-extfile',
    extFile,
    '-extensions',
    'leaf',
    '-out',
    files.leaf,
  ]);
});
afterAll(() => tmp.remove());

describe('certificate', () => {
  describe('#describeCertificate (checked against openssl x509)', () => {
    it.each(['ca', 'leaf'] as const)('matches what openssl prints for the %s certificate', (which) => {
      const der = parseCertificateInput(readFileSync(files[which], 'utf8'));
      const d = describeCertificate(der);
      const { spkiPem, ...expected } = opensslView(files[which]);
      expect(d).toMatchObject(expected);
      expect(d.subjectKeyIdentifier).toBeDefined();
      expect(Buffer.from(d.spki)).toEqual(Buffer.from(pemToDer(spkiPem)));
    });

    it('reads the leaf values the CA was told to write', () => {
      const d = describeCertificate(parseCertificateInput(readFileSync(files.leaf, 'utf8')));
      expect(d.serialNumber).toBe('8f00aa11223344556677');
      expect(d.keyUsage).toEqual(['digitalSignature', 'nonRepudiation', 'keyEncipherment']);
      expect(d.extendedKeyUsage).toEqual([
        'clientAuth',
        'emailProtection',
        'smartcardLogon',
        'documentSigning',
        '1.2.3.4.5',
      ]);
      expect(d.crlUrls).toEqual(['http://127.0.0.1/a.crl', 'http://127.0.0.1/b.crl']);
      const ca = describeCertificate(parseCertificateInput(readFileSync(files.ca, 'utf8')));
      expect(d.authorityKeyIdentifier).toBe(ca.subjectKeyIdentifier);
      expect(ca.isCa).toBe(true);
      expect(Buffer.from(d.issuerDer)).toEqual(Buffer.from(ca.subjectDer));
    });

    it('returns the exact DER of serial, issuer, subject and SPKI as openssl asn1parse locates them', () => {
      const der = parseCertificateInput(readFileSync(files.leaf, 'utf8'));
      const d = describeCertificate(der);
      const tbsFields = asn1parse(der).filter((l) => l.depth === 2);
      // TBSCertificate: [0] version, serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, [3]
      const [, serial, , issuer, , subject, spki] = tbsFields.map((l) => Buffer.from(sliceOf(der, l)));
      expect(tbsFields[1]!.text).toBe('INTEGER           :8F00AA11223344556677');
      expect(Buffer.from(d.serialDer)).toEqual(serial);
      expect(Buffer.from(d.issuerDer)).toEqual(issuer);
      expect(Buffer.from(d.subjectDer)).toEqual(subject);
      expect(Buffer.from(d.spki)).toEqual(spki);
    });

    it('accepts openssl DER output as base64', () => {
      const der = new Uint8Array(Buffer.from(pemToDer(readFileSync(files.ca, 'utf8'))));
      expect(Buffer.from(parseCertificateInput(Buffer.from(der).toString('base64')))).toEqual(
        Buffer.from(der),
      );
    });
  });

  describe('#formatName / #encodeName (checked against openssl -nameopt RFC2253)', () => {
    it('prints escapes and multi-valued RDNs as openssl does, and parses openssl text back to the same DER', () => {
      const d = describeCertificate(parseCertificateInput(readFileSync(files.leaf, 'utf8')));
      const theirs = opensslText([
        'x509',
        '-in',
        files.leaf,
        '-noout',
        '-subject',
        '-nameopt',
        'RFC2253,-esc_msb',
      ])
        .trim()
        .replace(/^subject=/, '');
      expect(formatName(d.subjectDer)).toBe(theirs);
      expect(Buffer.from(encodeName(theirs))).toEqual(Buffer.from(d.subjectDer));
    });
  });

  describe('#publicKeysEqual', () => {
    it('matches the certificate key with the key file openssl wrote, and not with the CA key', () => {
      const leaf = describeCertificate(parseCertificateInput(readFileSync(files.leaf, 'utf8')));
      const ca = describeCertificate(parseCertificateInput(readFileSync(files.ca, 'utf8')));
      const keyFileSpki = pemToDer(opensslText(['pkey', '-in', tmp.path('leaf.key'), '-pubout']));
      expect(publicKeysEqual(leaf.spki, keyFileSpki)).toBe(true);
      expect(publicKeysEqual(ca.spki, keyFileSpki)).toBe(false);
    });

    it('matches an EC key with its compressed form written by openssl', () => {
      const ca = describeCertificate(parseCertificateInput(readFileSync(files.ca, 'utf8')));
      const compressedPem = opensslText([
        'ec',
        '-in',
        tmp.path('ca.key'),
        '-pubout',
        '-conv_form',
        'compressed',
      ]);
      const compressedDer = pemToDer(compressedPem);
      expect(compressedDer.length).toBeLessThan(ca.spki.length);
      expect(publicKeysEqual(compressedDer, ca.spki)).toBe(true);
    });
  });
});
