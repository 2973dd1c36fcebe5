// softhsm-only: the second suite unplugs and swaps tokens by renaming SoftHSM token directories (the round-trip budget runs on both backends)
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { renameSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { ConsentBroker } from '../../../src/consent/consent-broker.js';
import type { PinRulesView } from '../../../src/consent/consent-broker.js';
import type { AgentServices, StatusApi } from '../../../src/model/services.js';
import { HostClient } from '../../../src/pkcs11/host-client.js';
import type { HostMethod } from '../../../src/pkcs11/host-protocol.js';
import { ModuleManager } from '../../../src/pkcs11/module-manager.js';
import type { ConnectionContext } from '../../../src/protocol/context.js';
import { Dispatcher } from '../../../src/protocol/dispatcher.js';
import { METHODS } from '../../../src/protocol/methods/index.js';
import { OriginIds } from '../../../src/protocol/origin-ids.js';
import { SigningService } from '../../../src/signing/signing-service.js';
import { createRevocationCheck } from '../../../src/status/signing-policy.js';
import { StatusService } from '../../../src/status/status-service.js';
import { DEFAULT_PIN_POLICY } from '../../../src/tokens/pin-policy.js';
import { ProvisioningService } from '../../../src/tokens/provisioning-service.js';
import { TokenService } from '../../../src/tokens/token-service.js';
import { certifySigningCsr } from '../../helpers/cert-chain.js';
import { SoftHsm } from '../../helpers/softhsm.js';
import { describeBackends } from '../../helpers/token-backend.js';
import type { TokenBackend } from '../../helpers/token-backend.js';

// How many times one consented signature crosses to the module host (issue 16, section 4): counted at
// the seam (HostClient's `call` event) while a page's sign.raw goes the real way — JSON-RPC through
// the dispatcher, consent answered by a program, SigningService, TokenService, the module host
// process, the module (each backend of the suite) — with the revocation policy of a default agent (block-revoked) in the path.

const PIN = '5193';
const ORIGIN = 'https://shop.example';
const MAX_ROUND_TRIPS = 6;

describeBackends('round trips of one signature (real module host)', (b) => {
  let hsm: TokenBackend;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-trips-work-'));
  let modules: ModuleManager;
  let dispatcher: Dispatcher;
  let broker: ConsentBroker;
  let connection: ConnectionContext;
  const calls: HostMethod[] = [];
  let nextId = 1;

  async function rpc<T>(method: string, params: unknown): Promise<T> {
    const reply = JSON.parse(
      await dispatcher.handle(connection, JSON.stringify({ jsonrpc: '2.0', id: nextId++, method, params })),
    ) as { result?: T; error?: { message: string; data?: { code?: string } } };
    if (reply.error) throw new Error(`${method}: ${reply.error.data?.code ?? ''} ${reply.error.message}`);
    return reply.result as T;
  }

  beforeAll(async () => {
    hsm = await b.start('kelid-trips-');
    hsm.initToken('trips', 'SoPin123', PIN);
    modules = new ModuleManager([{ ...hsm.moduleConfig(), quirks: hsm.quirks }]);
    await modules.start();
    const host = modules.modules()[0]!.host;
    if (!(host instanceof HostClient)) throw new Error('expected the real host client');
    host.on('call', (m: HostMethod) => calls.push(m));

    const tokens = new TokenService(modules);
    const provisioning = new ProvisioningService(tokens, DEFAULT_PIN_POLICY);
    const tokenId = (await tokens.listTokens()).find((t) => t.label === 'trips')!.tokenId;
    const { csr } = await provisioning.generateKey(tokenId, PIN, {
      algorithm: { name: 'EC', namedCurve: 'P-256' },
      label: 'signer',
      csr: { subject: 'CN=Trips signer', keyUsage: ['digitalSignature', 'nonRepudiation'] },
    });
    const leaf = certifySigningCsr(work, 'leaf', csr!, { caSubject: '/CN=Trips CA', serial: 9 });
    await provisioning.importCertificate(tokenId, PIN, { certificate: leaf.certificate, chain: [leaf.ca] });

    // The default agent's signing policy: a certificate without OCSP/CRL addresses is "unknown",
    // signed with a warning under block-revoked (no network involved).
    const checker = new StatusService({ stateDir: path.join(work, 'state') });
    const signing = new SigningService(tokens, {
      revocationCheck: createRevocationCheck(checker, 'block-revoked'),
    });
    const status: StatusApi = {
      checkCertificateId: () => Promise.reject(new Error('not used')),
      checkCertificate: () => Promise.reject(new Error('not used')),
    };
    const services: AgentServices = {
      listTokens: () => tokens.listTokens(),
      getToken: (id) => tokens.getToken(id),
      tokenEvents: new EventEmitter(),
      modules: () => modules.status(),
      provisioning,
      signing,
      status,
    };
    const defaultPinRules: PinRulesView = {
      user: { minLength: 4, maxLength: 64, charset: 'any' },
      so: { minLength: 4, maxLength: 64, charset: 'any' },
    };
    broker = new ConsentBroker({
      timeoutMs: 30_000,
      limiterFor: () => null,
      launch: () => undefined,
      consentUrl: (s) => `https://127.0.0.1/consent/#${s}`,
      defaultPinRules,
    });
    dispatcher = new Dispatcher({
      env: {
        services,
        consent: broker,
        sites: { isApproved: () => true, approve: () => undefined },
        version: 'test',
        defaultPinRules,
      },
      methods: METHODS,
      audit: () => undefined,
      ids: new OriginIds(randomBytes(32)),
    });
    connection = {
      id: 'conn-1',
      origin: ORIGIN,
      tier: 'site',
      calls: new Map(),
      closed: new AbortController().signal,
      // The program answering the consent: approves with the PIN as soon as the request is pending.
      notify: (method, params) => {
        if (method !== 'consent.pending') return;
        const { requestId } = params as { requestId: string };
        queueMicrotask(() => broker.approve({ requestId }, { userPin: PIN }));
      },
    };
  }, 60_000);

  afterAll(async () => {
    broker?.cancelAll();
    await modules?.stop();
    hsm?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it(`a warm sign.raw makes at most ${MAX_ROUND_TRIPS} module-host round trips`, async () => {
    const { certificates: certs } = await rpc<{
      certificates: Array<{ certificateId: string; subject: string }>;
    }>('certificates.list', {});
    const certificateId = certs.find((c) => c.subject.includes('Trips signer'))!.certificateId;
    const signRaw = () =>
      rpc<{ signature: string }>('sign.raw', {
        certificateId,
        digest: randomBytes(32).toString('base64'),
        digestAlgorithm: 'SHA-256',
        summary: 'round trips',
      });
    await signRaw(); // warm: mechanisms, locations, status cache
    calls.length = 0;
    const { signature } = await signRaw();
    expect(Buffer.from(signature, 'base64').length).toBeGreaterThan(60);
    const counted = [...calls];
    const byMethod = counted.reduce<Record<string, number>>((m, c) => ({ ...m, [c]: (m[c] ?? 0) + 1 }), {});
    expect(
      counted.length,
      `${counted.length} round trips: ${counted.join(', ')} (${JSON.stringify(byMethod)})`,
    ).toBeLessThanOrEqual(MAX_ROUND_TRIPS);
  });
});

/** A self-signed-by-a-test-CA signing certificate for a new P-256 key on the token; its certificateId. */
async function signingCertificate(
  provisioning: ProvisioningService,
  tokenId: string,
  work: string,
  name: string,
): Promise<string> {
  const { csr } = await provisioning.generateKey(tokenId, PIN, {
    algorithm: { name: 'EC', namedCurve: 'P-256' },
    label: name,
    csr: { subject: `CN=${name}`, keyUsage: ['digitalSignature', 'nonRepudiation'] },
  });
  const { certificate } = certifySigningCsr(work, name, csr!, { caSubject: `/CN=${name} CA`, serial: 3 });
  const cert = await provisioning.importCertificate(tokenId, PIN, { certificate });
  return cert.certificateId;
}

describe('a token that changes between the preflight and the signature (SoftHSM)', () => {
  const hsm = new SoftHsm('kelid-swap-');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-swap-work-'));
  let modules: ModuleManager;
  let tokens: TokenService;
  let provisioning: ProvisioningService;
  const calls: HostMethod[] = [];

  beforeAll(async () => {
    modules = new ModuleManager([
      { id: 'softhsm', path: hsm.module, env: hsm.env, reinitializeToDetectTokens: true },
    ]);
    await modules.start();
    const host = modules.modules()[0]!.host;
    if (!(host instanceof HostClient)) throw new Error('expected the real host client');
    host.on('call', (m: HostMethod) => calls.push(m));
    tokens = new TokenService(modules);
    provisioning = new ProvisioningService(tokens, DEFAULT_PIN_POLICY);
  }, 60_000);

  afterAll(async () => {
    await modules?.stop();
    hsm.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  /** A token with a signing certificate, prepared for a signature (preflight made); its directory. */
  async function prepared(
    label: string,
  ): Promise<{ signing: SigningService; certificateId: string; dir: string }> {
    const dirsBefore = new Set(readdirSync(hsm.tokenDir));
    hsm.initToken(label, 'SoPin123', PIN);
    const dir = readdirSync(hsm.tokenDir).find((d) => !dirsBefore.has(d))!;
    const tokenId = (await tokens.listTokens({ reinitialize: true })).find((t) => t.label === label)!.tokenId;
    const certificateId = await signingCertificate(provisioning, tokenId, work, label);
    const signing = new SigningService(tokens);
    await signing.preflight(certificateId, { use: 'raw' });
    return { signing, certificateId, dir };
  }

  it('is unplugged, and the module has noticed before the agent did: no login, ERR_CERTIFICATE_NOT_FOUND', async () => {
    const { signing, certificateId, dir } = await prepared('unplugged');
    renameSync(path.join(hsm.tokenDir, dir), path.join(hsm.dir, 'away-1'));
    // The module re-reads its slots (as the watcher's next poll would make it), behind the agent's back.
    await modules.modules()[0]!.host.call('listSlots', { reinitialize: true });
    calls.length = 0;
    await expect(
      signing.signRaw(certificateId, PIN, { digest: randomBytes(32), digestAlgorithm: 'SHA-256' }),
    ).rejects.toMatchObject({ code: 'ERR_CERTIFICATE_NOT_FOUND' });
    expect(calls).not.toContain('sign');
    expect(calls).not.toContain('login');
    expect(calls.filter((c) => c === 'openLogin').length).toBeLessThanOrEqual(1);
  });

  it("is replaced by another token in the same slot: never a signature with the other token's key", async () => {
    const { signing, certificateId, dir } = await prepared('replaced');
    renameSync(path.join(hsm.tokenDir, dir), path.join(hsm.dir, 'away-2'));
    // Another token with the same label takes its place (and a key and certificate of its own).
    hsm.initToken('replaced', 'SoPin123', PIN);
    const other = (await tokens.listTokens({ reinitialize: true })).find((t) => t.label === 'replaced')!;
    await signingCertificate(provisioning, other.tokenId, work, 'replaced');
    calls.length = 0;
    await expect(
      signing.signRaw(certificateId, PIN, { digest: randomBytes(32), digestAlgorithm: 'SHA-256' }),
    ).rejects.toMatchObject({ code: 'ERR_CERTIFICATE_NOT_FOUND' });
    expect(calls).not.toContain('sign');
    expect(calls).not.toContain('openLogin');
  });

  it("comes back under its id after the module noticed: signs with the preflight's location re-found", async () => {
    const { signing, certificateId, dir } = await prepared('replugged');
    renameSync(path.join(hsm.tokenDir, dir), path.join(hsm.dir, 'away-3'));
    await modules.modules()[0]!.host.call('listSlots', { reinitialize: true });
    renameSync(path.join(hsm.dir, 'away-3'), path.join(hsm.tokenDir, dir));
    await modules.modules()[0]!.host.call('listSlots', { reinitialize: true });
    const digest = randomBytes(32);
    const { signature } = await signing.signRaw(certificateId, PIN, { digest, digestAlgorithm: 'SHA-256' });
    expect(signature.length).toBeGreaterThan(60);
  });
});
