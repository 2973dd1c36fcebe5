// softhsm-only: a token is unplugged by renaming its SoftHSM token directory
import { X509Certificate, createHash, verify as cryptoVerify } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess, rpcError } from '../../helpers/agent-process.js';
import type { RpcClient } from '../../helpers/agent-process.js';
import { SoftHsm } from '../../helpers/softhsm.js';
import { TestPki } from '../../helpers/test-ca.js';

// Cross-site identifiers (issue 13, section 8): tokenId and certificateId are per origin. Two approved
// sites list the same token and certificate on a real agent over SoftHSM and get different ids; each id
// works for its own origin (status, a signature approved through the CLI) and nowhere else, where it
// is ERR_*_NOT_FOUND, never another object. An RA page's ids survive an agent restart (keys.generate
// today, certificates.import after the restart). Consents are answered with `kelid consent approve`.

const SO_PIN = 'Ids7SoPin2Kelid';
const USER_PIN = '6182730495';
const RA = 'https://ra.example';
const RA2 = 'https://ra2.example';
const BANK = 'https://bank.example';
const SHOP = 'https://shop.example';
const LABEL = 'ids-token';

interface TokenJson {
  tokenId: string;
  label: string;
  serialNumber: string;
  slotDescription: string;
}
interface CertificateJson {
  certificateId: string;
  tokenId: string;
  keyId: string;
  fingerprintSha256: string;
  certificate: string;
}

