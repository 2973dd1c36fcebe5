// What every bench case shares: a private SoftHSM token directory with the bench tokens, keys with
// certificates on the signing token, a running agent whose consents are answered automatically over
// the control channel (as `kelid consent approve` does), and the raw pkcs11js baseline on the same
// tokens in this process.
import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { AgentProcess } from '../../test/helpers/agent-process.js';
import type { RpcClient } from '../../test/helpers/agent-process.js';
import { SoftHsm } from '../../test/helpers/softhsm.js';
import { TestPki } from '../../test/helpers/test-ca.js';
import { sendControlRequest } from '../../src/consent/control-channel.js';
import type { ModuleManager as ModuleManagerType } from '../../src/pkcs11/module-manager.js';
import type { ProvisioningService as ProvisioningServiceType } from '../../src/tokens/provisioning-service.js';
import type { TokenService as TokenServiceType } from '../../src/tokens/token-service.js';
import type { Key } from '../../src/model/types.js';
import { RawModule } from './raw-token.js';
import type * as PinPolicyModule from '../../src/tokens/pin-policy.js';
import type * as ModuleManagerModule from '../../src/pkcs11/module-manager.js';
import type * as ProvisioningServiceModule from '../../src/tokens/provisioning-service.js';
import type * as TokenServiceModule from '../../src/tokens/token-service.js';

export const USER_PIN = '1234';
export const SO_PIN = '87654321';
export const RA_ORIGIN = 'https://ra.bench.example';
export const SITE_ORIGINS = Array.from({ length: 8 }, (_, i) => `https://site${i + 1}.bench.example`);
export const ALGORITHMS = {
  'EC P-256': { name: 'EC', namedCurve: 'P-256' },
  'RSA 2048': { name: 'RSA', modulusLength: 2048 },
} as const;
export type AlgorithmName = keyof typeof ALGORITHMS;

/** Load a built module (dist/), typed by its source: the bench measures what users run. */
export async function dist<T>(relative: string): Promise<T> {
  const url = new URL(`../../dist/${relative}`, import.meta.url);
  return (await import(fileURLToPath(url))) as T;
}

export interface BenchKey {
  key: Key;
  certificateId: string;
}

export class Fixture {
  readonly hsm = new SoftHsm('kelid-bench-');
  pki!: TestPki;
  raw!: RawModule;
  readonly keys = {} as Record<AlgorithmName, BenchKey>;
  /** Errors seen by the automatic consent answerer (must stay empty). */
  readonly approvalErrors: string[] = [];

  static async create(): Promise<Fixture> {
    const f = new Fixture();
    for (const label of ['sign', 'gen', 'prov-raw', 'prov-api']) f.hsm.initToken(label, SO_PIN, USER_PIN);
    process.env.SOFTHSM2_CONF = f.hsm.conf;
    f.pki = await TestPki.create();
    await f.provisionSigningKeys();
    f.raw = new RawModule(f.hsm.module);
    return f;
  }

  /** Kelid in this process (module host child, token service, provisioning), for the host-level cases. */
  async kelidInProcess(): Promise<{
    modules: ModuleManagerType;
    tokens: TokenServiceType;
    provisioning: ProvisioningServiceType;
    tokenId(label: string): Promise<string>;
  }> {
    const { ModuleManager } = await dist<typeof ModuleManagerModule>('pkcs11/module-manager.js');
    const { TokenService } = await dist<typeof TokenServiceModule>('tokens/token-service.js');
    const { ProvisioningService } = await dist<typeof ProvisioningServiceModule>(
      'tokens/provisioning-service.js',
    );
    const { DEFAULT_PIN_POLICY } = await dist<typeof PinPolicyModule>('tokens/pin-policy.js');
    const modules = new ModuleManager([{ id: 'softhsm', path: this.hsm.module, env: this.hsm.env }]);
    await modules.start();
    const tokens = new TokenService(modules);
    return {
      modules,
      tokens,
      provisioning: new ProvisioningService(tokens, DEFAULT_PIN_POLICY),
      async tokenId(label) {
        const t = (await tokens.listTokens()).find((x) => x.label === label);
        if (!t) throw new Error(`no token ${label}`);
        return t.tokenId;
      },
    };
  }

