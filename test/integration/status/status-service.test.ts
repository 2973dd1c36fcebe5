import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BasicOCSPResponse, OCSPResponse } from '@peculiar/asn1-ocsp';
import { AsnConvert } from '@peculiar/asn1-schema';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KelidError } from '../../../src/model/errors.js';
import { STATUS_CACHE_DIR } from '../../../src/status/status-cache.js';
import { StatusService } from '../../../src/status/status-service.js';
import type { StatusAttempt } from '../../../src/status/status-service.js';
import { TestPki, freePort, startHangingServer, startHttpServer, startProxy } from '../../helpers/test-ca.js';
import type { OcspResponder, TestCertificate, TestHttpServer } from '../../helpers/test-ca.js';

const MINUTE = 60_000;

async function unavailable(p: Promise<unknown>): Promise<StatusAttempt[]> {
  const e = await p.then(
    () => {
      throw new Error('expected ERR_STATUS_UNAVAILABLE');
    },
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(KelidError);
  expect((e as KelidError).code).toBe('ERR_STATUS_UNAVAILABLE');
  return (e as KelidError).data.attempts as StatusAttempt[];
}

function flipSignatureByte(response: Uint8Array): Uint8Array {
  const outer = AsnConvert.parse(response, OCSPResponse);
  const basic = AsnConvert.parse(outer.responseBytes!.response.buffer, BasicOCSPResponse);
  const at = Buffer.from(response).indexOf(Buffer.from(basic.signature));
  expect(at).toBeGreaterThan(0);
  const out = response.slice();
  out[at + 10]! ^= 0x01;
  return out;
}

describe('StatusService', () => {
  let pki: TestPki;
  let responder: OcspResponder;
  let good: TestCertificate;
  let revoked: TestCertificate;
  let ghost: TestCertificate;
  let revokedAt: Date;
  const servers: TestHttpServer[] = [];
  const tempDirs: string[] = [];

  async function server(s: Promise<TestHttpServer>): Promise<TestHttpServer> {
    const started = await s;
    servers.push(started);
    return started;
  }

  function tempDir(): string {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-status-'));
    tempDirs.push(d);
    return d;
  }

  async function opensslVerdict(cert: TestCertificate, url: string): Promise<string | undefined> {
    const { stdout } = await pki.openssl([
      'ocsp',
      '-issuer',
      pki.intermediate.certPath,
      '-cert',
      cert.certPath,
      '-url',
      url,
      '-CAfile',
      pki.caBundlePath,
    ]);
    return /: (good|revoked|unknown)\n/.exec(stdout)?.[1];
  }

  beforeAll(async () => {
    pki = await TestPki.create();
    good = await pki.issueLeaf('good', { subject: '/C=IR/CN=علی رضایی' });
    revoked = await pki.issueLeaf('revoked');
    ghost = await pki.issueUnrecorded('ghost');
    revokedAt = await pki.revoke(revoked, 'keyCompromise');
    await pki.generateCrl();
    responder = await pki.startOcsp({ nmin: 60 });
  });

  afterAll(async () => {
    for (const s of servers) await s.close();
    await pki?.cleanup();
    for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
  });

  describe('#check', () => {
    it('returns good from the OCSP responder, as openssl ocsp does', async () => {
      const service = new StatusService();
      const status = await service.check(good.der, { issuers: [pki.intermediate.der] });
      expect(status).toMatchObject({ status: 'good', source: 'ocsp' });
      expect(Date.parse(status.nextUpdate!) - Date.parse(status.thisUpdate)).toBe(60 * MINUTE);
      expect(await opensslVerdict(good, responder.url)).toBe('good');
    });

    it('returns revoked with the reason and the time recorded by openssl ca', async () => {
      const status = await new StatusService().check(revoked.der, { issuers: [pki.intermediate.der] });
      expect(status).toMatchObject({ status: 'revoked', source: 'ocsp', reason: 'keyCompromise' });
      expect(status.revokedAt).toBe(revokedAt.toISOString());
      expect(await opensslVerdict(revoked, responder.url)).toBe('revoked');
    });

    it('returns unknown for a certificate signed by the CA key but absent from its database', async () => {
      const status = await new StatusService().check(ghost.der, { issuers: [pki.intermediate.der] });
      expect(status).toMatchObject({ status: 'unknown', source: 'ocsp' });
      expect(await opensslVerdict(ghost, responder.url)).toBe('unknown');
    });

    it('asks by GET for a small request and by POST when told to', async () => {
      const proxy = await server(startProxy(responder.url));
      const leaf = await pki.issueLeaf('via-proxy', { ocspUrl: proxy.url('/'), crlUrl: null });
      expect((await new StatusService().check(leaf.der, { issuers: [pki.intermediate.der] })).status).toBe(
        'good',
      );
      const post = new StatusService({ ocspRequestMethod: 'post' });
      expect((await post.check(leaf.der, { issuers: [pki.intermediate.der] })).status).toBe('good');
      expect(proxy.requests.map((r) => r.method)).toEqual(['GET', 'POST']);
      expect(proxy.requests[0]!.url.length).toBeGreaterThan(100);
    });

    it('fetches the issuer from AIA caIssuers as DER, PEM or PKCS#7 when none is given', async () => {
      await pki.openssl([
        'crl2pkcs7',
        '-nocrl',
        '-certfile',
        pki.intermediate.certPath,
        '-outform',
        'DER',
        '-out',
        path.join(pki.dir, 'www', 'intermediate.p7c'),
      ]);
      const pemUrl = pki.publish('intermediate.pem', pki.intermediate.pem);
      const p7cUrl = pki.http.url('/intermediate.p7c');
      for (const caIssuersUrl of [pki.certificateUrl(), pemUrl, p7cUrl]) {
        const leaf = await pki.issueLeaf(`aia-${path.extname(caIssuersUrl).slice(1)}`, { caIssuersUrl });
        const before = pki.http.requests.length;
        const service = new StatusService();
        expect(await service.check(leaf.der)).toMatchObject({ status: 'good', source: 'ocsp' });
        expect(pki.http.requests.slice(before).map((r) => r.url)).toEqual([new URL(caIssuersUrl).pathname]);
        expect(service.stats.networkRequests).toBe(2);
      }
    });

    it('refuses with issuer-not-found when no candidate signed the certificate and AIA has none', async () => {
      const leaf = await pki.issueLeaf('no-aia', { caIssuersUrl: null });
      const attempts = await unavailable(new StatusService().check(leaf.der, { issuers: [pki.root.der] }));
      expect(attempts.map((a) => a.reason)).toEqual(['issuer-not-found']);
    });

    it('falls back to the CRL when the OCSP responder is down', async () => {
      const closedPort = await freePort();
      const leaf = await pki.issueLeaf('ocsp-down', { ocspUrl: `http://127.0.0.1:${closedPort}/` });
      await pki.generateCrl();
      const status = await new StatusService().check(leaf.der, { issuers: [pki.intermediate.der] });
      expect(status).toMatchObject({ status: 'good', source: 'crl' });

      await responder.stop();
      try {
        const r = await new StatusService().check(revoked.der, { issuers: [pki.intermediate.der] });
        expect(r).toMatchObject({ status: 'revoked', source: 'crl', reason: 'keyCompromise' });
        expect(r.revokedAt).toBe(revokedAt.toISOString());
      } finally {
        await responder.start();
      }
    });

    it('fails with ERR_STATUS_UNAVAILABLE listing each source when all are down', async () => {
      const closedPort = await freePort();
      const leaf = await pki.issueLeaf('all-down', {
        ocspUrl: `http://127.0.0.1:${closedPort}/`,
        crlUrl: pki.http.url('/missing.crl'),
      });
      const attempts = await unavailable(
        new StatusService().check(leaf.der, { issuers: [pki.intermediate.der] }),
      );
      expect(attempts.map((a) => [a.source, a.reason])).toEqual([
        ['ocsp', 'network'],
        ['crl', 'http-status'],
      ]);
    });

    it('gives up at the deadline when the servers accept and never answer', async () => {
      const hanging = await server(startHangingServer());
      const leaf = await pki.issueLeaf('hanging', {
        ocspUrl: hanging.url('/'),
        crlUrl: hanging.url('/x.crl'),
      });
      const service = new StatusService({ timeoutMs: 1000 });
      const attempts = await unavailable(service.check(leaf.der, { issuers: [pki.intermediate.der] }));
      expect(attempts.map((a) => [a.source, a.reason])).toEqual([
        ['ocsp', 'timeout'],
        ['crl', 'timeout'],
      ]);
      expect(hanging.requests.map((r) => r.method)).toEqual(['GET', 'GET']);
    });

    it('refuses a response whose signature was altered, and uses the CRL instead', async () => {
      const proxy = await server(startProxy(responder.url, flipSignatureByte));
      const noCrl = await pki.issueLeaf('tampered', { ocspUrl: proxy.url('/'), crlUrl: null });
      const attempts = await unavailable(
        new StatusService().check(noCrl.der, { issuers: [pki.intermediate.der] }),
      );
      expect(attempts.map((a) => a.reason)).toEqual(['ocsp-bad-signature']);

      const withCrl = await pki.issueLeaf('tampered-crl', { ocspUrl: proxy.url('/') });
      await pki.generateCrl();
      const status = await new StatusService().check(withCrl.der, { issuers: [pki.intermediate.der] });
      expect(status).toMatchObject({ status: 'good', source: 'crl' });
    });

    it('accepts responses signed by the CA itself, with the responder named or identified by key hash', async () => {
      for (const responderIdByKey of [false, true]) {
        const port = await freePort();
        const ca = await pki.startOcsp({ signer: 'ca', port, nmin: 60, responderIdByKey });
        try {
          const leaf = await pki.issueLeaf(`ca-signed-${responderIdByKey}`, {
            ocspUrl: ca.url,
            crlUrl: null,
          });
          expect(
            await new StatusService().check(leaf.der, { issuers: [pki.intermediate.der] }),
          ).toMatchObject({
            status: 'good',
            source: 'ocsp',
          });
        } finally {
          await ca.stop();
        }
      }
    });

    it('refuses responders without id-kp-OCSPSigning or issued by another CA', async () => {
      const noEku = await pki.issueResponder('responder-no-eku', { ocspSigning: false });
      const otherCa = await pki.issueResponder('responder-root', { issuer: 'root' });
      const cases = [
        { signer: noEku, why: /lacks id-kp-OCSPSigning/ },
        { signer: otherCa, why: /not issued by the certificate issuer/ },
      ];
      for (const { signer, why } of cases) {
        const port = await freePort();
        const rogue = await pki.startOcsp({ signer, port, nmin: 60 });
        try {
          const leaf = await pki.issueLeaf(`leaf-${signer.name}`, { ocspUrl: rogue.url, crlUrl: null });
          const attempts = await unavailable(
            new StatusService().check(leaf.der, { issuers: [pki.intermediate.der] }),
          );
          expect(attempts.map((a) => a.reason)).toEqual(['ocsp-unauthorized-signer']);
          expect(attempts[0]!.message).toMatch(why);
          // openssl's own client refuses it too.
          const { stdout, stderr } = await pki
            .openssl([
              'ocsp',
              '-issuer',
              pki.intermediate.certPath,
              '-cert',
              leaf.certPath,
              '-url',
              rogue.url,
              '-CAfile',
              pki.caBundlePath,
            ])
            .catch((e: Error) => ({ stdout: '', stderr: e.message }));
          expect(`${stdout}${stderr}`).not.toMatch(/Response verify OK/);
        } finally {
          await rogue.stop();
        }
      }
    });

    it('refuses a response past its nextUpdate, and one from the future, beyond the clock skew', async () => {
      const port = await freePort();
      // Signed by the CA: a delegated responder certificate issued a moment ago is not valid 10 minutes
      // earlier, which would hide the freshness check behind the signer check.
      const short = await pki.startOcsp({ port, nmin: 1, signer: 'ca' });
      try {
        const leaf = await pki.issueLeaf('short-lived', { ocspUrl: short.url, crlUrl: null });
        const later = new StatusService({
          now: () => new Date(Date.now() + 10 * MINUTE),
          clockSkewMs: 5 * MINUTE,
        });
        expect(
          (await unavailable(later.check(leaf.der, { issuers: [pki.intermediate.der] }))).map(
            (a) => a.reason,
          ),
        ).toEqual(['ocsp-stale']);
        const earlier = new StatusService({
          now: () => new Date(Date.now() - 10 * MINUTE),
          clockSkewMs: 5 * MINUTE,
        });
        expect(
          (await unavailable(earlier.check(leaf.der, { issuers: [pki.intermediate.der] }))).map(
            (a) => a.reason,
          ),
        ).toEqual(['ocsp-not-yet-valid']);
        const inSkew = new StatusService({
          now: () => new Date(Date.now() + 3 * MINUTE),
          clockSkewMs: 5 * MINUTE,
        });
        expect((await inSkew.check(leaf.der, { issuers: [pki.intermediate.der] })).status).toBe('good');
      } finally {
        await short.stop();
      }
    });

    it('refuses a replayed response whose nonce is not the one sent', async () => {
      let first: Uint8Array | undefined;
      const replay = await server(
        startProxy(responder.url, (body) => {
          first ??= body;
          return first;
        }),
      );
      const leaf = await pki.issueLeaf('replayed', { ocspUrl: replay.url('/'), crlUrl: null });
      expect((await new StatusService().check(leaf.der, { issuers: [pki.intermediate.der] })).status).toBe(
        'good',
      );
      const attempts = await unavailable(
        new StatusService().check(leaf.der, { issuers: [pki.intermediate.der] }),
      );
      expect(attempts.map((a) => a.reason)).toEqual(['ocsp-nonce-mismatch']);
    });

    it('accepts a fresh response without a nonce unless a nonce is required', async () => {
      let canned: Uint8Array = new Uint8Array(0);
      const fixed = await server(
        startHttpServer((_req, res) => {
          res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(canned);
        }),
      );
      const leaf = await pki.issueLeaf('no-nonce', { crlUrl: null, ocspUrl: fixed.url('/') });
      const reqPath = path.join(pki.dir, 'no-nonce.req');
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
      canned = await pki.ocspRespond(new Uint8Array(fs.readFileSync(reqPath)), { nmin: 60 });

      expect(await new StatusService().check(leaf.der, { issuers: [pki.intermediate.der] })).toMatchObject({
        status: 'good',
        source: 'ocsp',
      });
      const strict = new StatusService({ requireNonce: true });
      const attempts = await unavailable(strict.check(leaf.der, { issuers: [pki.intermediate.der] }));
      expect(attempts.map((a) => a.reason)).toEqual(['ocsp-nonce-missing']);

      // The same canned answer is about `leaf` only.
      const other = await pki.issueLeaf('no-nonce-other', { crlUrl: null, ocspUrl: fixed.url('/') });
      const otherAttempts = await unavailable(
        new StatusService().check(other.der, { issuers: [pki.intermediate.der] }),
      );
      expect(otherAttempts.map((a) => a.reason)).toEqual(['ocsp-no-matching-response']);
    });

    it('answers a repeated check from the cache until nextUpdate, across instances', async () => {
      const stateDir = tempDir();
      let offset = 0;
      const now = () => new Date(Date.now() + offset);
      const first = new StatusService({ stateDir, now });
      const a = await first.check(good.der, { issuers: [pki.intermediate.der] });
      expect(first.stats.networkRequests).toBe(1);
      const b = await first.check(good.der, { issuers: [pki.intermediate.der] });
      expect(b).toEqual(a);
      expect(first.stats).toEqual({ networkRequests: 1, cacheHits: 1 });

      const second = new StatusService({ stateDir, now });
      expect(await second.check(good.der)).toEqual(a);
      expect(second.stats).toEqual({ networkRequests: 0, cacheHits: 1 });

      offset = Date.parse(a.nextUpdate!) - Date.now() - MINUTE;
      expect(await second.check(good.der)).toEqual(a);
      expect(second.stats.networkRequests).toBe(0);

      offset = Date.parse(a.nextUpdate!) - Date.now() + MINUTE;
      const refreshed = await second.check(good.der, { issuers: [pki.intermediate.der] });
      expect(second.stats.networkRequests).toBe(1);
      expect(refreshed.status).toBe('good');
      expect(refreshed.checkedAt).not.toBe(a.checkedAt);
    });

    it('ignores and replaces a corrupt cache file', async () => {
      const stateDir = tempDir();
      await new StatusService({ stateDir }).check(good.der, { issuers: [pki.intermediate.der] });
      const dir = path.join(stateDir, STATUS_CACHE_DIR);
      const files = fs.readdirSync(dir);
      expect(files).toHaveLength(1);
      fs.writeFileSync(path.join(dir, files[0]!), '{"version":1,"key":');
      const service = new StatusService({ stateDir });
      expect((await service.check(good.der, { issuers: [pki.intermediate.der] })).status).toBe('good');
      expect(service.stats.networkRequests).toBe(1);
      const rewritten = JSON.parse(fs.readFileSync(path.join(dir, files[0]!), 'utf8')) as {
        status: { status: string };
      };
      expect(rewritten.status.status).toBe('good');
    });

    it('makes one request for concurrent checks of the same certificate', async () => {
      const service = new StatusService();
      const [x, y] = await Promise.all([
        service.check(good.der, { issuers: [pki.intermediate.der] }),
        service.check(good.der, { issuers: [pki.intermediate.der] }),
      ]);
      expect(x).toEqual(y);
      expect(service.stats.networkRequests).toBe(1);
    });

    it('refuses bytes that are not a certificate with ERR_INVALID_INPUT', async () => {
      await expect(
        new StatusService().check(new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x01])),
      ).rejects.toMatchObject({
        code: 'ERR_INVALID_INPUT',
      });
    });
  });
});
