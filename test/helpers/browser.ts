import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import type { Browser, BrowserContext, Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const SCREENSHOT_DIR = join(process.cwd(), 'test-artifacts', 'screenshots');

export interface ChromiumOptions {
  /** PEM of a CA to trust for TLS (the agent's local CA), added to the temporary HOME's NSS db. */
  trustCaPem?: string;
  /** Browser UI / Accept-Language locale, e.g. `fa-IR`. */
  locale?: string;
}

/**
 * Debian's Chromium, headless, with a fresh profile and a temporary HOME whose NSS database
 * ($HOME/.pki/nssdb, the one Chromium reads on Linux) trusts only the given CA: real TLS checks,
 * no certificate-error flags.
 */
export class ChromiumHarness {
  readonly home: string;
  browser!: Browser;
  context!: BrowserContext;

  private constructor() {
    this.home = mkdtempSync(join(tmpdir(), 'kelid-chromium-'));
  }

  static async launch(options: ChromiumOptions = {}): Promise<ChromiumHarness> {
    const h = new ChromiumHarness();
    try {
      const nssdb = join(h.home, '.pki', 'nssdb');
      mkdirSync(nssdb, { recursive: true });
      execFileSync('certutil', ['-d', `sql:${nssdb}`, '-N', '--empty-password'], { stdio: 'pipe' });
      if (options.trustCaPem) {
        const caFile = join(h.home, 'kelid-ca.pem');
        writeFileSync(caFile, options.trustCaPem);
        execFileSync('certutil', ['-d', `sql:${nssdb}`, '-A', '-n', 'kelid', '-t', 'C,,', '-i', caFile], {
          stdio: 'pipe',
        });
      }
      h.browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: [
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
        env: { ...process.env, HOME: h.home },
        timeout: 60_000,
      });
      h.context = await h.browser.newContext({
        locale: options.locale ?? 'en-US',
        viewport: { width: 1000, height: 900 },
      });
      return h;
    } catch (e) {
      await h.close();
      throw e;
    }
  }

  /** A new page in the shared context, with browser console errors collected into `errors`. */
  async page(errors: string[] = []): Promise<Page> {
    const page = await this.context.newPage();
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    return page;
  }

  async close(): Promise<void> {
    await this.browser?.close().catch(() => undefined);
    rmSync(this.home, { recursive: true, force: true });
  }
}

/** Full-page screenshot saved as test-artifacts/screenshots/<name>.png. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const path = join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
