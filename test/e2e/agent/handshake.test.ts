import * as https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { handshakeConfig, makeHandshakeCases, rawUpgradeRequest } from '../../helpers/handshake-cases.js';
import type { HandshakeCase } from '../../helpers/handshake-cases.js';
import { AgentProcess, UpgradeRefused, rpcError } from '../../helpers/agent-process.js';

// The handshake rules of PROTOCOL.md section 2 against the real server: every refusal is an HTTP 403
// (or the parser's 400) written before any upgrade, and every accepted origin gets its tier.

const fixture = handshakeConfig(0);

/** Send one raw upgrade request over TLS; resolves to the HTTP status of the answer. */
async function rawStatus(
  agent: AgentProcess,
  c: HandshakeCase,
  path = '/v1',
): Promise<{ status: number; head: string }> {
  const socket = await agent.tlsSocket();
  return new Promise((resolve, reject) => {
    let received = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      received += d;
      const end = received.indexOf('\r\n\r\n');
      if (end !== -1) {
        socket.destroy();
        resolve({
          status: Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1] ?? 0),
          head: received.slice(0, end),
        });
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve({ status: 0, head: received }));
    socket.write(rawUpgradeRequest(c, path));
  });
}

function get(
  agent: AgentProcess,
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: agent.port,
        path,
        method,
        ca: agent.info.caCertificatePem,
        headers,
        agent: false,
        servername: 'localhost',
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('AgentServer', () => {
  let agent: AgentProcess;
  let cases: HandshakeCase[];

  beforeAll(async () => {
    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-handshake-',
      config: {
        raOrigins: fixture.raOrigins,
        sites: fixture.sites,
        devOrigins: fixture.devOrigins,
        limits: { connectionsPerOrigin: 8, connections: 12 },
        maxMessageBytes: 4096,
      },
    });
    cases = makeHandshakeCases(agent.port);
  });

  afterAll(async () => {
    await agent?.stop();
    agent?.cleanup();
  });

  describe('upgrade handler', () => {
    it('refuses every bad Host/Origin of the shared matrix with 403 and no upgrade', async () => {
      const bad = cases.filter((c) => (c.overHttp ?? c.expect) === 403 || c.overHttp === 400);
      expect(bad.length).toBeGreaterThanOrEqual(40);
      const outcomes: string[] = [];
      for (const c of bad) {
        const { status } = await rawStatus(agent, c);
        outcomes.push(`${c.name}: ${status}`);
        expect(status, c.name).toBe(c.overHttp ?? 403);
      }
      // The agent is still up and accepting after the whole matrix.
      const client = await agent.connect('https://ra.example');
      expect((await client.call('agent.info')).tier).toBe('ra');
      await client.close();
      expect(outcomes).toHaveLength(bad.length);
    });

    it('upgrades every good origin (101) and gives it the tier of the matrix', async () => {
      const good = cases.filter((c) => (c.overHttp ?? c.expect) !== 403 && c.overHttp !== 400);
      expect(good.length).toBeGreaterThanOrEqual(10);
      for (const c of good) {
        const expected = c.overHttp ?? c.expect;
        const { status } = await rawStatus(agent, c);
        // The console origin needs the agent's one-time secret on top of the handshake.
        expect(status, c.name).toBe(expected === 'console' ? 403 : 101);
        if (expected === 'console' || c.overHttp !== undefined || typeof c.origin !== 'string') continue;
        const client = await agent.connect(c.origin, {
          host: typeof c.host === 'string' ? c.host : undefined,
        });
        const info = await client.call<{ tier: string; origin: string }>('agent.info');
        expect(info.tier, c.name).toBe(expected);
        await client.close();
      }
    });

    it('refuses other paths (404) and any query but the console secret (403)', async () => {
      const ra = cases.find((c) => c.name === 'Origin listed ra origin')!;
      expect((await rawStatus(agent, ra, '/v2')).status).toBe(404);
      expect((await rawStatus(agent, ra, '/v1/')).status).toBe(404);
      expect((await rawStatus(agent, ra, '/v1?x=1')).status).toBe(403);
      expect((await rawStatus(agent, ra, '/v1?console=AAAAAAAAAAAAAAAAAAAAAAAA')).status).toBe(403);
    });

    it('gives the console tier only with a one-time secret from `kelid ui`', async () => {
      const consoleOrigin = `https://127.0.0.1:${agent.port}`;
      const r = await agent.cli(['ui', '--print']);
      expect(r.status).toBe(0);
      const url = new URL(r.stdout.trim());
      expect(url.origin).toBe(consoleOrigin);
      expect(url.pathname).toBe('/manager/');
      expect(url.searchParams.get('lang')).toBe('fa');
      const secret = url.hash.slice(1);
      expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);

      // Someone else's origin cannot use the secret, and does not spend it.
      await expect(agent.open('https://ra.example', { query: `console=${secret}` })).rejects.toMatchObject({
        status: 403,
      });
      const client = await agent.connect(consoleOrigin, { query: `console=${secret}` });
      expect((await client.call('agent.info')).tier).toBe('console');
      // Spent: the same secret does not open a second connection.
      await expect(agent.open(consoleOrigin, { query: `console=${secret}` })).rejects.toBeInstanceOf(
        UpgradeRefused,
      );
      await expect(agent.open(consoleOrigin)).rejects.toMatchObject({ status: 403 });
      await expect(agent.open(consoleOrigin, { query: `console=${'x'.repeat(43)}` })).rejects.toMatchObject({
        status: 403,
      });
      await client.close();
    });
  });

  describe('connection limits', () => {
    it('refuses the 9th connection of one origin, the 13th in all (config 12) and the 7th of unknown origins with 403', async () => {
      const open: WebSocket[] = [];
      const close = async (n: number): Promise<void> => {
        for (const ws of open.splice(0, n)) {
          await new Promise<void>((resolve) => {
            ws.once('close', () => resolve());
            ws.close();
          });
        }
      };
      /** Open once the agent has seen earlier closes (its slot is freed on its own close event). */
      const openSoon = async (origin: string): Promise<void> => {
        await waitFor(async () => {
          try {
            open.push(await agent.open(origin));
            return true;
          } catch {
            return false;
          }
        });
      };
      try {
        for (let i = 0; i < 8; i++) open.push(await agent.open('https://bank.example'));
        await expect(agent.open('https://bank.example')).rejects.toMatchObject({ status: 403 });
        // Other origins get in, up to the total.
        for (let i = 0; i < 2; i++) open.push(await agent.open('https://one.example'));
        for (let i = 0; i < 2; i++) open.push(await agent.open('https://ra.example'));
        await expect(agent.open('https://three.example')).rejects.toMatchObject({ status: 403 });
        await expect(agent.open('https://ra2.example:8443')).rejects.toMatchObject({ status: 403 });
        // Closing frees slots. Unknown origins together get half of the total (6 of 12): with 6 slots
        // free and 2 unknown connections open, 4 more unknown ones get in, the next does not, and
        // configured origins take the last 2 slots.
        await close(6);
        await openSoon('https://one.example');
        open.push(await agent.open('https://one.example'));
        for (let i = 0; i < 2; i++) open.push(await agent.open('https://two.example'));
        await expect(agent.open('https://three.example')).rejects.toMatchObject({ status: 403 });
        open.push(await agent.open('https://ra.example'));
        open.push(await agent.open('https://ra2.example:8443'));
        await expect(agent.open('https://ra2.example:8443')).rejects.toMatchObject({ status: 403 });
      } finally {
        for (const ws of open) ws.terminate();
      }
    });
  });

  describe('frames', () => {
    it('answers binary frames and batches with -32600, bad JSON with -32700', async () => {
      const client = await agent.connect('https://bank.example');
      const replies: string[] = [];
      client.ws.on('message', (d: Buffer) => replies.push(d.toString()));
      client.ws.send(Buffer.from('{"jsonrpc":"2.0","id":1,"method":"agent.info"}'), { binary: true });
      client.ws.send('[{"jsonrpc":"2.0","id":2,"method":"agent.info"}]');
      client.ws.send('{"jsonrpc":"2.0","id":3,');
      client.ws.send('{"jsonrpc":"2.0","method":"agent.info"}');
      client.ws.send('{"jsonrpc":"2.0","id":4,"method":"agent.info","params":{"__proto__":{"x":1}}}');
      await waitFor(() => replies.length === 5);
      const errors = replies.map((r) => (JSON.parse(r) as { error: { code: number } }).error.code);
      expect(errors.sort()).toEqual([-32700, -32600, -32600, -32600, -32600].sort());
      await client.close();
    });

    it('closes the connection (1009) on a message above maxMessageBytes', async () => {
      const client = await agent.connect('https://bank.example');
      const code = new Promise<number>((resolve) => client.ws.once('close', (c: number) => resolve(c)));
      client.ws.send(
        JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'agent.info', params: { pad: 'x'.repeat(5000) } }),
      );
      expect(await code).toBe(1009);
    });

    it('returns ERR_FORBIDDEN to a tier that may not call a method', async () => {
      const client = await agent.connect('https://other.example');
      const e = await rpcError(client.call('tokens.list'));
      expect(e.code).toBe(-32000);
      expect(e.data?.code).toBe('ERR_FORBIDDEN');
      await client.close();
    });
  });

  describe('HTTP routes', () => {
    it('GET /health answers {status} only (no version) with the security headers and no CORS', async () => {
      const r = await get(agent, '/health', { Origin: 'https://evil.example' });
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toEqual({ status: 'ok' });
      expect(r.body).not.toMatch(/\d+\.\d+\.\d+/);
      expect(r.headers['content-security-policy']).toBe("default-src 'self'; frame-ancestors 'none'");
      expect(r.headers['x-content-type-options']).toBe('nosniff');
      expect(r.headers['referrer-policy']).toBe('no-referrer');
      expect(Object.keys(r.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
    });

    it('answers a CORS preflight without any Access-Control header', async () => {
      const r = await get(
        agent,
        '/consent/api/approve',
        {
          Origin: 'https://evil.example',
          'Access-Control-Request-Method': 'POST',
          'Access-Control-Request-Headers': 'authorization',
        },
        'OPTIONS',
      );
      expect(Object.keys(r.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
    });

    it('refuses a rebinding Host on HTTP routes with 403', async () => {
      for (const host of [
        `evil.example:${agent.port}`,
        `127.0.0.2:${agent.port}`,
        `localhost:${agent.port + 1}`,
      ]) {
        const r = await get(agent, '/health', { Host: host });
        expect(r.status, host).toBe(403);
        expect(r.body).not.toContain('version');
      }
    });

    it('serves /sdk/kelid.js as JavaScript and the consent page with the page CSP', async () => {
      const sdk = await get(agent, '/sdk/kelid.js');
      expect(sdk.status).toBe(200);
      expect(sdk.headers['content-type']).toMatch(/^text\/javascript/);
      expect(sdk.body.length).toBeGreaterThan(0);
      // The one CORS header of the agent: browsers load ES modules cross-origin in CORS mode.
      expect(sdk.headers['access-control-allow-origin']).toBe('*');
      expect(sdk.headers['access-control-allow-credentials']).toBeUndefined();
      const page = await get(agent, '/consent/');
      expect([200, 404]).toContain(page.status);
      expect(page.headers['content-security-policy']).toBe("default-src 'self'; frame-ancestors 'none'");
      expect(page.headers['x-frame-options']).toBe('DENY');
    });

    it('answers the consent API with 404 without a valid bearer secret', async () => {
      expect((await get(agent, '/consent/api/request')).status).toBe(404);
      expect(
        (await get(agent, '/consent/api/request', { Authorization: `Bearer ${'a'.repeat(43)}` })).status,
      ).toBe(404);
      expect(
        (await get(agent, '/consent/api/deny', { Authorization: `Bearer ${'a'.repeat(43)}` }, 'POST')).status,
      ).toBe(404);
    });
  });
});

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
