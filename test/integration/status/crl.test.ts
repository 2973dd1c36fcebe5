import * as fs from 'node:fs';
import * as path from 'node:path';
import { CertificateList } from '@peculiar/asn1-x509';
import { AsnConvert } from '@peculiar/asn1-schema';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeCertificate } from '../../../src/pki/certificate.js';
import { crlStatus, verifyCrl } from '../../../src/status/crl.js';
import { StatusSourceError } from '../../../src/status/source-error.js';
import { TestPki } from '../../helpers/test-ca.js';
import type { TestCertificate } from '../../helpers/test-ca.js';

const SKEW = 5 * 60_000;

function refusal(fn: () => unknown): StatusSourceError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(StatusSourceError);
    return e as StatusSourceError;
  }
  throw new Error('expected a refusal');
}

describe('CRL', () => {
  let pki: TestPki;
  let good: TestCertificate;
  let revoked: TestCertificate;
  let hold: TestCertificate;
  let revokedAt: Date;
  let crl: Uint8Array;

  beforeAll(async () => {
    pki = await TestPki.create();
    good = await pki.issueLeaf('good');
    revoked = await pki.issueLeaf('revoked');
    hold = await pki.issueLeaf('hold');
    revokedAt = await pki.revoke(revoked, 'cessationOfOperation');
    await pki.revoke(hold, 'certificateHold');
    crl = await pki.generateCrl({ hours: 2 });
  });

  afterAll(async () => {
    await pki?.cleanup();
  });

  async function opensslVerify(cert: TestCertificate): Promise<string> {
    const crlPem = path.join(pki.dir, 'intermediate.crl.pem');
    return pki
      .openssl(['verify', '-crl_check', '-CAfile', pki.caBundlePath, '-CRLfile', crlPem, cert.certPath])
      .then(
        (r) => r.stdout,
        (e: Error) => e.message,
      );
  }

  describe('verifyCrl + crlStatus', () => {
    it('agrees with openssl verify -crl_check on good and revoked certificates', async () => {
      const issuer = describeCertificate(pki.intermediate.der);
      const verified = verifyCrl(crl, issuer);
      const now = new Date();
      expect(crlStatus(verified, describeCertificate(good.der), now, SKEW).status).toBe('good');
      expect(await opensslVerify(good)).toMatch(/: OK/);

      const r = crlStatus(verified, describeCertificate(revoked.der), now, SKEW);
      expect(r).toMatchObject({ status: 'revoked', reason: 'cessationOfOperation' });
      expect(r.revokedAt!.toISOString()).toBe(revokedAt.toISOString());
      expect(await opensslVerify(revoked)).toMatch(/certificate revoked/);

      expect(crlStatus(verified, describeCertificate(hold.der), now, SKEW)).toMatchObject({
        status: 'revoked',
        reason: 'certificateHold',
      });
      expect(r.nextUpdate!.getTime() - r.thisUpdate.getTime()).toBe(2 * 60 * 60_000);
    });

    it('accepts the PEM form', () => {
      const pem = fs.readFileSync(path.join(pki.dir, 'intermediate.crl.pem'));
      const verified = verifyCrl(new Uint8Array(pem), describeCertificate(pki.intermediate.der));
      expect(crlStatus(verified, describeCertificate(revoked.der), new Date(), SKEW).status).toBe('revoked');
    });

    it('refuses a CRL of another issuer', async () => {
      const rootCrl = await pki.generateCrl({ ca: 'root' });
      const e = refusal(() => verifyCrl(rootCrl, describeCertificate(pki.intermediate.der)));
      expect(e.reason).toBe('crl-wrong-issuer');
    });

    it('refuses a CRL whose signature was altered', () => {
      const list = AsnConvert.parse(crl, CertificateList);
      const at = Buffer.from(crl).indexOf(Buffer.from(list.signature));
      expect(at).toBeGreaterThan(0);
      const tampered = crl.slice();
      tampered[at + 10]! ^= 0x01;
      const e = refusal(() => verifyCrl(tampered, describeCertificate(pki.intermediate.der)));
      expect(e.reason).toBe('crl-bad-signature');
    });

    it('refuses a CRL whose listed entries were altered', () => {
      // Change the revoked entry's serial (its INTEGER TLV): the signature no longer covers the list.
      const serial = Buffer.from(revoked.serial.length % 2 ? `0${revoked.serial}` : revoked.serial, 'hex');
      const tlv = Buffer.concat([Buffer.from([0x02, serial.length]), serial]);
      const at = Buffer.from(crl).indexOf(tlv);
      expect(at).toBeGreaterThan(0);
      expect(Buffer.from(crl).indexOf(tlv, at + 1)).toBe(-1);
      const tampered = crl.slice();
      tampered[at + tlv.length - 1]! ^= 0x40;
      const e = refusal(() => verifyCrl(tampered, describeCertificate(pki.intermediate.der)));
      expect(e.reason).toBe('crl-bad-signature');
    });

    it('refuses a CRL past nextUpdate or before thisUpdate, beyond the clock skew', () => {
      const verified = verifyCrl(crl, describeCertificate(pki.intermediate.der));
      const leaf = describeCertificate(good.der);
      const later = new Date(verified.nextUpdate!.getTime() + 2 * SKEW);
      expect(refusal(() => crlStatus(verified, leaf, later, SKEW)).reason).toBe('crl-stale');
      const inSkew = new Date(verified.nextUpdate!.getTime() + SKEW / 2);
      expect(crlStatus(verified, leaf, inSkew, SKEW).status).toBe('good');
      const earlier = new Date(verified.thisUpdate.getTime() - 2 * SKEW);
      expect(refusal(() => crlStatus(verified, leaf, earlier, SKEW)).reason).toBe('crl-not-yet-valid');
    });

    it('refuses bytes that are not a CRL', () => {
      expect(
        refusal(() => verifyCrl(pki.intermediate.der, describeCertificate(pki.intermediate.der))).reason,
      ).toBe('crl-malformed');
      expect(
        refusal(() => verifyCrl(new TextEncoder().encode('nope'), describeCertificate(pki.intermediate.der)))
          .reason,
      ).toBe('crl-malformed');
    });
  });
});
