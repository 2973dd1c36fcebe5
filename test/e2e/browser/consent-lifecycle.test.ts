import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Demo } from '../../../demo/server.mjs';
import type { AgentProcess } from '../../helpers/agent-process.js';
import type { ChromiumHarness, ConsentWindows } from '../../helpers/browser.js';
import { screenshot, screenshotOnFailure, testId } from '../../helpers/browser.js';
import { startDemoStack } from '../../helpers/demo-stack.js';
import type { DemoStack } from '../../helpers/demo-stack.js';

// What a page sees when things do not go to plan: no agent, an origin the agent does not allow, and a
// consent request the page cancels, that times out, or that the user denies. agent.requestAccess is
// the consent used here (it needs no token); the agent's consent timeout is 3 s.

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('Consent lifecycle and failures in Chromium', () => {
  let demo: Demo;
  let agent: AgentProcess;
  let browser: ChromiumHarness;
  let consents: ConsentWindows;
  let page: Page;
  const errors: string[] = [];
  let stack: DemoStack;

  beforeAll(async () => {
    stack = await startDemoStack({
      prefix: 'kelid-e2e-lifecycle-',
      errors,
      agentConfig: (d) => ({ devOrigins: [d.urls.site], consent: { timeoutSeconds: 3 } }),
    });
    ({ demo, agent, browser, consents, page } = stack);
  });

  afterEach(async ({ task }) => screenshotOnFailure(browser, task));

  afterAll(async () => {
    await stack?.close();
  });

  const siteError = (code: string) =>
    page.locator(testId('site-message', { 'data-kind': 'error', 'data-code': code }));

  it('reports a missing agent within 2 s, with a hint on what to check', async () => {
    stack.agentUrl = `wss://127.0.0.1:${await closedPort()}/v1`;
    await page.goto(`${demo.urls.site}/?lang=en`);
    const message = siteError('ERR_AGENT_UNREACHABLE');
    await message.waitFor();
    expect(Number(await message.getAttribute('data-elapsed-ms'))).toBeLessThan(2000);
    expect(await message.textContent()).toContain('Kelid is not reachable on this computer.');
    expect(await page.getByTestId('site-hint').textContent()).toContain('kelid serve');
    await screenshot(page, 'signing-site-no-agent-en');
    expect(errors.some((e) => e.includes('ERR_CONNECTION_REFUSED'))).toBe(true);
    errors.length = 0;
  });

  it('cannot connect from an origin the agent does not allow', async () => {
    stack.agentUrl = `wss://127.0.0.1:${agent.port}/v1`;
    // The same page, reached as http://127.0.0.1:PORT: a different origin, not in devOrigins.
    const other = demo.urls.site.replace('localhost', '127.0.0.1');
    await page.goto(`${other}/?lang=en`);
    await siteError('ERR_AGENT_UNREACHABLE').waitFor();
    // The browser cannot tell the page why; its console shows the agent refused the handshake.
    expect(errors.some((e) => e.includes('Unexpected response code: 403'))).toBe(true);
    errors.length = 0;
    // From its allowed origin the same page connects (as the `unknown` tier).
    await page.goto(`${demo.urls.site}/?lang=en`);
    await page.locator(testId('site-tier', { 'data-tier': 'unknown' })).waitFor();
  });

  it('withdraws a request the page cancels; the consent page says it is no longer pending', async () => {
    await page.getByTestId('site-request-access').click();
    const consent = await consents.next({ lang: 'fa' });
    await page.getByTestId('site-waiting').waitFor();
    await page.getByTestId('site-cancel').click();
    await siteError('ERR_ABORTED').waitFor();
    expect(await page.getByTestId('site-message').textContent()).toBe('You cancelled the request.');
    await consent.locator(testId('consent-result', { 'data-result': 'gone' })).waitFor({ timeout: 10_000 });
    await screenshot(consent, 'consent-withdrawn-fa');
    expect(await agent.pendingConsents()).toEqual([]);
  });

  it('ends a request nobody answers with ERR_CONSENT_TIMEOUT', async () => {
    await page.getByTestId('site-request-access').click();
    const consent = await consents.next({ lang: 'en' });
    await siteError('ERR_CONSENT_TIMEOUT').waitFor({ timeout: 15_000 });
    expect(await page.getByTestId('site-message').textContent()).toContain('expired');
    await consent.locator(testId('consent-result', { 'data-result': 'gone' })).waitFor({ timeout: 10_000 });
    // The site may still ask again (a timeout is not a refusal).
    expect(await page.getByTestId('site-request-access').isEnabled()).toBe(true);
  });

  it('shows a denial, and the agent then keeps the site from asking again for a while', async () => {
    await page.getByTestId('site-request-access').click();
    const consent = await consents.next({ lang: 'en' });
    await consent.getByTestId('consent-deny').click();
    await consent.locator(testId('consent-result', { 'data-result': 'denied' })).waitFor();
    await siteError('ERR_USER_CANCELLED').waitFor();
    expect(await page.getByTestId('site-message').textContent()).toBe(
      'The request was declined in the Kelid window.',
    );
    await page.getByTestId('site-request-access').click();
    await siteError('ERR_ORIGIN_DENIED').waitFor();
    await page.getByTestId('lang-toggle').click();
    await page.locator('html[dir="rtl"]').waitFor();
    await screenshot(page, 'signing-site-denied-fa');
    // The only errors left: the consent pages' polls that found their request gone (HTTP 404).
    expect(errors.filter((e) => !/status of 404 .*\/consent\/api\/request\)$/.test(e))).toEqual([]);
  });
});
