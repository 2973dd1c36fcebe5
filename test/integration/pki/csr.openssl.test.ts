import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeCertificate } from '../../../src/pki/certificate.js';
import { createCsr } from '../../../src/pki/csr.js';
import type { CsrSignatureAlgorithm } from '../../../src/pki/csr.js';
import { encodeName, formatName } from '../../../src/pki/dn.js';
import { keyIdFromSpki } from '../../../src/pki/key-id.js';
import { NodeDigestSigner } from '../../helpers/node-signer.js';
import { asn1parse, makeTempDir, openssl, opensslText, pemToDer, sliceOf } from './openssl.js';
import type { TempDir } from './openssl.js';

const SUBJECT = 'CN=علی رضایی,O=کانون سردفتران,C=IR';

const signers = {
  rsa: NodeDigestSigner.generate({ name: 'RSA', modulusLength: 2048 }),
  p256: NodeDigestSigner.generate({ name: 'EC', namedCurve: 'P-256' }),
  p384: NodeDigestSigner.generate({ name: 'EC', namedCurve: 'P-384' }),
};

let tmp: TempDir;
beforeAll(() => {
  tmp = makeTempDir('kelid-csr-');
});
afterAll(() => tmp.remove());

/** Subject DER of a request, located by openssl asn1parse: the first SEQUENCE at depth 2. */
function subjectDerOf(csrDer: Uint8Array): Uint8Array {
  const line = asn1parse(csrDer).find((l) => l.depth === 2 && l.text === 'SEQUENCE');
  return sliceOf(csrDer, line!);
}

