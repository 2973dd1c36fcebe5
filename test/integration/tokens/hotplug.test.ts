// softhsm-only: hot-plug is simulated by adding and renaming SoftHSM token directories out of band; tpm2-pkcs11 has no unplug
import { readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModuleManager } from '../../../src/pkcs11/module-manager.js';
import { TokenService } from '../../../src/tokens/token-service.js';
import { TokenWatcher } from '../../../src/tokens/token-watcher.js';
import type { TokensChanged } from '../../../src/tokens/token-watcher.js';
import { SoftHsm } from '../../helpers/softhsm.js';

function nextChange(watcher: TokenWatcher): Promise<TokensChanged> {
  return new Promise((resolve) => watcher.once('changed', resolve));
}

describe('TokenService', () => {
  const a = new SoftHsm('kelid-disc-a-');
  const b = new SoftHsm('kelid-disc-b-');
  let modules: ModuleManager;
  let service: TokenService;

  beforeAll(async () => {
    a.initToken('alpha-1', 'so-pin-a1', '1111');
    a.initToken('alpha-2', 'so-pin-a2', '2222');
    b.initToken('beta-1', 'so-pin-b1', '3333');
    modules = new ModuleManager([
      { id: 'softhsm-a', path: a.module, env: a.env, reinitializeToDetectTokens: true },
      { id: 'softhsm-b', path: b.module, env: b.env, reinitializeToDetectTokens: true },
    ]);
    await modules.start();
    service = new TokenService(modules);
  });

  afterAll(async () => {
    await modules.stop();
    a.cleanup();
    b.cleanup();
  });

  describe('#listTokens', () => {
    it('finds the tokens of two token directories through two module entries with their own env', async () => {
      const tokens = await service.listTokens({ reinitialize: true });
      const initialized = tokens.filter((t) => t.initialized);
      expect(initialized.map((t) => `${t.moduleId}:${t.label}`).sort()).toEqual([
        'softhsm-a:alpha-1',
        'softhsm-a:alpha-2',
        'softhsm-b:beta-1',
      ]);
      // each directory also shows its free slot, uninitialized and not reported as SO-locked
      const free = tokens.filter((t) => !t.initialized);
      expect(free.length).toBe(2);
      for (const t of free) expect(t.soPin.locked).toBe(false);
      // serials match what pkcs11-tool reports for the same directory
      expect(initialized.find((t) => t.label === 'beta-1')?.serialNumber).toBe(b.serialOf('beta-1'));
    });

    it('gives the same tokenIds to a new set of module hosts (ids never depend on slot ids)', async () => {
      const before = (await service.listTokens()).map((t) => t.tokenId).sort();
      const again = new ModuleManager([
        { id: 'softhsm-a', path: a.module, env: a.env },
        { id: 'softhsm-b', path: b.module, env: b.env },
      ]);
      await again.start();
      try {
        const after = (await new TokenService(again).listTokens()).map((t) => t.tokenId).sort();
        expect(after).toEqual(before);
      } finally {
        await again.stop();
      }
    });
  });
});

describe('TokenWatcher', () => {
  const hsm = new SoftHsm('kelid-plug-');
  let modules: ModuleManager;
  let watcher: TokenWatcher;

  beforeAll(async () => {
    hsm.initToken('resident', 'so-pin-r', '1234');
    modules = new ModuleManager([
      { id: 'softhsm', path: hsm.module, env: hsm.env, reinitializeToDetectTokens: true },
    ]);
    await modules.start();
    watcher = new TokenWatcher(new TokenService(modules), modules, { intervalMs: 500 });
    await watcher.start();
  });

  afterAll(async () => {
    watcher.stop();
    await modules.stop();
    hsm.cleanup();
  });

  let pluggedId = '';
  let pluggedDir = '';

  it('reports a token created by another process as added (plug)', async () => {
    const dirsBefore = new Set(readdirSync(hsm.tokenDir));
    const change = nextChange(watcher);
    const serial = hsm.initToken('plugged', 'so-pin-p', '5678');
    const { added } = await change;
    const plugged = added.find((t) => t.label === 'plugged');
    expect(plugged?.serialNumber).toBe(serial);
    expect(plugged?.initialized).toBe(true);
    pluggedId = plugged!.tokenId;
    pluggedDir = readdirSync(hsm.tokenDir).find((d) => !dirsBefore.has(d))!;
    expect(pluggedDir).toBeTruthy();
  });

  it('reports the token removed when its directory is renamed away (unplug)', async () => {
    const change = nextChange(watcher);
    renameSync(join(hsm.tokenDir, pluggedDir), join(hsm.dir, 'unplugged'));
    const { removed } = await change;
    expect(removed).toContain(pluggedId);
    expect(watcher.current().some((t) => t.tokenId === pluggedId)).toBe(false);
  });

  it('reports it added again with the same tokenId when restored (replug)', async () => {
    const change = nextChange(watcher);
    renameSync(join(hsm.dir, 'unplugged'), join(hsm.tokenDir, pluggedDir));
    const { added } = await change;
    expect(added.map((t) => t.tokenId)).toContain(pluggedId);
  });
});
