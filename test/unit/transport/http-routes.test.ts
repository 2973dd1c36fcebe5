import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsentBroker } from '../../../src/consent/consent-broker.js';
import type { ConsentSpec } from '../../../src/consent/consent-broker.js';
import { PAGE_CSP, createHttpApp } from '../../../src/transport/http-routes.js';
import { TRANSPORT_LIMITS } from '../../../src/transport/limits.js';

// What express used to give the routes for free and http-routes.ts now does itself, on a real
// listener and raw sockets (an HTTP client would normalise `..` and escapes before sending them).

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The server closed the connection. */
  closed: boolean;
}

const SECRET_FILE_TEXT = 'OUTSIDE-THE-UI-DIRECTORY';

describe('http-routes', () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-http-routes-'));
  const ui = path.join(work, 'ui');
  let server: http.Server;
  let port: number;
  let host: string;
  let broker: ConsentBroker;
  const launched: string[] = [];

  beforeAll(async () => {
    for (const dir of ['consent', 'manager', 'shared', 'consent/sub'])
      fs.mkdirSync(path.join(ui, dir), { recursive: true });
    fs.writeFileSync(path.join(ui, 'consent/index.html'), '<!DOCTYPE html><title>consent</title>');
    fs.writeFileSync(path.join(ui, 'consent/consent.js'), 'export {};');
    fs.writeFileSync(path.join(ui, 'consent/sub/inner.css'), 'p{}');
    fs.writeFileSync(path.join(ui, 'consent/.hidden'), SECRET_FILE_TEXT);
    fs.writeFileSync(path.join(ui, 'manager/index.html'), '<!DOCTYPE html><title>manager</title>');
    fs.writeFileSync(path.join(ui, 'shared/icon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
    fs.writeFileSync(path.join(work, 'outside.txt'), SECRET_FILE_TEXT);
    fs.symlinkSync(path.join(work, 'outside.txt'), path.join(ui, 'shared/escape.txt'));
    fs.symlinkSync(work, path.join(ui, 'shared/escape-dir'));
    fs.symlinkSync(path.join(ui, 'consent/consent.js'), path.join(ui, 'consent/alias.js'));
    fs.symlinkSync(path.join(ui, 'shared/icon.svg'), path.join(ui, 'consent/icon.svg'));

    broker = new ConsentBroker({
      timeoutMs: 60_000,
      limiterFor: () => null,
      launch: (url) => launched.push(url),
      consentUrl: (secret) => `https://127.0.0.1:1/consent/#${secret}`,
      defaultPinRules: {
        user: { minLength: 4, maxLength: 8, charset: 'digits' },
        so: { minLength: 6, maxLength: 12, charset: 'alnum' },
      },
    });
    server = http.createServer(
      createHttpApp({
        allowedHosts: (p) => [`127.0.0.1:${p}`, `localhost:${p}`],
        consoleOrigin: () => `https://127.0.0.1:${port}`,
        consent: broker,
        uiDir: ui,
        sdkFile: path.join(work, 'no-sdk.js'),
      }),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
    host = `127.0.0.1:${port}`;
  });

  afterAll(async () => {
    if (server) await new Promise<void>((r) => server.close(() => r()));
    fs.rmSync(work, { recursive: true, force: true });
  });

  /** Send `head` (request line and headers, no final blank line) and `body` as is; read one response. */
  function raw(head: string, body: Buffer | string = '', keepOpen = false): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      let data = Buffer.alloc(0);
      let settled = false;
      const finish = (closed: boolean): void => {
        if (settled) return;
        const text = data.toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        if (end === -1) {
          if (closed) {
            settled = true;
            reject(new Error(`no complete response: ${JSON.stringify(text)}`));
          }
          return;
        }
        const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
        const headers: Record<string, string> = {};
        for (const line of lines) {
          const i = line.indexOf(':');
          headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
        }
        const length = Number(headers['content-length'] ?? '0');
        const rest = data.subarray(Buffer.byteLength(text.slice(0, end + 4), 'latin1'));
        const isHead = head.startsWith('HEAD ');
        if (!closed && !isHead && rest.length < length) return;
        settled = true;
        resolve({
          status: Number(statusLine!.split(' ')[1]),
          headers,
          body: isHead ? '' : rest.subarray(0, length).toString('utf8'),
          closed,
        });
        if (!keepOpen) socket.destroy();
      };
      socket.on('data', (d: Buffer) => {
        data = Buffer.concat([data, d]);
        finish(false);
      });
      socket.on('close', () => finish(true));
      socket.on('error', () => finish(true));
      socket.write(`${head}\r\n\r\n`);
      if (body.length > 0) socket.write(body);
    });
  }

  const get = (target: string, extra = ''): Promise<RawResponse> =>
    raw(`GET ${target} HTTP/1.1\r\nHost: ${host}${extra}`);

  function expectNotFound(r: RawResponse, what: string): void {
    expect(r.status, what).toBe(404);
    expect(JSON.parse(r.body), what).toEqual({ error: { message: 'not found' } });
    expect(r.body, what).not.toContain(SECRET_FILE_TEXT);
    expect(r.headers['content-security-policy'], what).toBe(PAGE_CSP);
  }

  /** A pending consent request (needs the user PIN) and its page's launch secret. */
  async function pending(): Promise<{ secret: string; result: Promise<unknown> }> {
    const before = launched.length;
    let onPending!: () => void;
    const ready = new Promise<void>((r) => (onPending = r));
    const spec: ConsentSpec = {
      connectionId: `c${before}`,
      origin: 'https://bank.example',
      tier: 'site',
      method: 'sign.raw',
      needs: ['userPin'],
      signal: new AbortController().signal,
      onPending: () => onPending(),
    };
    const result = broker.request(spec, async (secrets) => secrets.userPin).catch((e: unknown) => e);
    await ready;
    return { secret: new URL(launched[before]!).hash.slice(1), result };
  }

  function postJson(
    route: string,
    secret: string,
    body: Buffer | string,
    headers = 'Content-Type: application/json',
  ): Promise<RawResponse> {
    return raw(
      `POST /consent/api/${route} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${secret}\r\n${headers}\r\nContent-Length: ${Buffer.byteLength(body)}`,
      body,
    );
  }

  describe('static files', () => {
    it('serves the pages with their content types and the page headers', async () => {
      const page = await get('/consent/');
      expect(page.status).toBe(200);
      expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(page.body).toContain('<title>consent</title>');
      expect(page.headers['content-security-policy']).toBe(PAGE_CSP);
      expect(page.headers['x-frame-options']).toBe('DENY');
      expect(page.headers['cache-control']).toBe('no-store');
      expect((await get('/consent/consent.js')).headers['content-type']).toBe(
        'text/javascript; charset=utf-8',
      );
      expect((await get('/shared/icon.svg')).headers['content-type']).toBe('image/svg+xml');
      expect((await get('/consent/sub/inner.css')).headers['content-type']).toBe('text/css; charset=utf-8');
      // A symlink that stays inside its mount's directory is followed.
      expect((await get('/consent/alias.js')).body).toBe('export {};');
      const redirect = await get('/consent?lang=en');
      expect(redirect.status).toBe(301);
      expect(redirect.headers.location).toBe('/consent/?lang=en');
    });

    it('refuses path traversal in every spelling with 404 and never shows the file', async () => {
      for (const target of [
        '/consent/../outside.txt',
        '/consent/../../outside.txt',
        '/consent/%2e%2e/%2e%2e/outside.txt',
        '/consent/%2E%2E/manager/index.html',
        '/consent/..%2f..%2foutside.txt',
        '/consent/%2e%2e%2f%2e%2e%2foutside.txt',
        '/consent/..%5c..%5coutside.txt',
        '/consent/..\\..\\outside.txt',
        '/consent/%252e%252e/outside.txt',
        '/consent/index.html%00',
        '/consent/%00/index.html',
        '/consent/%0a',
        '/consent/%',
        '/consent/%zz',
        '/consent/.hidden',
        '/consent/%2ehidden',
        '/shared/escape.txt',
        '/shared/escape-dir/outside.txt',
        '/shared/escape-dir/ui/consent/index.html',
        '/consent/icon.svg',
      ]) {
        expectNotFound(await get(target), target);
      }
    });

    it('lists no directory', async () => {
      expectNotFound(await get('/shared/'), '/shared/');
      expectNotFound(await get('/consent/sub/'), '/consent/sub/');
      expectNotFound(await get('/consent/sub'), '/consent/sub');
      expectNotFound(await get('/consent/index.html/'), '/consent/index.html/');
    });
  });

  describe('methods', () => {
    it('answers HEAD like GET without a body, and other methods on a route with 404', async () => {
      const head = await raw(`HEAD /health HTTP/1.1\r\nHost: ${host}`);
      expect(head.status).toBe(200);
      expect(head.headers['content-length']).toBe(String('{"status":"ok"}'.length));
      expect((await raw(`HEAD /consent/ HTTP/1.1\r\nHost: ${host}`)).status).toBe(200);
      for (const [method, target] of [
        ['POST', '/health'],
        ['PUT', '/health'],
        ['DELETE', '/consent/'],
        ['POST', '/consent/index.html'],
        ['POST', '/sdk/kelid.js'],
        ['GET', '/consent/api/approve'],
        ['GET', '/consent/api/session'],
        ['POST', '/consent/api/request'],
        ['PUT', '/consent/api/deny'],
      ] as const) {
        const r = await raw(`${method} ${target} HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 0`);
        expectNotFound(r, `${method} ${target}`);
      }
    });

    it('sends CORS headers on the SDK file only', async () => {
      const sdk = await get('/sdk/kelid.js');
      expect(sdk.status).toBe(200);
      expect(sdk.headers['access-control-allow-origin']).toBe('*');
      const preflight = await raw(
        `OPTIONS /consent/api/approve HTTP/1.1\r\nHost: ${host}\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: POST`,
      );
      expect(preflight.status).toBe(403);
      for (const r of [preflight, await get('/health'), await get('/consent/')]) {
        expect(Object.keys(r.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
      }
    });
  });

  describe('Host', () => {
    it('refuses a missing, foreign or duplicated Host with 403', async () => {
      const refused = [
        await raw('GET /health HTTP/1.0'),
        await raw(`GET /health HTTP/1.1\r\nHost: evil.example:${port}`),
        await raw(`GET /health HTTP/1.1\r\nHost: 127.0.0.1:${port + 1}`),
        await raw(`GET /health HTTP/1.1\r\nHost: ${host}\r\nHost: ${host}`),
        await raw(`GET /health HTTP/1.1\r\nHost: ${host}\r\nHost: evil.example`),
      ];
      for (const r of refused) {
        expect(r.status).toBe(403);
        expect(r.body).toBe('Forbidden: Host not allowed\n');
        expect(r.headers['content-security-policy']).toBe(PAGE_CSP);
      }
      expect((await get('/health')).status).toBe(200);
    });
  });

  describe('consent API bodies', () => {
    const limit = TRANSPORT_LIMITS.consentApiBodyBytes;
    const padded = (bytes: number): string => {
      const json = '{"secrets":{"userPin":"1234"}}';
      return json + ' '.repeat(bytes - json.length);
    };

    it('takes a body of exactly the limit and refuses one byte more with 413', async () => {
      const over = await pending();
      const refused = await postJson('approve', over.secret, padded(limit + 1));
      expect(refused.status).toBe(413);
      expect(JSON.parse(refused.body)).toEqual({
        error: { code: 'ERR_INVALID_INPUT', message: 'the body is too large' },
      });
      // Still pending: the refused body reached nothing.
      expect((await get('/consent/api/request', `\r\nAuthorization: Bearer ${over.secret}`)).status).toBe(
        200,
      );
      const exact = await postJson('approve', over.secret, padded(limit));
      expect(exact.status, exact.body).toBe(200);
      expect(JSON.parse(exact.body)).toEqual({ ok: true });
      expect(await over.result).toBe('1234');
    });

    it('answers 413 to a huge declared or streamed body without reading it, and closes', async () => {
      const { secret } = await pending();
      const declared = await raw(
        `POST /consent/api/approve HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${secret}\r\nContent-Type: application/json\r\nContent-Length: 100000000`,
        '{"secrets":',
      );
      expect(declared.status).toBe(413);
      expect(declared.headers.connection).toBe('close');
      const chunk = 'x'.repeat(1024);
      const streamed = await raw(
        `POST /consent/api/approve HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${secret}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked`,
        `400\r\n${chunk}\r\n`.repeat(8),
      );
      expect(streamed.status).toBe(413);
      expect(broker.deny({ secret })).toBe(true);
    });

    it('refuses malformed and non-object JSON with 400, other media types and charsets with 415', async () => {
      const { secret } = await pending();
      for (const body of ['{"secrets":', '"text"', '1', 'null', '{"secrets":{}}x', '   ', '[]']) {
        const r = await postJson('approve', secret, body);
        expect(r.status, body).toBe(400);
        expect((JSON.parse(r.body) as { error: { code: string } }).error.code, body).toBe(
          'ERR_INVALID_INPUT',
        );
      }
      expect((await postJson('approve', secret, '{"secrets":{},"extra":1}')).status).toBe(400);
      for (const headers of [
        'Content-Type: text/plain',
        'Content-Type: application/json; charset=latin1',
        'Content-Type: application/json\r\nContent-Encoding: gzip',
        'X-No-Type: 1',
      ]) {
        const r = await postJson('approve', secret, '{"secrets":{"userPin":"1234"}}', headers);
        expect(r.status, headers).toBe(415);
      }
      // None of these reached the request.
      expect((await get('/consent/api/request', `\r\nAuthorization: Bearer ${secret}`)).status).toBe(200);
      expect(broker.deny({ secret })).toBe(true);
    });
  });
});
