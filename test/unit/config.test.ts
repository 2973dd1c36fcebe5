import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { CONFIG_SCHEMA, DEFAULT_CONFIG, resolveConfig } from '../../src/config.js';
import { isKelidError } from '../../src/model/errors.js';

describe('resolveConfig', () => {
  it('fills every default when the file is empty', () => {
    expect(resolveConfig({})).toEqual({
      ...DEFAULT_CONFIG,
      modules: [],
      raOrigins: [],
      sites: [],
      devOrigins: [],
    });
  });

  it('merges a partial consent.promptsPerMinute over the defaults', () => {
    const c = resolveConfig({ consent: { timeoutSeconds: 30, promptsPerMinute: { ra: 120 } } });
    expect(c.consent).toEqual({
      launcher: 'browser',
      timeoutSeconds: 30,
      language: 'fa',
      promptsPerMinute: { site: 5, ra: 120 },
    });
  });

  it('takes revocation.maxAgeSeconds, null (no cap) by default', () => {
    expect(resolveConfig({}).revocation.maxAgeSeconds).toBeNull();
    expect(resolveConfig({ revocation: { maxAgeSeconds: 300 } }).revocation).toMatchObject({
      maxAgeSeconds: 300,
      enforceOnSign: 'block-revoked',
    });
  });

  it('takes `proxy`: null by default, an http URL, or "direct"', () => {
    expect(resolveConfig({}).proxy).toBeNull();
    expect(resolveConfig({ proxy: 'http://proxy.bank.ir:3128' }).proxy).toBe('http://proxy.bank.ir:3128');
    expect(resolveConfig({ proxy: 'direct' }).proxy).toBe('direct');
  });

  it.each([
    [{ proxy: 'socks5://proxy:1080' }],
    [{ proxy: 'http://proxy:3128/path' }],
    [{ proxy: 'proxy:3128' }],
    [{ revocation: { maxAgeSeconds: 0 } }],
    [{ revocation: { maxAgeSeconds: 1.5 } }],
    [{ consent: { promptsPerMinute: { site: 0 } } }],
    [{ consent: { promptsPerMinute: { console: 5 } } }],
    [{ consent: { promptsPerMinute: { ra: 1.5 } } }],
    [{ unknownKey: true }],
  ])('refuses %j with ERR_INVALID_INPUT', (raw) => {
    let error: unknown;
    try {
      resolveConfig(raw);
    } catch (e) {
      error = e;
    }
    expect(isKelidError(error, 'ERR_INVALID_INPUT')).toBe(true);
  });
});

describe('CONFIG_SCHEMA', () => {
  // resolveConfig's Ajv does not check the schema against the meta-schema (start-up time): this does.
  it('is a valid JSON Schema (draft-07)', () => {
    const ajv = new Ajv({ strict: true, allowUnionTypes: true });
    expect(ajv.validateSchema(CONFIG_SCHEMA), JSON.stringify(ajv.errors)).toBe(true);
  });
});
