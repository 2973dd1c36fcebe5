import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CHROMIUM_EXTENSION_ID, FIREFOX_EXTENSION_ID, NATIVE_HOST_NAME } from '../transport/extension-ids.js';

// The native messaging host manifests that let the browsers start `kelid native-host` for Kelid's
// extension, per user (no root): files on Linux and macOS, files plus HKCU registry keys on Windows.
// planNativeHostManifests is pure (every OS testable anywhere); install/uninstall carry a plan out.

export type NativeHostBrowser = 'chromium' | 'chrome' | 'edge' | 'brave' | 'firefox';
export const NATIVE_HOST_BROWSERS: readonly NativeHostBrowser[] = [
  'chromium',
  'chrome',
  'edge',
  'brave',
  'firefox',
];

export interface NativeHostPlanOptions {
  platform: NodeJS.Platform;
  /** The user's home directory. */
  home: string;
  /** %LOCALAPPDATA% (Windows only; default `<home>\AppData\Local`). */
  localAppData?: string;
  /** The agent's state directory; the wrapper passes it to `kelid native-host`. */
  stateDir: string;
  /** Absolute path of node. */
  nodePath: string;
  /** Absolute path of bin/kelid.js; absent for the packaged program, which is `nodePath` itself. */
  kelidBin?: string;
  /** Config file the host passes to an agent it starts. */
  configPath?: string;
  /** Extension IDs beyond the built-in ones (a store build: Chromium IDs, or gecko IDs for Firefox). */
  extensionIds?: string[];
  browsers?: readonly NativeHostBrowser[];
}

export interface PlannedFile {
  path: string;
  content: string;
  mode: number;
}

export interface NativeHostPlan {
  /** The executable the manifests name: a script starting node with absolute paths. */
  wrapper: PlannedFile;
  manifests: Array<PlannedFile & { browser: NativeHostBrowser }>;
  /** Windows: HKCU keys whose default value is the manifest path. */
  registry: Array<{ browser: NativeHostBrowser; key: string; value: string }>;
}

const LINUX_DIRS: Record<NativeHostBrowser, string> = {
  chromium: '.config/chromium/NativeMessagingHosts',
  chrome: '.config/google-chrome/NativeMessagingHosts',
  edge: '.config/microsoft-edge/NativeMessagingHosts',
  brave: '.config/BraveSoftware/Brave-Browser/NativeMessagingHosts',
  firefox: '.mozilla/native-messaging-hosts',
};
const MAC_DIRS: Record<NativeHostBrowser, string> = {
  chromium: 'Library/Application Support/Chromium/NativeMessagingHosts',
  chrome: 'Library/Application Support/Google/Chrome/NativeMessagingHosts',
  edge: 'Library/Application Support/Microsoft Edge/NativeMessagingHosts',
  brave: 'Library/Application Support/BraveSoftware/Brave-Browser/NativeMessagingHosts',
  firefox: 'Library/Application Support/Mozilla/NativeMessagingHosts',
};
const WINDOWS_KEYS: Record<NativeHostBrowser, string> = {
  chromium: 'HKCU\\Software\\Chromium\\NativeMessagingHosts',
  chrome: 'HKCU\\Software\\Google\\Chrome\\NativeMessagingHosts',
  edge: 'HKCU\\Software\\Microsoft\\Edge\\NativeMessagingHosts',
  brave: 'HKCU\\Software\\BraveSoftware\\Brave-Browser\\NativeMessagingHosts',
  firefox: 'HKCU\\Software\\Mozilla\\NativeMessagingHosts',
};

