import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate, createHash, verify as cryptoVerify } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AgentProcess, kelidSync, rpcError } from '../../helpers/agent-process.js';
import type { RpcClient } from '../../helpers/agent-process.js';
import { TestPki } from '../../helpers/test-ca.js';
import { describeBackends } from '../../helpers/token-backend.js';
import type { TokenBackend } from '../../helpers/token-backend.js';

// The RA and signing flows over the WebSocket API of the real agent, every consent answered with
// `kelid consent approve … --secrets-stdin`, every artefact checked by openssl or node:crypto; the
// certificate is issued by `openssl ca` and its status answered by a live `openssl ocsp` responder.
// The PINs are long and unusual so that finding them anywhere is a real leak, not a coincidence.

const SO_PIN = 'Qz7SoPin4Kelid';
const USER_PIN = '8273619405';
const USER_PIN_2 = '5190283746';
const WRONG_PIN = '6402918375';
// Refused by the digits-only rule; long and odd like the others, so it never turns up by chance in hex.
const BAD_NEW_PIN = '73x91q84z6';
const PINS = [SO_PIN, USER_PIN, USER_PIN_2, WRONG_PIN];

const RA = 'https://ra.example';
const SHOP = 'https://shop.example';
const BANK = 'https://bank.example';
const PERSIAN_CN = 'علی رضایی';

interface TokenJson {
  tokenId: string;
  initialized: boolean;
  serialNumber: string;
  label: string;
}
interface CertificateJson {
  certificateId: string;
  keyId: string;
  fingerprintSha256: string;
  certificate: string;
  hasPrivateKey: boolean;
  category: string;
  keyUsage: string[];
}

