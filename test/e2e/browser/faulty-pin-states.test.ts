// softhsm-only: PIN states come from the faulty PKCS#11 shim, which forwards to SoftHSM's library only
import { X509Certificate, createHash, randomBytes, verify as cryptoVerify } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess } from '../../helpers/agent-process.js';
import type { RpcClient } from '../../helpers/agent-process.js';
import {
  ChromiumHarness,
  ConsentWindows,
  recordingLauncher,
  screenshot,
  screenshotOnFailure,
  testId,
} from '../../helpers/browser.js';
import { FaultyModule, seedSigner } from '../../helpers/faulty-module.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// The consent page over token states that only a real misbehaving module gives (the faulty PKCS#11
// shim over SoftHSM): the final-try and count-low warnings, and a PIN pad reader for which the page
// asks for no PIN and tells the user to type it on the reader. Checked in English and Persian.

const RA = 'https://ra.example';
const PIN = '7531';

describe('Consent page over a faulty PKCS#11 module', () => {
  const hsm = new SoftHsm('kelid-faulty-ui-');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-faulty-ui-'));
  let faulty: FaultyModule;
  let agent: AgentProcess;
  let browser: ChromiumHarness;
  let consents: ConsentWindows;
  let ra: RpcClient;
  let certificate: { certificateId: string; certificate: string };
  const errors: string[] = [];

  beforeAll(async () => {
    hsm.initToken('ui-tok', 'SoPin2468', PIN);
    seedSigner(hsm, 'ui-tok', PIN);
    faulty = new FaultyModule(hsm);
    const urls = path.join(work, 'urls.txt');
    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-faulty-ui-',
      config: {
        modules: [{ id: 'faulty', path: faulty.path, env: faulty.env }],
        raOrigins: [RA],
        revocation: { enforceOnSign: 'off' },
        consent: { launcher: recordingLauncher(urls) },
      },
    });
    browser = await ChromiumHarness.launch({ trustCaPem: agent.info.caCertificatePem });
    consents = new ConsentWindows(browser, urls, errors);
    ra = await agent.connect(RA);
    const { certificates } = await ra.call<{ certificates: Array<typeof certificate> }>('certificates.list');
    certificate = certificates[0]!;
  });

  afterEach(async ({ task }) => screenshotOnFailure(browser, task));

  afterAll(async () => {
    await ra?.close();
    await browser?.close();
    await agent?.stop();
    agent?.cleanup();
    faulty?.cleanup();
    hsm.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  function startSign(): { call: Promise<{ signature: string }>; data: Buffer } {
    const data = randomBytes(32);
    const call = ra.call<{ signature: string }>('sign.raw', {
      certificateId: certificate.certificateId,
      digest: createHash('sha256').update(data).digest('base64'),
      digestAlgorithm: 'SHA-256',
      summary: 'consent page over a faulty module',
    });
    return { call, data };
  }

  async function expectVerifies(s: { call: Promise<{ signature: string }>; data: Buffer }): Promise<void> {
    const { signature } = await s.call;
    const key = new X509Certificate(Buffer.from(certificate.certificate, 'base64')).publicKey;
    expect(cryptoVerify('sha256', s.data, key, Buffer.from(signature, 'base64'))).toBe(true);
  }

  async function toggleLanguage(page: Page, to: 'fa' | 'en'): Promise<void> {
    await page.getByTestId('lang-toggle').click();
    await page.locator(`html[lang="${to}"]`).waitFor();
  }

  it('shows the final-try and count-low warnings in English and Persian, then signs with the typed PIN', async () => {
    const cases = [
      {
        flag: 'user-pin-final-try',
        warning: 'pin-final-try',
        en: 'This is the final PIN try before the token locks.',
        fa: 'این آخرین تلاش برای وارد کردن رمز است؛ با رمز اشتباه، توکن قفل می‌شود.',
      },
      {
        flag: 'user-pin-count-low',
        warning: 'pin-count-low',
        en: 'A wrong PIN was entered before: only a few tries remain before the token locks.',
        fa: 'پیش‌تر رمز اشتباه وارد شده است؛ تا قفل شدن توکن فقط چند تلاش باقی مانده است.',
      },
    ] as const;
    for (const c of cases) {
      faulty.set(`flags ${c.flag}`);
      const s = startSign();
      const page = await consents.next({ lang: 'en' });
      const warning = page.locator(testId('consent-warning', { 'data-warning': c.warning }));
      expect(await warning.textContent()).toBe(c.en);
      await toggleLanguage(page, 'fa');
      expect(await warning.textContent()).toBe(c.fa);
      await screenshot(page, `consent-${c.warning}-fa`);
      expect(await page.getByTestId('consent-pinpad').isVisible()).toBe(false);
      await ConsentWindows.approve(page, { userPin: PIN });
      await expectVerifies(s);
      await page.close();
    }
  });

  it('on a PIN pad token asks for no PIN, tells the user to use the keypad (en, fa), and signs', async () => {
    faulty.set(`pinpad ${PIN}`);
    faulty.resetCalls();
    const s = startSign();
    const page = await consents.next({ lang: 'en' });
    const notice = page.getByTestId('consent-pinpad');
    expect(await notice.isVisible()).toBe(true);
    expect(await notice.textContent()).toContain('type your PIN on the reader, not on this computer');
    expect(await page.getByTestId('pin-userPin').count()).toBe(0);
    await toggleLanguage(page, 'fa');
    expect(await notice.textContent()).toContain('رمز را روی کارت‌خوان وارد کنید');
    await screenshot(page, 'consent-pinpad-fa');
    await ConsentWindows.approve(page, {});
    await expectVerifies(s);
    expect(faulty.loginCalls()).toEqual([{ userType: 1, withPin: false }]);
    expect(errors).toEqual([]);
  });

  it('on a PIN pad token, Enter, Space or a click right as the page appears signs nothing (keyjacking)', async () => {
    faulty.set(`pinpad ${PIN}`);
    faulty.resetCalls();
    const s = startSign();
    const page = await consents.next({ lang: 'en' });
    await page.getByTestId('consent-pinpad').waitFor();
    await page.keyboard.press('Enter');
    await page.keyboard.press(' ');
    const box = await page.getByTestId('consent-approve').boundingBox();
    if (box === null) throw new Error('Approve is gone: an early key press answered the request');
    await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
    expect(await page.locator(testId('consent-result')).isVisible()).toBe(false);
    expect(await agent.pendingConsents()).toHaveLength(1);
    expect(faulty.loginCalls()).toEqual([]);
    // The user's own approval, once the page has been in front of them for a second, signs.
    await new Promise((r) => setTimeout(r, 1200));
    await ConsentWindows.approve(page, {});
    await expectVerifies(s);
    expect(faulty.loginCalls()).toEqual([{ userType: 1, withPin: false }]);
  });
});
