// softhsm-only: checks the host's method table over IPC; the module does not matter
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isKelidError } from '../../../src/model/errors.js';
import { HostClient } from '../../../src/pkcs11/host-client.js';
import type { HostMethod } from '../../../src/pkcs11/host-protocol.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// A real module host answers only the methods of its dispatch table: names that an object inherits
// (its prototype, its class's methods) are refused, and the host keeps serving.
describe('module host dispatch', () => {
  const hsm = new SoftHsm('kelid-dispatch-');
  let host: HostClient;

  beforeAll(async () => {
    hsm.initToken('disp', 'so-disp-1', '123456');
    host = new HostClient({ moduleId: 'softhsm', path: hsm.module, env: hsm.env });
    await host.start();
  });
  afterAll(async () => {
    await host.stop();
    hsm.cleanup();
  });

  it.each(['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'load', 'shutdown', 'resolve'])(
    'refuses %s with ERR_INTERNAL and keeps answering',
    async (name) => {
      const pid = host.pid;
      const err = await host.call(name as HostMethod, {} as never).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isKelidError(err, 'ERR_INTERNAL')).toBe(true);
      const { slots } = await host.call('listSlots', {});
      expect(slots.map((s) => s.token.label)).toContain('disp');
      expect(host.pid).toBe(pid);
    },
  );

  it('refuses the testHang hook when the host was started without KELID_TEST_HOOKS=1', async () => {
    const err = await host.call('testHang', { ms: 60_000 }, { timeoutMs: 5_000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isKelidError(err, 'ERR_FORBIDDEN')).toBe(true);
  });
});
