import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_REDIRECTS, fetchBytes, redirectTarget } from '../../../src/status/http-fetch.js';
import type { FetchPolicy } from '../../../src/status/http-fetch.js';
import { StatusSourceError } from '../../../src/status/source-error.js';
import type { StatusFailureReason } from '../../../src/status/source-error.js';
import { freePort, startHangingServer, startHttpServer } from '../../helpers/test-ca.js';
import type { TestHttpServer } from '../../helpers/test-ca.js';

async function reasonOf(p: Promise<unknown>): Promise<StatusFailureReason> {
  const e = await p.then(
    () => {
      throw new Error('expected a failure');
    },
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(StatusSourceError);
  return (e as StatusSourceError).reason;
}

describe('fetchBytes', () => {
  let server: TestHttpServer;
  let hanging: TestHttpServer;
  const received: { method: string; type?: string; body: Buffer }[] = [];

  beforeAll(async () => {
    server = await startHttpServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({
          method: req.method!,
          type: req.headers['content-type'],
          body: Buffer.concat(chunks),
        });
        const url = new URL(req.url!, 'http://x');
        if (url.pathname === '/missing') return void res.writeHead(404).end('no');
        if (url.pathname === '/declared-large') {
          return void res.writeHead(200, { 'content-length': '5000' }).end(Buffer.alloc(5000));
        }
        if (url.pathname === '/streamed-large') {
          res.writeHead(200);
          for (let i = 0; i < 10; i++) res.write(Buffer.alloc(1000, i));
          return void res.end();
        }
        res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(Buffer.from('hello'));
      });
    });
    hanging = await startHangingServer();
  });

  afterAll(async () => {
    await server?.close();
    await hanging?.close();
  });

  it('returns the body of a 200 answer', async () => {
    const body = await fetchBytes(server.url('/ok'), { maxBytes: 100 });
    expect(Buffer.from(body).toString()).toBe('hello');
  });

  it('sends a POST body with its headers', async () => {
    const before = received.length;
    await fetchBytes(server.url('/post'), {
      method: 'POST',
      body: new Uint8Array([1, 2, 3]),
      headers: { 'content-type': 'application/ocsp-request' },
      maxBytes: 100,
    });
    expect(received[before]).toEqual({
      method: 'POST',
      type: 'application/ocsp-request',
      body: Buffer.from([1, 2, 3]),
    });
  });

  it('refuses non-2xx answers with http-status', async () => {
    expect(await reasonOf(fetchBytes(server.url('/missing'), { maxBytes: 100 }))).toBe('http-status');
  });

  it('refuses bodies over the limit, declared or streamed, with too-large', async () => {
    expect(await reasonOf(fetchBytes(server.url('/declared-large'), { maxBytes: 4096 }))).toBe('too-large');
    expect(await reasonOf(fetchBytes(server.url('/streamed-large'), { maxBytes: 4096 }))).toBe('too-large');
    expect((await fetchBytes(server.url('/streamed-large'), { maxBytes: 10_000 })).length).toBe(10_000);
  });

  it('gives up with timeout when the server never answers', async () => {
    expect(await reasonOf(fetchBytes(hanging.url('/'), { maxBytes: 100, timeoutMs: 200 }))).toBe('timeout');
    expect(
      await reasonOf(fetchBytes(hanging.url('/'), { maxBytes: 100, signal: AbortSignal.timeout(200) })),
    ).toBe('timeout');
  });

  it('reports an abort that is not a timeout as network, and an already expired deadline at once', async () => {
    const controller = new AbortController();
    const p = fetchBytes(hanging.url('/'), { maxBytes: 100, signal: controller.signal });
    controller.abort();
    expect(await reasonOf(p)).toBe('network');
    const before = hanging.requests.length;
    const expired = AbortSignal.abort(new DOMException('late', 'TimeoutError'));
    expect(await reasonOf(fetchBytes(hanging.url('/'), { maxBytes: 100, signal: expired }))).toBe('timeout');
    expect(hanging.requests.length).toBe(before);
  });

  it('reports a refused connection as network', async () => {
    const port = await freePort();
    expect(await reasonOf(fetchBytes(`http://127.0.0.1:${port}/`, { maxBytes: 100 }))).toBe('network');
  });

  it('refuses URLs that are not http or https without touching the network', async () => {
    let calls = 0;
    const onRequest = (): void => void calls++;
    for (const url of [
      'ldap://ldap.example.ir/cn=CA?certificateRevocationList',
      'file:///etc/passwd',
      'not a url',
    ]) {
      expect(await reasonOf(fetchBytes(url, { maxBytes: 100, onRequest }))).toBe('unsupported-url');
    }
    expect(calls).toBe(0);
  });
});

