import type { Frame, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChromiumHarness } from '../../helpers/browser.js';
import { startExtensionStack } from '../../helpers/extension-stack.js';
import type { ExtensionStack } from '../../helpers/extension-stack.js';

// How `KelidClient.connect()` in `auto` mode finds the extension (issue 14's known gap, issue 17):
// the content script answers a synchronous probe event, so a page without the extension goes to the
// WebSocket without waiting for a ping's answer, and a page with it uses it. The mechanism is observed
// in the page: the extension messages the SDK posts, and the timers it arms for the detection (their
// delay is set to a value nothing else uses). Real agent (WebSocket on), real Chromium, real extension.

const DETECT_MS = 4321;

interface Detection {
  transport: string;
  tier: string;
  /** Types of the messages the page posted to the extension (`ping`, `open`, `send`…), in order. */
  toExtension: string[];
  /** setTimeout calls with the detection delay. */
  detectionTimers: number;
  /** Whether the content script answered the probe event (dispatchEvent returned false). */
  probeAnswered: boolean;
}

/** Connect in `auto` mode from `where` and report how the SDK decided. */
function detect(where: Page | Frame, url: string): Promise<Detection> {
  return where.evaluate(`(async () => {
    const toExtension = [];
    window.addEventListener('message', (e) => {
      if (e.source === window && e.data && e.data.ns === 'kelid-extension-v1' && e.data.to === 'extension')
        toExtension.push(e.data.type);
    });
    let detectionTimers = 0;
    const realSetTimeout = window.setTimeout;
    window.setTimeout = (fn, ms, ...rest) => {
      if (ms === ${DETECT_MS}) detectionTimers += 1;
      return realSetTimeout(fn, ms, ...rest);
    };
    try {
      const { KelidClient } = await import('/kelid.js');
      const c = await KelidClient.connect({ url: '${url}', extensionDetectMs: ${DETECT_MS}, reconnect: false });
      const info = await c.info();
      c.close();
      // Posted messages are delivered as tasks: let any the SDK posted arrive before counting.
      await new Promise((r) => realSetTimeout(r, 50));
      const probeAnswered = !window.dispatchEvent(new Event('kelid-extension-v1:probe', { cancelable: true }));
      return { transport: c.transport, tier: info.tier, toExtension, detectionTimers, probeAnswered };
    } finally {
      window.setTimeout = realSetTimeout;
    }
  })()`) as Promise<Detection>;
}

describe('Transport auto: finding the extension without waiting', () => {
  let s: ExtensionStack;
  let plain: ChromiumHarness;
  let agentUrl: string;

  beforeAll(async () => {
    s = await startExtensionStack({
      prefix: 'kelid-e2e-ext-detect-',
      // Both ways open: the WebSocket is what a page without the extension must find.
      agentConfig: (d) => ({ wss: true, devOrigins: [d.urls.site] }),
      trustAgentCa: true,
    });
    agentUrl = `wss://127.0.0.1:${s.agent.port}/v1`;
    plain = await ChromiumHarness.launch({ trustCaPem: s.agent.info.caCertificatePem });
  });

  afterAll(async () => {
    await plain?.close();
    await s?.close();
  });

  /** A page of the demo site's origin with nothing on it but `body`. */
  async function blankPage(page: Page, body = ''): Promise<Page> {
    const url = `${s.demo.urls.site}/blank.html`;
    // The page (localhost) reaching the agent (127.0.0.1) is a local-network access: the user allows it.
    await page.context().grantPermissions(['local-network-access'], { origin: s.demo.urls.site });
    await page.route(url, (route) =>
      route.fulfill({ contentType: 'text/html', body: `<!doctype html><meta charset="utf-8">${body}` }),
    );
    await page.goto(url);
    return page;
  }

  it('without the extension: connects over wss at once, no ping and no detection timer', async () => {
    const errors: string[] = [];
    const page = await blankPage(await plain.page(errors));
    const r = await detect(page, agentUrl);
    expect(r).toEqual({
      transport: 'wss',
      tier: 'unknown',
      toExtension: [],
      detectionTimers: 0,
      probeAnswered: false,
    });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('with the extension: the content script answers the probe and the SDK picks the extension', async () => {
    // The page's first script, in <head>, already gets the answer: the content script runs at
    // document_start, before any script of the page.
    const page = await blankPage(
      await s.browser.page(),
      `<script>window.probeAtFirstScript = !window.dispatchEvent(new Event('kelid-extension-v1:probe', { cancelable: true }));</script>`,
    );
    expect(await page.evaluate('window.probeAtFirstScript')).toBe(true);
    const r = await detect(page, agentUrl);
    expect(r).toMatchObject({ transport: 'extension', tier: 'unknown', probeAnswered: true });
    // One ping confirms the bridge (one timer, cleared by the pong), then the session opens.
    expect(r.detectionTimers).toBe(1);
    expect(r.toExtension.slice(0, 2)).toEqual(['ping', 'open']);
    await page.close();
  });

  it('with the extension, in a frame (no content script there): wss at once', async () => {
    const page = await blankPage(await s.browser.page(), '<iframe src="/blank.html"></iframe>');
    const frame = page.frames().find((f) => f !== page.mainFrame());
    if (!frame) throw new Error('the frame did not load');
    await frame.waitForLoadState();
    const r = await detect(frame, agentUrl);
    expect(r).toEqual({
      transport: 'wss',
      tier: 'unknown',
      toExtension: [],
      detectionTimers: 0,
      probeAnswered: false,
    });
    await page.close();
  });
});
