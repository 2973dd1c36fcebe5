import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchBytes } from '../../../src/status/http-fetch.js';
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
    const counting: typeof fetch = (...args) => {
      calls++;
      return fetch(...args);
    };
    for (const url of [
      'ldap://ldap.example.ir/cn=CA?certificateRevocationList',
      'file:///etc/passwd',
      'not a url',
    ]) {
      expect(await reasonOf(fetchBytes(url, { maxBytes: 100, fetch: counting }))).toBe('unsupported-url');
    }
    expect(calls).toBe(0);
  });
});