// What a page-supplied certificate's URLs may reach (PROTOCOL.md certificates.status): the local
// server must not even see a request. 127.0.0.1 and `localhost` are different host names of one
// server, which lets the cross-host redirect rule be tested without a public server.
describe('fetchBytes destination policy', () => {
  const PUBLIC_ONLY: FetchPolicy = { allowPrivateNetworks: false, crossHostRedirects: false };
  const SAME_HOST_ONLY: FetchPolicy = { allowPrivateNetworks: true, crossHostRedirects: false };
  let target: TestHttpServer;
  let bouncer: TestHttpServer;

  beforeAll(async () => {
    target = await startHttpServer((_req, res) => void res.writeHead(200).end('secret'));
    bouncer = await startHttpServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      const to = url.searchParams.get('to');
      if (to) return void res.writeHead(302, { location: to }).end();
      if (url.pathname === '/loop') return void res.writeHead(307, { location: '/loop' }).end();
      if (url.pathname === '/hop') return void res.writeHead(301, { location: '/final' }).end();
      res.writeHead(200).end(`at ${url.pathname}`);
    });
  });

  afterAll(async () => {
    await target?.close();
    await bouncer?.close();
  });

  it('refuses loopback by address, by name and in IPv6 forms, before any request reaches the server', async () => {
    const port = target.port;
    for (const url of [
      `http://127.0.0.1:${port}/`,
      `http://localhost:${port}/`,
      `http://[::ffff:127.0.0.1]:${port}/`,
      `http://[::ffff:7f00:1]:${port}/`,
      `http://2130706433:${port}/`,
      `http://0x7f.1:${port}/`,
      `http://127.1:${port}/`,
      `http://[::1]:${port}/`,
      `http://0.0.0.0:${port}/`,
      `http://169.254.169.254:${port}/`,
    ]) {
      expect(await reasonOf(fetchBytes(url, { maxBytes: 100, timeoutMs: 2000, policy: PUBLIC_ONLY }))).toBe(
        'forbidden-destination',
      );
    }
    expect(target.requests).toEqual([]);
  });

  it('follows a redirect on the same host, and refuses one to another host without contacting it', async () => {
    const same = await fetchBytes(bouncer.url('/hop'), { maxBytes: 100, policy: SAME_HOST_ONLY });
    expect(Buffer.from(same).toString()).toBe('at /final');
    const elsewhere = `http://localhost:${target.port}/`;
    const bounced = `${bouncer.url('/')}?to=${encodeURIComponent(elsewhere)}`;
    expect(await reasonOf(fetchBytes(bounced, { maxBytes: 100, policy: SAME_HOST_ONLY }))).toBe(
      'redirect-refused',
    );
    expect(target.requests).toEqual([]);
    // Token certificates keep following redirects to other hosts.
    expect(Buffer.from(await fetchBytes(bounced, { maxBytes: 100 })).toString()).toBe('secret');
  });

  it('stops after a bounded number of redirects', async () => {
    const before = bouncer.requests.length;
    expect(await reasonOf(fetchBytes(bouncer.url('/loop'), { maxBytes: 100, policy: SAME_HOST_ONLY }))).toBe(
      'redirect-refused',
    );
    expect(bouncer.requests.length - before).toBe(MAX_REDIRECTS + 1);
  });

  it('redirectTarget: same host name only, whatever the port or scheme; never a non-http scheme', () => {
    const from = new URL('http://crl.example.ir/ca.crl');
    const host = 'crl.example.ir';
    expect(redirectTarget(from, 'https://CRL.example.ir:8443/x', host, PUBLIC_ONLY, 0).href).toBe(
      'https://crl.example.ir:8443/x',
    );
    expect(redirectTarget(from, '/other.crl', host, PUBLIC_ONLY, 0).href).toBe(
      'http://crl.example.ir/other.crl',
    );
    for (const location of [
      'http://169.254.169.254/latest/meta-data/',
      'http://crl.example.ir.evil.example/',
      '//internal/',
    ]) {
      expect(() => redirectTarget(from, location, host, PUBLIC_ONLY, 0)).toThrow(StatusSourceError);
    }
    expect(() =>
      redirectTarget(from, 'file:///etc/passwd', host, { ...PUBLIC_ONLY, crossHostRedirects: true }, 0),
    ).toThrow(/unsupported URL scheme/);
    expect(() => redirectTarget(from, '/x', host, PUBLIC_ONLY, MAX_REDIRECTS)).toThrow(/too many/);
  });
});
