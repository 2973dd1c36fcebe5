// softhsm-only: faults are injected at the pkcs11/ seam over a SoftHSM token; the guards do not depend on the module (not ported yet)
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PIN_POLICY } from '../../../src/tokens/pin-policy.js';
import type { FoundObject, HostMethod, HostMethods, ModuleHost } from '../../../src/pkcs11/host-protocol.js';
import { ModuleManager } from '../../../src/pkcs11/module-manager.js';
import type { LoadedModule } from '../../../src/pkcs11/module-manager.js';
import { CKA, CKK, CKO } from '../../../src/pkcs11/templates.js';
import type { Certificate } from '../../../src/model/types.js';
import { SigningService } from '../../../src/signing/signing-service.js';
import { ProvisioningService } from '../../../src/tokens/provisioning-service.js';
import { TokenService } from '../../../src/tokens/token-service.js';
import { certifySigningCsr } from '../../helpers/cert-chain.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// What a token, or another program writing to it, can do to a signature the agent hands out: a key
// that needs a login per signature (CKA_ALWAYS_AUTHENTICATE, faked at the pkcs11/ seam: SoftHSM does
// not make such keys), a signature that does not verify (a token returning garbage, at the seam), and
// a key pair written beside the certificate under its CKA_ID (real objects, by pkcs11-tool).

const PIN = '4826';

type Rewrite = (method: HostMethod, params: Record<string, unknown>, result: unknown) => unknown;

/** Counts host calls at the pkcs11/ seam and lets a test rewrite results. */
class Seam {
  counts = new Map<string, number>();
  rewrite: Rewrite | undefined;
  constructor(private readonly inner: ModuleManager) {}
  count(m: string): number {
    return this.counts.get(m) ?? 0;
  }
  modules(): LoadedModule[] {
    return this.inner.modules().map((m) => {
      const host: ModuleHost = {
        moduleId: m.host.moduleId,
        call: async (method, params, options) => {
          this.counts.set(method, this.count(method) + 1);
          const result = await m.host.call(method, params, options);
          const r = this.rewrite?.(method, params as Record<string, unknown>, result) ?? result;
          return r as typeof result;
        },
      };
      return { ...m, host };
    });
  }
}

function isPrivateKeySearch(method: HostMethod, params: Record<string, unknown>): boolean {
  if (method !== 'findObjects') return false;
  return isPrivateTemplate(params.template);
}

function isPrivateTemplate(template: unknown): boolean {
  return (template as Array<{ type: number; value: unknown }>).some(
    (t) => t.type === CKA.CLASS && t.value === CKO.PRIVATE_KEY,
  );
}

/** The private key search results in a host call's result: a findObjects, or the searches of openLogin. */
function privateKeyResults(
  method: HostMethod,
  params: Record<string, unknown>,
  result: unknown,
): FoundObject[][] {
  if (isPrivateKeySearch(method, params)) return [result as FoundObject[]];
  if (method !== 'openLogin') return [];
  const find = params.find as Array<{ template: unknown }>;
  const found = (result as HostMethods['openLogin']['result']).found;
  return find.flatMap((f, i) => (isPrivateTemplate(f.template) && found[i] ? [found[i]] : []));
}

