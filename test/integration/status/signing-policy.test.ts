import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KelidError } from '../../../src/model/errors.js';
import type { ErrorCode } from '../../../src/model/errors.js';
import { checkBeforeSigning, createRevocationCheck } from '../../../src/status/signing-policy.js';
import type { EnforceOnSign } from '../../../src/status/signing-policy.js';
import { StatusService } from '../../../src/status/status-service.js';
import { TestPki, freePort } from '../../helpers/test-ca.js';
import type { TestCertificate } from '../../helpers/test-ca.js';

const DAY = 24 * 60 * 60_000;

async function errorOf(p: Promise<unknown>): Promise<KelidError> {
  const e = await p.then(
    () => {
      throw new Error('expected a KelidError');
    },
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(KelidError);
  return e as KelidError;
}

describe('checkBeforeSigning', () => {
  let pki: TestPki;
  let good: TestCertificate;
  let revoked: TestCertificate;
  let ghost: TestCertificate;
  let expired: TestCertificate;
  let unreachable: TestCertificate;
  let issuers: Uint8Array[];

  beforeAll(async () => {
    pki = await TestPki.create();
    issuers = [pki.intermediate.der];
    good = await pki.issueLeaf('good');
    revoked = await pki.issueLeaf('revoked');
    ghost = await pki.issueUnrecorded('ghost');
    expired = await pki.issueLeaf('expired', {
      startDate: new Date(Date.now() - 400 * DAY),
      endDate: new Date(Date.now() - 35 * DAY),
    });
    unreachable = await pki.issueLeaf('unreachable', {
      ocspUrl: `http://127.0.0.1:${await freePort()}/`,
      crlUrl: null,
    });
    await pki.revoke(revoked, 'keyCompromise');
    await pki.startOcsp({ nmin: 60 });
  });

  afterAll(async () => {
    await pki?.cleanup();
  });

  it('returns the good status under block-revoked and require-good', async () => {
    for (const policy of ['block-revoked', 'require-good'] as const) {
      const r = await checkBeforeSigning(new StatusService(), good.der, issuers, policy);
      expect(r.status).toMatchObject({ status: 'good', source: 'ocsp' });
      expect(r.warning).toBeUndefined();
    }
  });

  it('refuses a revoked certificate with ERR_CERTIFICATE_REVOKED and the reason', async () => {
    for (const policy of ['block-revoked', 'require-good'] as const) {
      const e = await errorOf(checkBeforeSigning(new StatusService(), revoked.der, issuers, policy));
      expect(e.code).toBe('ERR_CERTIFICATE_REVOKED');
      expect(e.data).toMatchObject({ reason: 'keyCompromise', source: 'ocsp' });
      expect(typeof e.data.revokedAt).toBe('string');
    }
  });

  it('allows an unknown or unavailable status under block-revoked, with a warning for the consent UI', async () => {
    const unknown = await checkBeforeSigning(new StatusService(), ghost.der, issuers, 'block-revoked');
    expect(unknown).toEqual({
      status: expect.objectContaining({ status: 'unknown' }),
      warning: 'status-unknown',
    });
    const down = await checkBeforeSigning(new StatusService(), unreachable.der, issuers, 'block-revoked');
    expect(down).toEqual({ warning: 'status-unavailable' });
  });

  it('refuses unknown and unavailable under require-good with ERR_STATUS_UNAVAILABLE', async () => {
    const unknown = await errorOf(
      checkBeforeSigning(new StatusService(), ghost.der, issuers, 'require-good'),
    );
    expect(unknown.code).toBe('ERR_STATUS_UNAVAILABLE');
    expect(unknown.retriable).toBe(false);
    expect(unknown.data).toMatchObject({ status: 'unknown' });
    const down = await errorOf(
      checkBeforeSigning(new StatusService(), unreachable.der, issuers, 'require-good'),
    );
    expect(down.code).toBe('ERR_STATUS_UNAVAILABLE');
    expect(down.retriable).toBe(true);
  });

  it('does not check the status under off', async () => {
    const service = new StatusService();
    expect(await checkBeforeSigning(service, revoked.der, issuers, 'off')).toEqual({});
    expect(service.stats.networkRequests).toBe(0);
  });

  it('refuses an expired or not yet valid certificate with ERR_CERTIFICATE_EXPIRED under every policy', async () => {
    const policies: EnforceOnSign[] = ['block-revoked', 'require-good', 'off'];
    for (const policy of policies) {
      const service = new StatusService();
      const e = await errorOf(checkBeforeSigning(service, expired.der, issuers, policy));
      expect(e.code).toBe<ErrorCode>('ERR_CERTIFICATE_EXPIRED');
      const early = await errorOf(
        checkBeforeSigning(service, good.der, issuers, policy, new Date(Date.now() - 2 * DAY)),
      );
      expect(early.code).toBe<ErrorCode>('ERR_CERTIFICATE_EXPIRED');
      expect(service.stats.networkRequests).toBe(0);
    }
  });

  it('passes on failures other than ERR_STATUS_UNAVAILABLE even under block-revoked', async () => {
    const failing = {
      check: () => Promise.reject(new KelidError('ERR_INTERNAL', 'broken')),
    };
    const e = await errorOf(checkBeforeSigning(failing, good.der, issuers, 'block-revoked'));
    expect(e.code).toBe('ERR_INTERNAL');
  });

  describe('createRevocationCheck', () => {
    it('binds a service and a policy into the signing service hook', async () => {
      const check = createRevocationCheck(new StatusService(), 'block-revoked');
      expect((await check(good.der, issuers)).status?.status).toBe('good');
      expect((await errorOf(check(revoked.der, issuers))).code).toBe('ERR_CERTIFICATE_REVOKED');
    });
  });
});