  /** An EC and an RSA key on the `sign` token, each with a certificate from the test CA and its chain. */
  private async provisionSigningKeys(): Promise<void> {
    const k = await this.kelidInProcess();
    try {
      const tokenId = await k.tokenId('sign');
      for (const [name, algorithm] of Object.entries(ALGORITHMS) as Array<
        [AlgorithmName, (typeof ALGORITHMS)[AlgorithmName]]
      >) {
        const { key, csr } = await k.provisioning.generateKey(tokenId, USER_PIN, {
          algorithm,
          label: name,
          csr: { subject: `CN=Kelid bench ${name},O=Kelid,C=IR` },
        });
        const cert = await this.pki.issueFromCsr(`bench-${key.keyId.slice(0, 8)}`, csr!, {
          ocspUrl: null,
          crlUrl: null,
          caIssuersUrl: null,
        });
        const imported = await k.provisioning.importCertificate(tokenId, USER_PIN, {
          certificate: cert.pem,
          chain: [this.pki.intermediate.pem, this.pki.root.pem],
        });
        this.keys[name] = { key, certificateId: imported.certificateId };
      }
    } finally {
      await k.modules.stop();
    }
  }

  /** Start an agent on the bench tokens; `revocation` is off so the figures are about signing. */
  async startAgent(extra: Record<string, unknown> = {}): Promise<AgentProcess> {
    return AgentProcess.start({
      prefix: 'kelid-bench-agent-',
      verbose: false,
      config: {
        modules: [{ id: 'softhsm', path: this.hsm.module, env: this.hsm.env }],
        raOrigins: [RA_ORIGIN],
        sites: SITE_ORIGINS,
        revocation: { enforceOnSign: 'off', timeoutSeconds: 5 },
        consent: { timeoutSeconds: 120, promptsPerMinute: { site: 100_000, ra: 100_000 } },
        // The bench measures signing, not the per-connection request rate limit.
        limits: { requestsPerSecond: 1_000_000, requestBurst: 1_000_000 },
        ...extra,
      },
    });
  }

  /** Answer every consent this connection raises, at once, with `secrets` (the control channel). */
  autoApprove(agent: AgentProcess, client: RpcClient, secrets: Record<string, string>): void {
    client.ws.on('message', (data: Buffer) => {
      const msg = JSON.parse(data.toString('utf8')) as { method?: string; params?: { requestId?: string } };
      if (msg.method !== 'consent.pending' || !msg.params?.requestId) return;
      sendControlRequest(agent.stateDir, { op: 'approve', requestId: msg.params.requestId, secrets }).catch(
        (e: unknown) => this.approvalErrors.push(e instanceof Error ? e.message : String(e)),
      );
    });
  }

  /** Answer the consent of the call with JSON-RPC `id`, giving exactly the secrets it needs. */
  async approveCall(
    agent: AgentProcess,
    client: RpcClient,
    id: number,
    known: Record<string, string>,
  ): Promise<void> {
    const requestId = await client.consentFor(id);
    const pending = (await sendControlRequest(agent.stateDir, { op: 'list' })) as Array<{
      requestId: string;
      needs: string[];
    }>;
    const request = pending.find((r) => r.requestId === requestId);
    if (!request) throw new Error('the consent request vanished');
    const secrets = Object.fromEntries(request.needs.map((n) => [n, known[n]]));
    await sendControlRequest(agent.stateDir, { op: 'approve', requestId, secrets });
  }

  async cleanup(): Promise<void> {
    try {
      this.raw?.finalize();
    } catch {
      // already finalized
    }
    await this.pki?.cleanup();
    this.hsm.cleanup();
  }
}

/** `n` random messages and their SHA-256 digests (the messages let node:crypto check signatures). */
/** The client's own certificateId (ids are per origin) of the certificate of the key `keyId`. */
export async function certificateIdOf(client: RpcClient, keyId: string): Promise<string> {
  const { certificates } = await client.call<{
    certificates: Array<{ certificateId: string; keyId: string }>;
  }>('certificates.list', {});
  const found = certificates.find((c) => c.keyId === keyId);
  if (!found) throw new Error(`no certificate of key ${keyId} listed`);
  return found.certificateId;
}

export function randomMessages(n: number): { data: Buffer[]; digests: Buffer[] } {
  const data = Array.from({ length: n }, () => randomBytes(48));
  return { data, digests: data.map((d) => createHash('sha256').update(d).digest()) };
}

/** Check signatures made over `data[i]` (SHA-256) with the key's SPKI, by node:crypto; returns failures. */
export function countBadSignatures(publicKeyB64: string, data: Buffer[], signatures: Buffer[]): number {
  const key = createPublicKey({ key: Buffer.from(publicKeyB64, 'base64'), format: 'der', type: 'spki' });
  const ec = key.asymmetricKeyType === 'ec';
  let bad = 0;
  signatures.forEach((sig, i) => {
    const ok = verify('sha256', data[i], ec ? { key, dsaEncoding: 'der' } : key, sig);
    if (!ok) bad++;
  });
  return bad + Math.max(0, data.length - signatures.length);
}
