import * as fs from 'node:fs';
import * as path from 'node:path';
import { BasicOCSPResponse, OCSPResponse } from '@peculiar/asn1-ocsp';
import { AsnConvert } from '@peculiar/asn1-schema';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeCertificate } from '../../../src/pki/certificate.js';
import type { CertificateDescription } from '../../../src/pki/certificate.js';
import { buildOcspRequest, verifyOcspResponse } from '../../../src/status/ocsp.js';
import type { OcspVerifyOptions } from '../../../src/status/ocsp.js';
import { StatusSourceError } from '../../../src/status/source-error.js';
import { TestPki } from '../../helpers/test-ca.js';
import type { OcspResponderOptions, TestCertificate } from '../../helpers/test-ca.js';

function signatureOid(response: Uint8Array): string {
  const outer = AsnConvert.parse(response, OCSPResponse);
  return AsnConvert.parse(outer.responseBytes!.response.buffer, BasicOCSPResponse).signatureAlgorithm
    .algorithm;
}

function hashLines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^(Hash Algorithm|Issuer Name Hash|Issuer Key Hash|Serial Number):/.test(l));
}

describe('OCSP', () => {
  let pki: TestPki;
  let leaf: TestCertificate;
  let issuer: CertificateDescription;
  let rsaResponder: TestCertificate;

  beforeAll(async () => {
    pki = await TestPki.create();
    leaf = await pki.issueLeaf('leaf');
    issuer = describeCertificate(pki.intermediate.der);
    rsaResponder = await pki.issueResponder('rsa-responder', { key: 'rsa-2048' });
  });

  afterAll(async () => {
    await pki?.cleanup();
  });

  function options(nonce?: Uint8Array): OcspVerifyOptions {
    return {
      certificate: describeCertificate(leaf.der),
      issuer,
      ...(nonce ? { nonce } : {}),
      now: new Date(),
      clockSkewMs: 5 * 60_000,
      maxAgeMs: 5 * 60_000,
    };
  }

  async function respond(responder: OcspResponderOptions, cert: TestCertificate = leaf) {
    const request = buildOcspRequest(describeCertificate(cert.der), issuer);
    const response = await pki.ocspRespond(request.der, { nmin: 60, ...responder });
    return { request, response };
  }

  function refusal(fn: () => unknown): StatusSourceError {
    try {
      fn();
    } catch (e) {
      expect(e).toBeInstanceOf(StatusSourceError);
      return e as StatusSourceError;
    }
    throw new Error('expected a refusal');
  }

  describe('buildOcspRequest', () => {
    it('is read by openssl with the CertID openssl computes itself and our nonce', async () => {
      const request = buildOcspRequest(describeCertificate(leaf.der), issuer);
      const ours = path.join(pki.dir, 'ours.req');
      fs.writeFileSync(ours, request.der);
      const parsed = await pki.openssl(['ocsp', '-reqin', ours, '-req_text']);
      const reference = await pki.openssl([
        'ocsp',
        '-issuer',
        pki.intermediate.certPath,
        '-cert',
        leaf.certPath,
        '-no_nonce',
        '-req_text',
        '-reqout',
        path.join(pki.dir, 'theirs.req'),
      ]);
      expect(hashLines(parsed.stdout)).toHaveLength(4);
      expect(hashLines(parsed.stdout)).toEqual(hashLines(reference.stdout));
      expect(parsed.stdout.replace(/\s/g, '')).toContain(
        `OCSPNonce:0420${Buffer.from(request.nonce).toString('hex').toUpperCase()}`,
      );
      expect(request.nonce).toHaveLength(32);
    });

    it('uses a different nonce for every request', () => {
      const d = describeCertificate(leaf.der);
      expect(buildOcspRequest(d, issuer).nonce).not.toEqual(buildOcspRequest(d, issuer).nonce);
    });
  });

  describe('verifyOcspResponse', () => {
    const cases: { name: string; responder: () => OcspResponderOptions; oid: string }[] = [
      { name: 'ECDSA P-256 with SHA-256', responder: () => ({}), oid: '1.2.840.10045.4.3.2' },
      { name: 'ECDSA with SHA-384', responder: () => ({ rmd: 'sha384' }), oid: '1.2.840.10045.4.3.3' },
      { name: 'ECDSA with SHA-512', responder: () => ({ rmd: 'sha512' }), oid: '1.2.840.10045.4.3.4' },
      {
        name: 'RSA PKCS#1 v1.5 with SHA-256',
        responder: () => ({ signer: rsaResponder }),
        oid: '1.2.840.113549.1.1.11',
      },
      {
        name: 'RSA-PSS with SHA-384',
        responder: () => ({ signer: rsaResponder, rmd: 'sha384', rsigopt: ['rsa_padding_mode:pss'] }),
        oid: '1.2.840.113549.1.1.10',
      },
    ];
    for (const c of cases) {
      it(`accepts a delegated response signed with ${c.name}`, async () => {
        const { request, response } = await respond(c.responder());
        expect(signatureOid(response)).toBe(c.oid);
        const result = verifyOcspResponse(response, options(request.nonce));
        expect(result.status).toBe('good');
        expect(result.nextUpdate!.getTime() - result.thisUpdate.getTime()).toBe(60 * 60_000);
      });
    }

    it('refuses a response signed with SHA-1', async () => {
      const { request, response } = await respond({ rmd: 'sha1' });
      expect(signatureOid(response)).toBe('1.2.840.10045.4.1');
      expect(refusal(() => verifyOcspResponse(response, options(request.nonce))).reason).toBe(
        'unsupported-algorithm',
      );
    });

    it('refuses a delegated response that does not carry the responder certificate', async () => {
      const { request, response } = await respond({ noCerts: true });
      expect(refusal(() => verifyOcspResponse(response, options(request.nonce))).reason).toBe(
        'ocsp-unauthorized-signer',
      );
    });

    it('refuses a response to another request (nonce) and checks freshness against now', async () => {
      const { response } = await respond({});
      const other = buildOcspRequest(describeCertificate(leaf.der), issuer);
      expect(refusal(() => verifyOcspResponse(response, options(other.nonce))).reason).toBe(
        'ocsp-nonce-mismatch',
      );
      const late = { ...options(), now: new Date(Date.now() + 2 * 60 * 60_000) };
      expect(refusal(() => verifyOcspResponse(response, late)).reason).toBe('ocsp-stale');
    });

    it('refuses a response without nextUpdate or nonce once it is older than maxAge', async () => {
      const reqPath = path.join(pki.dir, 'plain.req');
      await pki.openssl([
        'ocsp',
        '-issuer',
        pki.intermediate.certPath,
        '-cert',
        leaf.certPath,
        '-no_nonce',
        '-reqout',
        reqPath,
      ]);
      const response = await pki.ocspRespond(new Uint8Array(fs.readFileSync(reqPath)), { signer: 'ca' });
      expect(verifyOcspResponse(response, options()).nextUpdate).toBeUndefined();
      const later = { ...options(), now: new Date(Date.now() + 11 * 60_000) };
      expect(refusal(() => verifyOcspResponse(response, later)).reason).toBe('ocsp-stale');
    });

    it('reports the revocation reason and time that openssl prints', async () => {
      const reasons = ['superseded', 'cessationOfOperation', 'certificateHold', undefined] as const;
      for (const reason of reasons) {
        const cert = await pki.issueLeaf(`revoked-${reason ?? 'none'}`);
        const revokedAt = await pki.revoke(cert, reason);
        const request = buildOcspRequest(describeCertificate(cert.der), issuer);
        const response = await pki.ocspRespond(request.der, { nmin: 60 });
        const result = verifyOcspResponse(response, {
          ...options(request.nonce),
          certificate: describeCertificate(cert.der),
        });
        expect(result.status).toBe('revoked');
        expect(result.revokedAt!.toISOString()).toBe(revokedAt.toISOString());
        expect(result.reason).toBe(reason);

        const respPath = path.join(pki.dir, `${cert.name}.resp`);
        fs.writeFileSync(respPath, response);
        const { stdout } = await pki.openssl(['ocsp', '-respin', respPath, '-resp_text', '-noverify']);
        const printed = /Revocation Reason: (\w+)/.exec(stdout)?.[1];
        expect(printed).toBe(reason);
      }
    });
  });
});