/** What installing the host for these browsers writes, for one OS. Pure. */
export function planNativeHostManifests(o: NativeHostPlanOptions): NativeHostPlan {
  const win = o.platform === 'win32';
  const p = win ? path.win32 : path.posix;
  const browsers = o.browsers ?? NATIVE_HOST_BROWSERS;
  const extra = o.extensionIds ?? [];
  const hostDir = win
    ? p.join(o.localAppData ?? p.join(o.home, 'AppData', 'Local'), 'Kelid', 'native-host')
    : p.join(o.stateDir, 'native-host');
  const args = [
    ...(o.kelidBin !== undefined ? [o.kelidBin] : []),
    'native-host',
    '--state-dir',
    o.stateDir,
    ...(o.configPath ? ['--config', o.configPath] : []),
    ...extra.flatMap((id) => ['--extension-id', id]),
  ];
  const wrapper: PlannedFile = win
    ? {
        path: p.join(hostDir, 'kelid-native-host.cmd'),
        // cmd.exe: quote every argument; the browser's own arguments follow (%*).
        content: `@echo off\r\n${[o.nodePath, ...args].map(cmdQuote).join(' ')} %*\r\n`,
        mode: 0o700,
      }
    : {
        path: p.join(hostDir, 'kelid-native-host'),
        // The browser starts the host with a minimal environment: only absolute paths here.
        content: `#!/bin/sh\nexec ${[o.nodePath, ...args].map(shQuote).join(' ')} "$@"\n`,
        mode: 0o700,
      };
  const chromiumIds = [CHROMIUM_EXTENSION_ID, ...extra.filter((id) => /^[a-p]{32}$/.test(id))];
  const geckoIds = [FIREFOX_EXTENSION_ID, ...extra.filter((id) => !/^[a-p]{32}$/.test(id))];
  const description = 'Kelid: PKCS#11 tokens for web pages (native messaging host)';
  const manifests = browsers.map((browser) => {
    const manifest =
      browser === 'firefox'
        ? {
            name: NATIVE_HOST_NAME,
            description,
            path: wrapper.path,
            type: 'stdio',
            allowed_extensions: geckoIds,
          }
        : {
            name: NATIVE_HOST_NAME,
            description,
            path: wrapper.path,
            type: 'stdio',
            allowed_origins: chromiumIds.map((id) => `chrome-extension://${id}/`),
          };
    const dir = win ? hostDir : p.join(o.home, (o.platform === 'darwin' ? MAC_DIRS : LINUX_DIRS)[browser]);
    // Windows: one file per browser (the registry names it), the others: the browser's own directory.
    const file = win ? `${NATIVE_HOST_NAME}.${browser}.json` : `${NATIVE_HOST_NAME}.json`;
    return {
      browser,
      path: p.join(dir, file),
      content: `${JSON.stringify(manifest, null, 2)}\n`,
      mode: 0o644,
    };
  });
  const registry = win
    ? manifests.map((m) => ({
        browser: m.browser,
        key: `${WINDOWS_KEYS[m.browser]}\\${NATIVE_HOST_NAME}`,
        value: m.path,
      }))
    : [];
  return { wrapper, manifests, registry };
}

/** Write the wrapper and the manifests (and, on Windows, the registry keys). Returns the plan. */
export function installNativeHostManifests(options: NativeHostPlanOptions): NativeHostPlan {
  const plan = planNativeHostManifests(options);
  for (const f of [plan.wrapper, ...plan.manifests]) {
    fs.mkdirSync(path.dirname(f.path), { recursive: true, mode: 0o700 });
    fs.writeFileSync(f.path, f.content, { mode: f.mode });
    fs.chmodSync(f.path, f.mode);
  }
  for (const r of plan.registry)
    execFileSync('reg', ['add', r.key, '/ve', '/t', 'REG_SZ', '/d', r.value, '/f'], { stdio: 'pipe' });
  return plan;
}

/** Remove what installNativeHostManifests wrote (missing files and keys are fine). */
export function uninstallNativeHostManifests(options: NativeHostPlanOptions): NativeHostPlan {
  const plan = planNativeHostManifests(options);
  for (const f of [...plan.manifests, plan.wrapper]) fs.rmSync(f.path, { force: true });
  for (const r of plan.registry) {
    try {
      execFileSync('reg', ['delete', r.key, '/f'], { stdio: 'pipe' });
    } catch {
      // not there
    }
  }
  return plan;
}

function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function cmdQuote(s: string): string {
  if (/["%\r\n]/.test(s)) throw new TypeError(`cannot quote ${JSON.stringify(s)} for cmd.exe`);
  return `"${s}"`;
}
