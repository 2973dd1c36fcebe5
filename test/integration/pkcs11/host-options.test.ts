// softhsm-only: checks the module host's node command line; the module does not matter
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { HOST_NODE_OPTIONS, HostClient } from '../../../src/pkcs11/host-client.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// A module host runs with a small young generation (HOST_NODE_OPTIONS): without it, a host under a
// stream of sign.batch requests grew by a third of its size (bench "Memory").

describe('module host node options', () => {
  const hsm = new SoftHsm('kelid-host-options-');
  afterAll(() => hsm.cleanup());

  it('starts the host process with --max-semi-space-size on its command line', async () => {
    const host = new HostClient({ moduleId: 'softhsm', path: hsm.module, env: hsm.env });
    await host.start();
    try {
      expect(host.state).toBe('ready');
      const argv = readFileSync(`/proc/${host.pid}/cmdline`, 'utf8').split('\0');
      expect(HOST_NODE_OPTIONS).toContain('--max-semi-space-size=2');
      for (const option of HOST_NODE_OPTIONS) expect(argv).toContain(option);
      // Node options, so before the entry script: after it they would be the host's own arguments.
      const entry = argv.findIndex((a) => /module-host\.(ts|js)$/.test(a));
      expect(entry).toBeGreaterThan(argv.indexOf('--max-semi-space-size=2'));
    } finally {
      await host.stop();
    }
  });
});
