// softhsm-only: tests chain selection from stored CA certificates; the module only stores objects (not ported yet)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PIN_POLICY } from '../../../src/tokens/pin-policy.js';
import { isKelidError } from '../../../src/model/errors.js';
import type { FoundObject, HostMethods, ModuleHost } from '../../../src/pkcs11/host-protocol.js';
import { ModuleManager } from '../../../src/pkcs11/module-manager.js';
import type { LoadedModule } from '../../../src/pkcs11/module-manager.js';
import { CKA } from '../../../src/pkcs11/templates.js';
import { bytesEqual } from '../../../src/pki/der.js';
import { SigningService } from '../../../src/signing/signing-service.js';
import { StatusService, createRevocationCheck } from '../../../src/status/status-service.js';
import { ProvisioningService } from '../../../src/tokens/provisioning-service.js';
import { TokenService } from '../../../src/tokens/token-service.js';
import { SoftHsm } from '../../helpers/softhsm.js';
import { TestPki } from '../../helpers/test-ca.js';

const PIN = '4826';

/**
 * Lists certificates the way a token may: the given one first. SoftHSM happens to list the real CA
 * before one written later, other tokens need not; this makes "fake first" certain.
 */
class FirstSeam {
  constructor(
    private readonly inner: ModuleManager,
    private readonly first: () => Uint8Array | undefined,
  ) {}
  modules(): LoadedModule[] {
    return this.inner.modules().map((m) => {
      const host: ModuleHost = {
        moduleId: m.host.moduleId,
        call: async (method, params, options) => {
          const result = await m.host.call(method, params, options);
          if (method !== 'findObjects') return result;
          const found = result as HostMethods['findObjects']['result'];
          const der = this.first();
          const isFirst = (o: FoundObject): boolean => {
            const value = o.values[CKA.VALUE];
            return der !== undefined && value != null && bytesEqual(value, der);
          };
          return [...found.filter(isFirst), ...found.filter((o) => !isFirst(o))];
        },
      };
      return { ...m, host };
    });
  }
}

// A page with the `ra` tier can store any CA certificate on a token (certificates.import's chain). A
// fake CA with the real issuing CA's name must not stand in for it when the token's chain is read:
// the status check would find no issuer, and `block-revoked` lets a revoked certificate sign when the
// status is unavailable.
describe('SigningService: issuers from the token chain are checked by signature', () => {
  const hsm = new SoftHsm('kelid-token-chain-');
  let pki: TestPki;
  let fake: TestPki;
  let modules: ModuleManager;
  let signing: SigningService;
  let genuineId: string;

  beforeAll(async () => {
    hsm.initToken('chain', 'SoPin9876', PIN);
    pki = await TestPki.create();
    fake = await TestPki.create({ rootSubject: '/C=IR/O=Kelid Test/CN=Kelid Test Issuing CA' });
    modules = new ModuleManager([{ id: 'softhsm', path: hsm.module, env: hsm.env }]);
    await modules.start();
    const tokens = new TokenService(new FirstSeam(modules, () => fake.root.der));
    const provisioning = new ProvisioningService(tokens, DEFAULT_PIN_POLICY);
    const tokenId = (await tokens.listTokens()).find((t) => t.label === 'chain')!.tokenId;

    const csr = async (label: string): Promise<string> =>
      (
        await provisioning.generateKey(tokenId, PIN, {
          algorithm: { name: 'EC', namedCurve: 'P-256' },
          label,
          csr: { subject: `CN=${label},C=IR`, keyUsage: ['digitalSignature', 'nonRepudiation'] },
        })
      ).csr!;
    // No AIA at all: the issuer can only come from the token. Status from the CRL.
    const genuine = await pki.issueFromCsr('genuine', await csr('genuine'), {
      ocspUrl: null,
      caIssuersUrl: null,
    });
    genuineId = (
      await provisioning.importCertificate(tokenId, PIN, {
        certificate: genuine.pem,
        chain: [pki.intermediate.pem, pki.root.pem],
      })
    ).certificateId;
    const planted = await fake.issueFromCsr('planted', await csr('planted'), { issuer: 'root' });
    await provisioning.importCertificate(tokenId, PIN, { certificate: planted.pem, chain: [fake.root.pem] });
    await pki.revoke(genuine, 'keyCompromise');
    await pki.generateCrl();
    signing = new SigningService(tokens, {
      revocationCheck: createRevocationCheck(new StatusService(), 'block-revoked'),
    });
  });

  afterAll(async () => {
    await modules?.stop();
    hsm.cleanup();
    await pki?.cleanup();
    await fake?.cleanup();
  });

  it('skips a fake CA with the issuing CA name listed first, and finds the real one', async () => {
    const { issuers } = await signing.certificateWithIssuers(genuineId);
    expect(issuers.map((i) => Buffer.from(i).toString('base64'))).toEqual([
      Buffer.from(pki.intermediate.der).toString('base64'),
      Buffer.from(pki.root.der).toString('base64'),
    ]);
  });

  it('so the revoked certificate is refused before signing, not let through as "status unavailable"', async () => {
    const e = await signing.preflight(genuineId).then(
      (r) => r,
      (x: unknown) => x,
    );
    expect(isKelidError(e, 'ERR_CERTIFICATE_REVOKED')).toBe(true);
  });
});
