import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import type { Browser, BrowserContext, Page } from 'playwright-core';

// KELID_CHROMIUM: another Chromium (Ubuntu's is a snap at /snap/bin/chromium; see scripts/setup.sh).
export const CHROMIUM = process.env.KELID_CHROMIUM ?? '/usr/bin/chromium';
export const SCREENSHOT_DIR = join(process.cwd(), 'test-artifacts', 'screenshots');

export interface ChromiumOptions {
  /** PEM of a CA to trust for TLS (the agent's local CA), added to the temporary HOME's NSS db. */
  trustCaPem?: string;
  /** Browser UI / Accept-Language locale, e.g. `fa-IR`. */
  locale?: string;
  /** Runs with the temporary HOME (its empty NSS db exists) before the browser starts. */
  prepareHome?: (home: string) => void;
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
      options.prepareHome?.(h.home);
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
      if (m.type() === 'error') errors.push(`console: ${m.text()} (${m.location().url})`);
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

/**
 * The agent's consent launcher for tests: a command line that appends each consent URL (with its
 * one-time secret) to `file`, so the test opens it in Chromium like the system browser would.
 */
export function recordingLauncher(file: string): string {
  return `/bin/sh -c 'printf "%s\\n" "$0" >> "$1"' {url} ${file}`;
}

/** Opens the consent pages the agent asks for from now on, in order, in the harness's browser. */
export class ConsentWindows {
  private seen: number;

  constructor(
    private readonly harness: ChromiumHarness,
    readonly file: string,
    private readonly errors: string[] = [],
  ) {
    this.seen = this.urls().length;
  }

  /** URLs the agent has asked to open so far. */
  urls(): string[] {
    if (!existsSync(this.file)) return [];
    return readFileSync(this.file, 'utf8').split('\n').filter(Boolean);
  }

  /** Wait for the next consent URL and open it; resolves once the request is shown. */
  async next(options: { lang?: 'fa' | 'en'; timeoutMs?: number } = {}): Promise<Page> {
    const deadline = Date.now() + (options.timeoutMs ?? 20_000);
    let urls = this.urls();
    while (urls.length <= this.seen) {
      if (Date.now() > deadline) throw new Error('the agent did not open a consent page');
      await new Promise((r) => setTimeout(r, 50));
      urls = this.urls();
    }
    let url = urls[this.seen++];
    if (options.lang) url = url.replace(/([?&])lang=(fa|en)/, `$1lang=${options.lang}`);
    const page = await this.harness.page(this.errors);
    await page.goto(url);
    await page
      .locator('[data-testid="consent-origin"]:visible, [data-testid="consent-result"]:visible')
      .first()
      .waitFor();
    return page;
  }

  /** Type the secrets (and their confirmations) and approve; resolves when the page reports it. */
  static async approve(page: Page, secrets: Record<string, string>): Promise<void> {
    for (const [need, value] of Object.entries(secrets)) {
      await page.getByTestId(`pin-${need}`).fill(value);
      const confirm = page.getByTestId(`pin-${need}-confirm`);
      if ((await confirm.count()) > 0) await confirm.fill(value);
    }
    await page.getByTestId('consent-approve').click();
    await page.locator('[data-testid="consent-result"][data-result="approved"]').waitFor();
  }
}

// Playwright's auto-waiting matchers are not available under vitest: poll instead.
export { until } from './wait.js';

/** `[data-testid="id"]` plus attribute conditions, e.g. testId('ra-message', { 'data-kind': 'ok' }). */
export function testId(id: string, attributes: Record<string, string> = {}): string {
  return `[data-testid="${id}"]${Object.entries(attributes)
    .map(([k, v]) => `[${k}="${v}"]`)
    .join('')}`;
}

/** In afterEach: screenshot every open page of the harness when the test failed. */
export async function screenshotOnFailure(
  harness: ChromiumHarness | undefined,
  task: { name: string; result?: { state?: string } },
): Promise<void> {
  if (!harness || task.result?.state !== 'fail') return;
  const slug = task.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60);
  const pages = harness.context.pages();
  for (let i = 0; i < pages.length; i++) {
    if (!pages[i].isClosed()) await screenshot(pages[i], `failure-${slug}-${i}`).catch(() => undefined);
  }
}

/** Fail fast when the browser SDK bundle (served to the pages) is missing or older than src/client. */
export function assertClientBuilt(repo: string): void {
  const bundle = join(repo, 'dist', 'client', 'kelid.js');
  if (!existsSync(bundle)) throw new Error('dist/client/kelid.js is missing: run "npm run build"');
  const built = statSync(bundle).mtimeMs;
  const stale = readdirSync(join(repo, 'src', 'client')).filter(
    (f) => f.endsWith('.ts') && statSync(join(repo, 'src', 'client', f)).mtimeMs > built,
  );
  if (stale.length > 0)
    throw new Error(`dist/client/kelid.js is older than src/client/${stale[0]}: run "npm run build"`);
}
