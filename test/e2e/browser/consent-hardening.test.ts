// softhsm-only: tests the consent page in Chromium; the module does not matter, and a TPM boot adds nothing
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Page } from 'playwright-core';
import { WebSocket } from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { sendControlRequest } from '../../../src/consent/control-channel.js';
import { AgentProcess } from '../../helpers/agent-process.js';
import type { RpcClient } from '../../helpers/agent-process.js';
import {
  ChromiumHarness,
  recordingLauncher,
  screenshotOnFailure,
  testId,
  until,
} from '../../helpers/browser.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// Issue 13 against the real agent and Debian's Chromium:
// - section 5 (keyjacking): a key press or click that lands on the consent page as it appears
//   approves nothing; Approve works once the page has been visible and focused for about a second;
// - section 6 (secrets in argv): the consent URL's secret, which sat in the browser's command line,
//   is useless once the page has loaded, and so is the `kelid ui` secret;
// - section 8 (CSR display): the consent for csr.create shows the subject (string or array form)
//   and the alternative names, with bidi overrides made visible.

const RA = 'https://ra.example';
const SO_PIN = 'Xy8SoPin3';
const USER_PIN = '9081726354';

// The data-testid of the focused element (evaluated in the page).
const FOCUSED_TEST_ID = 'document.activeElement?.getAttribute("data-testid") ?? null';

interface ApiResponse {
  status: number;
  body: string;
}