describe('SigningService guards (SoftHSM, seam)', () => {
  const hsm = new SoftHsm('kelid-guards-');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-guards-work-'));
  let modules: ModuleManager;
  let seam: Seam;
  let signing: SigningService;
  let cert: Certificate;
  let keyId: string;

  beforeAll(async () => {
    hsm.initToken('guard', 'SoPin123', PIN);
    modules = new ModuleManager([{ id: 'softhsm', path: hsm.module, env: hsm.env }]);
    await modules.start();
    seam = new Seam(modules);
    const tokens = new TokenService(seam);
    const provisioning = new ProvisioningService(tokens, DEFAULT_PIN_POLICY);
    const tokenId = (await tokens.listTokens()).find((t) => t.label === 'guard')!.tokenId;
    // A self-signed signing certificate for a key generated on the token.
    const { key, csr } = await provisioning.generateKey(tokenId, PIN, {
      algorithm: { name: 'EC', namedCurve: 'P-256' },
      label: 'signer',
      csr: { subject: 'CN=Guard signer', keyUsage: ['digitalSignature', 'nonRepudiation'] },
    });
    keyId = key.keyId;
    const { certificate } = certifySigningCsr(work, 'leaf', csr!, { caSubject: '/CN=Guard CA', serial: 7 });
    cert = await provisioning.importCertificate(tokenId, PIN, { certificate });
    signing = new SigningService(tokens);
  });

  afterAll(async () => {
    await modules?.stop();
    hsm.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  describe('#signBatch with CKA_ALWAYS_AUTHENTICATE', () => {
    it('refuses a batch with a typed PIN after the login, before any signature (ERR_KEY_PURPOSE always-authenticate)', async () => {
      seam.rewrite = (method, params, result) => {
        for (const objects of privateKeyResults(method, params, result))
          for (const o of objects) o.values[CKA.ALWAYS_AUTHENTICATE] = new Uint8Array([1]);
        return result;
      };
      seam.counts.clear();
      try {
        const digests = Array.from({ length: 50 }, () => randomBytes(32));
        for (const format of ['raw', 'cms'] as const) {
          const e = await signing
            .signBatch(cert.certificateId, PIN, { format, digestAlgorithm: 'SHA-256', digests })
            .catch((x: unknown) => x);
          expect(e).toMatchObject({ code: 'ERR_KEY_PURPOSE', data: { reason: 'always-authenticate' } });
        }
        expect(seam.count('sign') + seam.count('signMany')).toBe(0);
      } finally {
        seam.rewrite = undefined;
      }
    });

    it('refuses it in the preflight, before any login, when the token shows its private keys', async () => {
      // A token whose private keys are public objects: answer the unauthenticated search with the key.
      seam.rewrite = (method, params, result) => {
        if (!isPrivateKeySearch(method, params) || (result as FoundObject[]).length > 0) return result;
        const ulong = Buffer.alloc(8);
        ulong.writeBigUInt64LE(BigInt(CKK.EC));
        return [
          {
            handle: '999',
            values: {
              [CKA.KEY_TYPE]: new Uint8Array(ulong),
              [CKA.ID]: new Uint8Array(Buffer.from(keyId, 'hex')),
              [CKA.ALWAYS_AUTHENTICATE]: new Uint8Array([1]),
            },
          },
        ];
      };
      seam.counts.clear();
      try {
        await expect(
          signing.preflight(cert.certificateId, { use: 'raw', batch: true }),
        ).rejects.toMatchObject({
          code: 'ERR_KEY_PURPOSE',
          data: { reason: 'always-authenticate' },
        });
        // A single signature is still fine to prepare: one PIN, one signature.
        await expect(signing.preflight(cert.certificateId, { use: 'raw' })).resolves.toBeDefined();
        expect(seam.count('login') + seam.count('openLogin')).toBe(0);
      } finally {
        seam.rewrite = undefined;
      }
    });
  });

  describe('#signRaw verification', () => {
    it('returns no signature that does not verify with the certificate (ERR_DEVICE_ERROR)', async () => {
      const good = await signing.signRaw(cert.certificateId, PIN, {
        digest: randomBytes(32),
        digestAlgorithm: 'SHA-256',
      });
      expect(good.signatureAlgorithm).toBe('ES256');
      seam.rewrite = (method, _params, result) =>
        method === 'sign'
          ? { signature: new Uint8Array(randomBytes(64)) }
          : method === 'signMany'
            ? {
                signatures: (result as HostMethods['signMany']['result']).signatures.map(
                  () => new Uint8Array(randomBytes(64)),
                ),
              }
            : result;
      try {
        await expect(
          signing.signRaw(cert.certificateId, PIN, { digest: randomBytes(32), digestAlgorithm: 'SHA-256' }),
        ).rejects.toMatchObject({ code: 'ERR_DEVICE_ERROR' });
        await expect(
          signing.signBatch(cert.certificateId, PIN, {
            format: 'raw',
            digestAlgorithm: 'SHA-256',
            digests: [randomBytes(32), randomBytes(32)],
          }),
        ).rejects.toMatchObject({ code: 'ERR_DEVICE_ERROR' });
      } finally {
        seam.rewrite = undefined;
      }
    });
  });

  describe('#signRaw key lookup', () => {
    // Certificate for key K1 and a key pair K2 written under the same CKA_ID, by pkcs11-tool.
    function writeObjects(label: string, objects: Array<[file: string, type: string]>): void {
      for (const [file, type] of objects) {
        hsm.tool([
          '--token-label',
          label,
          '--login',
          '--pin',
          PIN,
          '--write-object',
          path.join(work, file),
          '--type',
          type,
          '--id',
          '01',
          '--label',
          label,
        ]);
      }
    }
    function ossl(...args: string[]): void {
      execFileSync('openssl', args, { cwd: work, stdio: 'pipe' });
    }

    async function serviceFor(label: string): Promise<{ service: SigningService; certificate: Certificate }> {
      const manager = new ModuleManager([{ id: 'softhsm', path: hsm.module, env: hsm.env }]);
      await manager.start();
      cleanups.push(() => manager.stop());
      const tokens = new TokenService(manager);
      const service = new SigningService(tokens);
      const certificate = (await service.listCertificates({})).find((c) => c.subject === `CN=${label}`)!;
      expect(certificate).toBeDefined();
      return { service, certificate };
    }
    const cleanups: Array<() => Promise<void>> = [];
    afterAll(async () => {
      for (const c of cleanups) await c();
    });

    beforeAll(() => {
      for (const k of ['k1', 'k2']) {
        ossl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${k}.pem`);
        ossl('pkey', '-in', `${k}.pem`, '-pubout', '-outform', 'DER', '-out', `${k}.pub.der`);
        ossl('pkcs8', '-topk8', '-nocrypt', '-in', `${k}.pem`, '-outform', 'DER', '-out', `${k}.p8.der`);
      }
      for (const label of ['swapped', 'doubled']) {
        ossl(
          'req',
          '-x509',
          '-new',
          '-key',
          'k1.pem',
          '-subj',
          `/CN=${label}`,
          '-days',
          '2',
          '-addext',
          'keyUsage=critical,digitalSignature,nonRepudiation',
          '-outform',
          'DER',
          '-out',
          `${label}.der`,
        );
      }
      hsm.initToken('swapped', 'SoPin123', PIN);
      writeObjects('swapped', [
        ['k2.p8.der', 'privkey'],
        ['k2.pub.der', 'pubkey'],
        ['swapped.der', 'cert'],
      ]);
      hsm.initToken('doubled', 'SoPin123', PIN);
      writeObjects('doubled', [
        ['k1.p8.der', 'privkey'],
        ['k1.pub.der', 'pubkey'],
        ['k2.p8.der', 'privkey'],
        ['doubled.der', 'cert'],
      ]);
    });

    it('refuses when the key pair under the certificate’s CKA_ID is another key (ERR_CERTIFICATE_MISMATCH)', async () => {
      const { service, certificate } = await serviceFor('swapped');
      await expect(
        service.signRaw(certificate.certificateId, PIN, {
          digest: randomBytes(32),
          digestAlgorithm: 'SHA-256',
        }),
      ).rejects.toMatchObject({ code: 'ERR_CERTIFICATE_MISMATCH' });
    });

    it('refuses when two private keys carry the certificate’s CKA_ID (ERR_CERTIFICATE_MISMATCH)', async () => {
      const { service, certificate } = await serviceFor('doubled');
      await expect(
        service.signRaw(certificate.certificateId, PIN, {
          digest: randomBytes(32),
          digestAlgorithm: 'SHA-256',
        }),
      ).rejects.toMatchObject({ code: 'ERR_CERTIFICATE_MISMATCH' });
    });
  });
});
