// Outgoing fetches through a forward proxy (issue 17, section 5): OCSP, CRL, caIssuers and the TSA
// honour HTTP_PROXY / HTTPS_PROXY / NO_PROXY and config `proxy`, through a real tinyproxy whose log
// proves which requests it carried.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { requestTimestamp } from '../../../src/signing/timestamp.js';
import { fetchBytes } from '../../../src/status/http-fetch.js';
import { StatusService } from '../../../src/status/status-service.js';
import type { StatusAttempt } from '../../../src/status/status-service.js';
import { startForwardProxy } from '../../helpers/forward-proxy.js';
import type { ForwardProxy } from '../../helpers/forward-proxy.js';
import { TestPki, freePort } from '../../helpers/test-ca.js';
import type { OcspResponder, TestCertificate } from '../../helpers/test-ca.js';
import { startTestTsa } from '../../helpers/test-tsa.js';
import type { TestTsa } from '../../helpers/test-tsa.js';

const run = promisify(execFile);
const repo = path.resolve(import.meta.dirname, '../../..');
const PROXY_VARS = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'NO_PROXY', 'no_proxy'];

describe('fetches through a forward proxy (tinyproxy)', () => {
  let proxy: ForwardProxy;
  let pki: TestPki;
  let responder: OcspResponder;
  let tsa: TestTsa;
  let leaf: TestCertificate;
  let crlOnly: TestCertificate;
  let issuers: Uint8Array[];
  const saved: Record<string, string | undefined> = {};

  beforeAll(async () => {
    proxy = await startForwardProxy();
    pki = await TestPki.create();
    issuers = [pki.intermediate.der];
    leaf = await pki.issueLeaf('proxied');
    crlOnly = await pki.issueLeaf('proxied-crl', { ocspUrl: null });
    await pki.generateCrl();
    responder = await pki.startOcsp({ nmin: 60 });
    tsa = await startTestTsa();
  });

  afterAll(async () => {
    await tsa?.close();
    await pki?.cleanup();
    await proxy?.close();
  });

  beforeEach(() => {
    for (const name of PROXY_VARS) {
      saved[name] = process.env[name];
      delete process.env[name];
    }
  });

  afterEach(() => {
    for (const name of PROXY_VARS) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  });

  function newRequests(before: number): string[] {
    return proxy.requests().slice(before);
  }

  it('asks the OCSP responder through HTTP_PROXY', async () => {
    process.env.HTTP_PROXY = proxy.url;
    const before = proxy.requests().length;
    const status = await new StatusService().check(leaf.der, { issuers });
    expect(status).toMatchObject({ status: 'good', source: 'ocsp' });
    expect(newRequests(before)).toEqual([
      expect.stringMatching(new RegExp(`^GET ${responder.url}\\S+ HTTP/1.1$`)),
    ]);
  });

  it('fetches the issuer (AIA caIssuers) and the CRL through http_proxy', async () => {
    process.env.http_proxy = proxy.url;
    const before = proxy.requests().length;
    const status = await new StatusService().check(crlOnly.der);
    expect(status).toMatchObject({ status: 'good', source: 'crl' });
    expect(newRequests(before)).toEqual([
      `GET ${pki.certificateUrl()} HTTP/1.1`,
      `GET ${pki.crlUrl()} HTTP/1.1`,
    ]);
  });

  it('goes direct for hosts in NO_PROXY', async () => {
    process.env.HTTP_PROXY = proxy.url;
    process.env.NO_PROXY = 'example.ir, 127.0.0.1';
    const before = proxy.requests().length;
    expect((await new StatusService().check(leaf.der, { issuers })).status).toBe('good');
    expect(newRequests(before)).toEqual([]);
  });

  it('uses config `proxy` without any environment, and "direct" ignores the environment', async () => {
    let before = proxy.requests().length;
    expect((await new StatusService({ proxy: proxy.url }).check(leaf.der, { issuers })).status).toBe('good');
    expect(newRequests(before)).toHaveLength(1);

    process.env.HTTP_PROXY = proxy.url;
    before = proxy.requests().length;
    expect((await new StatusService({ proxy: 'direct' }).check(leaf.der, { issuers })).status).toBe('good');
    expect(newRequests(before)).toEqual([]);
  });

  it('reports a proxy that does not answer as the source failing, without going direct', async () => {
    process.env.HTTP_PROXY = `http://127.0.0.1:${await freePort()}`;
    const e = await new StatusService().check(leaf.der, { issuers }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'ERR_STATUS_UNAVAILABLE' });
    const attempts = (e as { data: { attempts: StatusAttempt[] } }).data.attempts;
    expect(attempts.map((a) => a.reason)).toEqual(['network', 'network']);
  });

  it('posts the time-stamp query to the TSA through the proxy', async () => {
    process.env.HTTP_PROXY = proxy.url;
    const before = proxy.requests().length;
    const served = tsa.requests;
    const token = await requestTimestamp(tsa.url, randomBytes(32), { hash: 'SHA-256' });
    expect(token.length).toBeGreaterThan(100);
    expect(tsa.requests).toBe(served + 1);
    expect(newRequests(before)).toEqual([`POST ${tsa.url} HTTP/1.1`]);
  });

  it('keeps a page-supplied certificate off private addresses: refused before the proxy is asked', async () => {
    process.env.HTTP_PROXY = proxy.url;
    const before = proxy.requests().length;
    // A page's certificate whose OCSP and CRL URLs point at the loopback, by address and by name.
    const sneaky = await pki.issueLeaf('page-sneaky', {
      ocspUrl: responder.url,
      crlUrl: pki.crlUrl().replace('127.0.0.1', 'localhost'),
    });
    const e = await new StatusService({ coarseErrors: false })
      .check(sneaky.der, { issuers, callerSupplied: true })
      .catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'ERR_STATUS_UNAVAILABLE' });
    // The proxy would have reached them: the agent did not ask it to.
    expect(newRequests(before)).toEqual([]);
    // The same certificate from a token (no restriction) is checked through the proxy.
    expect((await new StatusService().check(sneaky.der, { issuers })).status).toBe('good');
    expect(newRequests(before)).toHaveLength(1);
  });

  describe('https through CONNECT', () => {
    let dir: string;
    let server: https.Server;
    let url: string;

    beforeAll(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-proxy-tls-'));
      await run(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:P-256',
          '-nodes',
          '-keyout',
          'key.pem',
          '-out',
          'cert.pem',
          '-days',
          '2',
          '-subj',
          '/CN=127.0.0.1',
          '-addext',
          'subjectAltName=IP:127.0.0.1',
        ],
        { cwd: dir },
      );
      server = https.createServer(
        {
          key: fs.readFileSync(path.join(dir, 'key.pem')),
          cert: fs.readFileSync(path.join(dir, 'cert.pem')),
        },
        (_req, res) =>
          res.writeHead(200, { 'content-type': 'application/pkix-crl' }).end('through the tunnel'),
      );
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/ca.crl`;
    });

    afterAll(async () => {
      await new Promise<void>((resolve) => server?.close(() => resolve()));
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('tunnels https with CONNECT and verifies the server end to end', async () => {
      const before = proxy.requests().length;
      // A separate Node that trusts the test server's certificate (NODE_EXTRA_CA_CERTS is read at start).
      const script = path.join(dir, 'fetch.mts');
      fs.writeFileSync(
        script,
        `import { fetchBytes } from ${JSON.stringify(path.join(repo, 'src/status/http-fetch.ts'))};
const body = await fetchBytes(process.argv[2]!, { maxBytes: 1024, timeoutMs: 5000 });
process.stdout.write(Buffer.from(body).toString());
`,
      );
      const { stdout } = await run(path.join(repo, 'node_modules/.bin/tsx'), [script, url], {
        env: { ...process.env, HTTPS_PROXY: proxy.url, NODE_EXTRA_CA_CERTS: path.join(dir, 'cert.pem') },
      });
      expect(stdout).toBe('through the tunnel');
      const port = new URL(url).port;
      expect(newRequests(before)).toEqual([`CONNECT 127.0.0.1:${port} HTTP/1.1`]);
    });

    it('refuses a server whose certificate is not trusted, through the tunnel too', async () => {
      process.env.HTTPS_PROXY = proxy.url;
      const before = proxy.requests().length;
      await expect(fetchBytes(url, { maxBytes: 1024, timeoutMs: 5000 })).rejects.toMatchObject({
        reason: 'network',
        message: expect.stringMatching(/self[- ]signed/i),
      });
      expect(newRequests(before)).toHaveLength(1);
    });
  });
});
