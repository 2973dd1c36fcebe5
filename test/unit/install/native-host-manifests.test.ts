import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CHROMIUM_EXTENSION_ID,
  EXTENSION_PUBLIC_KEY,
  FIREFOX_EXTENSION_ID,
  NATIVE_HOST_NAME,
} from '../../../src/transport/extension-ids.js';
import {
  installNativeHostManifests,
  planNativeHostManifests,
  uninstallNativeHostManifests,
} from '../../../src/install/native-host-manifests.js';

const base = {
  stateDir: '/home/maryam/.local/share/kelid',
  nodePath: '/usr/bin/node',
  kelidBin: '/opt/kelid/bin/kelid.js',
};

describe('extension IDs', () => {
  it('derives the Chromium ID from the committed public key (SHA-256, first 16 bytes, a-p)', () => {
    const digest = createHash('sha256').update(Buffer.from(EXTENSION_PUBLIC_KEY, 'base64')).digest('hex');
    const id = [...digest.slice(0, 32)].map((c) => String.fromCharCode(97 + parseInt(c, 16))).join('');
    expect(id).toBe(CHROMIUM_EXTENSION_ID);
  });

  it('names the host as browsers require (lower-case letters, digits, dots, underscores)', () => {
    expect(NATIVE_HOST_NAME).toMatch(/^[a-z0-9_]+(\.[a-z0-9_]+)*$/);
  });
});

