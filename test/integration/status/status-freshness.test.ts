// How long answers are kept (issue 17, section 4): `unknown` briefly, `good` and `revoked` until
// nextUpdate, failures not at all, and the signing policy's maxAge cap. Real openssl responder and CRLs.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRevocationCheck } from '../../../src/status/signing-policy.js';
import { StatusService } from '../../../src/status/status-service.js';
import { TestPki } from '../../helpers/test-ca.js';
import type { OcspResponder } from '../../helpers/test-ca.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

describe('StatusService freshness', () => {
  let pki: TestPki;
  let responder: OcspResponder;
  let issuers: Uint8Array[];
  const tempDirs: string[] = [];
  let offset = 0;
  const now = (): Date => new Date(Date.now() + offset);

  function tempDir(): string {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-freshness-'));
    tempDirs.push(d);
    return d;
  }

  beforeAll(async () => {
    pki = await TestPki.create();
    issuers = [pki.intermediate.der];
    // A responder answering with a day-long nextUpdate, as production ones do.
    responder = await pki.startOcsp({ nmin: 24 * 60 });
  });

  afterAll(async () => {
    await pki?.cleanup();
    for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it('keeps an unknown only minutes: a certificate the responder learns of later reads good', async () => {
    offset = 0;
    // Issued while the responder runs on its old database: it does not know the certificate yet.
    const fresh = await pki.issueLeaf('issued-minutes-ago', { crlUrl: null, reloadResponders: false });
    const service = new StatusService({ stateDir: tempDir(), now });
    const first = await service.check(fresh.der, { issuers });
    expect(first).toMatchObject({ status: 'unknown', source: 'ocsp' });
    expect(Date.parse(first.nextUpdate!) - Date.parse(first.thisUpdate)).toBe(24 * HOUR);

    await responder.restart();
    // Still within the short window: the cached unknown is the answer.
    expect((await service.check(fresh.der, { issuers })).status).toBe('unknown');
    expect(service.stats).toEqual({ networkRequests: 1, cacheHits: 1 });

    offset = 5 * MINUTE + 1000;
    const later = await service.check(fresh.der, { issuers });
    expect(later.status).toBe('good');
    expect(service.stats.networkRequests).toBe(2);

    // good is kept until its nextUpdate, hours later.
    offset = 20 * HOUR;
    expect(await service.check(fresh.der, { issuers })).toEqual(later);
    expect(service.stats.networkRequests).toBe(2);
  });

  it('ignores a day-long unknown left in the cache by an older agent', async () => {
    offset = 0;
    const stateDir = tempDir();
    const fresh = await pki.issueLeaf('old-cache-unknown', { crlUrl: null, reloadResponders: false });
    // An agent that kept unknown until nextUpdate (the old behaviour) wrote this file.
    const old = new StatusService({ stateDir, now, unknownTtlMs: 24 * HOUR });
    expect((await old.check(fresh.der, { issuers })).status).toBe('unknown');
    await responder.restart();
    offset = 6 * MINUTE;
    const service = new StatusService({ stateDir, now });
    expect((await service.check(fresh.der, { issuers })).status).toBe('good');
    expect(service.stats).toEqual({ networkRequests: 1, cacheHits: 0 });
  });

  it('does not keep a failure: the next check after the responder is back succeeds', async () => {
    offset = 0;
    const leaf = await pki.issueLeaf('after-outage', { crlUrl: null });
    const service = new StatusService({ now });
    await responder.stop();
    try {
      await expect(service.check(leaf.der, { issuers })).rejects.toMatchObject({
        code: 'ERR_STATUS_UNAVAILABLE',
      });
    } finally {
      await responder.start();
    }
    expect((await service.check(leaf.der, { issuers })).status).toBe('good');
    expect(service.stats.cacheHits).toBe(0);
  });

  it('maxAge: a good status older than the cap is fetched again before signing, and a revocation seen', async () => {
    offset = 0;
    const leaf = await pki.issueLeaf('max-age-ocsp', { crlUrl: null });
    const service = new StatusService({ stateDir: tempDir(), now });
    const capped = createRevocationCheck(service, 'block-revoked', now, 60_000);
    const uncapped = createRevocationCheck(service, 'block-revoked', now);
    expect((await capped(leaf.der, issuers)).status?.status).toBe('good');

    await pki.revoke(leaf, 'keyCompromise');
    offset = 30_000;
    // Within the cap: the cached good still answers.
    expect((await capped(leaf.der, issuers)).status?.status).toBe('good');
    expect(service.stats.networkRequests).toBe(1);

    offset = 2 * MINUTE;
    // Without a cap the day-long good would still allow the signature...
    expect((await uncapped(leaf.der, issuers)).status?.status).toBe('good');
    // ...with it, the status is fetched again and the revocation stops the signature.
    await expect(capped(leaf.der, issuers)).rejects.toMatchObject({ code: 'ERR_CERTIFICATE_REVOKED' });
    expect(service.stats.networkRequests).toBe(2);
  });

  it('maxAge: a cached CRL older than the cap is downloaded again', async () => {
    offset = 0;
    const leaf = await pki.issueLeaf('max-age-crl', { ocspUrl: null });
    await pki.generateCrl({ hours: 24 });
    const service = new StatusService({ now });
    const capped = createRevocationCheck(service, 'block-revoked', now, 60_000);
    expect((await capped(leaf.der, issuers)).status).toMatchObject({ status: 'good', source: 'crl' });

    await pki.revoke(leaf, 'superseded');
    await pki.generateCrl({ hours: 24 });
    offset = 2 * MINUTE;
    await expect(capped(leaf.der, issuers)).rejects.toMatchObject({
      code: 'ERR_CERTIFICATE_REVOKED',
      data: { source: 'crl', reason: 'superseded' },
    });
    expect(service.stats.networkRequests).toBe(2);
  });
});
