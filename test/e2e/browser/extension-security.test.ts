import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Frame, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO } from '../../helpers/agent-process.js';
import { until } from '../../helpers/browser.js';
import { startExtensionStack } from '../../helpers/extension-stack.js';
import type { ExtensionStack } from '../../helpers/extension-stack.js';

// Attacks on the extension transport from web pages, in Chromium with the real extension and native
// host: a page claiming another origin, frames of another origin talking to the content script or
// forging its answers to the SDK, two origins side by side, and the agent restarting mid-session.

const NS = 'kelid-extension-v1';

/** In the page: a raw session with the content script (no SDK), recording what comes back. */
const RAW_SESSION = `(sid, extra) => new Promise((resolve) => {
  const got = [];
  window.addEventListener('message', (e) => {
    if (e.source === window && e.data && e.data.ns === '${NS}' && e.data.to === 'page' && e.data.sid === sid) {
      got.push(e.data);
      if (e.data.type === 'open') window.postMessage({ ns: '${NS}', to: 'extension', type: 'send', sid,
        text: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'agent.info', params: {} }) }, location.origin);
      if (e.data.type === 'message' || e.data.type === 'close') resolve(got);
    }
  });
  window.postMessage({ ns: '${NS}', to: 'extension', type: 'open', sid, ...extra }, location.origin);
})`;