describe('Consent page hardening in Chromium', () => {
  const hsm = new SoftHsm('kelid-e2e-consent-hardening-hsm-');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-e2e-consent-hardening-'));
  const urlFile = path.join(work, 'urls.txt');
  let agent: AgentProcess;
  let browser: ChromiumHarness;
  let ra: RpcClient;
  let tokenId: string;
  let keyId: string;

  const launched = (): string[] =>
    fs.existsSync(urlFile) ? fs.readFileSync(urlFile, 'utf8').split('\n').filter(Boolean) : [];
  const pendingIds = async (): Promise<string[]> =>
    ((await sendControlRequest(agent.stateDir, { op: 'list' })) as Array<{ requestId: string }>).map(
      (r) => r.requestId,
    );

  /** What another local program that read the URL from /proc/<pid>/cmdline can do with its secret. */
  function api(method: 'GET' | 'POST', route: string, secret: string, body?: unknown): Promise<ApiResponse> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port: agent.port,
          path: `/consent/api/${route}`,
          method,
          ca: agent.info.caCertificatePem,
          agent: false,
          headers: {
            Authorization: `Bearer ${secret}`,
            ...(payload !== undefined ? { 'Content-Type': 'application/json' } : {}),
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** Ask on a fresh connection of `origin`; returns the call, its requestId and its page's URL. */
  async function ask(
    client: RpcClient,
    method: string,
    params: unknown,
  ): Promise<{ call: Promise<unknown>; requestId: string; url: string }> {
    const before = launched().length;
    const id = client.nextId;
    const call = client.call(method, params);
    const requestId = await Promise.race([
      client.consentFor(id),
      call.then(() => {
        throw new Error(`${method} returned without asking`);
      }),
    ]);
    const urls = await until(launched, (u) => u.length > before, 'the consent page URL');
    return { call, requestId, url: urls[before] };
  }

  async function open(url: string): Promise<Page> {
    const page = await browser.page();
    await page.goto(url);
    await page
      .locator('[data-testid="consent-origin"]:visible, [data-testid="consent-result"]:visible')
      .first()
      .waitFor();
    return page;
  }

  beforeAll(async () => {
    hsm.initToken('hardening-token', SO_PIN, USER_PIN);
    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-consent-hardening-',
      config: {
        modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
        raOrigins: [RA],
        consent: { timeoutSeconds: 60, language: 'en', launcher: recordingLauncher(urlFile) },
      },
    });
    browser = await ChromiumHarness.launch({ trustCaPem: agent.info.caCertificatePem });
    ra = await agent.connect(RA);
    const { tokens } = await ra.call<{ tokens: Array<{ tokenId: string; label: string }> }>('tokens.list');
    tokenId = tokens.find((t) => t.label === 'hardening-token')!.tokenId;
    // A key for the CSR tests, approved on the control channel (`kelid consent approve`).
    const { call, requestId } = await ask(ra, 'keys.generate', {
      tokenId,
      algorithm: { name: 'EC', namedCurve: 'P-256' },
      label: 'k',
    });
    const approved = await agent.consent(requestId, { userPin: USER_PIN });
    expect(approved.status, approved.stderr).toBe(0);
    keyId = ((await call) as { key: { keyId: string } }).key.keyId;
  });

  afterEach(async ({ task }) => screenshotOnFailure(browser, task));

  afterAll(async () => {
    await ra?.close();
    await browser?.close();
    await agent?.stop();
    agent?.cleanup();
    hsm.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  describe('keyjacking (section 5)', () => {
    it('approves nothing on Enter, Space or a click right after the page appears; a click after ~1 s approves', async () => {
      const site = await agent.connect('https://keyjack.example');
      const { call, requestId, url } = await ask(site, 'agent.requestAccess', {});
      const page = await open(url);
      await page.getByTestId('consent-origin').waitFor();
      await page.keyboard.press('Enter');
      await page.keyboard.press(' ');
      const box = await page.getByTestId('consent-approve').boundingBox();
      if (box === null) throw new Error('Approve is gone: an early key press answered the request');
      await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
      await page.keyboard.press('Enter');
      expect(await page.locator(testId('consent-result')).isVisible()).toBe(false);
      expect(await pendingIds()).toContain(requestId);
      // Nothing Enter or Space would activate has the focus.
      expect(await page.evaluate<string | null>(FOCUSED_TEST_ID)).toBeNull();

      // After the page has been visible and focused for a second, the user's own click approves.
      await new Promise((r) => setTimeout(r, 1200));
      await page.getByTestId('consent-approve').click();
      await page.locator(testId('consent-result', { 'data-result': 'approved' })).waitFor();
      expect(await call).toEqual({ tier: 'site' });
      await page.close();
      await site.close();
    });

    it('disarms at once when the page loses focus, and arms again only after focus comes back', async () => {
      const site = await agent.connect('https://blur.example');
      const { call, requestId, url } = await ask(site, 'agent.requestAccess', {});
      const page = await open(url);
      const approve = page.getByTestId('consent-approve');
      await until(
        () => approve.isEnabled(),
        (enabled) => enabled,
        'Approve to be enabled',
      );
      // Another window takes the focus (a page that raised the request pulls itself to the front).
      const other = await browser.page();
      await other.bringToFront();
      await page.evaluate("window.dispatchEvent(new Event('blur'))");
      expect(await approve.isDisabled()).toBe(true);
      expect(await page.getByTestId('consent-deny').isDisabled()).toBe(true);
      await page.keyboard.press('Enter');
      expect(await pendingIds()).toContain(requestId);
      await page.bringToFront();
      await page.evaluate("window.dispatchEvent(new Event('focus'))");
      await until(
        () => approve.isEnabled(),
        (enabled) => enabled,
        'Approve to be enabled again',
      );
      await approve.click();
      await page.locator(testId('consent-result', { 'data-result': 'approved' })).waitFor();
      expect(await call).toEqual({ tier: 'site' });
      await Promise.all([page.close(), other.close(), site.close()]);
    });

    it('approves nothing while the user keeps clicking or pressing Enter where Approve appears (a click game)', async () => {
      // The hostile page asks for access, then keeps the user clicking fast at the spot where the
      // consent page's Approve button will be (or pressing Enter): a click that lands one second after
      // the page appeared must not approve, since the user never stopped to read it.
      const site = await agent.connect('https://click-game.example');
      const { call, requestId, url } = await ask(site, 'agent.requestAccess', {});
      const page = await open(url);
      const approve = page.getByTestId('consent-approve');
      const box = await approve.boundingBox();
      if (box === null) throw new Error('no Approve button');
      const end = Date.now() + 2500;
      for (let i = 0; Date.now() < end; i++) {
        if (i % 2 === 0) await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
        else await page.keyboard.press('Enter');
        await new Promise((r) => setTimeout(r, 150));
        if (await page.locator(testId('consent-result')).isVisible()) break;
      }
      expect(await page.locator(testId('consent-result')).isVisible()).toBe(false);
      expect(await pendingIds()).toContain(requestId);

      // Once the clicking stops for a second, the user's own click approves.
      await until(
        () => approve.isEnabled(),
        (enabled) => enabled,
        'Approve to be enabled',
      );
      await approve.click();
      await page.locator(testId('consent-result', { 'data-result': 'approved' })).waitFor();
      expect(await call).toEqual({ tier: 'site' });
      await page.close();
      await site.close();
    });

    it('is keyboard-accessible once armed: Tab to Approve and Enter', async () => {
      const site = await agent.connect('https://keyboard.example');
      const { call, url } = await ask(site, 'agent.requestAccess', {});
      const page = await open(url);
      await until(
        () => page.getByTestId('consent-approve').isEnabled(),
        (enabled) => enabled,
        'Approve to be enabled',
      );
      const focused = () => page.evaluate<string | null>(FOCUSED_TEST_ID);
      for (let i = 0; i < 5 && (await focused()) !== 'consent-approve'; i++) await page.keyboard.press('Tab');
      expect(await focused()).toBe('consent-approve');
      await page.keyboard.press('Enter');
      await page.locator(testId('consent-result', { 'data-result': 'approved' })).waitFor();
      expect(await call).toEqual({ tier: 'site' });
      await page.close();
      await site.close();
    });
  });

  describe('secrets in argv (section 6)', () => {
    it('the consent URL secret is spent once the page has loaded: another program can neither read nor answer', async () => {
      const site = await agent.connect('https://argv.example');
      const { call, requestId, url } = await ask(site, 'agent.requestAccess', { reason: 'argv' });
      const launchSecret = new URL(url).hash.slice(1);
      const page = await open(url);
      await page.getByTestId('consent-origin').waitFor();

      expect((await api('GET', 'request', launchSecret)).status).toBe(404);
      expect((await api('POST', 'session', launchSecret)).status).toBe(409);
      expect((await api('POST', 'approve', launchSecret, { secrets: {} })).status).toBe(404);
      expect((await api('POST', 'deny', launchSecret)).status).toBe(404);
      expect(await pendingIds()).toContain(requestId);

      // The page keeps working for its lifetime, across a reload of its tab too.
      await page.reload();
      await page.getByTestId('consent-origin').waitFor();
      expect(await page.getByTestId('consent-summary').textContent()).toBe('argv');
      expect((await api('GET', 'request', launchSecret)).status).toBe(404);
      await page.getByTestId('consent-approve').click();
      await page.locator(testId('consent-result', { 'data-result': 'approved' })).waitFor();
      expect(await call).toEqual({ tier: 'site' });
      await page.close();
      await site.close();
    });

    it('a second window opened with the same URL says so and cannot answer', async () => {
      const site = await agent.connect('https://twice.example');
      const { call, url } = await ask(site, 'agent.requestAccess', {});
      const first = await open(url);
      const second = await open(url);
      await second.locator(testId('consent-result', { 'data-result': 'elsewhere' })).waitFor();
      expect(await second.getByTestId('consent-approve').isVisible()).toBe(false);
      await first.getByTestId('consent-deny').click();
      await first.locator(testId('consent-result', { 'data-result': 'denied' })).waitFor();
      await expect(call).rejects.toMatchObject({ data: { code: 'ERR_USER_CANCELLED' } });
      await Promise.all([first.close(), second.close(), site.close()]);
    });

    it('the `kelid ui` secret opens one console connection: once the manager has loaded it is useless', async () => {
      const printed = await agent.cli(['ui', '--print']);
      expect(printed.status, printed.stderr).toBe(0);
      const url = new URL(printed.stdout.trim());
      const secret = url.hash.slice(1);
      const page = await browser.page();
      await page.goto(url.toString());
      await until(
        async () => (await page.getByTestId('manager-status').textContent()) ?? '',
        (text) => text.startsWith('Connected'),
        'the manager to connect',
      );
      const status = await new Promise<number | 'open'>((resolve) => {
        const ws = new WebSocket(`wss://127.0.0.1:${agent.port}/v1?console=${secret}`, {
          origin: agent.info.url,
          ca: agent.info.caCertificatePem,
        });
        ws.once('open', () => {
          ws.close();
          resolve('open');
        });
        ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.once('error', () => undefined);
      });
      expect(status).toBe(403);
      expect(await page.getByTestId('manager-status').textContent()).toMatch(/^Connected/);
      await page.close();
    });
  });

  describe('CSR display (section 8)', () => {
    async function csrConsent(
      request: Record<string, unknown>,
    ): Promise<{ page: Page; call: Promise<unknown>; requestId: string }> {
      const { call, url, requestId } = await ask(ra, 'csr.create', { tokenId, keyId, ...request });
      return { page: await open(url), call, requestId };
    }

    async function shown(page: Page): Promise<{ subject: string; names: string[] }> {
      return {
        subject: (await page.getByTestId('consent-csr-subject').textContent()) ?? '',
        names: await page.getByTestId('consent-csr-san').allTextContents(),
      };
    }

    // The RA page withdraws the request (a denial is the user's, not the page's, to give).
    async function withdraw({
      page,
      call,
      requestId,
    }: {
      page: Page;
      call: Promise<unknown>;
      requestId: string;
    }): Promise<void> {
      const pending = ra.notifications.find(
        (n) => n.method === 'consent.pending' && n.params.requestId === requestId,
      );
      expect(await ra.call('request.cancel', { id: pending!.params.id })).toEqual({ cancelled: true });
      await expect(call).rejects.toMatchObject({ data: { code: 'ERR_USER_CANCELLED' } });
      await page.locator(testId('consent-result', { 'data-result': 'gone' })).waitFor({ timeout: 10_000 });
      await page.close();
    }

    it('shows an array subject (Persian) and the alternative names', async () => {
      const consent = await csrConsent({
        subject: [
          { type: 'C', value: 'IR' },
          { type: 'CN', value: 'علی رضایی' },
        ],
        subjectAltNames: [
          { type: 'email', value: 'ali@example.ir' },
          { type: 'dns', value: 'ali.example.ir' },
        ],
      });
      expect(await shown(consent.page)).toEqual({
        subject: 'C=IR,CN=علی رضایی',
        names: ['email:ali@example.ir', 'dns:ali.example.ir'],
      });
      await withdraw(consent);
    });

    it('refuses names with bidi overrides or isolates at once, in the string and the array form: no prompt', async () => {
      const rlo = '\u202e';
      const attempts: Array<Record<string, unknown>> = [
        { subject: `CN=Invoice ${rlo}fdp.exe,O=Bank` },
        { subject: [{ type: 'CN', value: `\u2067محمد${rlo}\u2069 Ltd` }] },
        { subject: 'CN=Plain', subjectAltNames: [{ type: 'dns', value: `a${rlo}b.example` }] },
        { subject: 'CN=Plain', subjectAltNames: [{ type: 'upn', value: `ali${rlo}@example.ir` }] },
      ];
      const before = launched().length;
      for (const request of attempts) {
        const id = ra.nextId;
        const call = ra.call('csr.create', { tokenId, keyId, ...request });
        const outcome = await Promise.race([
          ra.consentFor(id).then(() => 'prompted'),
          call.then(
            () => 'created',
            (e: unknown) => (e as { data?: { code?: string } }).data?.code,
          ),
        ]);
        if (outcome === 'prompted') await ra.call('request.cancel', { id });
        expect(outcome).toBe('ERR_INVALID_INPUT');
      }
      expect(launched()).toHaveLength(before);
    });

    it('shows a string subject as the RA sent it, a Persian ZWNJ included', async () => {
      const consent = await csrConsent({
        subject: 'CN=مه‌سا,O=Bank Melli,C=IR',
        subjectAltNames: [{ type: 'email', value: 'mahsa@example.ir' }],
      });
      expect(await shown(consent.page)).toEqual({
        subject: 'CN=مه‌سا,O=Bank Melli,C=IR',
        names: ['email:mahsa@example.ir'],
      });
      await withdraw(consent);
    });
  });
});
