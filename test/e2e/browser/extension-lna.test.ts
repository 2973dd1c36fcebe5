import { readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO } from '../../helpers/agent-process.js';
import { startExtensionStack } from '../../helpers/extension-stack.js';
import type { ExtensionStack } from '../../helpers/extension-stack.js';

// Local Network Access: Chromium treats a page of the public address space that opens a connection
// to loopback as a local-network request, and blocks it unless the user (or an enterprise policy)
// allows it. The page here is served from 127.0.0.1 but placed in the public address space with
// --ip-address-space-overrides, as a bank's site on the internet would be: its WebSocket to the agent
// is blocked by the browser, while the extension (native messaging, no network) still works. Control:
// the same WebSocket from a page left in the loopback address space opens.

describe('Local Network Access: WSS blocked for a public page, the extension not', () => {
  let s: ExtensionStack;
  let server: Server;
  let pageOrigin: string;
  const consoleLines: string[] = [];

  beforeAll(async () => {
    const sdk = readFileSync(join(REPO, 'dist', 'client', 'kelid.js'));
    server = createServer((req, res) => {
      if (req.url === '/kelid.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(sdk);
      else res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>bank</title>');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    pageOrigin = `http://127.0.0.1:${port}`;
    s = await startExtensionStack({
      prefix: 'kelid-e2e-ext-lna-',
      // WSS stays on here: the point is that the browser, not the agent, blocks it.
      agentConfig: (d) => ({ wss: true, devOrigins: [pageOrigin, d.urls.site], sites: [pageOrigin] }),
      // Trusted, so that TLS is not what fails: the browser's address-space check is.
      trustAgentCa: true,
      browserArgs: () => [`--ip-address-space-overrides=127.0.0.1:${port}=public`],
    });
  });

  afterAll(async () => {
    await s?.close();
    server?.close();
  });

  it('blocks the WebSocket to the agent with ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS', async () => {
    const page = await s.browser.page();
    page.on('console', (m) => consoleLines.push(m.text()));
    await page.goto(`${pageOrigin}/`);
    const result = (await page.evaluate(`new Promise((resolve) => {
      const ws = new WebSocket('wss://127.0.0.1:${s.agent.port}/v1');
      ws.onopen = () => resolve('open');
      ws.onerror = () => resolve('error');
      setTimeout(() => resolve('pending'), 8000);
    })`)) as string;
    expect(result).toBe('error');
    expect(consoleLines.join('\n')).toContain('ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS');
    await page.close();
  });

  it('opens the same WebSocket from a page of the loopback address space (control)', async () => {
    const page = await s.browser.page();
    await page.goto(`${s.demo.urls.site}/no-such-page`);
    const result = await page.evaluate(`new Promise((resolve) => {
      const ws = new WebSocket('wss://127.0.0.1:${s.agent.port}/v1');
      ws.onopen = () => resolve('open');
      ws.onerror = () => resolve('error');
    })`);
    expect(result).toBe('open');
    await page.close();
  });

  it('reaches the agent through the extension from the same public page', async () => {
    const page = await s.browser.page();
    await page.goto(`${pageOrigin}/`);
    const r = (await page.evaluate(`(async () => {
      const { KelidClient } = await import('/kelid.js');
      const c = await KelidClient.connect({ url: 'wss://127.0.0.1:${s.agent.port}/v1' });
      const i = await c.info();
      c.close();
      return { transport: c.transport, origin: i.origin, tier: i.tier };
    })()`)) as Record<string, string>;
    expect(r).toEqual({ transport: 'extension', origin: pageOrigin, tier: 'site' });
    await page.close();
  });

  it('falls back to the WebSocket when the extension answers but its native host is not installed', async () => {
    rmSync(join(s.browser.userDataDir, 'NativeMessagingHosts', 'org.kelid.agent.json'));
    const page = await s.browser.page();
    await page.goto(`${s.demo.urls.site}/no-such-page`);
    const r = (await page.evaluate(`(async () => {
      const { KelidClient } = await import('/kelid.js');
      const forced = await KelidClient.connect({ transport: 'extension', reconnect: false }).then(
        () => 'connected', (e) => e.code + ' ' + e.message);
      const c = await KelidClient.connect({ url: 'wss://127.0.0.1:${s.agent.port}/v1' });
      const i = await c.info();
      c.close();
      return { forced, transport: c.transport, origin: i.origin };
    })()`)) as Record<string, string>;
    expect(r.forced).toMatch(
      /^ERR_AGENT_UNREACHABLE .*through the extension.*native messaging host not found/,
    );
    expect(r).toMatchObject({ transport: 'wss', origin: s.demo.urls.site });
    await page.close();
  });
});
