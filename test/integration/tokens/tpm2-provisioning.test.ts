import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PIN_POLICY } from '../../../src/tokens/pin-policy.js';
import { KelidError } from '../../../src/model/errors.js';
import { loadKnownModules } from '../../../src/pkcs11/native-config.js';
import type { ModuleHost } from '../../../src/pkcs11/host-protocol.js';
import { ModuleManager } from '../../../src/pkcs11/module-manager.js';
import type { LoadedModule } from '../../../src/pkcs11/module-manager.js';
import { ProvisioningService } from '../../../src/tokens/provisioning-service.js';
import { TokenService } from '../../../src/tokens/token-service.js';
import { Tpm2Stack, tpm2SkipReason } from '../../helpers/tpm2.js';

const skip = tpm2SkipReason();

/** The module as it is, except that signatures fail as tpm2-pkcs11's CKM_RSA_PKCS did (the seam). */
class FailingSignatures {
  constructor(private readonly inner: ModuleManager) {}
  modules(): LoadedModule[] {
    return this.inner.modules().map((m) => {
      const host: ModuleHost = {
        moduleId: m.host.moduleId,
        call: (method, params, options) =>
          method === 'sign'
            ? Promise.reject(
                new KelidError('ERR_DEVICE_ERROR', 'the PKCS#11 module reported a general error', {
                  data: { ckr: 'CKR_GENERAL_ERROR' },
                }),
              )
            : m.host.call(method, params, options),
      };
      return { ...m, host };
    });
  }
}
const PIN = '11111111';
const RSA = { name: 'RSA', modulusLength: 2048 } as const;

async function rejection(p: Promise<unknown>): Promise<KelidError> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e as KelidError,
  );
}

