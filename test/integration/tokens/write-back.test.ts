// softhsm-only: write failures are injected at the pkcs11/ seam over a SoftHSM token (not ported yet)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PIN_POLICY } from '../../../src/tokens/pin-policy.js';
import { KelidError, isKelidError } from '../../../src/model/errors.js';
import type { ModuleHost } from '../../../src/pkcs11/host-protocol.js';
import { ModuleManager } from '../../../src/pkcs11/module-manager.js';
import type { LoadedModule } from '../../../src/pkcs11/module-manager.js';
import { CKA, CKO, certificateTemplate } from '../../../src/pkcs11/templates.js';
import { describeCertificate, parseCertificateInput } from '../../../src/pki/certificate.js';
import { ProvisioningService } from '../../../src/tokens/provisioning-service.js';
import { TokenService } from '../../../src/tokens/token-service.js';
import { SoftHsm } from '../../helpers/softhsm.js';
import { REQUESTED_EXTENSIONS_ONLY, TestPki } from '../../helpers/test-ca.js';

const PIN = '97531';

/** Fails the Nth createObject call at the seam, to prove that a half-done import is rolled back. */
class FailingSeam {
  failOnCreate = 0;
  private creates = 0;
  constructor(private readonly inner: ModuleManager) {}
  modules(): LoadedModule[] {
    return this.inner.modules().map((m) => {
      const host: ModuleHost = {
        moduleId: m.host.moduleId,
        call: (method, params, options) => {
          if (method === 'createObject' && this.failOnCreate > 0 && ++this.creates === this.failOnCreate) {
            return Promise.reject(new KelidError('ERR_TOKEN_FULL', 'the token has no memory left'));
          }
          return m.host.call(method, params, options);
        },
      };
      return { ...m, host };
    });
  }
}

describe('certificate write-back', () => {
  const hsm = new SoftHsm('kelid-wb-');
  let pki: TestPki;
  let modules: ModuleManager;
  let seam: FailingSeam;
  let tokens: TokenService;
  let service: ProvisioningService;
  let tokenId: string;

  beforeAll(async () => {
    hsm.initToken('wb', 'SoPin9876', PIN);
    pki = await TestPki.create();
    modules = new ModuleManager([{ id: 'softhsm', path: hsm.module, env: hsm.env }]);
    await modules.start();
    seam = new FailingSeam(modules);
    tokens = new TokenService(seam);
    service = new ProvisioningService(tokens, DEFAULT_PIN_POLICY);
    tokenId = (await tokens.listTokens()).find((t) => t.label === 'wb')!.tokenId;
  });

  afterAll(async () => {
    await modules.stop();
    hsm.cleanup();
    await pki?.cleanup();
  });

  const countCertificates = () =>
    tokens.withSession(
      tokenId,
      { readWrite: false },
      async (s) =>
        (
          await s.call('findObjects', {
            template: [{ type: CKA.CLASS, value: CKO.CERTIFICATE }],
            attributes: [],
          })
        ).length,
    );

  it('cleans up the object SoftHSM leaves behind when C_CreateObject fails', async () => {
    const before = await countCertificates();
    const der = parseCertificateInput(pki.intermediate.pem);
    const d = describeCertificate(der);
    const err = await tokens
      .withSession(tokenId, { readWrite: true }, async (s) => {
        await s.login('user', PIN);
        // Only the SO may set CKA_TRUSTED: SoftHSM refuses after it has created the object.
        const template = [
          ...certificateTemplate({
            der,
            id: new Uint8Array([1]),
            label: 'x',
            subject: d.subjectDer,
            issuer: d.issuerDer,
            serialNumber: d.serialDer,
            category: 'authority',
          }),
          { type: CKA.TRUSTED, value: true },
        ];
        return s.call('createObject', { template });
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(isKelidError(err)).toBe(true);
    expect(await countCertificates()).toBe(before);
    // the raw symptom for comparison: pkcs11-tool sees no stray empty certificate object either
    expect(hsm.tool(['--token-label', 'wb', '--list-objects', '--type', 'cert'])).not.toMatch(
      /Certificate Object/,
    );
  });

  it('rolls back the leaf when writing the chain fails, leaving the token as it was', async () => {
    const { csr } = await service.generateKey(tokenId, PIN, {
      algorithm: { name: 'EC', namedCurve: 'P-256' },
      label: 'rollback',
      csr: { subject: 'CN=Rollback Test,C=IR' },
    });
    const { pem: leaf } = await pki.issueFromCsr('rollback', csr!, REQUESTED_EXTENSIONS_ONLY);
    const before = await countCertificates();
    seam.failOnCreate = 2; // the leaf is written, the first chain certificate fails
    const err = await service
      .importCertificate(tokenId, PIN, { certificate: leaf, chain: [pki.intermediate.pem, pki.root.pem] })
      .catch((e: unknown) => e);
    seam.failOnCreate = 0;
    expect(isKelidError(err, 'ERR_TOKEN_FULL')).toBe(true);
    expect(await countCertificates()).toBe(before);
    // and the same import succeeds afterwards
    const cert = await service.importCertificate(tokenId, PIN, {
      certificate: leaf,
      chain: [pki.intermediate.pem, pki.root.pem],
    });
    expect(cert.label).toBe('rollback');
    expect(await countCertificates()).toBe(before + 3);
  });

  it('renews: a new key pair and a CSR with the subject of the existing certificate', async () => {
    const existing = (await service.listCertificates(tokenId)).find((c) => c.label === 'rollback')!;
    const renewed = await service.renew(tokenId, PIN, {
      certificateKeyId: existing.keyId,
      algorithm: { name: 'EC', namedCurve: 'P-384' },
      label: 'rollback 2027',
    });
    expect(renewed.key.keyId).not.toBe(existing.keyId);
    const renewedLeaf = await pki.issueFromCsr('renewed', renewed.csr, REQUESTED_EXTENSIONS_ONLY);
    const issued = describeCertificate(parseCertificateInput(renewedLeaf.pem));
    expect(issued.subject).toBe(existing.subject);
    const keys = await service.listKeys(tokenId);
    expect(keys.find((k) => k.keyId === renewed.key.keyId)?.hasCertificate).toBe(false);
    expect(keys.find((k) => k.keyId === existing.keyId)?.hasCertificate).toBe(true);
  });
});
