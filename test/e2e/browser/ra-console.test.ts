// softhsm-only: the demo stack (test/helpers/demo-stack.ts) is built on SoftHSM; the same RA flow runs on tpm2 in test/e2e/agent/ra-flow.test.ts
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Demo } from '../../../demo/server.mjs';
import type { ChromiumHarness } from '../../helpers/browser.js';
import { ConsentWindows, screenshot, screenshotOnFailure, testId, until } from '../../helpers/browser.js';
import { softHsmDemoConfig, startDemoStack } from '../../helpers/demo-stack.js';
import type { DemoStack } from '../../helpers/demo-stack.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// The RA console flow of the demo in Debian's Chromium, against the real agent over TLS (its CA
// trusted through the NSS db of a temporary HOME), with every PIN typed into the consent page.
// Each step's result is checked with someone else's tools: pkcs11-tool, openssl.

const SO_PIN = 'Officer2024';
const USER_PIN = '1357';
const NEW_USER_PIN = '2468';

describe('Demo RA console in Chromium', () => {
  let tmp: string;
  let hsm: SoftHsm;
  let demo: Demo;
  let browser: ChromiumHarness;
  let consents: ConsentWindows;
  let page: Page;
  const errors: string[] = [];
  let stack: DemoStack;

  beforeAll(async () => {
    hsm = new SoftHsm();
    stack = await startDemoStack({
      prefix: 'kelid-e2e-ra-',
      errors,
      agentConfig: softHsmDemoConfig(hsm),
    });
    ({ tmp, demo, browser, consents, page } = stack);
  });

  afterEach(async ({ task }) => screenshotOnFailure(browser, task));

  afterAll(async () => {
    await stack?.close();
    hsm?.cleanup();
  });

  /** Click, answer the consent page with `secrets`, and wait for the page's success message. */
  async function consented(button: string, secrets: Record<string, string>, shot?: string): Promise<Page> {
    await page.getByTestId(button).click();
    const consent = await consents.next({ lang: 'en' });
    expect(await consent.getByTestId('consent-origin').textContent()).toBe(demo.urls.ra);
    if (shot) await screenshot(consent, shot);
    await ConsentWindows.approve(consent, secrets);
    await page.locator(testId('ra-message', { 'data-kind': 'ok' })).waitFor({ timeout: 30_000 });
    return consent;
  }

  it('connects as the ra tier over TLS and shows the empty SoftHSM slot', async () => {
    await page.goto(`${demo.urls.ra}/?lang=en`);
    await page.getByTestId('ra-status').filter({ hasText: 'tier: ra' }).waitFor();
    await page.getByTestId('ra-token-info').filter({ hasText: 'not initialized' }).waitFor();
    await screenshot(page, 'ra-console-en');
  });

  it('initializes the token with the SO-PIN and PIN typed into the consent page', async () => {
    await page.getByTestId('ra-init-label').fill('Citizen 42');
    await page.getByTestId('ra-init').click();
    const consent = await consents.next({ lang: 'fa' });
    expect(await consent.locator('html').getAttribute('dir')).toBe('rtl');
    expect(await consent.getByTestId('consent-summary').textContent()).toBe('Citizen 42');
    expect(await consent.getByTestId('consent-warning').getAttribute('data-warning')).toBe('erase');
    // The page refuses a new user PIN that breaks the policy (digits only) before sending anything.
    await consent.getByTestId('pin-newSoPin').fill(SO_PIN);
    await consent.getByTestId('pin-newSoPin-confirm').fill(SO_PIN);
    await consent.getByTestId('pin-newUserPin').fill('12ab');
    await consent.getByTestId('pin-newUserPin-confirm').fill('12ab');
    await consent.getByTestId('consent-approve').click();
    await consent.getByTestId('pin-newUserPin-error').waitFor();
    expect(await consent.getByTestId('pin-newUserPin-error').textContent()).toBe('فقط رقم مجاز است.');
    expect(consents.urls()).toHaveLength(1);
    await screenshot(consent, 'consent-tokens-init-fa');
    // Persian digits are accepted and reach the token as ASCII.
    await ConsentWindows.approve(consent, { newSoPin: SO_PIN, newUserPin: '۱۳۵۷' });
    await page.locator(testId('ra-message', { 'data-kind': 'ok' })).waitFor();
    await page.getByTestId('ra-token-info').filter({ hasText: 'Citizen 42' }).waitFor();
    const listing = hsm.tool(['-L']);
    expect(listing).toMatch(/token label\s*:\s*Citizen 42/);
    hsm.tool(['--token-label', 'Citizen 42', '--login', '--pin', USER_PIN, '--list-objects']);
  });

  it('generates an RSA key pair on the token', async () => {
    await page.getByTestId('ra-key-algorithm').selectOption('RSA-2048');
    await consented('ra-generate', { userPin: USER_PIN }, 'consent-keys-generate-en');
    await until(
      () => page.getByTestId('ra-key').count(),
      (n) => n === 1,
      'one key',
    );
    const keyId = await page.getByTestId('ra-key').getAttribute('data-key-id');
    const objects = hsm.tool(['--token-label', 'Citizen 42', '--login', '--pin', USER_PIN, '--list-objects']);
    expect(objects).toMatch(new RegExp(`Private Key Object; RSA[\\s\\S]*ID:\\s*${keyId}`));
  });

  it('creates a CSR on the token that openssl verifies, with the Persian name intact', async () => {
    await consented('ra-create-csr', { userPin: USER_PIN });
    const csr = await page.getByTestId('ra-csr-pem').inputValue();
    writeFileSync(join(tmp, 'req.pem'), csr);
    const out = execFileSync(
      'openssl',
      ['req', '-in', join(tmp, 'req.pem'), '-noout', '-verify', '-subject', '-nameopt', 'utf8'],
      {
        encoding: 'utf8',
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    expect(out).toContain('CN=علی رضایی');
    expect(out).toContain('serialNumber=0012345678');
  });

  it('has the demo CA issue the certificate and writes it and the chain to the token', async () => {
    await page.getByTestId('ra-submit').click();
    await page.locator(testId('ra-message', { 'data-kind': 'ok' })).waitFor();
    await page.getByTestId('ra-issued').filter({ hasText: 'Kelid Demo Issuing CA' }).waitFor();
    await consented('ra-import', { userPin: USER_PIN });
    await until(
      () => page.getByTestId('ra-certificate').count(),
      (n) => n === 1,
      'one certificate',
    );
    const objects = hsm.tool(['--token-label', 'Citizen 42', '--list-objects', '--type', 'cert']);
    expect(objects.match(/Certificate Object/g)).toHaveLength(3);
    // Right after the import the page checks the status: good, from the demo CA's OCSP responder.
    await page.locator(testId('ra-cert-status', { 'data-status': 'good' })).waitFor();
  });

  it('shows the certificate as revoked after the demo CA revokes it', async () => {
    await page.getByTestId('ra-revoke').click();
    await page
      .locator(testId('ra-message', { 'data-kind': 'ok' }))
      .or(page.locator(testId('ra-message', { 'data-kind': 'error' })))
      .waitFor();
    await page.goto(`${demo.urls.ra}/?lang=fa`);
    await page.getByTestId('ra-status').filter({ hasText: 'ra' }).waitFor();
    // The agent may answer from its cache until the last answer's nextUpdate: the demo CA keeps those
    // 10 s short, so asking again shows the revocation within seconds.
    await until(
      async () => {
        await page.getByTestId('ra-check-status').click();
        await page.getByTestId('ra-cert-status').waitFor();
        await until(
          () => page.getByTestId('ra-check-status').isEnabled(),
          (enabled) => enabled,
          'the check to end',
        );
        return page.getByTestId('ra-cert-status').getAttribute('data-status');
      },
      (status) => status === 'revoked',
      'the revoked status',
      30_000,
    );
    expect(await page.locator('html').getAttribute('dir')).toBe('rtl');
    await screenshot(page, 'ra-console-fa');
  });

  it('unblocks the user PIN with the SO-PIN and sets a new one', async () => {
    await consented('ra-unblock', { soPin: SO_PIN, newUserPin: NEW_USER_PIN });
    hsm.tool(['--token-label', 'Citizen 42', '--login', '--pin', NEW_USER_PIN, '--list-objects']);
    expect(() =>
      hsm.tool(['--token-label', 'Citizen 42', '--login', '--pin', USER_PIN, '--list-objects']),
    ).toThrow();
  });

  it('deletes the key pair and its certificate', async () => {
    await page.getByTestId('ra-delete-scope').selectOption('all');
    await consented('ra-delete', { userPin: NEW_USER_PIN });
    await until(
      () => page.getByTestId('ra-key').count(),
      (n) => n === 0,
      'no keys',
    );
    const objects = hsm.tool([
      '--token-label',
      'Citizen 42',
      '--login',
      '--pin',
      NEW_USER_PIN,
      '--list-objects',
    ]);
    expect(objects).not.toMatch(/Private Key Object/);
    expect(errors).toEqual([]);
  });
});
