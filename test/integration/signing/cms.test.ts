import { X509Certificate, createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ContentInfo, SignedData } from '@peculiar/asn1-cms';
import { AsnConvert } from '@peculiar/asn1-schema';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DigestAlgorithm, SignatureScheme } from '../../../src/model/types.js';
import { CMS_OID, SigningCertificateV2, signCms } from '../../../src/signing/cms.js';
import type { DigestSigner } from '../../../src/pki/signer.js';
import { compareBytes } from '../../../src/pki/der.js';
import { opensslCmsVerify } from '../../helpers/openssl-cms.js';
import { createSigningPki, opensslStatus, type SigningPki } from './test-pki.js';

let dir: string;
let pki: SigningPki;
const content = new TextEncoder().encode('Kelid test document — سند آزمایشی\n');

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-cms-'));
  pki = await createSigningPki(dir);
  fs.writeFileSync(path.join(dir, 'data.bin'), content);
});

afterAll(async () => {
  await pki?.cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

function write(name: string, bytes: Uint8Array): string {
  fs.writeFileSync(path.join(dir, name), bytes);
  return name;
}

function verifyDetached(file: string, dataFile = 'data.bin'): { ok: boolean; output: string } {
  return opensslCmsVerify({ signature: file, content: dataFile, caFile: 'root.pem', cwd: dir });
}

function parseSignedData(cms: Uint8Array): SignedData {
  const ci = AsnConvert.parse(cms, ContentInfo);
  expect(ci.contentType).toBe(CMS_OID.signedData);
  return AsnConvert.parse(ci.content, SignedData);
}

const MATRIX: [kind: 'rsa' | 'p256' | 'p384', scheme: SignatureScheme, alg: DigestAlgorithm][] = [
  ['rsa', 'RSASSA-PKCS1-v1_5', 'SHA-256'],
  ['rsa', 'RSASSA-PKCS1-v1_5', 'SHA-384'],
  ['rsa', 'RSA-PSS', 'SHA-256'],
  ['rsa', 'RSA-PSS', 'SHA-384'],
  ['p256', 'ECDSA', 'SHA-256'],
  ['p256', 'ECDSA', 'SHA-384'],
  ['p384', 'ECDSA', 'SHA-384'],
  ['p384', 'ECDSA', 'SHA-256'],
];

describe('signCms', () => {
  describe('#signCms', () => {
    it.each(MATRIX)(
      'makes a detached CAdES signature openssl accepts (%s, %s, %s)',
      async (kind, scheme, alg) => {
        const leaf = pki.leaves[kind];
        const cms = await signCms({
          signer: leaf.signer,
          certificate: leaf.der,
          chain: [pki.intermediate],
          digestAlgorithm: alg,
          scheme,
          content,
          detached: true,
        });
        const file = write(`detached-${kind}-${scheme}-${alg}.p7s`, cms);
        const result = verifyDetached(file);
        expect(result.output).toContain('CAdES Verification successful');
        expect(result.ok).toBe(true);
        expect(parseSignedData(cms).encapContentInfo.eContent).toBeUndefined();
      },
    );

    it.each(MATRIX)(
      'makes an attached CAdES signature openssl accepts (%s, %s, %s)',
      async (kind, scheme, alg) => {
        const leaf = pki.leaves[kind];
        const cms = await signCms({
          signer: leaf.signer,
          certificate: leaf.der,
          chain: [pki.intermediate],
          digestAlgorithm: alg,
          scheme,
          content,
        });
        const file = write(`attached-${kind}-${scheme}-${alg}.p7s`, cms);
        const out = `attached-${kind}-${scheme}-${alg}.out`;
        const result = opensslCmsVerify({ signature: file, caFile: 'root.pem', cwd: dir, out });
        expect(result.output).toContain('CAdES Verification successful');
        expect(result.ok).toBe(true);
        expect(new Uint8Array(fs.readFileSync(path.join(dir, out)))).toEqual(content);
      },
    );

    it('signs a precomputed digest as a detached signature that verifies against the content', async () => {
      const leaf = pki.leaves.p256;
      const cms = await signCms({
        signer: leaf.signer,
        certificate: leaf.der,
        chain: [pki.intermediate],
        digestAlgorithm: 'SHA-384',
        digest: new Uint8Array(createHash('sha384').update(content).digest()),
      });
      expect(parseSignedData(cms).encapContentInfo.eContent).toBeUndefined();
      const result = verifyDetached(write('from-digest.p7s', cms));
      expect(result.output).toContain('CAdES Verification successful');
      expect(result.ok).toBe(true);
    });

    it('is rejected by openssl when the content is tampered with', async () => {
      const leaf = pki.leaves.rsa;
      const cms = await signCms({
        signer: leaf.signer,
        certificate: leaf.der,
        chain: [pki.intermediate],
        digestAlgorithm: 'SHA-256',
        content,
        detached: true,
      });
      const file = write('tamper-content.p7s', cms);
      const tampered = Uint8Array.from(content);
      tampered[0]! ^= 0x01;
      write('tampered.bin', tampered);
      const result = verifyDetached(file, 'tampered.bin');
      expect(result.ok).toBe(false);
      expect(result.output).toContain('Verification failure');
      expect(verifyDetached(file).ok).toBe(true);
    });

    it.each(['rsa', 'p256'] as const)(
      'is rejected by openssl when a signature byte is changed (%s)',
      async (kind) => {
        const leaf = pki.leaves[kind];
        const cms = await signCms({
          signer: leaf.signer,
          certificate: leaf.der,
          chain: [pki.intermediate],
          digestAlgorithm: 'SHA-256',
          content,
          detached: true,
        });
        const signature = new Uint8Array(parseSignedData(cms).signerInfos[0]!.signature.buffer);
        const at = Buffer.from(cms).indexOf(Buffer.from(signature));
        expect(at).toBeGreaterThan(0);
        const tampered = Uint8Array.from(cms);
        tampered[at + signature.length - 8]! ^= 0x40;
        const result = verifyDetached(write(`tamper-sig-${kind}.p7s`, tampered));
        expect(result.ok).toBe(false);
        expect(result.output).toContain('Verification failure');
      },
    );

    it('carries contentType, signingTime, messageDigest and signingCertificateV2 (openssl -print)', async () => {
      const leaf = pki.leaves.rsa;
      const signingTime = new Date('2026-02-03T04:05:06Z');
      const cms = await signCms({
        signer: leaf.signer,
        certificate: leaf.der,
        chain: [pki.intermediate],
        digestAlgorithm: 'SHA-256',
        content,
        signingTime,
      });
      const printed = opensslStatus(
        ['cms', '-cmsout', '-print', '-inform', 'DER', '-in', write('print.p7s', cms)],
        dir,
      );
      expect(printed.ok).toBe(true);
      expect(printed.output).toContain('contentType (1.2.840.113549.1.9.3)');
      expect(printed.output).toContain('signingTime (1.2.840.113549.1.9.5)');
      expect(printed.output).toContain('UTCTIME:Feb  3 04:05:06 2026 GMT');
      expect(printed.output).toContain('messageDigest (1.2.840.113549.1.9.4)');
      expect(printed.output).toContain('id-smime-aa-signingCertificateV2 (1.2.840.113549.1.9.16.2.47)');
      expect(printed.output).toContain('rsaEncryption (1.2.840.113549.1.1.1)');
      expect(printed.output).toMatch(/issuerAndSerialNumber/);
    });

    it('announces RSASSA-PSS with its parameters for PSS signatures (openssl -print)', async () => {
      const leaf = pki.leaves.rsa;
      const cms = await signCms({
        signer: leaf.signer,
        certificate: leaf.der,
        digestAlgorithm: 'SHA-384',
        scheme: 'RSA-PSS',
        content,
      });
      const printed = opensslStatus(
        ['cms', '-cmsout', '-print', '-inform', 'DER', '-in', write('pss-print.p7s', cms)],
        dir,
      );
      expect(printed.output).toContain('rsassaPss (1.2.840.113549.1.1.10)');
      // hashAlgorithm sha384, maskGenAlgorithm mgf1(sha384), saltLength 48 (0x30)
      expect(printed.output).toMatch(
        /cont \[ 0 \][\s\S]*:sha384[\s\S]*:mgf1[\s\S]*:sha384[\s\S]*cont \[ 2 \][\s\S]*INTEGER\s+:30/,
      );
    });

    it('writes sorted signed attributes, an exact ESS certificate id, and the signer and chain certificates', async () => {
      const leaf = pki.leaves.p384;
      const cms = await signCms({
        signer: leaf.signer,
        certificate: leaf.der,
        chain: [pki.intermediate, pki.root],
        digestAlgorithm: 'SHA-384',
        content,
      });
      const sd = parseSignedData(cms);
      const si = sd.signerInfos[0]!;
      const attrs = si.signedAttrs!;
      const encoded = attrs.map((a) => new Uint8Array(AsnConvert.serialize(a)));
      expect([...encoded].sort(compareBytes)).toEqual(encoded);
      expect(attrs.map((a) => a.attrType).sort()).toEqual(
        [
          CMS_OID.contentType,
          CMS_OID.messageDigest,
          CMS_OID.signingTime,
          CMS_OID.signingCertificateV2,
        ].sort(),
      );
      const messageDigest = attrs.find((a) => a.attrType === CMS_OID.messageDigest)!.attrValues[0]!;
      expect(Buffer.from(messageDigest).subarray(2)).toEqual(createHash('sha384').update(content).digest());

      const ess = AsnConvert.parse(
        attrs.find((a) => a.attrType === CMS_OID.signingCertificateV2)!.attrValues[0]!,
        SigningCertificateV2,
      );
      expect(ess.certs).toHaveLength(1);
      const id = ess.certs[0]!;
      expect(id.hashAlgorithm).toBeUndefined();
      expect(Buffer.from(id.certHash.buffer)).toEqual(createHash('sha256').update(leaf.der).digest());
      const x509 = new X509Certificate(leaf.der);
      expect(
        Buffer.from(id.issuerSerial!.serialNumber).toString('hex').replace(/^0+/, '').toUpperCase(),
      ).toBe(x509.serialNumber.replace(/^0+/, '').toUpperCase());
      expect(id.issuerSerial!.issuer[0]!.directoryName).toBeDefined();

      const certs = sd.certificates!.map(
        (c) => new X509Certificate(new Uint8Array(AsnConvert.serialize(c.certificate!))).raw,
      );
      expect(certs.map((c) => c.equals(Buffer.from(leaf.der)))).toEqual([true, false, false]);
      expect(Buffer.from(cms).includes(Buffer.from(pki.intermediate))).toBe(true);
      expect(Buffer.from(cms).includes(Buffer.from(pki.root))).toBe(true);
      expect(si.sid.issuerAndSerialNumber).toBeDefined();
      expect(sd.version).toBe(1);
      expect(si.version).toBe(1);
    });

    it('refuses a certificate that does not belong to the signing key (ERR_CERTIFICATE_MISMATCH)', async () => {
      await expect(
        signCms({
          signer: pki.leaves.p256.signer,
          certificate: pki.leaves.p384.der,
          digestAlgorithm: 'SHA-256',
          content,
        }),
      ).rejects.toMatchObject({ code: 'ERR_CERTIFICATE_MISMATCH' });
    });

    it('refuses bytes that are not a certificate (ERR_INVALID_INPUT)', async () => {
      await expect(
        signCms({
          signer: pki.leaves.p256.signer,
          certificate: Uint8Array.of(0x30, 0x03, 0x02, 0x01, 0x01),
          digestAlgorithm: 'SHA-256',
          content,
        }),
      ).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
      await expect(
        signCms({
          signer: pki.leaves.p256.signer,
          certificate: pki.leaves.p256.der,
          chain: [new Uint8Array(10)],
          digestAlgorithm: 'SHA-256',
          content,
        }),
      ).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
    });

    it('refuses a signature from the token that does not verify (ERR_DEVICE_ERROR)', async () => {
      const good = pki.leaves.rsa.signer;
      const faulty: DigestSigner = {
        publicKey: good.publicKey,
        keyType: good.keyType,
        async signDigest(d, alg, scheme) {
          const s = await good.signDigest(d, alg, scheme);
          s[10]! ^= 0xff;
          return s;
        },
      };
      await expect(
        signCms({ signer: faulty, certificate: pki.leaves.rsa.der, digestAlgorithm: 'SHA-256', content }),
      ).rejects.toMatchObject({ code: 'ERR_DEVICE_ERROR' });
    });
  });
});
