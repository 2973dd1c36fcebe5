// Builds the WebExtension (extension/src) for each browser family:
//   dist/extension/chromium/  MV3, background service worker, fixed `key` (stable unpacked ID)
//   dist/extension/firefox/   MV3, background script, browser_specific_settings.gecko.id
// The IDs, the key and the host name come from src/transport/extension-ids.ts (one source).
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const ids = readFileSync(join(root, 'src/transport/extension-ids.ts'), 'utf8');
const constant = (name) => {
  const m = new RegExp(`export const ${name} =\\s*'([^']+)'`).exec(ids);
  if (!m) throw new Error(`${name} not found in src/transport/extension-ids.ts`);
  return m[1];
};
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const hostName = constant('NATIVE_HOST_NAME');
const background = readFileSync(join(root, 'extension/src/background.js'), 'utf8');
if (!background.includes(`const NATIVE_HOST = '${hostName}';`))
  throw new Error('extension/src/background.js names another native host than extension-ids.ts');

/** Pages the content script runs on: https everywhere, and http on this machine (devOrigins decide). */
export const CONTENT_MATCHES = ['https://*/*', 'http://localhost/*', 'http://127.0.0.1/*'];

const base = {
  manifest_version: 3,
  name: 'Kelid',
  version: pkg.version,
  description: 'Lets web pages use your PKCS#11 tokens through the Kelid agent on this computer.',
  permissions: ['nativeMessaging'],
  content_scripts: [
    { matches: CONTENT_MATCHES, js: ['content-script.js'], run_at: 'document_start', all_frames: false },
  ],
  action: { default_title: 'Kelid' },
};

const targets = {
  chromium: {
    ...base,
    key: constant('EXTENSION_PUBLIC_KEY'),
    minimum_chrome_version: '116',
    background: { service_worker: 'background.js' },
  },
  firefox: {
    ...base,
    background: { scripts: ['background.js'] },
    browser_specific_settings: {
      gecko: { id: constant('FIREFOX_EXTENSION_ID'), strict_min_version: '128.0' },
    },
  },
};

for (const [name, manifest] of Object.entries(targets)) {
  const out = join(root, 'dist/extension', name);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  for (const f of readdirSync(join(root, 'extension/src')))
    copyFileSync(join(root, 'extension/src', f), join(out, f));
  writeFileSync(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
}
