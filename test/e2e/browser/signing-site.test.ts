// softhsm-only: the demo stack is built on SoftHSM, and 100 signatures under one consent are slow on swtpm; signing on tpm2 runs in ra-flow.test.ts
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Demo } from '../../../demo/server.mjs';
import type { AgentProcess } from '../../helpers/agent-process.js';
import type { ChromiumHarness } from '../../helpers/browser.js';
import { ConsentWindows, screenshot, screenshotOnFailure, testId, until } from '../../helpers/browser.js';
import { opensslCmsVerify } from '../../helpers/openssl-cms.js';
import { enrollOnToken, softHsmDemoConfig, startDemoStack } from '../../helpers/demo-stack.js';
import type { DemoStack } from '../../helpers/demo-stack.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// The signing-site flow of the demo in Debian's Chromium: request access (site tier), pick a signing
// certificate, sign a text and a file as CAdES (verified in the page and by `openssl cms -verify`),
// and sign 100 documents under one consent. Then the token manager (console tier) in both languages.

const PIN = '4711';
const NEW_PIN = '9024';
const SIGNER = 'مریم احمدی';

describe('Demo signing site and token manager in Chromium', () => {
  let tmp: string;
  let hsm: SoftHsm;
  let demo: Demo;
  let agent: AgentProcess;
  let browser: ChromiumHarness;
  let consents: ConsentWindows;
  let page: Page;
  const errors: string[] = [];
  let stack: DemoStack;

  beforeAll(async () => {
    hsm = new SoftHsm();
    hsm.initToken('Signer', '12345678', PIN);
    stack = await startDemoStack({
      prefix: 'kelid-e2e-site-',
      errors,
      agentConfig: softHsmDemoConfig(hsm),
      prepare: async (s) => {
        agent = s.agent;
        // Provision a signing certificate as an RA would (through the agent; consent on the CLI channel).
        await enrollOnToken(s, {
          tokenLabel: 'Signer',
          keyLabel: 'signing',
          algorithm: { name: 'RSA', modulusLength: 2048 },
          subject: [
            { type: 'CN', value: SIGNER },
            { type: 'C', value: 'IR' },
          ],
          userPin: PIN,
        });
      },
    });
    ({ tmp, demo, agent, browser, consents, page } = stack);
    writeFileSync(join(tmp, 'root.pem'), demo.ca.rootPem);
  });

  afterEach(async ({ task }) => screenshotOnFailure(browser, task));

  afterAll(async () => {
    await stack?.close();
    hsm?.cleanup();
  });

  const verified = () => page.locator(testId('site-verify', { 'data-valid': 'true' }));

  it('asks for access: the consent page names the site and its reason, then certificates are listed', async () => {
    await page.goto(`${demo.urls.site}/?lang=en`);
    await page.locator(testId('site-tier', { 'data-tier': 'unknown' })).waitFor();
    await page.getByTestId('site-request-access').click();
    const consent = await consents.next({ lang: 'en' });
    expect(await consent.getByTestId('consent-origin').textContent()).toBe(demo.urls.site);
    expect(await consent.getByTestId('consent-summary').textContent()).toBe(
      'Sign contracts with the Kelid demo notary office',
    );
    expect(await consent.locator('[data-testid^="pin-"]').count()).toBe(0);
    await screenshot(consent, 'consent-request-access-en');
    await ConsentWindows.approve(consent, {});
    await page.locator(testId('site-tier', { 'data-tier': 'site' })).waitFor();
    await until(
      () => page.getByTestId('site-cert').count(),
      (n) => n === 1,
      'one signing certificate',
    );
    expect(await page.getByTestId('site-cert').textContent()).toContain(SIGNER);
  });

  it('signs a text as CAdES; the page and openssl both verify it', async () => {
    const text = 'قرارداد فروش شمارهٔ ۷ — Sales contract 7';
    await page.getByTestId('site-text').fill(text);
    await page.getByTestId('site-sign-text').click();
    const consent = await consents.next({ lang: 'fa' });
    expect(await consent.getByTestId('consent-summary').textContent()).toBe(text);
    expect(await consent.getByTestId('consent-certificate').textContent()).toContain(SIGNER);
    const digest = createHash('sha256').update(text, 'utf8').digest('hex');
    expect(await consent.getByTestId('consent-digests').textContent()).toContain(digest);
    await screenshot(consent, 'consent-sign-cms-fa');
    await ConsentWindows.approve(consent, { userPin: PIN });
    await verified().waitFor({ timeout: 30_000 });
    const cms = Buffer.from(await page.getByTestId('site-cms').inputValue(), 'base64');
    writeFileSync(join(tmp, 'text.p7s'), cms);
    const out = join(tmp, 'text.out');
    const r = opensslCmsVerify({ signature: join(tmp, 'text.p7s'), caFile: join(tmp, 'root.pem'), out });
    expect(r.output).toContain('CAdES Verification successful');
    expect(readFileSync(out, 'utf8')).toBe(text);
    await screenshot(page, 'signing-site-en');
  });

  it('signs a 12 MiB file hashed in the page; openssl cms -verify accepts the detached signature', async () => {
    const data = randomBytes(12 * 1024 * 1024);
    writeFileSync(join(tmp, 'contract.bin'), data);
    await page.getByTestId('site-file').setInputFiles(join(tmp, 'contract.bin'));
    await page.getByTestId('site-sign-file').click();
    const consent = await consents.next({ lang: 'en' });
    const digest = createHash('sha256').update(data).digest('hex');
    expect(await consent.getByTestId('consent-digests').textContent()).toContain(digest);
    expect(await consent.getByTestId('consent-summary').textContent()).toContain('contract.bin');
    await ConsentWindows.approve(consent, { userPin: PIN });
    await verified().waitFor({ timeout: 30_000 });
    expect(await page.getByTestId('site-details').textContent()).toContain(digest);
    writeFileSync(
      join(tmp, 'contract.p7s'),
      Buffer.from(await page.getByTestId('site-cms').inputValue(), 'base64'),
    );
    const verify = () =>
      opensslCmsVerify({
        signature: join(tmp, 'contract.p7s'),
        content: join(tmp, 'contract.bin'),
        caFile: join(tmp, 'root.pem'),
      });
    expect(verify().output).toContain('CAdES Verification successful');
    data[0] ^= 1;
    writeFileSync(join(tmp, 'contract.bin'), data);
    expect(verify().ok).toBe(false);
  });

  it('signs 100 documents with one consent and one PIN', async () => {
    const before = consents.urls().length;
    await page.getByTestId('site-sign-batch').click();
    const consent = await consents.next({ lang: 'en' });
    expect(await consent.getByTestId('consent-operation').textContent()).toBe(
      'Sign 100 documents with one PIN',
    );
    expect(await consent.locator('[data-testid="consent-summary"] li').count()).toBe(100);
    expect(await consent.locator('[data-testid="consent-digests"] li').count()).toBe(100);
    await ConsentWindows.approve(consent, { userPin: PIN });
    const result = page
      .locator(testId('site-verify', { 'data-valid': 'true' }))
      .filter({ hasText: '100 of 100' });
    await result.waitFor({ timeout: 60_000 });
    expect(consents.urls().length).toBe(before + 1);
    await page.getByTestId('lang-toggle').click();
    await page.locator('html[dir="rtl"]').waitFor();
    await screenshot(page, 'signing-site-fa');
  });

  it('shows tokens, certificates and status in the token manager, and changes the PIN', async () => {
    const ui = await agent.cli(['ui', '--print']);
    expect(ui.status).toBe(0);
    const manager = await browser.page(errors);
    await manager.goto(ui.stdout.trim());
    expect(await manager.locator('html').getAttribute('dir')).toBe('rtl');
    await manager
      .locator(testId('manager-cert-status', { 'data-status': 'good' }))
      .waitFor({ timeout: 30_000 });
    expect(await manager.getByTestId('manager-certificate').textContent()).toContain(SIGNER);
    await screenshot(manager, 'manager-fa');
    await manager.getByTestId('lang-toggle').click();
    await manager.locator('html[dir="ltr"]').waitFor();
    await screenshot(manager, 'manager-en');

    await manager.getByTestId('manager-change-pin').click();
    const consent = await consents.next({ lang: 'en' });
    expect(await consent.getByTestId('consent-origin').textContent()).toBe(`https://127.0.0.1:${agent.port}`);
    await ConsentWindows.approve(consent, { oldUserPin: PIN, newUserPin: NEW_PIN });
    await manager
      .getByTestId('manager-message')
      .filter({ hasText: 'The PIN was changed.' })
      .waitFor({ timeout: 30_000 });
    hsm.tool(['--token-label', 'Signer', '--login', '--pin', NEW_PIN, '--list-objects']);
    expect(errors).toEqual([]);
  });
});