// Provisioning on tpm2-pkcs11 (issue 18, findings 2-6). One swtpm for the file: the lockout test,
// which uses up the TPM's dictionary-attack counter, runs last.
describe.skipIf(skip !== undefined)(
  `ProvisioningService on tpm2-pkcs11${skip ? ` — skipped: ${skip}` : ''}`,
  () => {
    let tpm: Tpm2Stack;
    let bare: ModuleManager;
    let quirked: ModuleManager;
    const quirks = loadKnownModules().find((m) => m.id === 'tpm2-pkcs11')!.quirks;

    beforeAll(async () => {
      tpm = await Tpm2Stack.start();
      tpm.addToken('prov', 'so-prov1', PIN);
      tpm.addToken('other', 'so-other', '33333333');
      // the same module twice: without quirks (as an unknown path would load) and with its entry's
      bare = new ModuleManager([{ id: 'tpm2-bare', path: tpm.module, env: tpm.env }]);
      quirked = new ModuleManager([{ id: 'tpm2', path: tpm.module, env: tpm.env, quirks }]);
      await Promise.all([bare.start(), quirked.start()]);
    }, 60_000);
    afterAll(async () => {
      await Promise.all([bare?.stop(), quirked?.stop()]);
      tpm?.cleanup();
    });

    async function tokenOf(modules: ModuleManager): Promise<{ tokens: TokenService; tokenId: string }> {
      const tokens = new TokenService(modules);
      const t = (await tokens.listTokens()).find((x) => x.label === 'prov')!;
      return { tokens, tokenId: t.tokenId };
    }

    describe('#generateKey (finding 2: key template)', () => {
      it('names the refused attribute and points at the quirks file when the module refuses the template', async () => {
        const { tokens, tokenId } = await tokenOf(bare);
        const e = await rejection(
          new ProvisioningService(tokens, DEFAULT_PIN_POLICY).generateKey(tokenId, PIN, {
            algorithm: RSA,
          }),
        );
        expect(e).toBeInstanceOf(KelidError);
        expect(e.data.attribute).toBe('CKA_VERIFY');
        expect(e.message).toContain('CKA_VERIFY');
        expect(e.message).toContain('native-config/pkcs11-modules.json');
        expect(e.message).not.toContain(PIN);
      });

      it('generates the RSA key with the tpm2-pkcs11 entry of native-config (pkcs11-tool lists it)', async () => {
        const { tokens, tokenId } = await tokenOf(quirked);
        const { key } = await new ProvisioningService(tokens, DEFAULT_PIN_POLICY).generateKey(tokenId, PIN, {
          algorithm: RSA,
          label: 'quirked',
        });
        expect(
          tpm.tool(['--token-label', 'prov', '--login', '--pin', PIN, '--list-objects', '--type', 'privkey']),
        ).toContain(`ID:         ${key.keyId}`);
      });
    });

    describe('#createCsr (finding 3: RSA PKCS#1 v1.5 through the hash-and-sign mechanism)', () => {
      let keyId = '';
      beforeAll(async () => {
        const { tokens, tokenId } = await tokenOf(quirked);
        const service = new ProvisioningService(tokens, DEFAULT_PIN_POLICY);
        keyId = (await service.generateKey(tokenId, PIN, { algorithm: RSA, label: 'csr key' })).key.keyId;
      });

      for (const [name, withQuirks] of [
        ['with the quirk (CKM_SHA256_RSA_PKCS straight away)', true],
        ['without it (after CKM_RSA_PKCS fails)', false],
      ] as const) {
        it(`signs the request ${name}: openssl req -verify accepts it`, async () => {
          // a new host: tpm2-pkcs11 reads the store's objects when it starts
          const modules = new ModuleManager([
            { id: 'tpm2-csr', path: tpm.module, env: tpm.env, ...(withQuirks ? { quirks } : {}) },
          ]);
          await modules.start();
          try {
            const { tokens, tokenId } = await tokenOf(modules);
            const service = new ProvisioningService(tokens, DEFAULT_PIN_POLICY);
            const pem = await service.createCsr(tokenId, PIN, keyId, { subject: 'CN=TPM RSA' });
            const v = spawnSync('openssl', ['req', '-verify', '-noout'], { input: pem, encoding: 'utf8' });
            expect(v.stdout + v.stderr).toMatch(/verify OK/);
          } finally {
            await modules.stop();
          }
        });
      }
    });

    describe('#generateKey with a CSR (finding 4: no orphan key pair)', () => {
      const privateKeys = () =>
        (
          tpm
            .tool(['--token-label', 'prov', '--login', '--pin', PIN, '--list-objects', '--type', 'privkey'])
            .match(/Private Key Object/g) ?? []
        ).length;

      it('removes the new key pair in the same session when signing the CSR fails', async () => {
        const tokens = new TokenService(new FailingSignatures(quirked));
        const tokenId = (await tokens.listTokens()).find((x) => x.label === 'prov')!.tokenId;
        const before = privateKeys();
        const e = await rejection(
          new ProvisioningService(tokens, DEFAULT_PIN_POLICY).generateKey(tokenId, PIN, {
            algorithm: RSA,
            label: 'orphan?',
            csr: { subject: 'CN=orphan' },
          }),
        );
        expect(e.code).toBe('ERR_DEVICE_ERROR');
        expect(e.data.keyRolledBack).toBe(true);
        expect(privateKeys()).toBe(before);
        const keys = await new ProvisioningService(tokens, DEFAULT_PIN_POLICY).listKeys(tokenId);
        expect(keys.map((k) => k.label)).not.toContain('orphan?');
      });

      it('destroys nothing whose CKA_ID is not the new pair (handles of a restarted host), and names the pair', async () => {
        const calls: string[] = [];
        let signFailed = false;
        const source = {
          modules: (): LoadedModule[] =>
            quirked.modules().map((m) => {
              const host: ModuleHost = {
                moduleId: m.host.moduleId,
                call: async (method, params, options) => {
                  calls.push(method);
                  if (method === 'sign') {
                    signFailed = true;
                    throw new KelidError('ERR_MODULE_FAILED', 'the PKCS#11 module host stopped unexpectedly');
                  }
                  const r = await m.host.call(method, params, options);
                  // after the "restart", the handles name other objects
                  if (method === 'getAttributes' && signFailed) {
                    return {
                      ...(r as { handle: string }),
                      values: { [0x102]: new Uint8Array([1, 2, 3]) },
                    } as typeof r;
                  }
                  return r;
                },
              };
              return { ...m, host };
            }),
        };
        const tokens = new TokenService(source);
        const tokenId = (await tokens.listTokens()).find((x) => x.label === 'prov')!.tokenId;
        const e = await rejection(
          new ProvisioningService(tokens, DEFAULT_PIN_POLICY).generateKey(tokenId, PIN, {
            algorithm: { name: 'EC', namedCurve: 'P-256' },
            label: 'pending one',
            csr: { subject: 'CN=pending' },
          }),
        );
        expect(e.code).toBe('ERR_MODULE_FAILED');
        expect(calls.slice(calls.indexOf('sign'))).not.toContain('destroyObject');
        const keys = await new ProvisioningService(new TokenService(quirked), DEFAULT_PIN_POLICY).listKeys(
          tokenId,
        );
        expect(keys.find((k) => k.label === 'pending one')?.keyId).toBe(e.data.pendingKeyId);
      });

      it('refuses a CSR this key cannot sign before generating anything', async () => {
        const { tokens, tokenId } = await tokenOf(quirked);
        const before = privateKeys();
        const e = await rejection(
          new ProvisioningService(tokens, DEFAULT_PIN_POLICY).generateKey(tokenId, PIN, {
            algorithm: { name: 'EC', namedCurve: 'P-256' },
            csr: { subject: 'CN=pss on EC', signatureAlgorithm: { scheme: 'RSA-PSS' } },
          }),
        );
        expect(e.code).toBe('ERR_INVALID_INPUT');
        expect(privateKeys()).toBe(before);
      });
    });

    // Last: it uses up the TPM's dictionary-attack counter, shared by every token.
    describe('login (finding 5: a device-wide lockout no flag shows)', () => {
      it('reports every token of the module locked, and says the SO-PIN cannot unblock it', async () => {
        const tokens = new TokenService(quirked);
        const byLabel = async (label: string) => (await tokens.listTokens()).find((t) => t.label === label)!;
        const prov = await byLabel('prov');
        expect(prov.userPin.locked).toBe(false);
        const codes: string[] = [];
        for (let i = 0; i < 6 && !codes.includes('ERR_PIN_LOCKED'); i++) {
          const e = await rejection(
            tokens.withSession(prov.tokenId, { readWrite: false }, (s) => s.login('user', '99999999')),
          );
          codes.push(e.code);
        }
        expect(codes[0]).toBe('ERR_PIN_INCORRECT');
        expect(codes.at(-1)).toBe('ERR_PIN_LOCKED');
        // the flags still say unlocked (pkcs11-tool reads them), Kelid does not
        expect(tpm.tool(['--token-label', 'prov', '-T'])).not.toMatch(/locked/);
        const after = await byLabel('prov');
        expect(after.userPin.locked).toBe(true);
        expect(after.soPin.locked).toBe(true);
        expect((await byLabel('other')).userPin.locked).toBe(true);
        expect(after.lockout).toBe('device-wide');
        // the right PIN is refused without another attempt, with advice for this kind of lockout
        const e = await rejection(
          tokens.withSession(prov.tokenId, { readWrite: false }, (s) => s.login('user', PIN)),
        );
        expect(e.code).toBe('ERR_PIN_LOCKED');
        expect(e.data.lockout).toBe('device-wide');
        expect(e.message).toMatch(/SO-PIN cannot unblock/);
        expect(e.message).not.toContain(PIN);
      });

      it('without the quirk, reports the token whose login said locked (from C_Login, not the flags)', async () => {
        const tokens = new TokenService(bare);
        const prov = (await tokens.listTokens()).find((t) => t.label === 'prov')!;
        expect(prov.userPin.locked).toBe(false);
        const e = await rejection(
          tokens.withSession(prov.tokenId, { readWrite: false }, (s) => s.login('user', PIN)),
        );
        expect(e.code).toBe('ERR_PIN_LOCKED');
        expect(e.data.lockout).toBeUndefined();
        const list = await tokens.listTokens();
        expect(list.find((t) => t.label === 'prov')?.userPin.locked).toBe(true);
        expect(list.find((t) => t.label === 'other')?.userPin.locked).toBe(false);
      });
    });
  },
);