describe('Extension transport attacks in Chromium', () => {
  let s: ExtensionStack;
  // A page of another origin that may be framed (the demo pages forbid framing), serving the SDK.
  const servers: Server[] = [];
  let frameOrigin: string;
  let topOrigin: string;

  beforeAll(async () => {
    const sdk = readFileSync(join(REPO, 'dist', 'client', 'kelid.js'));
    const serve = async (): Promise<string> => {
      const server = createServer((req, res) => {
        if (req.url === '/kelid.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(sdk);
        else res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>t</title><body>');
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      servers.push(server);
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    };
    topOrigin = await serve();
    frameOrigin = await serve();
    s = await startExtensionStack({
      prefix: 'kelid-e2e-ext-sec-',
      // The framed origin is an RA origin: the most a hostile page could hope to borrow.
      agentConfig: (d) => ({
        raOrigins: [d.urls.ra, frameOrigin],
        devOrigins: [d.urls.ra, d.urls.site, frameOrigin, topOrigin],
      }),
    });
  });

  afterAll(async () => {
    // close() also stops the agent the native host started in the restart test.
    await s?.close();
    for (const server of servers) server.close();
  });

  async function open(url: string): Promise<Page> {
    const page = await s.browser.page();
    await page.goto(url);
    return page;
  }

  async function info(page: Page): Promise<{ origin: string; tier: string; transport: string }> {
    return (await page.evaluate(`(async () => {
      const { KelidClient } = await import('/kelid.js');
      const c = await KelidClient.connect({ transport: 'extension', reconnect: false });
      const i = await c.info();
      c.close();
      return { origin: i.origin, tier: i.tier, transport: c.transport };
    })()`)) as { origin: string; tier: string; transport: string };
  }

  it('gives the agent the origin the browser reports, whatever origin the page claims', async () => {
    const page = await open(`${s.demo.urls.site}/`);
    // The page claims the RA origin and tier in its open message; the content script passes nothing on.
    const got = (await page.evaluate(
      `(${RAW_SESSION})('claim-1', { origin: '${s.demo.urls.ra}', tier: 'ra' })`,
    )) as Array<{
      type: string;
      tier?: string;
      text?: string;
    }>;
    expect(got[0]).toMatchObject({ type: 'open', tier: 'unknown' });
    const answer = JSON.parse(got[1].text!) as { result: { origin: string; tier: string } };
    expect(answer.result).toMatchObject({ origin: s.demo.urls.site, tier: 'unknown' });
    await page.close();
  });

  it('gives a page no way to the background or the native host but the content script', async () => {
    const page = await open(`${s.demo.urls.site}/`);
    const id = await s.browser.extensionId();
    const result = await page.evaluate(`(() => {
      try {
        if (typeof chrome === 'undefined' || !chrome.runtime || !chrome.runtime.connect) return 'no runtime';
        chrome.runtime.connect('${id}', { name: 'kelid' });
        return 'connected';
      } catch (e) { return 'threw'; }
    })()`);
    expect(result).not.toBe('connected');
    await page.close();
  });

  it('ignores a frame of another origin that posts to the content script of the top page', async () => {
    const page = await open(`${topOrigin}/`);
    await page.evaluate(`(() => {
      window.__seen = [];
      window.addEventListener('message', (e) => {
        if (e.data && e.data.ns === '${NS}' && e.data.to === 'page') window.__seen.push(e.data.sid + ':' + e.data.type);
      });
      const f = document.createElement('iframe');
      f.src = '${frameOrigin}/';
      document.body.appendChild(f);
      return new Promise((r) => (f.onload = r));
    })()`);
    const frame = page.frames().find((f) => f.url().startsWith(frameOrigin)) as Frame;
    // The RA-origin frame asks the top page's content script to open a session (it would get the
    // top page's origin, but must get nothing at all), and pings it.
    await frame.evaluate(`(() => {
      window.parent.postMessage({ ns: '${NS}', to: 'extension', type: 'ping', sid: 'from-frame' }, '*');
      window.parent.postMessage({ ns: '${NS}', to: 'extension', type: 'open', sid: 'from-frame-open' }, '*');
    })()`);
    // Control: the same ping from the page itself is answered.
    await page.evaluate(
      `window.postMessage({ ns: '${NS}', to: 'extension', type: 'ping', sid: 'from-page' }, location.origin)`,
    );
    await until(
      () => page.evaluate('window.__seen') as Promise<string[]>,
      (l) => l.includes('from-page:pong'),
      'the pong',
    );
    await new Promise((r) => setTimeout(r, 500));
    const seen = (await page.evaluate('window.__seen')) as string[];
    expect(seen.filter((x) => x.startsWith('from-frame'))).toEqual([]);
    await page.close();
  });

  it('gives frames no extension: a frame of an RA origin inside another page cannot connect', async () => {
    const page = await open(`${topOrigin}/`);
    await page.evaluate(`(() => {
      const f = document.createElement('iframe');
      f.src = '${frameOrigin}/';
      document.body.appendChild(f);
      return new Promise((r) => (f.onload = r));
    })()`);
    const frame = page.frames().find((f) => f.url().startsWith(frameOrigin)) as Frame;
    const result = await frame.evaluate(`(async () => {
      const { KelidClient } = await import('/kelid.js');
      try { await KelidClient.connect({ transport: 'extension', reconnect: false }); return 'connected'; }
      catch (e) { return e.code; }
    })()`);
    expect(result).toBe('ERR_AGENT_UNREACHABLE');
    await page.close();
  });

  it('ignores answers forged by a frame of another origin, even with the right session id', async () => {
    const page = await s.browser.page();
    // Test instrumentation (not the attacker): record the SDK's session ids as it opens them.
    await page.addInitScript(`(() => {
      const post = window.postMessage.bind(window);
      window.__sids = [];
      window.postMessage = (m, o) => { if (m && m.type === 'open') window.__sids.push(m.sid); return post(m, o); };
    })()`);
    await page.goto(`${topOrigin}/`);
    await page.evaluate(`(async () => {
      const { KelidClient } = await import('/kelid.js');
      window.__client = await KelidClient.connect({ transport: 'extension' });
      window.__events = [];
      window.__client.on('tokensChanged', (e) => window.__events.push(e));
      window.__client.on('disconnected', () => window.__events.push('disconnected'));
      const f = document.createElement('iframe');
      f.src = '${frameOrigin}/';
      document.body.appendChild(f);
      await new Promise((r) => (f.onload = r));
    })()`);
    const sid = ((await page.evaluate('window.__sids')) as string[])[0];
    const forged = (type: string) =>
      `window.parent.postMessage({ ns: '${NS}', to: 'page', type: '${type}', sid: '${sid}', code: 1000, reason: 'x',
        text: JSON.stringify({ jsonrpc: '2.0', method: 'tokens.changed', params: { added: [], removed: ['forged'] } }) }, '*')`;
    const frame = page.frames().find((f) => f.url().startsWith(frameOrigin)) as Frame;
    await frame.evaluate(forged('message'));
    await frame.evaluate(forged('close'));
    await new Promise((r) => setTimeout(r, 500));
    expect(await page.evaluate('window.__events')).toEqual([]);
    expect(await page.evaluate('window.__client.info().then((i) => i.origin)')).toBe(topOrigin);
    await page.close();
  });

  it('limits how fast a page may open sessions: each one starts a native host process', async () => {
    const page = await open(`${topOrigin}/`);
    const result = (await page.evaluate(`(async () => {
      const replies = [];
      window.addEventListener('message', (e) => {
        if (e.source === window && e.data && e.data.ns === '${NS}' && e.data.to === 'page') replies.push(e.data);
      });
      const post = (type, sid) => window.postMessage({ ns: '${NS}', to: 'extension', type, sid }, location.origin);
      const wait = (ok) => new Promise((r) => { const t = setInterval(() => { if (ok()) { clearInterval(t); r(); } }, 20); });
      // 8 opens, their closes, and 8 more opens, in one go: the sessions are free again, but the
      // opening rate (8, then one every 2 s) is spent.
      const first = Array.from({ length: 8 }, (_, i) => 'r1-' + i);
      const second = Array.from({ length: 8 }, (_, i) => 'r2-' + i);
      for (const sid of first) post('open', sid);
      for (const sid of first) post('close', sid);
      for (const sid of second) post('open', sid);
      await wait(() => second.every((sid) => replies.some((m) => m.sid === sid)));
      for (const sid of second) post('close', sid);
      const kinds = (prefix) => replies.filter((m) => m.sid.startsWith(prefix)).map((m) => m.type);
      return { first: kinds('r1-'), second: replies.filter((m) => m.sid.startsWith('r2-')).map((m) => m.reason) };
    })()`)) as { first: string[]; second: string[] };
    expect(result.first).toEqual([]);
    expect(result.second).toEqual(Array(8).fill('too many Kelid connections in this page'));
    await page.close();
  });

  it('gives two tabs of two origins their own tiers at the same time', async () => {
    const ra = await open(`${s.demo.urls.ra}/no-such-page`);
    const site = await open(`${s.demo.urls.site}/no-such-page`);
    const [a, b] = await Promise.all([info(ra), info(site)]);
    expect(a).toEqual({ origin: s.demo.urls.ra, tier: 'ra', transport: 'extension' });
    expect(b).toEqual({ origin: s.demo.urls.site, tier: 'unknown', transport: 'extension' });
    await ra.close();
    await site.close();
  });

  it('survives the agent restarting: the call in flight fails, the native host starts the agent again', async () => {
    const page = await open(`${s.demo.urls.site}/no-such-page`);
    await page.evaluate(`(async () => {
      const { KelidClient } = await import('/kelid.js');
      window.__client = await KelidClient.connect();
      window.__events = [];
      window.__client.on('disconnected', (e) => window.__events.push('disconnected'));
      window.__client.on('reconnected', () => window.__events.push('reconnected'));
      // Waits for a consent nobody gives: in flight when the agent stops.
      window.__pending = window.__client.requestAccess('restart test').then(() => 'ok', (e) => e.code);
    })()`);
    await until(
      () => s.agent.pendingConsents(),
      (l) => l.length === 1,
      'the pending consent',
    );
    const firstPid = s.agent.pid;
    await s.agent.stop();
    expect(await page.evaluate('window.__pending')).toBe('ERR_DISCONNECTED');
    // No agent runs now: the SDK reconnects, the browser starts a native host, which starts the agent.
    await until(
      () => page.evaluate('window.__events') as Promise<string[]>,
      (e) => e.includes('reconnected'),
      'reconnected',
      40_000,
    );
    const after = (await page.evaluate('window.__client.info()')) as { origin: string; tier: string };
    expect(after).toMatchObject({ origin: s.demo.urls.site, tier: 'unknown' });
    const restarted = JSON.parse(readFileSync(join(s.agent.stateDir, 'agent.json'), 'utf8')) as {
      pid: number;
    };
    expect(restarted.pid).not.toBe(firstPid);
    await page.close();
  });
});