// On every backend of the suite (test/helpers/token-backend.ts): tokens.init takes SoftHSM's free slot
// or tpm2-pkcs11's spare one. One wrong PIN only, so tpm2's TPM-wide lockout (3 tries) is not reached.
describeBackends('Agent RA and signing flows', (b) => {
  let hsm: TokenBackend;
  let pki: TestPki;
  let agent: AgentProcess;
  let ra: RpcClient;
  let shop: RpcClient;
  let token: TokenJson;
  let keyId: string;
  let certificate: CertificateJson;
  /** The shop's own id of `certificate` (ids are per origin). */
  let shopCertificateId: string;
  const cliOutputs: string[] = [];
  const otherFrames: string[] = [];

  async function approve(client: RpcClient, id: number, secrets: Record<string, string>): Promise<void> {
    const requestId = await client.consentFor(id);
    const r = await agent.consent(requestId, secrets);
    cliOutputs.push(r.stdout, r.stderr);
    expect(r.status, r.stderr).toBe(0);
  }

  beforeAll(async () => {
    pki = await TestPki.create();
    await pki.startOcsp();
    hsm = await b.start('kelid-e2e-ra-hsm-');
    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-ra-',
      config: {
        modules: [hsm.moduleConfig()],
        raOrigins: [RA],
        sites: [BANK],
        // The test CA's responders are on 127.0.0.1: page-supplied certificates may reach them only
        // with this switch (status-ssrf.test.ts shows the default refusing).
        revocation: { enforceOnSign: 'block-revoked', timeoutSeconds: 5, allowPrivateNetworks: true },
      },
    });
    ra = await agent.connect(RA);
    shop = await agent.connect(SHOP);
  });

  afterAll(async () => {
    await ra?.close();
    await shop?.close();
    await agent?.stop();
    agent?.cleanup();
    hsm?.cleanup();
    await pki?.cleanup();
  });

  it('tokens.init: a new user PIN that breaks the policy is refused to the CLI and the request stays pending', async () => {
    const { tokens } = await ra.call<{ tokens: TokenJson[] }>('tokens.list');
    const blank = tokens.find((t) => !t.initialized);
    expect(blank).toBeDefined();
    const id = ra.nextId;
    const call = ra.call<{ token: TokenJson }>('tokens.init', {
      tokenId: blank!.tokenId,
      label: 'citizen-1',
    });
    const requestId = await ra.consentFor(id);

    const [pending] = await agent.pendingConsents();
    expect(pending).toMatchObject({
      requestId,
      origin: RA,
      tier: 'ra',
      method: 'tokens.init',
      needs: ['newSoPin', 'newUserPin'],
      pinRules: { user: { minLength: 4, maxLength: 16, charset: 'digits' } },
    });
    expect(typeof pending.expiresAt).toBe('string');

    const refused = await agent.consent(requestId, { newSoPin: SO_PIN, newUserPin: BAD_NEW_PIN });
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('ERR_PIN_POLICY');
    expect(refused.stderr).not.toContain(BAD_NEW_PIN);
    const missing = await agent.consent(requestId, { newSoPin: SO_PIN });
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('newUserPin');
    expect((await agent.pendingConsents()).map((r) => r.requestId)).toEqual([requestId]);

    const ok = await agent.consent(requestId, { newSoPin: SO_PIN, newUserPin: USER_PIN });
    expect(ok.status, ok.stderr).toBe(0);
    token = (await call).token;
    expect(token).toMatchObject({ initialized: true, label: 'citizen-1' });
    expect(token.tokenId).not.toBe(blank!.tokenId);
    // Another implementation logs in with the PIN typed into the consent channel.
    expect(
      hsm.tool(['--token-label', 'citizen-1', '--login', '--pin', USER_PIN, '--list-objects']),
    ).not.toMatch(/error/i);
  });

  it('keys.generate with csr: one consent, a CSR that openssl verifies with the Persian subject intact', async () => {
    const id = ra.nextId;
    const call = ra.call<{ key: { keyId: string; publicKey: string }; csr: string }>('keys.generate', {
      tokenId: token.tokenId,
      algorithm: { name: 'EC', namedCurve: 'P-256' },
      label: 'sign-1',
      csr: {
        subject: [
          { type: 'C', value: 'IR' },
          { type: 'O', value: 'Kelid Test' },
          { type: 'CN', value: PERSIAN_CN },
        ],
        keyUsage: ['digitalSignature', 'nonRepudiation'],
        extendedKeyUsage: ['clientAuth'],
      },
    });
    await approve(ra, id, { userPin: USER_PIN });
    const result = await call;
    keyId = result.key.keyId;
    expect(keyId).toMatch(/^[0-9a-f]{40}$/);
    const csrFile = path.join(pki.dir, 'agent.csr');
    fs.writeFileSync(csrFile, result.csr);
    const text = execFileSync(
      'openssl',
      ['req', '-in', csrFile, '-noout', '-verify', '-subject', '-nameopt', 'utf8'],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    expect(text).toContain(PERSIAN_CN);
  });

  it('certificates.import: the certificate issued by `openssl ca` lands next to its key, with the chain', async () => {
    const csr = fs.readFileSync(path.join(pki.dir, 'agent.csr'), 'utf8');
    const issued = (await pki.issueFromCsr('citizen-1', csr, { extendedKeyUsage: 'clientAuth' })).pem;
    const id = ra.nextId;
    const call = ra.call<{ certificate: CertificateJson }>('certificates.import', {
      tokenId: token.tokenId,
      certificate: issued,
      chain: [pki.intermediate.pem, pki.root.pem],
      label: 'sign-1',
    });
    const requestId = await ra.consentFor(id);
    const [view] = await agent.pendingConsents();
    expect(view.requestId).toBe(requestId);
    expect((view.certificate as { subject: string }).subject).toContain(PERSIAN_CN);
    const r = await agent.consent(requestId, { userPin: USER_PIN });
    expect(r.status, r.stderr).toBe(0);
    certificate = (await call).certificate;
    expect(certificate.keyId).toBe(keyId);
    expect(certificate.hasPrivateKey).toBe(true);
    expect(certificate.fingerprintSha256).toBe(
      new X509Certificate(issued).fingerprint256.replace(/:/g, '').toLowerCase(),
    );

    const listed = await ra.call<{ certificates: CertificateJson[] }>('certificates.list', {
      tokenId: token.tokenId,
    });
    expect(listed.certificates.find((c) => c.certificateId === certificate.certificateId)?.category).toBe(
      'user',
    );
    expect(listed.certificates.filter((c) => c.category === 'authority')).toHaveLength(2);
    const keys = await ra.call<{ keys: Array<{ keyId: string; hasCertificate: boolean }> }>('keys.list', {
      tokenId: token.tokenId,
    });
    expect(keys.keys).toEqual([expect.objectContaining({ keyId, hasCertificate: true })]);
  });

  it('certificates.status: good from the test PKI; a page-supplied certificate only for ra', async () => {
    const byId = await ra.call<{ status: string; source: string; checkedAt: string }>('certificates.status', {
      certificateId: certificate.certificateId,
    });
    // The live openssl ocsp responder answers (a certificate read from the token used to produce a
    // bad CertID serial: Buffer.slice() is a view of pooled memory — fixed in status/ocsp.ts).
    expect(byId).toMatchObject({ status: 'good', source: 'ocsp' });
    const pem = `-----BEGIN CERTIFICATE-----\n${certificate.certificate}\n-----END CERTIFICATE-----\n`;
    const byBytes = await ra.call('certificates.status', { certificate: pem, issuer: pki.intermediate.pem });
    expect(byBytes).toMatchObject({ status: 'good' });
    const e = await rpcError(ra.call('certificates.status', { certificate: 'not a certificate' }));
    expect(e.code).toBe(-32602);
  });

  it('pin.change and pin.unblock: old and new PINs typed into the consent channel only', async () => {
    let id = ra.nextId;
    let call: Promise<unknown> = ra.call('pin.change', { tokenId: token.tokenId, role: 'user' });
    await approve(ra, id, { oldUserPin: USER_PIN, newUserPin: USER_PIN_2 });
    await call;
    id = ra.nextId;
    call = ra.call('pin.unblock', { tokenId: token.tokenId });
    await approve(ra, id, { soPin: SO_PIN, newUserPin: USER_PIN });
    await call;
    expect(
      hsm.tool(['--token-label', 'citizen-1', '--login', '--pin', USER_PIN, '--list-objects']),
    ).not.toMatch(/error/i);
  });

  it('site flow: requestAccess → certificates.list → sign.cms verified by `openssl cms -verify`', async () => {
    expect((await shop.call('agent.info')).tier).toBe('unknown');
    const id = shop.nextId;
    const access = shop.call<{ tier: string }>('agent.requestAccess', { reason: 'امضای قرارداد' });
    const requestId = await shop.consentFor(id);
    const [view] = await agent.pendingConsents();
    expect(view).toMatchObject({
      requestId,
      origin: SHOP,
      method: 'agent.requestAccess',
      needs: [],
      summary: 'امضای قرارداد',
    });
    expect((await agent.consent(requestId, {})).status).toBe(0);
    expect(await access).toEqual({ tier: 'site' });
    expect((await shop.call('agent.info')).tier).toBe('site');
    const sites = await agent.cli(['sites', 'list', '--json']);
    expect(JSON.parse(sites.stdout).approved.map((s: { origin: string }) => s.origin)).toEqual([SHOP]);

    const { certificates } = await shop.call<{ certificates: CertificateJson[] }>('certificates.list', {
      filter: { keyUsage: ['nonRepudiation'], hasPrivateKey: true, validAt: new Date().toISOString() },
    });
    expect(certificates.map((c) => c.fingerprintSha256)).toEqual([certificate.fingerprintSha256]);
    // Ids are per origin (PROTOCOL.md section 4): the shop names the certificate its own way.
    shopCertificateId = certificates[0].certificateId;
    expect(shopCertificateId).not.toBe(certificate.certificateId);
    expect(await shop.call('certificates.status', { certificateId: shopCertificateId })).toMatchObject({
      status: 'good',
    });
    const forbidden = await rpcError(
      shop.call('certificates.status', { certificate: certificate.certificate }),
    );
    expect(forbidden.data?.code).toBe('ERR_FORBIDDEN');

    const document = Buffer.from(
      'قرارداد شماره ۱۲ — the document itself never reaches the agent log',
      'utf8',
    );
    const signId = shop.nextId;
    const sign = shop.call<{ cms: string }>('sign.cms', {
      certificateId: shopCertificateId,
      content: document.toString('base64'),
      digestAlgorithm: 'SHA-256',
      summary: 'قرارداد شماره ۱۲',
    });
    const signRequest = await shop.consentFor(signId);
    const [signView] = await agent.pendingConsents();
    expect(signView).toMatchObject({
      requestId: signRequest,
      method: 'sign.cms',
      needs: ['userPin'],
      digests: [createHash('sha256').update(document).digest('hex')],
      certificate: { subject: expect.stringContaining(PERSIAN_CN) },
      token: { label: 'citizen-1', serialNumber: token.serialNumber },
    });
    expect((await agent.consent(signRequest, { userPin: USER_PIN })).status).toBe(0);
    const { cms } = await sign;
    fs.writeFileSync(path.join(pki.dir, 'doc.bin'), document);
    fs.writeFileSync(path.join(pki.dir, 'doc.p7s'), Buffer.from(cms, 'base64'));
    const verified = spawnSync(
      'openssl',
      [
        'cms',
        '-verify',
        '-binary',
        '-inform',
        'DER',
        '-in',
        'doc.p7s',
        '-content',
        'doc.bin',
        '-CAfile',
        pki.root.certPath,
        '-purpose',
        'any',
        '-out',
        '/dev/null',
      ],
      { cwd: pki.dir, encoding: 'utf8' },
    );
    expect(verified.status, verified.stderr).toBe(0);
    expect(verified.stderr).toContain('Verification successful');
  });

  it('sign.raw: an ECDSA signature node:crypto verifies; a wrong PIN fails with ERR_PIN_INCORRECT and the flags', async () => {
    const data = Buffer.from('raw payload', 'utf8');
    const digest = createHash('sha256').update(data).digest('base64');
    let id = shop.nextId;
    const bad = shop.call('sign.raw', {
      certificateId: shopCertificateId,
      digest,
      digestAlgorithm: 'SHA-256',
      summary: 'raw',
    });
    await approve(shop, id, { userPin: WRONG_PIN });
    const e = await rpcError(bad);
    expect(e.data?.code).toBe('ERR_PIN_INCORRECT');
    expect(e.data?.pin).toMatchObject({ locked: false });

    id = shop.nextId;
    const good = shop.call<{ signature: string; signatureAlgorithm: string }>('sign.raw', {
      certificateId: shopCertificateId,
      digest,
      digestAlgorithm: 'SHA-256',
      summary: 'raw',
    });
    await approve(shop, id, { userPin: USER_PIN });
    const { signature, signatureAlgorithm } = await good;
    expect(signatureAlgorithm).toBe('ES256');
    const cert = new X509Certificate(Buffer.from(certificate.certificate, 'base64'));
    expect(cryptoVerify('sha256', data, cert.publicKey, Buffer.from(signature, 'base64'))).toBe(true);
  });

  it('sign.batch: one consent and one PIN for several digests, each signature verified by node:crypto', async () => {
    const bank = await agent.connect(BANK);
    const listed = await bank.call<{ certificates: CertificateJson[] }>('certificates.list');
    const bankCertificateId = listed.certificates.find(
      (c) => c.fingerprintSha256 === certificate.fingerprintSha256,
    )!.certificateId;
    const payloads = ['first', 'second', 'third'].map((t) => Buffer.from(`${t} document`, 'utf8'));
    const id = bank.nextId;
    const call = bank.call<{ results: Array<{ signature: string }> }>('sign.batch', {
      certificateId: bankCertificateId,
      format: 'raw',
      digestAlgorithm: 'SHA-256',
      items: payloads.map((p, i) => ({
        digest: createHash('sha256').update(p).digest('base64'),
        summary: `سند ${i + 1}`,
      })),
    });
    const requestId = await bank.consentFor(id);
    const [view] = await agent.pendingConsents();
    expect(view).toMatchObject({ requestId, method: 'sign.batch', summaries: ['سند 1', 'سند 2', 'سند 3'] });
    expect(view.digests).toEqual(payloads.map((p) => createHash('sha256').update(p).digest('hex')));
    expect((await agent.consent(requestId, { userPin: USER_PIN })).status).toBe(0);
    const { results } = await call;
    const key = new X509Certificate(Buffer.from(certificate.certificate, 'base64')).publicKey;
    expect(results).toHaveLength(3);
    results.forEach((r, i) =>
      expect(cryptoVerify('sha256', payloads[i], key, Buffer.from(r.signature, 'base64'))).toBe(true),
    );
    otherFrames.push(...bank.frames);
    await bank.close();
  });

  it('auth.challenge: the dual-use citizen certificate signs (default keyPurpose.dualUse), so it does not log in', async () => {
    // The positive login flow, with an authentication certificate, is test/e2e/agent/login-forgery.test.ts.
    const bank = await agent.connect(BANK);
    const nonce = Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37 + 11) % 256));
    const refused = await rpcError(bank.call('auth.challenge', { nonce: nonce.toString('base64') }));
    expect(refused.data?.code).toBe('ERR_CERTIFICATE_NOT_FOUND');
    // The bank's own id of the certificate (ids may be per origin).
    const listed = await bank.call<{ certificates: CertificateJson[] }>('certificates.list');
    const bankCertificateId = listed.certificates.find(
      (c) => c.fingerprintSha256 === certificate.fingerprintSha256,
    )!.certificateId;
    const named = await rpcError(
      bank.call('auth.challenge', {
        nonce: nonce.toString('base64'),
        certificateId: bankCertificateId,
      }),
    );
    expect(named.data).toMatchObject({
      code: 'ERR_KEY_PURPOSE',
      keyPurpose: 'dual-use',
      use: 'authentication',
    });
    expect(await agent.pendingConsents()).toEqual([]);
    const short = await rpcError(bank.call('auth.challenge', { nonce: Buffer.alloc(16).toString('base64') }));
    expect(short.code).toBe(-32602);
    otherFrames.push(...bank.frames);
    await bank.close();
  });

  it('refuses digests whose length does not match digestAlgorithm (-32602), before any prompt', async () => {
    const e = await rpcError(
      shop.call('sign.raw', {
        certificateId: shopCertificateId,
        digest: Buffer.alloc(32).toString('base64'),
        digestAlgorithm: 'SHA-384',
        summary: 'x',
      }),
    );
    expect(e.code).toBe(-32602);
    expect(await agent.pendingConsents()).toEqual([]);
  });

  it('objects.delete removes the key pair and its certificate', async () => {
    const id = ra.nextId;
    const call = ra.call<{ deleted: number }>('objects.delete', {
      tokenId: token.tokenId,
      keyId,
      scope: 'all',
    });
    await approve(ra, id, { userPin: USER_PIN });
    expect((await call).deleted).toBeGreaterThanOrEqual(3);
    expect((await ra.call<{ keys: unknown[] }>('keys.list', { tokenId: token.tokenId })).keys).toEqual([]);
  });

  it('writes an audit line for every ra operation, site approval and signature, and the chain verifies', async () => {
    const file = path.join(agent.stateDir, 'audit.jsonl');
    const lines = fs
      .readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const methods = lines.map((l) => `${l.origin as string} ${l.method as string} ${l.result as string}`);
    for (const m of [
      'tokens.init',
      'keys.generate',
      'certificates.import',
      'pin.change',
      'pin.unblock',
      'objects.delete',
    ]) {
      expect(methods).toContain(`${RA} ${m} ok`);
    }
    expect(methods).toContain(`${SHOP} agent.requestAccess ok`);
    expect(methods).toContain(`${SHOP} sign.cms ok`);
    expect(methods).toContain(`${SHOP} sign.raw ok`);
    expect(methods).toContain(`${BANK} sign.batch ok`);
    const wrongPin = lines.find((l) => l.method === 'sign.raw' && l.result === 'error');
    expect(wrongPin).toMatchObject({
      errorCode: 'ERR_PIN_INCORRECT',
      tokenSerial: token.serialNumber,
      keyId,
    });
    const cms = lines.find((l) => l.method === 'sign.cms')!;
    expect(cms).toMatchObject({
      tokenSerial: token.serialNumber,
      keyId,
      certificateSha256: certificate.fingerprintSha256,
    });
    expect(cms.digestsSha256).toMatch(/^[0-9a-f]{64}$/);
    const imported = lines.find((l) => l.method === 'certificates.import')!;
    expect(imported).toMatchObject({ keyId, certificateSha256: certificate.fingerprintSha256 });
    // The refused digest (invalid params) prompted nobody and is not a signature.
    expect(lines.filter((l) => l.method === 'sign.raw')).toHaveLength(2);

    const verify = await agent.cli(['audit', 'verify']);
    expect(verify.status, verify.stdout).toBe(0);
    expect(verify.stdout).toContain(`${lines.length} entries`);
  });

  it('never puts a PIN in a WebSocket frame, a log line, the audit log or the CLI output', () => {
    const haystacks = {
      frames: [...ra.frames, ...shop.frames, ...otherFrames].join('\n'),
      agentLog: agent.stderr + agent.stdout,
      audit: fs.readFileSync(path.join(agent.stateDir, 'audit.jsonl'), 'utf8'),
      cli: cliOutputs.join('\n'),
    };
    expect(haystacks.frames.length).toBeGreaterThan(1000);
    expect(haystacks.agentLog).toContain('consent approved');
    for (const [where, text] of Object.entries(haystacks)) {
      for (const pin of [...PINS, BAD_NEW_PIN])
        expect(text.includes(pin), `${where} contains a PIN`).toBe(false);
    }
  });

  it('reports a modified audit line after the agent stopped', async () => {
    await ra.close();
    await shop.close();
    expect(await agent.stop()).toBe(0);
    expect(fs.existsSync(path.join(agent.stateDir, 'agent.json'))).toBe(false);
    const file = path.join(agent.stateDir, 'audit.jsonl');
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines[1] = lines[1].replace('"result":"ok"', '"result":"ok" ').replace(RA, 'https://rb.example');
    fs.writeFileSync(file, lines.join('\n'));
    const r = kelidSync(['audit', 'verify', '--state-dir', agent.stateDir, '--json']);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, line: 3 });
  });
});
