import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess, rpcError } from '../../helpers/agent-process.js';
import type { RpcClient } from '../../helpers/agent-process.js';
import { TestPki, startHttpServer } from '../../helpers/test-ca.js';
import type { TestHttpServer } from '../../helpers/test-ca.js';

// SSRF through page-supplied certificates (issue 13, section 7), against the real agent. An RA-tier page
// hands certificates.status certificates whose AIA (OCSP, caIssuers) and CRL distribution point URLs
// aim at a service on this machine, by address, by name and in IPv6 forms. With the default config the
// service must not see a single request, and the page must learn nothing beyond "unavailable".

const RA = 'https://ra.example';

describe('certificates.status with page-supplied certificates: no requests to local or private addresses', () => {
  let pki: TestPki;
  let victim: TestHttpServer;
  let agent: AgentProcess;
  let ra: RpcClient;

  beforeAll(async () => {
    pki = await TestPki.create();
    await pki.startOcsp();
    // Stands for an admin interface or a metadata service reachable only from this machine.
    victim = await startHttpServer((_req, res) => void res.writeHead(200).end('internal secret'));
    agent = await AgentProcess.start({ prefix: 'kelid-e2e-ssrf-', config: { raOrigins: [RA] } });
    ra = await agent.connect(RA);
  });

  afterAll(async () => {
    await ra?.close();
    await agent?.stop();
    agent?.cleanup();
    await victim?.close();
    await pki?.cleanup();
  });

  // 2130706433 is 127.0.0.1 as one decimal number, which URL parsers accept.
  it.each(['127.0.0.1', 'localhost', '[::ffff:127.0.0.1]', '2130706433'])(
    'URLs to %s: the local service receives no request, the page gets a coarse error',
    async (host) => {
      const name = host;
      const base = `http://${host}:${victim.port}`;
      const leaf = await pki.issueLeaf(`ssrf-${host.replace(/\W/g, '')}`, {
        ocspUrl: `${base}/ocsp`,
        crlUrl: `${base}/crl`,
        caIssuersUrl: `${base}/ca.crt`,
      });
      // Without an issuer the agent would download it from caIssuers; with one, it goes to OCSP and CRL.
      const errors = [
        await rpcError(ra.call('certificates.status', { certificate: leaf.pem })),
        await rpcError(
          ra.call('certificates.status', { certificate: leaf.pem, issuer: pki.intermediate.pem }),
        ),
      ];
      expect(victim.requests, name).toEqual([]);
      for (const e of errors) {
        expect(e.data?.code, name).toBe('ERR_STATUS_UNAVAILABLE');
        // Nothing per URL: no attempts list, no address, port, path or reason in the message.
        expect(e.data).not.toHaveProperty('attempts');
        expect(e.message).toBe('certificate status unavailable');
      }
    },
  );

  it('link-local metadata and other private addresses: refused the same way, with the same error', async () => {
    const leaf = await pki.issueLeaf('ssrf-metadata', {
      ocspUrl: 'http://169.254.169.254/latest/meta-data/',
      crlUrl: 'http://10.0.0.1/crl',
      caIssuersUrl: 'http://[fe80::1]/ca.crt',
    });
    const e = await rpcError(
      ra.call('certificates.status', { certificate: leaf.pem, issuer: pki.intermediate.pem }),
    );
    expect(e.data?.code).toBe('ERR_STATUS_UNAVAILABLE');
    expect(e.message).toBe('certificate status unavailable');
    expect(e.data).not.toHaveProperty('attempts');
  });

  it('the agent log keeps the per-URL reasons for the operator', () => {
    expect(agent.stdout + agent.stderr).toContain('forbidden-destination');
  });
});

describe('certificates.status with revocation.allowPrivateNetworks: true', () => {
  let pki: TestPki;
  let agent: AgentProcess;
  let ra: RpcClient;

  beforeAll(async () => {
    pki = await TestPki.create();
    await pki.startOcsp();
    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-ssrf-allowed-',
      config: { raOrigins: [RA], revocation: { allowPrivateNetworks: true } },
    });
    ra = await agent.connect(RA);
  });

  afterAll(async () => {
    await ra?.close();
    await agent?.stop();
    agent?.cleanup();
    await pki?.cleanup();
  });

  it('reaches the responders on 127.0.0.1 (a local test CA), and still reports failures coarsely', async () => {
    const leaf = await pki.issueLeaf('allowed');
    expect(await ra.call('certificates.status', { certificate: leaf.pem })).toMatchObject({
      status: 'good',
      source: 'ocsp',
    });
    expect(pki.http.requests.map((r) => r.url)).toContain('/intermediate.crt');
    const dead = await pki.issueLeaf('dead', {
      ocspUrl: 'http://127.0.0.1:9/ocsp',
      crlUrl: 'http://127.0.0.1:9/crl',
    });
    const e = await rpcError(
      ra.call('certificates.status', { certificate: dead.pem, issuer: pki.intermediate.pem }),
    );
    expect(e.message).toBe('certificate status unavailable');
    expect(e.data).not.toHaveProperty('attempts');
  });
});