describe('createCsr', () => {
  describe('#createCsr (checked by openssl req)', () => {
    it.each<[string, NodeDigestSigner, CsrSignatureAlgorithm | undefined, string[]]>([
      [
        'RSA 2048 RSASSA-PKCS1-v1_5',
        signers.rsa,
        undefined,
        ['Signature Algorithm: sha256WithRSAEncryption'],
      ],
      [
        'RSA 2048 RSA-PSS SHA-256',
        signers.rsa,
        { scheme: 'RSA-PSS' },
        [
          'Signature Algorithm: rsassaPss',
          'Hash Algorithm: sha256',
          'Mask Algorithm: mgf1 with sha256',
          'Salt Length: 0x20',
        ],
      ],
      [
        'RSA 2048 RSA-PSS SHA-384',
        signers.rsa,
        { scheme: 'RSA-PSS', digestAlgorithm: 'SHA-384' },
        ['Hash Algorithm: sha384', 'Mask Algorithm: mgf1 with sha384', 'Salt Length: 0x30'],
      ],
      ['EC P-256', signers.p256, undefined, ['Signature Algorithm: ecdsa-with-SHA256']],
      ['EC P-384', signers.p384, undefined, ['Signature Algorithm: ecdsa-with-SHA384']],
    ])(
      'makes a %s request that openssl req -verify accepts',
      async (label, signer, signatureAlgorithm, expected) => {
        const csr = await createCsr({
          signer,
          subject: SUBJECT,
          signatureAlgorithm,
          keyUsage: ['digitalSignature'],
        });
        const file = tmp.write(`${label.replace(/\W+/g, '-')}.csr`, csr.pem);

        const verify = openssl(['req', '-verify', '-noout', '-in', file]);
        expect(verify.stderr).toMatch(/verify OK/);
        expect(verify.status).toBe(0);

        const text = opensslText(['req', '-text', '-noout', '-in', file]);
        for (const line of expected) expect(text).toContain(line);

        const pubkey = opensslText(['req', '-pubkey', '-noout', '-in', file]);
        expect(Buffer.from(pemToDer(pubkey))).toEqual(Buffer.from(signer.publicKey));
      },
    );

    it('makes a request whose tampered copy openssl rejects', async () => {
      const csr = await createCsr({ signer: signers.p256, subject: 'CN=x' });
      const tampered = Buffer.from(csr.der);
      // Flip a byte inside the subject's CN value ("x").
      tampered[tampered.indexOf(Buffer.from('0c0178', 'hex')) + 2] = 0x79;
      const file = tmp.write('tampered.csr', tampered);
      const verify = openssl(['req', '-verify', '-noout', '-inform', 'DER', '-in', file]);
      // openssl 3.0 exits 0 either way; only the message tells.
      expect(verify.stderr).toMatch(/verify failure/);
      expect(verify.stderr).not.toMatch(/verify OK/);
    });
  });

  describe('subject', () => {
    let file: string;
    let der: Uint8Array;
    beforeAll(async () => {
      const csr = await createCsr({ signer: signers.p256, subject: SUBJECT });
      der = csr.der;
      file = tmp.write('persian.csr', csr.pem);
    });

    it('round-trips the Persian subject byte-exact through openssl -nameopt utf8', () => {
      const out = openssl([
        'req',
        '-noout',
        '-subject',
        '-nameopt',
        'utf8,sep_comma_plus,dn_rev',
        '-in',
        file,
      ]);
      expect(out.stdout).toEqual(Buffer.from(`subject=${SUBJECT}\n`, 'utf8'));
      const rfc = openssl(['req', '-noout', '-subject', '-nameopt', 'RFC2253,-esc_msb', '-in', file]);
      expect(rfc.stdout).toEqual(Buffer.from(`subject=${SUBJECT}\n`, 'utf8'));
    });

    it('stores the most significant RDN first (C, O, CN)', () => {
      const out = opensslText(['req', '-noout', '-subject', '-nameopt', 'utf8,sep_comma_plus', '-in', file]);
      expect(out).toBe(`subject=${SUBJECT.split(',').reverse().join(',')}\n`);
    });

    it('uses UTF8STRING for CN and O and PRINTABLESTRING for C', () => {
      const lines = asn1parse(der);
      const valueAfter = (oidName: string): string => {
        const i = lines.findIndex((l) => l.text === `OBJECT            :${oidName}`);
        return lines[i + 1]!.text;
      };
      expect(valueAfter('commonName')).toBe('UTF8STRING        :علی رضایی');
      expect(valueAfter('organizationName')).toBe('UTF8STRING        :کانون سردفتران');
      expect(valueAfter('countryName')).toBe('PRINTABLESTRING   :IR');
    });

    it('formats OID-typed, BMPString and control-character values as openssl -nameopt RFC2253 does', async () => {
      const bmp = Buffer.from('علی', 'utf16le').swap16().toString('hex');
      const subject = `CN=x,1.2.3.4=abc,postalCode=12345,O=#1e06${bmp},OU=#0c03610a62`;
      const csr = await createCsr({ signer: signers.p256, subject });
      const theirs = opensslText([
        'req',
        '-noout',
        '-subject',
        '-nameopt',
        'RFC2253,-esc_msb',
        '-in',
        tmp.write('oid.csr', csr.pem),
      ]);
      expect(formatName(subjectDerOf(csr.der))).toBe(theirs.trim().replace(/^subject=/, ''));
    });

    it('encodes a many-attribute, multi-valued subject exactly as openssl req -subj does', () => {
      const keyFile = tmp.write('rsa.key', signers.rsa.privateKeyPem());
      const subj =
        '/DC=ir/DC=example/C=IR/ST=تهران/L=Tehran/O=کانون سردفتران/OU=IT/title=Mr' +
        '/serialNumber=IDCIR-0012345678/emailAddress=ali@example.ir/UID=u1+CN=علی رضایی';
      const reqFile = tmp.path('openssl-subj.csr');
      opensslText([
        'req',
        '-new',
        '-key',
        keyFile,
        '-utf8',
        '-multivalue-rdn',
        '-subj',
        subj,
        '-outform',
        'DER',
        '-out',
        reqFile,
      ]);
      const theirs = subjectDerOf(
        new Uint8Array(openssl(['req', '-inform', 'DER', '-in', reqFile, '-outform', 'DER']).stdout),
      );
      const ours = encodeName(
        'CN=علی رضایی+UID=u1,emailAddress=ali@example.ir,serialNumber=IDCIR-0012345678,title=Mr,OU=IT,' +
          'O=کانون سردفتران,L=Tehran,ST=تهران,C=IR,DC=example,DC=ir',
      );
      expect(Buffer.from(ours).toString('hex')).toBe(Buffer.from(theirs).toString('hex'));
    });
  });

  describe('extensions', () => {
    const request = {
      subject: SUBJECT,
      subjectAltNames: [
        { type: 'email', value: 'ali@example.ir' },
        { type: 'dns', value: 'www.example.ir' },
        { type: 'uri', value: 'https://example.ir/ali' },
        { type: 'ip', value: '192.0.2.7' },
        { type: 'ip', value: '2001:db8::1' },
        { type: 'upn', value: 'علی@example.ir' },
      ],
      keyUsage: ['digitalSignature', 'nonRepudiation'],
      extendedKeyUsage: ['clientAuth', 'emailProtection', 'smartcardLogon', 'documentSigning'],
    } as const;

    it('shows every SAN kind, the critical keyUsage and the extendedKeyUsage in openssl req -text', async () => {
      const csr = await createCsr({
        signer: signers.rsa,
        ...request,
        subjectAltNames: [...request.subjectAltNames],
        keyUsage: [...request.keyUsage],
        extendedKeyUsage: [...request.extendedKeyUsage],
      });
      const text = opensslText([
        'req',
        '-text',
        '-noout',
        '-nameopt',
        'RFC2253,-esc_msb',
        '-in',
        tmp.write('ext.csr', csr.pem),
      ]);
      expect(text).toContain(
        'email:ali@example.ir, DNS:www.example.ir, URI:https://example.ir/ali, IP Address:192.0.2.7, ' +
          'IP Address:2001:DB8:0:0:0:0:0:1, othername: UPN::علی@example.ir',
      );
      expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature, Non Repudiation\n/);
      expect(text).toMatch(
        /X509v3 Extended Key Usage: \s+TLS Web Client Authentication, E-mail Protection, Microsoft Smartcard Login, 1\.3\.6\.1\.5\.5\.7\.3\.36\n/,
      );
    });

    it('gives an openssl CA a request whose extensions end up in the certificate', async () => {
      const csr = await createCsr({
        signer: signers.p256,
        ...request,
        subjectAltNames: [...request.subjectAltNames],
        keyUsage: [...request.keyUsage],
        extendedKeyUsage: [...request.extendedKeyUsage],
      });
      const caKey = tmp.path('ca.key');
      const caCrt = tmp.path('ca.crt');
      opensslText(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', caKey]);
      opensslText([
        'req',
        '-x509',
        '-new',
        '-key',
        caKey,
        '-subj',
        '/CN=CSR Test CA',
        '-days',
        '2',
        '-out',
        caCrt,
      ]);
      const cert = new Uint8Array(
        openssl([
          'x509',
          '-req',
          '-in',
          tmp.write('ca-in.csr', csr.pem),
          '-CA',
          caCrt,
          '-CAkey',
          caKey,
          '-set_serial',
          '7',
          '-days',
          '1',
          '-copy_extensions',
          'copy',
          '-outform',
          'DER',
        ]).stdout,
      );
      const d = describeCertificate(cert);
      expect(d.subject).toBe(SUBJECT);
      expect(d.keyUsage).toEqual(['digitalSignature', 'nonRepudiation']);
      expect(d.extendedKeyUsage).toEqual([
        'clientAuth',
        'emailProtection',
        'smartcardLogon',
        'documentSigning',
      ]);
      expect(d.keyId).toBe(keyIdFromSpki(signers.p256.publicKey));
    });
  });
});
