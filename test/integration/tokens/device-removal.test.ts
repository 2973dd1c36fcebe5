// softhsm-only: removal is simulated by stopping a p11-kit server that exports one SoftHSM token; not ported to tpm2 yet
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isKelidError } from '../../../src/model/errors.js';
import { ModuleManager } from '../../../src/pkcs11/module-manager.js';
import { CKA, CKM, CKO } from '../../../src/pkcs11/templates.js';
import { TokenService } from '../../../src/tokens/token-service.js';
import { P11KIT_CLIENT_MODULE, P11KitServer } from '../../helpers/p11kit-server.js';
import { SoftHsm } from '../../helpers/softhsm.js';

const PIN = '4321';

async function signOnce(service: TokenService, tokenId: string): Promise<Uint8Array> {
  return service.withSession(tokenId, { readWrite: false }, async (s) => {
    await s.login('user', PIN);
    const [key] = await s.call('findObjects', {
      template: [{ type: CKA.CLASS, value: CKO.PRIVATE_KEY }],
      attributes: [],
    });
    const digestInfo = new Uint8Array(51); // content is irrelevant here: RSA PKCS#1 over 51 bytes
    const { signature } = await s.call('sign', {
      mechanism: { mechanism: CKM.RSA_PKCS },
      key: key!.handle,
      data: digestInfo,
    });
    return signature;
  });
}

describe('TokenService over p11-kit (token pulled out for real)', () => {
  const hsm = new SoftHsm('kelid-p11kit-');
  const sockDir = mkdtempSync(join(tmpdir(), 'kelid-p11kit-sock-'));
  let server: P11KitServer;
  let modules: ModuleManager;
  let service: TokenService;
  let tokenId: string;

  beforeAll(async () => {
    hsm.initToken('remote', 'so-pin-x', PIN);
    hsm.tool([
      '--token-label',
      'remote',
      '--login',
      '--pin',
      PIN,
      '--keypairgen',
      '--key-type',
      'rsa:2048',
      '--label',
      'k',
      '--id',
      '01',
    ]);
    server = new P11KitServer(sockDir, hsm.module, 'remote', hsm.env);
    await server.start();
    modules = new ModuleManager(
      [{ id: 'p11kit', path: P11KIT_CLIENT_MODULE, env: server.clientEnv, reinitializeToDetectTokens: true }],
      { backoffInitialMs: 100 },
    );
    await modules.start();
    service = new TokenService(modules);
    const tokens = await service.listTokens({ reinitialize: true });
    tokenId = tokens.find((t) => t.label === 'remote')!.tokenId;
  });

  afterAll(async () => {
    await modules.stop();
    await server.stop();
    hsm.cleanup();
    rmSync(sockDir, { recursive: true, force: true });
  });

  it('signs through the p11-kit client before anything goes wrong', async () => {
    expect((await signOnce(service, tokenId)).length).toBe(256);
  });

  it('fails a signature with ERR_DEVICE_ERROR or ERR_TOKEN_REMOVED when the serving process dies', async () => {
    const children = server.remoteChildren();
    expect(children.length).toBeGreaterThan(0);
    const err = await service
      .withSession(tokenId, { readWrite: false }, async (s) => {
        await s.login('user', PIN);
        const [key] = await s.call('findObjects', {
          template: [{ type: CKA.CLASS, value: CKO.PRIVATE_KEY }],
          attributes: [],
        });
        for (const pid of children) process.kill(pid, 'SIGKILL');
        await new Promise((r) => setTimeout(r, 100));
        return s.call('sign', {
          mechanism: { mechanism: CKM.RSA_PKCS },
          key: key!.handle,
          data: new Uint8Array(51),
        });
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(isKelidError(err) && ['ERR_DEVICE_ERROR', 'ERR_TOKEN_REMOVED'].includes(err.code)).toBe(true);
  });

  it('recovers once the token is served again', async () => {
    await server.stop();
    await server.start();
    const tokens = await service.listTokens({ reinitialize: true });
    expect(tokens.map((t) => t.tokenId)).toContain(tokenId);
    expect((await signOnce(service, tokenId)).length).toBe(256);
  });
});