describe('planNativeHostManifests', () => {
  it('plans the Linux paths of every browser, pinned to the extension IDs', () => {
    const plan = planNativeHostManifests({ ...base, platform: 'linux', home: '/home/maryam' });
    expect(plan.manifests.map((m) => [m.browser, m.path])).toEqual([
      ['chromium', '/home/maryam/.config/chromium/NativeMessagingHosts/org.kelid.agent.json'],
      ['chrome', '/home/maryam/.config/google-chrome/NativeMessagingHosts/org.kelid.agent.json'],
      ['edge', '/home/maryam/.config/microsoft-edge/NativeMessagingHosts/org.kelid.agent.json'],
      ['brave', '/home/maryam/.config/BraveSoftware/Brave-Browser/NativeMessagingHosts/org.kelid.agent.json'],
      ['firefox', '/home/maryam/.mozilla/native-messaging-hosts/org.kelid.agent.json'],
    ]);
    const chrome = JSON.parse(plan.manifests[1].content) as Record<string, unknown>;
    expect(chrome).toEqual({
      name: NATIVE_HOST_NAME,
      description: expect.any(String),
      path: '/home/maryam/.local/share/kelid/native-host/kelid-native-host',
      type: 'stdio',
      allowed_origins: [`chrome-extension://${CHROMIUM_EXTENSION_ID}/`],
    });
    const firefox = JSON.parse(plan.manifests[4].content) as Record<string, unknown>;
    expect(firefox.allowed_extensions).toEqual([FIREFOX_EXTENSION_ID]);
    expect(firefox).not.toHaveProperty('allowed_origins');
    expect(plan.registry).toEqual([]);
    expect(plan.wrapper.content).toBe(
      "#!/bin/sh\nexec '/usr/bin/node' '/opt/kelid/bin/kelid.js' 'native-host' '--state-dir' '/home/maryam/.local/share/kelid' \"$@\"\n",
    );
  });

  it('adds store IDs: Chromium IDs to allowed_origins, others to Firefox allowed_extensions, all to the wrapper', () => {
    const store = 'abcdefghijklmnopabcdefghijklmnop';
    const plan = planNativeHostManifests({
      ...base,
      platform: 'linux',
      home: '/h',
      extensionIds: [store, 'kelid@amo.example'],
      browsers: ['chrome', 'firefox'],
    });
    expect((JSON.parse(plan.manifests[0].content) as { allowed_origins: string[] }).allowed_origins).toEqual([
      `chrome-extension://${CHROMIUM_EXTENSION_ID}/`,
      `chrome-extension://${store}/`,
    ]);
    expect(
      (JSON.parse(plan.manifests[1].content) as { allowed_extensions: string[] }).allowed_extensions,
    ).toEqual([FIREFOX_EXTENSION_ID, 'kelid@amo.example']);
    expect(plan.wrapper.content).toContain(
      `'--extension-id' '${store}' '--extension-id' 'kelid@amo.example'`,
    );
  });

  it('quotes paths with spaces and quotes for sh', () => {
    const plan = planNativeHostManifests({
      ...base,
      platform: 'linux',
      home: '/h',
      stateDir: "/h/it's here",
    });
    expect(plan.wrapper.content).toContain(`'/h/it'\\''s here'`);
  });

  it('plans the macOS paths', () => {
    const plan = planNativeHostManifests({ ...base, platform: 'darwin', home: '/Users/ali' });
    expect(plan.manifests.map((m) => m.path)).toEqual([
      '/Users/ali/Library/Application Support/Chromium/NativeMessagingHosts/org.kelid.agent.json',
      '/Users/ali/Library/Application Support/Google/Chrome/NativeMessagingHosts/org.kelid.agent.json',
      '/Users/ali/Library/Application Support/Microsoft Edge/NativeMessagingHosts/org.kelid.agent.json',
      '/Users/ali/Library/Application Support/BraveSoftware/Brave-Browser/NativeMessagingHosts/org.kelid.agent.json',
      '/Users/ali/Library/Application Support/Mozilla/NativeMessagingHosts/org.kelid.agent.json',
    ]);
  });

  it('plans the Windows files, a .cmd wrapper and the HKCU registry keys', () => {
    const plan = planNativeHostManifests({
      platform: 'win32',
      home: 'C:\\Users\\Ali',
      localAppData: 'C:\\Users\\Ali\\AppData\\Local',
      stateDir: 'C:\\Users\\Ali\\AppData\\Local\\kelid',
      nodePath: 'C:\\Program Files\\nodejs\\node.exe',
      kelidBin: 'C:\\Program Files\\Kelid\\bin\\kelid.js',
    });
    const dir = 'C:\\Users\\Ali\\AppData\\Local\\Kelid\\native-host';
    expect(plan.wrapper.path).toBe(`${dir}\\kelid-native-host.cmd`);
    expect(plan.wrapper.content).toBe(
      '@echo off\r\n"C:\\Program Files\\nodejs\\node.exe" "C:\\Program Files\\Kelid\\bin\\kelid.js" "native-host" "--state-dir" "C:\\Users\\Ali\\AppData\\Local\\kelid" %*\r\n',
    );
    expect(plan.registry).toEqual([
      {
        browser: 'chromium',
        key: 'HKCU\\Software\\Chromium\\NativeMessagingHosts\\org.kelid.agent',
        value: `${dir}\\org.kelid.agent.chromium.json`,
      },
      {
        browser: 'chrome',
        key: 'HKCU\\Software\\Google\\Chrome\\NativeMessagingHosts\\org.kelid.agent',
        value: `${dir}\\org.kelid.agent.chrome.json`,
      },
      {
        browser: 'edge',
        key: 'HKCU\\Software\\Microsoft\\Edge\\NativeMessagingHosts\\org.kelid.agent',
        value: `${dir}\\org.kelid.agent.edge.json`,
      },
      {
        browser: 'brave',
        key: 'HKCU\\Software\\BraveSoftware\\Brave-Browser\\NativeMessagingHosts\\org.kelid.agent',
        value: `${dir}\\org.kelid.agent.brave.json`,
      },
      {
        browser: 'firefox',
        key: 'HKCU\\Software\\Mozilla\\NativeMessagingHosts\\org.kelid.agent',
        value: `${dir}\\org.kelid.agent.firefox.json`,
      },
    ]);
    expect((JSON.parse(plan.manifests[0].content) as { path: string }).path).toBe(plan.wrapper.path);
  });

  it('refuses a Windows path cmd.exe cannot quote safely', () => {
    expect(() =>
      planNativeHostManifests({ ...base, platform: 'win32', home: 'C:\\U', stateDir: 'C:\\a"&calc&"' }),
    ).toThrow(TypeError);
  });
});

describe('installNativeHostManifests / uninstallNativeHostManifests (Linux, temporary HOME)', () => {
  let home: string | undefined;
  afterEach(() => {
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  it('writes the manifests and an executable wrapper, and removes them again', () => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-nmh-'));
    const options = {
      platform: 'linux' as const,
      home,
      stateDir: path.join(home, 'state'),
      nodePath: process.execPath,
      kelidBin: path.resolve('bin/kelid.js'),
    };
    const plan = installNativeHostManifests(options);
    for (const m of plan.manifests)
      expect(JSON.parse(fs.readFileSync(m.path, 'utf8'))).toHaveProperty('path', plan.wrapper.path);
    expect(fs.statSync(plan.wrapper.path).mode & 0o777).toBe(0o700);
    // The wrapper really starts the host: with an unknown caller it answers with a close message.
    const r = spawnSync(plan.wrapper.path, ['chrome-extension://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/'], {
      env: { PATH: '/nonexistent' },
      input: '',
    });
    expect(r.status).toBe(1);
    expect(r.stdout.subarray(4).toString()).toContain('serves only the Kelid extension');
    uninstallNativeHostManifests(options);
    for (const m of plan.manifests) expect(fs.existsSync(m.path)).toBe(false);
    expect(fs.existsSync(plan.wrapper.path)).toBe(false);
  });
});
