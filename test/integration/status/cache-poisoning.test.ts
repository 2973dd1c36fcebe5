import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isKelidError } from '../../../src/model/errors.js';
import { describeCertificate } from '../../../src/pki/certificate.js';
import { checkBeforeSigning } from '../../../src/status/signing-policy.js';
import { StatusService } from '../../../src/status/status-service.js';
import { TestPki } from '../../helpers/test-ca.js';
import type { TestCertificate } from '../../helpers/test-ca.js';

// The status service alone (the agent-level attack is in test/e2e/agent/status-poisoning.test.ts):
// what a page's check with its own certificate and issuer may leave behind for the token's checks, in
// the cache (memory and the state directory the CLI shares) and in a check still running.

describe('StatusService: a page-supplied certificate or issuer never answers for another certificate', () => {
  let pki: TestPki;
  let fake: TestPki;
  let genuine: TestCertificate;
  let noAia: TestCertificate;
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-cache-poison-'));

  beforeAll(async () => {
    pki = await TestPki.create();
    fake = await TestPki.create({
      rootSubject: '/C=IR/O=Kelid Test/CN=Kelid Test Issuing CA',
      rootSubjectKeyIdentifier: describeCertificate(pki.intermediate.der).subjectKeyIdentifier!,
    });
    genuine = await pki.issueLeaf('genuine', { ocspUrl: null });
    noAia = await pki.issueLeaf('no-aia', { ocspUrl: null, caIssuersUrl: null });
    await pki.revoke(genuine, 'keyCompromise');
    await pki.revoke(noAia, 'keyCompromise');
    await pki.generateCrl();
  });

  afterAll(async () => {
    await pki?.cleanup();
    await fake?.cleanup();
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  it('a look-alike checked against a fake CA (empty CRL) leaves the genuine one revoked, also across processes', async () => {
    const alike = await fake.issueLeaf('look-alike', {
      issuer: 'root',
      serial: genuine.serial,
      ocspUrl: null,
    });
    const page = new StatusService({ stateDir, allowPrivateNetworks: true });
    expect(await page.check(alike.der, { issuers: [fake.root.der], callerSupplied: true })).toMatchObject({
      status: 'good',
      source: 'crl',
    });
    expect(await page.check(genuine.der, { issuers: [pki.intermediate.der] })).toMatchObject({
      status: 'revoked',
    });
    // Another process (the CLI) reading the same state directory.
    const other = new StatusService({ stateDir });
    expect(await other.check(genuine.der, { issuers: [pki.intermediate.der] })).toMatchObject({
      status: 'revoked',
    });
  });

  it("a page's check of the genuine certificate with a fake issuer, still running, is not the signing check's answer", async () => {
    const service = new StatusService({ allowPrivateNetworks: true });
    // Same certificate, started first: it finds no issuer (the fake one does not verify, no caIssuers).
    const page = service.check(noAia.der, { issuers: [fake.root.der], callerSupplied: true });
    const signing = checkBeforeSigning(service, noAia.der, [pki.intermediate.der], 'block-revoked');
    const pageError = await page.catch((e: unknown) => e);
    expect(isKelidError(pageError, 'ERR_STATUS_UNAVAILABLE')).toBe(true);
    const signingError = await signing.then(
      (r) => r,
      (e: unknown) => e,
    );
    expect(isKelidError(signingError, 'ERR_CERTIFICATE_REVOKED')).toBe(true);
  });
});
