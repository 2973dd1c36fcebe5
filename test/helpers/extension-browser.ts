import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import type { BrowserContext, Page } from 'playwright-core';
import { installNativeHostManifests } from '../../src/install/native-host-manifests.js';
import { REPO } from './agent-process.js';
import { CHROMIUM } from './browser.js';

export const EXTENSION_DIR = join(REPO, 'dist', 'extension', 'chromium');

export interface ExtensionBrowserOptions {
  /** State directory of the agent the native host talks to (and starts when none runs). */
  stateDir: string;
  /** Config file the host passes to an agent it starts. */
  configFile?: string;
  /** Extra Chromium flags. */
  args?: string[];
  /** PEM of a CA to trust (the agent's), in the temporary HOME's NSS db; default: trust nothing. */
  trustCaPem?: string;
}

/**
 * Debian's Chromium (new headless mode) with the unpacked Kelid extension loaded and the native host
 * installed by `installNativeHostManifests` in a temporary HOME. Nothing trusts the agent's CA.
 * Chromium started with --user-data-dir reads per-user host manifests from
 * `<user-data-dir>/NativeMessagingHosts` (not ~/.config/chromium), so the Chromium manifest is copied there.
 */
export class ExtensionBrowser {
  readonly home: string;
  readonly userDataDir: string;
  context!: BrowserContext;

  private constructor() {
    this.home = mkdtempSync(join(tmpdir(), 'kelid-ext-home-'));
    this.userDataDir = join(this.home, 'profile');
  }

  static async launch(options: ExtensionBrowserOptions): Promise<ExtensionBrowser> {
    if (!existsSync(join(EXTENSION_DIR, 'manifest.json')))
      throw new Error('dist/extension/chromium is missing: run "npm run build"');
    const b = new ExtensionBrowser();
    try {
      const plan = installNativeHostManifests({
        platform: 'linux',
        home: b.home,
        stateDir: options.stateDir,
        nodePath: process.execPath,
        kelidBin: join(REPO, 'bin', 'kelid.js'),
        ...(options.configFile ? { configPath: options.configFile } : {}),
        browsers: ['chromium'],
      });
      if (options.trustCaPem) {
        const nssdb = join(b.home, '.pki', 'nssdb');
        mkdirSync(nssdb, { recursive: true });
        execFileSync('certutil', ['-d', `sql:${nssdb}`, '-N', '--empty-password'], { stdio: 'pipe' });
        const caFile = join(b.home, 'kelid-ca.pem');
        writeFileSync(caFile, options.trustCaPem);
        execFileSync('certutil', ['-d', `sql:${nssdb}`, '-A', '-n', 'kelid', '-t', 'C,,', '-i', caFile], {
          stdio: 'pipe',
        });
      }
      const hosts = join(b.userDataDir, 'NativeMessagingHosts');
      mkdirSync(hosts, { recursive: true });
      copyFileSync(plan.manifests[0].path, join(hosts, 'org.kelid.agent.json'));
      b.context = await chromium.launchPersistentContext(b.userDataDir, {
        executablePath: CHROMIUM,
        headless: true,
        args: [
          '--no-sandbox',
          '--disable-gpu',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          `--disable-extensions-except=${EXTENSION_DIR}`,
          `--load-extension=${EXTENSION_DIR}`,
          ...(options.args ?? []),
        ],
        env: { ...process.env, HOME: b.home },
        locale: 'en-US',
        viewport: { width: 1000, height: 900 },
        timeout: 60_000,
      });
      return b;
    } catch (e) {
      await b.close();
      throw e;
    }
  }

  /** The extension's ID as Chromium loaded it (from its service worker's URL). */
  async extensionId(): Promise<string> {
    let [worker] = this.context.serviceWorkers();
    worker ??= await this.context.waitForEvent('serviceworker', { timeout: 10_000 });
    return new URL(worker.url()).host;
  }

  async page(errors: string[] = []): Promise<Page> {
    const page = await this.context.newPage();
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()} (${m.location().url})`);
    });
    return page;
  }

  async close(): Promise<void> {
    await this.context?.close().catch(() => undefined);
    rmSync(this.home, { recursive: true, force: true });
  }
}
