import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PIN_POLICY } from '../../../src/tokens/pin-policy.js';
import { isKelidError } from '../../../src/model/errors.js';
import type { ModuleHost } from '../../../src/pkcs11/host-protocol.js';
import { ModuleManager } from '../../../src/pkcs11/module-manager.js';
import type { LoadedModule } from '../../../src/pkcs11/module-manager.js';
import { ProvisioningService } from '../../../src/tokens/provisioning-service.js';
import { TokenService } from '../../../src/tokens/token-service.js';
import { describeBackends, skipOn } from '../../helpers/token-backend.js';
import type { TokenBackend } from '../../helpers/token-backend.js';

const SO = 'Admin2024';
const PIN = '739154';

function openssl(args: string[], input?: string): string {
  return execFileSync('openssl', args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
}

/** Counts calls that reach the module host: proves "checked before the token is touched". */
class CountingSource {
  calls: string[] = [];
  constructor(private readonly inner: ModuleManager) {}
  modules(): LoadedModule[] {
    return this.inner.modules().map((m) => {
      const host: ModuleHost = {
        moduleId: m.host.moduleId,
        call: (method, params, options) => {
          this.calls.push(method);
          return m.host.call(method, params, options);
        },
      };
      return { ...m, host };
    });
  }
}

// On every backend of the suite (test/helpers/token-backend.ts): SoftHSM, and tpm2-pkcs11 on swtpm.
describeBackends('ProvisioningService', (b) => {
  let hsm: TokenBackend;
  const work = mkdtempSync(join(tmpdir(), 'kelid-prov-work-'));
  let modules: ModuleManager;
  let source: CountingSource;
  let tokens: TokenService;
  let service: ProvisioningService;
  let tokenId: string;

  beforeAll(async () => {
    hsm = await b.start('kelid-prov-');
    // A free slot only (SoftHSM's, or tpm2-pkcs11's spare one): the test initializes it through the service.
    modules = new ModuleManager([
      { ...hsm.moduleConfig(), quirks: hsm.quirks, reinitializeToDetectTokens: b.name === 'softhsm' },
    ]);
    await modules.start();
    source = new CountingSource(modules);
    tokens = new TokenService(source);
    service = new ProvisioningService(tokens, DEFAULT_PIN_POLICY);
  });

  afterAll(async () => {
    await modules?.stop();
    hsm?.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  describe('#initToken', () => {
    it('refuses a user PIN that breaks the policy before touching the token', async () => {
      const free = (await tokens.listTokens()).find((t) => !t.initialized)!;
      source.calls = [];
      const err = await rejection(
        service.initToken(free.tokenId, { label: 'citizen', soPin: SO, userPin: '12ab' }),
      );
      expect(isKelidError(err, 'ERR_PIN_POLICY')).toBe(true);
      expect(String((err as Error).message)).not.toContain('12ab');
      expect(source.calls.filter((c) => c !== 'tokenInfo' && c !== 'listSlots')).toEqual([]);
    });

    it('initializes the token with a Persian label, SO-PIN and first user PIN', async () => {
      const free = (await tokens.listTokens()).find((t) => !t.initialized)!;
      const token = await service.initToken(free.tokenId, { label: 'توکن علی', soPin: SO, userPin: PIN });
      expect(token.initialized).toBe(true);
      expect(token.userPinInitialized).toBe(true);
      expect(token.label).toBe('توکن علی');
      expect(token.tokenId).not.toBe(free.tokenId);
      tokenId = token.tokenId;
      // pkcs11-tool (another implementation) logs in with the new user PIN on that token
      const out = hsm.tool(['--token-label', 'توکن علی', '--login', '--pin', PIN, '--list-objects']);
      expect(out).not.toMatch(/error/i);
    });
  });

  describe('PIN lifecycle', () => {
    skipOn(
      b,
      'tpm2',
      'its 3 wrong PINs would use up the TPM-wide lockout counter (swtpm: 3), and tpm2-pkcs11 sets no count-low flag',
    )('change → wrong PIN → unblock with the SO-PIN → new PIN works, old one does not', async () => {
      await service.changePin(tokenId, 'user', PIN, '284617');
      const wrong = await rejection(
        service.listKeys(tokenId).then(() => service.createCsr(tokenId, PIN, 'aa', { subject: 'CN=x' })),
      );
      expect(isKelidError(wrong, 'ERR_PIN_INCORRECT')).toBe(true);
      expect((wrong as { data: { pin: { countLow: boolean } } }).data.pin.countLow).toBe(true);

      await service.unblockPin(tokenId, SO, '560183');
      const old = await rejection(service.deleteObjects(tokenId, '284617', 'aa', 'all'));
      expect(isKelidError(old, 'ERR_PIN_INCORRECT')).toBe(true);
      // the new PIN logs in (nothing to delete is the answer, not a PIN error)
      const none = await rejection(service.deleteObjects(tokenId, '560183', 'aa', 'all'));
      expect(isKelidError(none, 'ERR_KEY_NOT_FOUND')).toBe(true);

      await service.changePin(tokenId, 'so', SO, 'NewAdmin77');
      await service.unblockPin(tokenId, 'NewAdmin77', PIN);
      const soOld = await rejection(service.unblockPin(tokenId, SO, PIN));
      expect(isKelidError(soOld, 'ERR_PIN_INCORRECT')).toBe(true);
      await service.changePin(tokenId, 'so', 'NewAdmin77', SO);
    });

    it('refuses new PINs that break the policy without touching the token', async () => {
      source.calls = [];
      for (const bad of ['12', '12345678901234567', '12a4']) {
        const err = await rejection(service.changePin(tokenId, 'user', PIN, bad));
        expect(isKelidError(err, 'ERR_PIN_POLICY')).toBe(true);
      }
      const so = await rejection(service.changePin(tokenId, 'so', SO, 'bad pin!'));
      expect(isKelidError(so, 'ERR_PIN_POLICY')).toBe(true);
      expect(source.calls.filter((c) => !['tokenInfo', 'listSlots'].includes(c))).toEqual([]);
    });
  });

  describe('#generateKey and CSRs', () => {
    const kinds = [
      { name: 'RSA 2048 PKCS#1', algorithm: { name: 'RSA', modulusLength: 2048 } as const, sig: undefined },
      {
        name: 'RSA-PSS',
        algorithm: { name: 'RSA', modulusLength: 2048 } as const,
        sig: { scheme: 'RSA-PSS', digestAlgorithm: 'SHA-256' } as const,
      },
      { name: 'EC P-256', algorithm: { name: 'EC', namedCurve: 'P-256' } as const, sig: undefined },
      { name: 'EC P-384', algorithm: { name: 'EC', namedCurve: 'P-384' } as const, sig: undefined },
    ];
    // tpm2-pkcs11 (1.9.0) lists no RSA-PSS mechanism for a token made by C_InitToken, which is how this
    // file's token is made (tokens from `tpm2_ptool addtoken` list them: token-signing.test.ts signs PSS).
    const PSS_ON_TPM2 =
      'tpm2-pkcs11 lists no RSA-PSS mechanism on a token made by C_InitToken (checked by the next test)';
    const made = kinds.filter((k) => !(b.name === 'tpm2' && k.sig));
    for (const k of kinds) {
      (k.sig ? skipOn(b, 'tpm2', PSS_ON_TPM2) : it)(
        `makes an on-token ${k.name} key whose CSR openssl verifies, with a byte-exact Persian subject`,
        async () => {
          const { key, csr } = await service.generateKey(tokenId, PIN, {
            algorithm: k.algorithm,
            label: `key ${k.name}`,
            csr: {
              subject: 'CN=علی رضایی,O=کانون سردفتران,C=IR',
              subjectAltNames: [{ type: 'email', value: 'ali@example.ir' }],
              keyUsage: ['digitalSignature', 'nonRepudiation'],
              ...(k.sig ? { signatureAlgorithm: k.sig } : {}),
            },
          });
          expect(key.keyId).toMatch(/^[0-9a-f]{40}$/);
          expect(key.local).toBe(true);
          const file = join(work, `${key.keyId}.csr`);
          writeFileSync(file, csr!);
          // openssl 3.0 exits 0 even when the self-signature is bad: read what it says
          const verify = spawnSync('openssl', ['req', '-in', file, '-verify', '-noout'], {
            encoding: 'utf8',
          });
          expect(verify.stderr + verify.stdout).toMatch(/self-signature verify OK/);
          const subject = openssl([
            'req',
            '-in',
            file,
            '-noout',
            '-subject',
            '-nameopt',
            'utf8,sep_comma_plus',
          ]);
          expect(Buffer.from(subject.trim(), 'utf8')).toEqual(
            Buffer.from('subject=C=IR,O=کانون سردفتران,CN=علی رضایی', 'utf8'),
          );
          // the CSR's public key is the token's key (same keyId computed by openssl's view of it)
          const pubFromCsr = openssl(['req', '-in', file, '-noout', '-pubkey']);
          const spki = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'DER'], { input: pubFromCsr });
          expect(spki.toString('base64')).toBe(key.publicKey);
        },
      );
    }

    skipOn(
      b,
      'softhsm',
      'SoftHSM lists RSA-PSS on every token',
    )(
      'refuses an RSA-PSS CSR where the token lists no RSA-PSS (pkcs11-tool -M agrees) and removes the new key pair',
      async () => {
        expect(hsm.tool(['--token-label', 'توکن علی', '-M'])).not.toMatch(/PSS/);
        const before = (await service.listKeys(tokenId)).length;
        const err = await rejection(
          service.generateKey(tokenId, PIN, {
            algorithm: { name: 'RSA', modulusLength: 2048 },
            csr: { subject: 'CN=pss', signatureAlgorithm: { scheme: 'RSA-PSS', digestAlgorithm: 'SHA-256' } },
          }),
        );
        expect(isKelidError(err, 'ERR_MECHANISM_UNSUPPORTED')).toBe(true);
        expect((await service.listKeys(tokenId)).length).toBe(before);
      },
    );

    it('writes keys that pkcs11-tool sees as sensitive, never extractable, local, sign-only, with matching ID and label', async () => {
      const out = hsm.tool(['--token-label', 'توکن علی', '--login', '--pin', PIN, '--list-objects']);
      const privates = out.split(/\n(?=\S)/).filter((b) => b.startsWith('Private Key Object'));
      expect(privates.length).toBe(made.length);
      for (const b of privates) {
        expect(b).toMatch(/Usage:\s+sign\s*\n/);
        expect(b).toMatch(/Access:\s+sensitive, always sensitive, never extractable, local/);
      }
      const keys = await service.listKeys(tokenId);
      expect(keys.length).toBe(made.length);
      for (const k of keys) {
        expect(out).toContain(`ID:         ${k.keyId}`);
        expect(k.hasCertificate).toBe(false);
      }
    });

    it('refuses a key size the token cannot make with ERR_MECHANISM_UNSUPPORTED', async () => {
      const err = await rejection(
        service.generateKey(tokenId, PIN, { algorithm: { name: 'RSA', modulusLength: 32768 } as never }),
      );
      expect(isKelidError(err, 'ERR_MECHANISM_UNSUPPORTED')).toBe(true);
    });
  });
});
