// softhsm-only: tests the extension and native messaging path; the demo stack is built on SoftHSM
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testId, until } from '../../helpers/browser.js';
import { softHsmDemoConfig } from '../../helpers/demo-stack.js';
import { startExtensionStack } from '../../helpers/extension-stack.js';
import type { ExtensionStack } from '../../helpers/extension-stack.js';
import { opensslCmsVerify } from '../../helpers/openssl-cms.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// The demo RA console and signing site end to end through the Kelid extension and `kelid native-host`,
// with the agent's WebSocket listener off (config wss: false) and its CA trusted nowhere: the only way
// from the pages to the agent is native messaging. Consents are approved on the control channel (the
// consent page is served over the agent's TLS, which this browser does not trust).

const SO_PIN = 'Officer2024';
const USER_PIN = '1357';

describe('Demo RA console and signing site over the extension (WSS off, CA not trusted)', () => {
  let hsm: SoftHsm;
  let s: ExtensionStack;
  let ra: Page;
  let site: Page;
  const errors: string[] = [];

  beforeAll(async () => {
    hsm = new SoftHsm();
    s = await startExtensionStack({
      prefix: 'kelid-e2e-ext-demo-',
      agentConfig: softHsmDemoConfig(hsm),
    });
  });

  afterAll(async () => {
    await s?.close();
    hsm?.cleanup();
  });

  const raOk = () => ra.locator(testId('ra-message', { 'data-kind': 'ok' })).last();

  it('refuses the pages on the WebSocket: wss is off', async () => {
    await expect(s.agent.open(s.demo.urls.ra)).rejects.toMatchObject({ status: 403 });
  });

  it('runs the RA console over the extension: init, key, CSR, issue, import', async () => {
    ra = await s.browser.page(errors);
    await ra.goto(`${s.demo.urls.ra}/?lang=en`);
    await ra.getByTestId('ra-status').filter({ hasText: 'tier: ra' }).waitFor({ timeout: 30_000 });
    await ra.getByTestId('ra-token-info').filter({ hasText: 'not initialized' }).waitFor();

    await ra.getByTestId('ra-init-label').fill('Citizen 7');
    await ra.getByTestId('ra-init').click();
    await s.approveNext({ newSoPin: SO_PIN, newUserPin: USER_PIN }, s.demo.urls.ra);
    await ra.getByTestId('ra-token-info').filter({ hasText: 'Citizen 7' }).waitFor({ timeout: 30_000 });

    await ra.getByTestId('ra-key-algorithm').selectOption('RSA-2048');
    await ra.getByTestId('ra-generate').click();
    await s.approveNext({ userPin: USER_PIN }, s.demo.urls.ra);
    await until(
      () => ra.getByTestId('ra-key').count(),
      (n) => n === 1,
      'one key',
    );

    await ra.getByTestId('ra-create-csr').click();
    await s.approveNext({ userPin: USER_PIN }, s.demo.urls.ra);
    await until(
      () => ra.getByTestId('ra-csr-pem').inputValue(),
      (v) => v.includes('BEGIN CERTIFICATE REQUEST'),
      'a CSR',
    );
    writeFileSync(join(s.tmp, 'req.pem'), await ra.getByTestId('ra-csr-pem').inputValue());
    execFileSync('openssl', ['req', '-in', join(s.tmp, 'req.pem'), '-noout', '-verify'], { stdio: 'pipe' });

    await ra.getByTestId('ra-submit').click();
    await ra
      .getByTestId('ra-issued')
      .filter({ hasText: 'Kelid Demo Issuing CA' })
      .waitFor({ timeout: 30_000 });
    await ra.getByTestId('ra-import').click();
    await s.approveNext({ userPin: USER_PIN }, s.demo.urls.ra);
    await until(
      () => ra.getByTestId('ra-certificate').count(),
      (n) => n === 1,
      'one certificate',
    );
    await ra.locator(testId('ra-cert-status', { 'data-status': 'good' })).waitFor({ timeout: 30_000 });
    await raOk().waitFor();
    const objects = hsm.tool(['--token-label', 'Citizen 7', '--list-objects', '--type', 'cert']);
    expect(objects.match(/Certificate Object/g)).toHaveLength(3);
  });

  it('signs on the signing site over the extension; openssl verifies the CAdES signature', async () => {
    site = await s.browser.page(errors);
    await site.goto(`${s.demo.urls.site}/?lang=en`);
    await site.locator(testId('site-tier', { 'data-tier': 'unknown' })).waitFor({ timeout: 30_000 });
    await site.getByTestId('site-request-access').click();
    await s.approveNext({}, s.demo.urls.site);
    await site.locator(testId('site-tier', { 'data-tier': 'site' })).waitFor();
    await until(
      () => site.getByTestId('site-cert').count(),
      (n) => n === 1,
      'one signing certificate',
    );

    const text = 'Contract 7 — قرارداد ۷';
    await site.getByTestId('site-text').fill(text);
    await site.getByTestId('site-sign-text').click();
    await s.approveNext({ userPin: USER_PIN }, s.demo.urls.site);
    await site.locator(testId('site-verify', { 'data-valid': 'true' })).waitFor({ timeout: 30_000 });
    writeFileSync(join(s.tmp, 'root.pem'), s.demo.ca.rootPem);
    writeFileSync(
      join(s.tmp, 'text.p7s'),
      Buffer.from(await site.getByTestId('site-cms').inputValue(), 'base64'),
    );
    const out = join(s.tmp, 'text.out');
    const r = opensslCmsVerify({ signature: join(s.tmp, 'text.p7s'), caFile: join(s.tmp, 'root.pem'), out });
    expect(r.output).toContain('CAdES Verification successful');
    expect(readFileSync(out, 'utf8')).toBe(text);
  });

  it('signs 100 documents under one consent over the extension', async () => {
    await site.getByTestId('site-sign-batch').click();
    await s.approveNext({ userPin: USER_PIN }, s.demo.urls.site);
    await site
      .locator(testId('site-verify', { 'data-valid': 'true' }))
      .filter({ hasText: '100 of 100' })
      .waitFor({ timeout: 60_000 });
  });

  it('carries an answer over the 1 MB native-messaging limit in parts (a 600-item CMS batch)', async () => {
    const run = site.evaluate(`(async () => {
      const { KelidClient } = await import('/kelid.js');
      const c = await KelidClient.connect();
      const [cert] = await c.listCertificates({ filter: { hasPrivateKey: true } });
      const items = Array.from({ length: 600 }, (_, i) => ({
        digest: crypto.getRandomValues(new Uint8Array(32)),
        summary: 'document ' + i,
      }));
      const r = await c.signBatch({ certificateId: cert.certificateId, format: 'cms', digestAlgorithm: 'SHA-256', items });
      c.close();
      return { transport: c.transport, count: r.results.length, bytes: JSON.stringify(r).length };
    })()`);
    await s.approveNext({ userPin: USER_PIN }, s.demo.urls.site);
    const r = (await run) as { transport: string; count: number; bytes: number };
    expect(r).toMatchObject({ transport: 'extension', count: 600 });
    expect(r.bytes).toBeGreaterThan(1024 * 1024);
  });

  it('reports the extension transport to the page', async () => {
    const transport = await site.evaluate(`(async () => {
      const { KelidClient } = await import('/kelid.js');
      const c = await KelidClient.connect();
      const t = c.transport;
      c.close();
      return t;
    })()`);
    expect(transport).toBe('extension');
    expect(errors.filter((e) => !e.includes('favicon'))).toEqual([]);
  });
});
