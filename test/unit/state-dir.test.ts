import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { resolveStateDir } from '../../src/state-dir.js';

describe('resolveStateDir', () => {
  // vi.stubEnv edits process.env in place: env-paths keeps a reference to that object.
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('prefers the flag, made absolute', () => {
    vi.stubEnv('KELID_STATE_DIR', '/tmp/from-env');
    expect(resolveStateDir('relative/state')).toBe(path.resolve('relative/state'));
  });

  it('uses KELID_STATE_DIR when the flag is absent or empty', () => {
    vi.stubEnv('KELID_STATE_DIR', '/tmp/from-env');
    expect(resolveStateDir()).toBe('/tmp/from-env');
    expect(resolveStateDir('')).toBe('/tmp/from-env');
  });

  it.skipIf(process.platform !== 'linux')('falls back to the XDG data directory on Linux', () => {
    vi.stubEnv('KELID_STATE_DIR', '');
    vi.stubEnv('XDG_DATA_HOME', '/tmp/xdg-data');
    expect(resolveStateDir()).toBe('/tmp/xdg-data/kelid');
    vi.stubEnv('KELID_STATE_DIR', undefined);
    expect(resolveStateDir()).toBe('/tmp/xdg-data/kelid');
  });
});
