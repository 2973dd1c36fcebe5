import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import {
  CHROMIUM_EXTENSION_ID,
  EXTENSION_PUBLIC_KEY,
  FIREFOX_EXTENSION_ID,
} from '../../../src/transport/extension-ids.js';
import { planNativeHostManifests } from '../../../src/install/native-host-manifests.js';
import { REPO } from '../../helpers/agent-process.js';

// Schema-level checks of what `npm run build` writes to dist/extension/{chromium,firefox}: the
// per-browser differences (Firefox: background.scripts and gecko.id; Chromium: service worker and the
// key behind the fixed ID), and what must never appear: web-reachable entry points (externally
// connectable, web-accessible resources), host permissions, content scripts in frames.

const read = (browser: string): Record<string, unknown> =>
  JSON.parse(readFileSync(join(REPO, 'dist', 'extension', browser, 'manifest.json'), 'utf8')) as Record<
    string,
    unknown
  >;

// Chrome match patterns: <scheme>://<host>/<path>, host `*`, `*.name` or a name.
const MATCH = '^(https|http)://(\\*|(\\*\\.)?[a-z0-9.-]+)/.*$';

const common = {
  type: 'object',
  required: ['manifest_version', 'name', 'version', 'permissions', 'content_scripts', 'background'],
  properties: {
    manifest_version: { const: 3 },
    name: { type: 'string', minLength: 1, maxLength: 45 },
    version: { type: 'string', pattern: '^[0-9]+(\\.[0-9]+){0,3}$' },
    description: { type: 'string', maxLength: 132 },
    permissions: { const: ['nativeMessaging'] },
    content_scripts: {
      type: 'array',
      minItems: 1,
      maxItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['matches', 'js', 'run_at', 'all_frames'],
        properties: {
          matches: { type: 'array', items: { type: 'string', pattern: MATCH } },
          js: { const: ['content-script.js'] },
          run_at: { const: 'document_start' },
          all_frames: { const: false },
        },
      },
    },
    action: { type: 'object' },
  },
  not: {
    anyOf: [
      { required: ['externally_connectable'] },
      { required: ['web_accessible_resources'] },
      { required: ['host_permissions'] },
      { required: ['optional_host_permissions'] },
    ],
  },
} as const;

const chromiumSchema = {
  allOf: [
    common,
    {
      type: 'object',
      required: ['key'],
      properties: {
        key: { type: 'string' },
        background: {
          type: 'object',
          additionalProperties: false,
          required: ['service_worker'],
          properties: { service_worker: { const: 'background.js' } },
        },
      },
      not: { required: ['browser_specific_settings'] },
    },
  ],
};

const firefoxSchema = {
  allOf: [
    common,
    {
      type: 'object',
      required: ['browser_specific_settings'],
      properties: {
        background: {
          type: 'object',
          additionalProperties: false,
          required: ['scripts'],
          properties: { scripts: { const: ['background.js'] } },
        },
        browser_specific_settings: {
          type: 'object',
          required: ['gecko'],
          properties: {
            gecko: {
              type: 'object',
              required: ['id'],
              properties: {
                // AMO: an email-like id or a {GUID}, at most 80 characters.
                id: {
                  type: 'string',
                  maxLength: 80,
                  pattern: '^([a-zA-Z0-9._-]+@[a-zA-Z0-9._-]+|\\{[0-9a-fA-F-]{36}\\})$',
                },
                strict_min_version: { type: 'string' },
              },
            },
          },
        },
      },
      not: { required: ['key'] },
    },
  ],
};

const ajv = new Ajv({ allErrors: true, strict: false });

describe('extension manifests (dist/extension)', () => {
  it('builds a Chromium MV3 manifest with a service worker and the key of the fixed ID', () => {
    const manifest = read('chromium');
    const validate = ajv.compile(chromiumSchema);
    expect(validate(manifest), JSON.stringify(validate.errors)).toBe(true);
    expect(manifest.key).toBe(EXTENSION_PUBLIC_KEY);
    expect(CHROMIUM_EXTENSION_ID).toMatch(/^[a-p]{32}$/);
  });

  it('builds a Firefox MV3 manifest with background scripts and the gecko id', () => {
    const manifest = read('firefox');
    const validate = ajv.compile(firefoxSchema);
    expect(validate(manifest), JSON.stringify(validate.errors)).toBe(true);
    expect((manifest.browser_specific_settings as { gecko: { id: string } }).gecko.id).toBe(
      FIREFOX_EXTENSION_ID,
    );
  });

  it('runs the content script on https pages and on this machine only (devOrigins decide the rest)', () => {
    for (const browser of ['chromium', 'firefox']) {
      const [cs] = read(browser).content_scripts as Array<{ matches: string[] }>;
      expect(cs.matches).toEqual(['https://*/*', 'http://localhost/*', 'http://127.0.0.1/*']);
    }
  });

  it('writes host manifests with exactly the keys each browser reads', () => {
    const plan = planNativeHostManifests({
      platform: 'linux',
      home: '/h',
      stateDir: '/h/s',
      nodePath: '/usr/bin/node',
      kelidBin: '/k/bin/kelid.js',
    });
    for (const m of plan.manifests) {
      const keys = Object.keys(JSON.parse(m.content) as object).sort();
      expect(keys).toEqual(
        [
          'allowed_' + (m.browser === 'firefox' ? 'extensions' : 'origins'),
          'description',
          'name',
          'path',
          'type',
        ].sort(),
      );
    }
  });
});
