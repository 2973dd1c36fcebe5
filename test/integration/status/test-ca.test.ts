import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeCertificate } from '../../../src/pki/certificate.js';
import { TestPki } from '../../helpers/test-ca.js';

// The shared test PKI helper (test/helpers/test-ca.ts), checked with openssl itself.
describe('TestPki', () => {
  let pki: TestPki;

  beforeAll(async () => {
    pki = await TestPki.create();
  });

  afterAll(async () => {
    const dir = pki?.dir;
    await pki?.cleanup();
    if (dir) expect(fs.existsSync(dir)).toBe(false);
  });

  describe('#issueLeaf', () => {
    it('issues a leaf that openssl verifies against the root, with AIA and CDP on 127.0.0.1', async () => {
      const leaf = await pki.issueLeaf('alice', {
        subject: '/C=IR/CN=زهرا محمدی',
        extendedKeyUsage: 'clientAuth',
      });
      const { stdout } = await pki.openssl(['verify', '-CAfile', pki.caBundlePath, leaf.certPath]);
      expect(stdout).toMatch(/: OK/);
      const d = describeCertificate(leaf.der);
      expect(d.subject).toBe('CN=زهرا محمدی,C=IR');
      expect(d.ocspUrls).toEqual([pki.ocspUrl]);
      expect(d.crlUrls).toEqual([pki.crlUrl()]);
      expect(d.caIssuerUrls).toEqual([pki.certificateUrl()]);
      expect(d.extendedKeyUsage).toEqual(['clientAuth']);
      expect(parseInt(d.serialNumber, 16)).toBe(parseInt(leaf.serial, 16));
    });

    it('issues with an explicit validity period', async () => {
      const start = new Date('2020-01-01T00:00:00Z');
      const end = new Date('2021-01-01T00:00:00Z');
      const d = describeCertificate((await pki.issueLeaf('old', { startDate: start, endDate: end })).der);
      expect([d.notBefore, d.notAfter]).toEqual([start.toISOString(), end.toISOString()]);
    });
  });

  describe('#issueFromCsr', () => {
    it('issues for a PEM or DER CSR made elsewhere, keeping its subject', async () => {
      const key = await pki.generateKey('csr-key');
      const csrPem = path.join(pki.dir, 'external.csr');
      await pki.openssl([
        'req',
        '-new',
        '-key',
        key,
        '-subj',
        '/O=بانک/CN=external',
        '-utf8',
        '-out',
        csrPem,
      ]);
      const fromPem = await pki.issueFromCsr('from-pem', fs.readFileSync(csrPem, 'utf8'));
      const csrDer = path.join(pki.dir, 'external.csr.der');
      await pki.openssl(['req', '-in', csrPem, '-outform', 'DER', '-out', csrDer]);
      const fromDer = await pki.issueFromCsr('from-der', new Uint8Array(fs.readFileSync(csrDer)));
      for (const cert of [fromPem, fromDer]) {
        expect(describeCertificate(cert.der).subject).toBe('CN=external,O=بانک');
        expect(cert.keyPath).toBeUndefined();
        const { stdout } = await pki.openssl(['verify', '-CAfile', pki.caBundlePath, cert.certPath]);
        expect(stdout).toMatch(/: OK/);
      }
    });
  });

  describe('#issueUnrecorded', () => {
    it('signs with the CA key without entering the certificate in the CA database', async () => {
      const ghost = await pki.issueUnrecorded('ghost');
      const { stdout } = await pki.openssl(['verify', '-CAfile', pki.caBundlePath, ghost.certPath]);
      expect(stdout).toMatch(/: OK/);
      const index = fs.readFileSync(path.join(pki.dir, 'intermediate', 'index.txt'), 'utf8');
      expect(index).not.toContain(`\t${ghost.serial}\t`);
    });
  });

  describe('#revoke + #generateCrl', () => {
    it('publishes a CRL that openssl uses to reject the revoked certificate', async () => {
      const leaf = await pki.issueLeaf('to-revoke');
      await pki.revoke(leaf, 'superseded');
      const crl = await pki.generateCrl();
      const served = new Uint8Array(await (await fetch(pki.crlUrl())).arrayBuffer());
      expect(served).toEqual(crl);
      const pem = path.join(pki.dir, 'intermediate.crl.pem');
      const result = await pki
        .openssl(['verify', '-crl_check', '-CAfile', pki.caBundlePath, '-CRLfile', pem, leaf.certPath])
        .then(
          (r) => r.stdout,
          (e: Error) => e.message,
        );
      expect(result).toMatch(/certificate revoked/);
    });
  });
});
