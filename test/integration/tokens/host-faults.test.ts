// softhsm-only: the faulty PKCS#11 shim (test/fixtures/faulty-pkcs11) forwards to SoftHSM's library only
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isKelidError } from '../../../src/model/errors.js';
import { ModuleManager } from '../../../src/pkcs11/module-manager.js';
import { CKA, CKM, CKO } from '../../../src/pkcs11/templates.js';
import { TokenService } from '../../../src/tokens/token-service.js';
import { SoftHsm } from '../../helpers/softhsm.js';

describe('ModuleManager', () => {
  const hsm = new SoftHsm('kelid-fault-');
  let modules: ModuleManager;
  let service: TokenService;
  let tokenId: string;

  beforeAll(async () => {
    hsm.initToken('faulty', 'so-pin-f', '1234');
    modules = new ModuleManager(
      [
        {
          id: 'softhsm',
          path: hsm.module,
          env: { ...hsm.env, KELID_TEST_HOOKS: '1' },
          reinitializeToDetectTokens: true,
        },
      ],
      { backoffInitialMs: 100 },
    );
    await modules.start();
    service = new TokenService(modules);
    tokenId = (await service.listTokens()).find((t) => t.label === 'faulty')!.tokenId;
  });

  afterAll(async () => {
    await modules.stop();
    hsm.cleanup();
  });

  it('fails the in-flight call with ERR_MODULE_FAILED when the host is killed, and the next call succeeds', async () => {
    const pidBefore = modules.pidOf('softhsm')!;
    const inFlight = service.withSession(tokenId, { readWrite: true }, async (s) => {
      await s.login('user', '1234');
      // RSA-4096 generation takes long enough on SoftHSM to be interrupted.
      const keygen = s.call('generateKeyPair', {
        mechanism: { mechanism: CKM.RSA_PKCS_KEY_PAIR_GEN },
        publicTemplate: [
          { type: CKA.CLASS, value: CKO.PUBLIC_KEY },
          { type: CKA.MODULUS_BITS, value: 4096 },
        ],
        privateTemplate: [{ type: CKA.CLASS, value: CKO.PRIVATE_KEY }],
      });
      setTimeout(() => process.kill(pidBefore, 'SIGKILL'), 50);
      return keygen;
    });
    const err = await inFlight.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isKelidError(err, 'ERR_MODULE_FAILED')).toBe(true);

    const tokens = await service.listTokens();
    expect(tokens.some((t) => t.tokenId === tokenId)).toBe(true);
    expect(modules.pidOf('softhsm')).not.toBe(pidBefore);
    const ok = await service.withSession(tokenId, { readWrite: false }, async (s) => {
      await s.login('user', '1234');
      return true;
    });
    expect(ok).toBe(true);
  });

  it('kills and restarts a host whose call hangs past its deadline', async () => {
    const pidBefore = modules.pidOf('softhsm')!;
    const host = modules.module('softhsm')!.host;
    const err = await host.call('testHang', { ms: 60_000 }, { timeoutMs: 500 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isKelidError(err, 'ERR_MODULE_FAILED')).toBe(true);
    const tokens = await service.listTokens();
    expect(tokens.some((t) => t.tokenId === tokenId)).toBe(true);
    expect(modules.pidOf('softhsm')).not.toBe(pidBefore);
  });

  it('reports a module path that does not exist and a file that is not a PKCS#11 library, without affecting others', async () => {
    const mixed = new ModuleManager([
      { id: 'missing', path: '/nonexistent/libnothing.so' },
      { id: 'not-a-library', path: '/etc/hostname' },
      { id: 'softhsm', path: hsm.module, env: hsm.env },
    ]);
    await mixed.start();
    try {
      const byId = Object.fromEntries(mixed.status().map((s) => [s.id, s]));
      expect(byId.missing?.state).toBe('failed');
      expect(byId.missing?.reason).toMatch(/cannot load the PKCS#11 module: .*(No such file|cannot open)/i);
      expect(byId['not-a-library']?.state).toBe('failed');
      expect(byId['not-a-library']?.reason).toMatch(/cannot load the PKCS#11 module/);
      expect(byId.softhsm?.state).toBe('loaded');
      const tokens = await new TokenService(mixed).listTokens();
      expect(tokens.some((t) => t.label === 'faulty')).toBe(true);
      const err = await mixed
        .module('missing')!
        .host.call('listSlots', {})
        .catch((e: unknown) => e);
      expect(isKelidError(err, 'ERR_MODULE_FAILED')).toBe(true);
    } finally {
      await mixed.stop();
    }
  });
});