describe('Per-origin ids', () => {
  const hsm = new SoftHsm('kelid-e2e-ids-hsm-');
  let pki: TestPki;
  let agent: AgentProcess;
  let serial: string;
  let fingerprint: string;
  const clients: RpcClient[] = [];
  const consoles: RpcClient[] = [];
  const origins = new Map<RpcClient, string>();
  const ids = {
    ra: { token: '', certificate: '' },
    bank: { token: '', certificate: '' },
    shop: { token: '', certificate: '' },
    internal: { token: '', certificate: '' },
  };

  const config = (): Record<string, unknown> => ({
    modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
    raOrigins: [RA, RA2],
    sites: [BANK, SHOP],
    consent: { timeoutSeconds: 60 },
  });

  async function connect(origin: string): Promise<RpcClient> {
    const c = await agent.connect(origin);
    clients.push(c);
    origins.set(c, origin);
    return c;
  }

  async function approve(client: RpcClient, id: number, secrets: Record<string, string>): Promise<void> {
    const r = await agent.consent(await client.consentFor(id), secrets);
    expect(r.status, r.stderr).toBe(0);
  }

  async function tokenOf(client: RpcClient, label = LABEL): Promise<TokenJson> {
    const { tokens } = await client.call<{ tokens: TokenJson[] }>('tokens.list');
    const token = tokens.find((t) => t.label === label);
    expect(token, label).toBeDefined();
    return token!;
  }

  async function certificateOf(client: RpcClient): Promise<CertificateJson> {
    const { certificates } = await client.call<{ certificates: CertificateJson[] }>('certificates.list');
    const found = certificates.find((c) => c.fingerprintSha256 === fingerprint);
    expect(found).toBeDefined();
    return found!;
  }

  beforeAll(async () => {
    pki = await TestPki.create();
    await pki.startOcsp();
    serial = hsm.initToken(LABEL, SO_PIN, USER_PIN);
    agent = await AgentProcess.start({ prefix: 'kelid-e2e-ids-', config: config() });
  });

  afterAll(async () => {
    for (const c of [...clients, ...consoles]) await c.close();
    await agent?.stop();
    agent?.cleanup();
    hsm.cleanup();
    await pki?.cleanup();
  });

  it('keeps an RA page’s ids across an agent restart: keys.generate before, certificates.import after', async () => {
    let ra = await connect(RA);
    const token = await tokenOf(ra);
    // The RA desk needs the serial to match the token in its own records.
    expect(token.serialNumber).toBe(serial);
    ids.ra.token = token.tokenId;
    const id = ra.nextId;
    const generated = ra.call<{ key: { keyId: string; tokenId: string }; csr: string }>('keys.generate', {
      tokenId: ids.ra.token,
      algorithm: { name: 'EC', namedCurve: 'P-256' },
      label: 'ids-key',
      csr: { subject: 'CN=Ids Test,O=Kelid Test,C=IR', keyUsage: ['digitalSignature', 'nonRepudiation'] },
    });
    await approve(ra, id, { userPin: USER_PIN });
    const { key, csr } = await generated;
    expect(key.tokenId).toBe(ids.ra.token);

    // "Days later": a new agent process on the same state directory; the page kept only its ids.
    await ra.close();
    await agent.stop();
    agent = await AgentProcess.start({ dir: agent.dir, config: config() });
    ra = await connect(RA);
    expect((await tokenOf(ra)).tokenId).toBe(ids.ra.token);
    const issued = await pki.issueFromCsr('ids-1', csr);
    const importId = ra.nextId;
    const imported = ra.call<{ certificate: CertificateJson }>('certificates.import', {
      tokenId: ids.ra.token,
      certificate: issued.pem,
      chain: [pki.intermediate.pem, pki.root.pem],
    });
    await approve(ra, importId, { userPin: USER_PIN });
    const { certificate } = await imported;
    expect(certificate).toMatchObject({ tokenId: ids.ra.token, keyId: key.keyId });
    ids.ra.certificate = certificate.certificateId;
    fingerprint = certificate.fingerprintSha256;
    expect((await certificateOf(ra)).certificateId).toBe(ids.ra.certificate);
    const { keys } = await ra.call<{ keys: Array<{ keyId: string; tokenId: string }> }>('keys.list', {
      tokenId: ids.ra.token,
    });
    expect(keys.map((k) => [k.keyId, k.tokenId])).toEqual([[key.keyId, ids.ra.token]]);
    expect(await ra.call('certificates.status', { certificateId: ids.ra.certificate })).toMatchObject({
      status: 'good',
    });
  });

  it('gives two sites different ids for the same token and certificate, none of them the RA page’s or the internal one', async () => {
    const bank = await connect(BANK);
    const shop = await connect(SHOP);
    const bankCert = await certificateOf(bank);
    const shopCert = await certificateOf(shop);
    ids.bank = { token: (await tokenOf(bank)).tokenId, certificate: bankCert.certificateId };
    ids.shop = { token: (await tokenOf(shop)).tokenId, certificate: shopCert.certificateId };
    expect(bankCert.tokenId).toBe(ids.bank.token);
    expect(shopCert.tokenId).toBe(ids.shop.token);

    // The CLI and the agent's own console page name objects by their internal ids.
    const cli = await agent.cli(['tokens', '--json', '--config', agent.configFile]);
    expect(cli.status, cli.stderr).toBe(0);
    ids.internal.token = (JSON.parse(cli.stdout) as TokenJson[]).find((t) => t.label === LABEL)!.tokenId;
    const secret = new URL((await agent.cli(['ui', '--print'])).stdout.trim()).hash.slice(1);
    const console = await agent.connect(`https://127.0.0.1:${agent.port}`, { query: `console=${secret}` });
    consoles.push(console);
    expect((await tokenOf(console)).tokenId).toBe(ids.internal.token);
    ids.internal.certificate = (await certificateOf(console)).certificateId;

    for (const kind of ['token', 'certificate'] as const) {
      const all = [ids.ra[kind], ids.bank[kind], ids.shop[kind], ids.internal[kind]];
      expect(new Set(all).size, kind).toBe(4);
      for (const id of all) expect(id).toMatch(/^[0-9a-f]{32}$/);
    }

    // Nothing else in a site's answers names the token the same way for every site.
    const bankToken = await tokenOf(bank);
    expect(bankToken).toMatchObject({ serialNumber: '', slotDescription: '' });
    const bankFrames = bank.frames.join('\n');
    for (const leak of [serial, ids.internal.token, ids.internal.certificate, ids.shop.token, ids.ra.token])
      expect(bankFrames).not.toContain(leak);
  });

  it('lets each site use its own ids: certificates.status, certificates.list by tokenId, sign.raw approved through the CLI', async () => {
    const data = Buffer.from('per-origin ids', 'utf8');
    const digest = createHash('sha256').update(data).digest('base64');
    for (const [origin, own] of [
      [BANK, ids.bank],
      [SHOP, ids.shop],
    ] as const) {
      const site = await connect(origin);
      expect(await site.call('certificates.status', { certificateId: own.certificate })).toMatchObject({
        status: 'good',
      });
      const listed = await site.call<{ certificates: CertificateJson[] }>('certificates.list', {
        tokenId: own.token,
      });
      expect(listed.certificates.map((c) => c.certificateId)).toContain(own.certificate);
      const id = site.nextId;
      const signed = site.call<{ signature: string }>('sign.raw', {
        certificateId: own.certificate,
        digest,
        digestAlgorithm: 'SHA-256',
        summary: `signed for ${origin}`,
      });
      const requestId = await site.consentFor(id);
      const [view] = await agent.pendingConsents();
      // The consent UI (the user's own) still shows the token's serial.
      expect(view).toMatchObject({ requestId, origin, token: { serialNumber: serial } });
      expect((await agent.consent(requestId, { userPin: USER_PIN })).status).toBe(0);
      const { signature } = await signed;
      const cert = new X509Certificate(Buffer.from((await certificateOf(site)).certificate, 'base64'));
      expect(cryptoVerify('sha256', data, cert.publicKey, Buffer.from(signature, 'base64'))).toBe(true);
    }
  });

  it('answers ERR_*_NOT_FOUND to ids of another origin, and to internal ids, before any prompt', async () => {
    const shop = await connect(SHOP);
    const foreign = [ids.bank, ids.ra, ids.internal];
    for (const other of foreign) {
      const status = await rpcError(shop.call('certificates.status', { certificateId: other.certificate }));
      expect(status.data?.code).toBe('ERR_CERTIFICATE_NOT_FOUND');
      const sign = await rpcError(
        shop.call('sign.raw', {
          certificateId: other.certificate,
          digest: Buffer.alloc(32, 7).toString('base64'),
          digestAlgorithm: 'SHA-256',
          summary: 'someone else’s certificate',
        }),
      );
      expect(sign.data?.code).toBe('ERR_CERTIFICATE_NOT_FOUND');
      const listed = await rpcError(shop.call('certificates.list', { tokenId: other.token }));
      expect(listed.data?.code).toBe('ERR_TOKEN_NOT_FOUND');
      // Error data names the id as the page sent it, not what it maps to inside the agent.
      expect(listed.data?.tokenId).toBe(other.token);
    }
    expect(await agent.pendingConsents()).toEqual([]);

    // Another RA origin cannot reuse the first RA page's ids either.
    const ra2 = await connect(RA2);
    const keys = await rpcError(ra2.call('keys.list', { tokenId: ids.ra.token }));
    expect(keys.data?.code).toBe('ERR_TOKEN_NOT_FOUND');
    const status = await rpcError(ra2.call('certificates.status', { certificateId: ids.ra.certificate }));
    expect(status.data?.code).toBe('ERR_CERTIFICATE_NOT_FOUND');
    expect((await tokenOf(ra2)).tokenId).not.toBe(ids.ra.token);
  });

  it('held (review): upper-case ids and another origin’s certificateId in auth.challenge name nothing, before any prompt', async () => {
    // Ids are mapped only in their exact form (32 lower-case hex): an upper-case id passes the mapping
    // unchanged, and must then match nothing inside the agent either, not even the internal id.
    const shop = await connect(SHOP);
    for (const id of [ids.shop, ids.bank, ids.internal]) {
      const listed = await rpcError(shop.call('certificates.list', { tokenId: id.token.toUpperCase() }));
      expect(listed.data?.code).toBe('ERR_TOKEN_NOT_FOUND');
      const status = await rpcError(
        shop.call('certificates.status', { certificateId: id.certificate.toUpperCase() }),
      );
      expect(['ERR_CERTIFICATE_NOT_FOUND', 'ERR_INVALID_INPUT']).toContain(status.data?.code);
    }
    for (const other of [ids.bank, ids.ra, ids.internal]) {
      const login = await rpcError(
        shop.call('auth.challenge', {
          nonce: Buffer.alloc(32, 9).toString('base64'),
          certificateId: other.certificate,
        }),
      );
      expect(login.data?.code).toBe('ERR_CERTIFICATE_NOT_FOUND');
    }
    expect(await agent.pendingConsents()).toEqual([]);
  });

  it('sends tokens.changed with each connection’s own ids, added and removed', async () => {
    const bank = await connect(BANK);
    const shop = await connect(SHOP);
    const ra = await connect(RA);
    const before = new Set(fs.readdirSync(hsm.tokenDir));
    hsm.initToken('ids-plugged', SO_PIN, USER_PIN);
    const plugged = fs.readdirSync(hsm.tokenDir).find((d) => !before.has(d))!;
    const isPlugged = (p: Record<string, unknown>): boolean =>
      (p.added as TokenJson[]).some((t) => t.label === 'ids-plugged');
    const added = await Promise.all(
      [bank, shop, ra].map(async (c) => {
        const n = await c.waitForNotification('tokens.changed', isPlugged);
        const token = (n.params.added as TokenJson[]).find((t) => t.label === 'ids-plugged')!;
        expect(token.tokenId).toBe((await tokenOf(c, 'ids-plugged')).tokenId);
        return token;
      }),
    );
    expect(new Set(added.map((t) => t.tokenId)).size).toBe(3);
    expect(added[0]).toMatchObject({ serialNumber: '', slotDescription: '' });
    expect(added[1]).toMatchObject({ serialNumber: '', slotDescription: '' });
    expect(added[2].serialNumber).not.toBe('');

    fs.renameSync(path.join(hsm.tokenDir, plugged), path.join(hsm.dir, 'unplugged'));
    const removed = await Promise.all(
      [bank, shop, ra].map(async (c, i) => {
        const n = await c.waitForNotification('tokens.changed', (p) =>
          (p.removed as string[]).includes(added[i].tokenId),
        );
        return n.params.removed as string[];
      }),
    );
    // SoftHSM's free slot changes too: each list also names it, again in each connection's own form.
    removed.forEach((list, i) => {
      for (const other of added.filter((_, j) => j !== i)) expect(list).not.toContain(other.tokenId);
    });
    expect(new Set(removed.flat()).size).toBe(removed.flat().length);
  });

  it('never sent an internal id to a site or RA page, nor the token serial to a site', () => {
    // What the agent sent, less the answers to calls that themselves carried the id (error data echoes
    // the id the page gave, as the page gave it).
    const received = (c: RpcClient, secret: string): string[] => {
      const messages = c.frames.map((f) => ({ text: f, msg: JSON.parse(f) as Record<string, unknown> }));
      const echoing = new Set(
        messages
          .filter((m) => 'method' in m.msg && 'id' in m.msg && m.text.includes(secret))
          .map((m) => m.msg.id),
      );
      return messages
        .filter((m) => !('method' in m.msg && 'id' in m.msg) && !echoing.has(m.msg.id))
        .map((m) => m.text);
    };
    for (const c of clients) {
      for (const internal of [ids.internal.token, ids.internal.certificate])
        expect(received(c, internal).join('\n')).not.toContain(internal);
    }
    for (const [c, origin] of origins)
      if (origin === BANK || origin === SHOP) expect(received(c, serial).join('\n')).not.toContain(serial);
  });
});
