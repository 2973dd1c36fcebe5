// softhsm-only: tests the auth/raw signing policy per origin; the module does not matter (not ported yet)
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthToken } from '../../../src/model/types.js';
import { authSignedData, verifyAuthToken } from '../../../src/signing/auth-token.js';
import type { VerifyAuthTokenOptions } from '../../../src/signing/auth-token.js';
import { AgentProcess, RpcError } from '../../helpers/agent-process.js';
import type { RpcClient } from '../../helpers/agent-process.js';
import { AUTHENTICATION_EXTENSIONS, CertChain, caExtensions } from '../../helpers/cert-chain.js';
import type { ChainCertificate } from '../../helpers/cert-chain.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// Cross-origin login forgery (issue 13, section 1), against the real agent and SoftHSM. An approved
// site asks for a raw signature of SHA-256(authSignedData("https://bank.example", nonce)), the nonce
// being one the bank issued to the attacker, under a summary of its own; the user approves and types
// the PIN. The signature is then a kelid-auth:1 token for the bank. The key-purpose rule stops it in
// both places: the agent refuses raw signatures with login keys (before any prompt), and the verifier
// refuses login tokens from keys that are not login keys.

const PIN = '7351902468';
const ATTACKER = 'https://shop.example';
const BANK = 'https://bank.example';
const RA = 'https://ra.example';

const SIGNING = [
  'basicConstraints = critical,CA:false',
  'keyUsage = critical,digitalSignature,nonRepudiation',
];
const DUAL_USE = [...SIGNING, 'extendedKeyUsage = clientAuth,emailProtection'];

interface CertificateJson {
  certificateId: string;
  subject: string;
  keyPurpose: string;
  allowedUses: string[];
}

type Outcome = { prompted: false; error: RpcError } | { prompted: true; result: Record<string, unknown> };

describe('Cross-origin login forgery through sign.raw', () => {
  const hsm = new SoftHsm('kelid-e2e-forgery-hsm-');
  let chain: CertChain;
  let root: ChainCertificate;
  let ca: ChainCertificate;
  let loginLeaf: ChainCertificate;

  beforeAll(() => {
    chain = CertChain.create();
    root = chain.root('root', { subject: '/C=IR/O=National Root/CN=Root' });
    ca = chain.issue('ca', root, { subject: '/C=IR/O=National CA/CN=Citizen CA', ext: caExtensions(0) });
    const leaves: Array<[string, string, string[]]> = [
      ['01', 'Citizen Login', AUTHENTICATION_EXTENSIONS],
      ['02', 'Citizen Signature', SIGNING],
      ['03', 'Citizen Dual', DUAL_USE],
    ];
    hsm.initToken('citizen', 'SoPin123', PIN);
    for (const [id, cn, ext] of leaves) {
      const leaf = chain.issue(`leaf-${id}`, ca, { subject: `/C=IR/CN=${cn}`, ext });
      if (id === '01') loginLeaf = leaf;
      const files = {
        [`leaf-${id}.p8.der`]: 'privkey',
        [`leaf-${id}.pub.der`]: 'pubkey',
        [`leaf-${id}.der`]: 'cert',
      };
      chain.exportKey(leaf, `leaf-${id}`);
      for (const [file, type] of Object.entries(files)) {
        hsm.tool([
          '--token-label',
          'citizen',
          '--login',
          '--pin',
          PIN,
          '--write-object',
          path.join(chain.dir, file),
          '--type',
          type,
          '--id',
          id,
          '--label',
          cn,
        ]);
      }
    }
  });

  afterAll(() => {
    hsm.cleanup();
    chain?.cleanup();
  });

  const trust = (): Pick<VerifyAuthTokenOptions, 'trustedRoots' | 'intermediates'> => ({
    trustedRoots: [root.der],
    intermediates: [ca.der],
  });

  async function citizenCertificates(
    client: RpcClient,
  ): Promise<Record<'login' | 'signature' | 'dual', CertificateJson>> {
    const { certificates } = await client.call<{ certificates: CertificateJson[] }>('certificates.list');
    const by = (cn: string) => certificates.find((c) => c.subject.includes(cn))!;
    return { login: by('Citizen Login'), signature: by('Citizen Signature'), dual: by('Citizen Dual') };
  }

  /** Start an agent with `dualUse`, a site approved for the attacker and one for the bank. */
  function withAgent(dualUse: string | undefined): {
    agent: () => AgentProcess;
    attacker: () => RpcClient;
    bank: () => RpcClient;
    /** The attacker's view (ids are per origin where the agent makes them so). */
    certificates: () => Record<'login' | 'signature' | 'dual', CertificateJson>;
    /** The bank's view. */
    bankCertificates: () => Record<'login' | 'signature' | 'dual', CertificateJson>;
  } {
    let agent: AgentProcess;
    let attacker: RpcClient;
    let bank: RpcClient;
    let certs: Record<'login' | 'signature' | 'dual', CertificateJson>;
    let bankCerts: Record<'login' | 'signature' | 'dual', CertificateJson>;
    beforeAll(async () => {
      agent = await AgentProcess.start({
        prefix: 'kelid-e2e-forgery-',
        config: {
          modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
          sites: [ATTACKER, BANK],
          raOrigins: [RA],
          revocation: { enforceOnSign: 'off', timeoutSeconds: 5 },
          ...(dualUse ? { keyPurpose: { dualUse } } : {}),
        },
      });
      attacker = await agent.connect(ATTACKER);
      bank = await agent.connect(BANK);
      certs = await citizenCertificates(attacker);
      bankCerts = await citizenCertificates(bank);
    });
    afterAll(async () => {
      await attacker?.close();
      await bank?.close();
      await agent?.stop();
      agent?.cleanup();
    });
    return {
      agent: () => agent,
      attacker: () => attacker,
      bank: () => bank,
      certificates: () => certs,
      bankCertificates: () => bankCerts,
    };
  }

  /**
   * Make a call that needs consent; if a consent appears, approve it with the PIN as a deceived user
   * would. Reports whether the user was prompted at all.
   */
  async function attempt(
    agent: AgentProcess,
    client: RpcClient,
    method: string,
    params: Record<string, unknown>,
  ): Promise<Outcome> {
    const id = client.nextId;
    const call = client.call<Record<string, unknown>>(method, params);
    const first = await Promise.race([
      call.then(
        (result) => ({ kind: 'result' as const, result }),
        (error: unknown) => ({ kind: 'error' as const, error }),
      ),
      client.consentFor(id).then((requestId) => ({ kind: 'consent' as const, requestId })),
    ]);
    if (first.kind === 'error') {
      if (!(first.error instanceof RpcError)) throw first.error;
      expect(await agent.pendingConsents()).toEqual([]);
      return { prompted: false, error: first.error };
    }
    if (first.kind === 'result') throw new Error(`${method} answered without a consent`);
    const approved = await agent.consent(first.requestId, { userPin: PIN });
    expect(approved.status, approved.stderr).toBe(0);
    return { prompted: true, result: await call };
  }

  /** The attacker's request: a "loan contract" whose digest is the bank's login challenge. */
  async function forge(
    agent: AgentProcess,
    attacker: RpcClient,
    certificate: CertificateJson,
    nonce: Uint8Array,
  ): Promise<{ outcome: Outcome; token?: AuthToken }> {
    const digest = createHash('sha256').update(authSignedData(BANK, nonce)).digest('base64');
    const outcome = await attempt(agent, attacker, 'sign.raw', {
      certificateId: certificate.certificateId,
      digest,
      digestAlgorithm: 'SHA-256',
      summary: 'Sign your loan contract #4411',
    });
    if (!outcome.prompted) return { outcome };
    const raw = await attacker.call<{ certificates: Array<{ certificateId: string; certificate: string }> }>(
      'certificates.list',
    );
    const der = raw.certificates.find((c) => c.certificateId === certificate.certificateId)!.certificate;
    const token: AuthToken = {
      format: 'kelid-auth:1',
      origin: BANK,
      certificate: der,
      signatureAlgorithm: outcome.result.signatureAlgorithm as string,
      signature: outcome.result.signature as string,
    };
    return { outcome, token };
  }

  const nonce = () => new Uint8Array(randomBytes(32));

  describe('default config (dual-use certificates sign)', () => {
    const s = withAgent(undefined);

    it('lists each certificate with its keyPurpose and allowedUses', () => {
      const c = s.certificates();
      expect(c.login).toMatchObject({ keyPurpose: 'authentication', allowedUses: ['authentication'] });
      expect(c.signature).toMatchObject({ keyPurpose: 'signing', allowedUses: ['raw', 'cms'] });
      expect(c.dual).toMatchObject({ keyPurpose: 'dual-use', allowedUses: ['raw', 'cms'] });
    });

    it('sign.raw of the bank’s challenge with the login certificate is refused before any prompt (ERR_KEY_PURPOSE)', async () => {
      const n = nonce();
      const { outcome, token } = await forge(s.agent(), s.attacker(), s.certificates().login, n);
      if (outcome.prompted) {
        // Without the fix: the forged token logs the attacker in to the bank.
        const verified = await verifyAuthToken(token, { expectedOrigin: BANK, expectedNonce: n, ...trust() });
        expect.fail(
          `the agent signed the bank's login challenge for ${ATTACKER}: ${verified.origin} accepted it`,
        );
      }
      expect(outcome.error.data?.code).toBe('ERR_KEY_PURPOSE');
      expect(outcome.error.data).toMatchObject({ keyPurpose: 'authentication', use: 'raw' });
      // sign.batch and sign.cms neither.
      for (const [method, params] of [
        [
          'sign.batch',
          { format: 'raw', items: [{ digest: randomBytes(32).toString('base64'), summary: 'x' }] },
        ],
        [
          'sign.batch',
          { format: 'cms', items: [{ digest: randomBytes(32).toString('base64'), summary: 'x' }] },
        ],
        ['sign.cms', { content: Buffer.from('loan').toString('base64'), summary: 'x' }],
      ] as const) {
        const o = await attempt(s.agent(), s.attacker(), method, {
          certificateId: s.certificates().login.certificateId,
          digestAlgorithm: 'SHA-256',
          ...params,
        });
        expect(o.prompted).toBe(false);
        if (!o.prompted) expect(o.error.data?.code).toBe('ERR_KEY_PURPOSE');
      }
    });

    it('a raw signature of the challenge with the signing certificate is no login: verifyAuthToken refuses it (reason purpose)', async () => {
      const n = nonce();
      const { outcome, token } = await forge(s.agent(), s.attacker(), s.certificates().signature, n);
      expect(outcome.prompted).toBe(true);
      await expect(
        verifyAuthToken(token, { expectedOrigin: BANK, expectedNonce: n, ...trust() }),
      ).rejects.toMatchObject({ code: 'ERR_AUTH_TOKEN_INVALID', data: { reason: 'purpose' } });
      // Even a relying party that accepts dual-use certificates does not accept a signing certificate.
      await expect(
        verifyAuthToken(token, {
          expectedOrigin: BANK,
          expectedNonce: n,
          acceptDualUseCertificates: true,
          ...trust(),
        }),
      ).rejects.toMatchObject({ data: { reason: 'purpose' } });
    });

    it('the dual-use certificate signs raw, so it logs in nowhere: auth.challenge refuses it and the verifier refuses its forged token', async () => {
      const n = nonce();
      const { outcome, token } = await forge(s.agent(), s.attacker(), s.certificates().dual, n);
      expect(outcome.prompted).toBe(true);
      await expect(
        verifyAuthToken(token, { expectedOrigin: BANK, expectedNonce: n, ...trust() }),
      ).rejects.toMatchObject({ data: { reason: 'purpose' } });
      const login = await attempt(s.agent(), s.bank(), 'auth.challenge', {
        nonce: Buffer.from(n).toString('base64'),
        certificateId: s.bankCertificates().dual.certificateId,
      });
      expect(login.prompted).toBe(false);
      if (!login.prompted)
        expect(login.error.data).toMatchObject({ code: 'ERR_KEY_PURPOSE', keyPurpose: 'dual-use' });
    });

    it('the bank’s own login works with the login certificate (chosen by default), and the signing certificate is refused', async () => {
      const n = nonce();
      const login = await attempt(s.agent(), s.bank(), 'auth.challenge', {
        nonce: Buffer.from(n).toString('base64'),
      });
      expect(login.prompted).toBe(true);
      if (!login.prompted) return;
      const token = login.result.token as AuthToken;
      const verified = await verifyAuthToken(token, { expectedOrigin: BANK, expectedNonce: n, ...trust() });
      expect(verified.certificate.subject).toContain('Citizen Login');
      const refused = await attempt(s.agent(), s.bank(), 'auth.challenge', {
        nonce: Buffer.from(n).toString('base64'),
        certificateId: s.bankCertificates().signature.certificateId,
      });
      expect(refused.prompted).toBe(false);
      if (!refused.prompted)
        expect(refused.error.data).toMatchObject({ code: 'ERR_KEY_PURPOSE', keyPurpose: 'signing' });
    });

    it('keeps the PIN out of the agent’s output', () => {
      expect(s.agent().stdout + s.agent().stderr).not.toContain(PIN);
    });
  });

  describe('keyPurpose.dualUse "authentication"', () => {
    const s = withAgent('authentication');

    it('refuses every signature with the dual-use certificate before any prompt, and logs in with it', async () => {
      const c = s.certificates().dual;
      expect(c.allowedUses).toEqual(['authentication']);
      const { outcome } = await forge(s.agent(), s.attacker(), c, nonce());
      expect(outcome.prompted).toBe(false);
      if (!outcome.prompted) expect(outcome.error.data?.code).toBe('ERR_KEY_PURPOSE');
      const cms = await attempt(s.agent(), s.attacker(), 'sign.cms', {
        certificateId: c.certificateId,
        content: Buffer.from('loan').toString('base64'),
        digestAlgorithm: 'SHA-256',
        summary: 'x',
      });
      expect(cms.prompted).toBe(false);
      const n = nonce();
      const login = await attempt(s.agent(), s.bank(), 'auth.challenge', {
        nonce: Buffer.from(n).toString('base64'),
        certificateId: s.bankCertificates().dual.certificateId,
      });
      expect(login.prompted).toBe(true);
      if (!login.prompted) return;
      const token = login.result.token as AuthToken;
      await expect(
        verifyAuthToken(token, { expectedOrigin: BANK, expectedNonce: n, ...trust() }),
      ).rejects.toMatchObject({ data: { reason: 'purpose' } });
      await expect(
        verifyAuthToken(token, {
          expectedOrigin: BANK,
          expectedNonce: n,
          acceptDualUseCertificates: true,
          ...trust(),
        }),
      ).resolves.toMatchObject({ origin: BANK });
    });
  });

  describe('keyPurpose.dualUse "cms-and-authentication"', () => {
    const s = withAgent('cms-and-authentication');

    it('refuses raw signatures with the dual-use certificate before any prompt; CMS and login work', async () => {
      const c = s.certificates().dual;
      expect(c.allowedUses).toEqual(['cms', 'authentication']);
      const { outcome } = await forge(s.agent(), s.attacker(), c, nonce());
      expect(outcome.prompted).toBe(false);
      if (!outcome.prompted) expect(outcome.error.data?.code).toBe('ERR_KEY_PURPOSE');
      const batch = await attempt(s.agent(), s.attacker(), 'sign.batch', {
        certificateId: c.certificateId,
        format: 'raw',
        digestAlgorithm: 'SHA-256',
        items: [{ digest: randomBytes(32).toString('base64'), summary: 'x' }],
      });
      expect(batch.prompted).toBe(false);
      const cms = await attempt(s.agent(), s.attacker(), 'sign.cms', {
        certificateId: c.certificateId,
        content: Buffer.from('loan').toString('base64'),
        digestAlgorithm: 'SHA-256',
        summary: 'Loan contract',
      });
      expect(cms.prompted).toBe(true);
      const n = nonce();
      const login = await attempt(s.agent(), s.bank(), 'auth.challenge', {
        nonce: Buffer.from(n).toString('base64'),
        certificateId: s.bankCertificates().dual.certificateId,
      });
      expect(login.prompted).toBe(true);
      if (!login.prompted) return;
      await expect(
        verifyAuthToken(login.result.token, {
          expectedOrigin: BANK,
          expectedNonce: n,
          acceptDualUseCertificates: true,
          ...trust(),
        }),
      ).resolves.toMatchObject({ origin: BANK });
    });
  });

  // Runs last: the planted certificate stays on the token.
  describe('a compromised RA page', () => {
    const s = withAgent(undefined);

    it('imports a signing certificate for the login key: the key still gives no raw signature (ERR_KEY_PURPOSE, no prompt)', async () => {
      const planted = chain.issue('planted', ca, {
        keyPath: loginLeaf.keyPath,
        subject: '/C=IR/CN=Citizen Planted',
        ext: SIGNING,
      });
      const ra = await s.agent().connect(RA);
      try {
        const { tokens } = await ra.call<{ tokens: Array<{ tokenId: string; label: string }> }>(
          'tokens.list',
        );
        const tokenId = tokens.find((t) => t.label === 'citizen')!.tokenId;
        const imported = await attempt(s.agent(), ra, 'certificates.import', {
          tokenId,
          certificate: fs.readFileSync(planted.certPath, 'utf8'),
        });
        expect(imported.prompted).toBe(true);
        if (!imported.prompted) return;
        expect((imported.result.certificate as CertificateJson).keyPurpose).toBe('signing');
        // certificates.list tells pages: the login key now does nothing (two purposes for one key).
        const { certificates } = await s
          .attacker()
          .call<{ certificates: CertificateJson[] }>('certificates.list');
        // The attacker's own id for it (ids may be per origin).
        const plantedCert = certificates.find((c) => c.subject.includes('Citizen Planted'))!;
        for (const c of certificates.filter((x) => /Citizen (Planted|Login)/.test(x.subject)))
          expect(c.allowedUses).toEqual([]);
        const n = nonce();
        const { outcome } = await forge(s.agent(), s.attacker(), plantedCert, n);
        if (outcome.prompted) {
          // Without the per-key rule: the raw signature with the login key, sent with the login certificate.
          const token: AuthToken = {
            format: 'kelid-auth:1',
            origin: BANK,
            certificate: Buffer.from(loginLeaf.der).toString('base64'),
            signatureAlgorithm: outcome.result.signatureAlgorithm as string,
            signature: outcome.result.signature as string,
          };
          const verified = await verifyAuthToken(token, {
            expectedOrigin: BANK,
            expectedNonce: n,
            ...trust(),
          });
          expect.fail(
            `a planted signing certificate turned the login key into an oracle: ${verified.origin} accepted`,
          );
        }
        expect(outcome.error.data).toMatchObject({ code: 'ERR_KEY_PURPOSE', keyPurpose: 'authentication' });
      } finally {
        await ra.close();
      }
    });
  });

  // Last: it writes a login certificate for the signing key onto the shared token.
  describe('held (review): a certificate imported while a signature waits for consent', () => {
    const s = withAgent(undefined);

    it('a login certificate imported for the signing key after the prompt was shown: the approved sign.raw is still refused (ERR_KEY_PURPOSE)', async () => {
      const signing = s.certificates().signature;
      // The CA certifies the signing key again, for logins (CertChain keeps leaf-02's key there).
      const login = chain.issue('late-login', ca, {
        keyPath: path.join(chain.dir, 'leaf-02.key'),
        subject: '/C=IR/CN=Citizen Late Login',
        ext: AUTHENTICATION_EXTENSIONS,
      });
      const attacker = s.attacker();
      const n = nonce();
      const signId = attacker.nextId;
      const signed = attacker.call('sign.raw', {
        certificateId: signing.certificateId,
        digest: createHash('sha256').update(authSignedData(BANK, n)).digest('base64'),
        digestAlgorithm: 'SHA-256',
        summary: 'Sign your loan contract #4411',
      });
      const signRequest = await attacker.consentFor(signId);

      const ra = await s.agent().connect(RA);
      try {
        const { tokens } = await ra.call<{ tokens: Array<{ tokenId: string; label: string }> }>(
          'tokens.list',
        );
        const importId = ra.nextId;
        const imported = ra.call('certificates.import', {
          tokenId: tokens.find((t) => t.label === 'citizen')!.tokenId,
          certificate: fs.readFileSync(login.certPath, 'utf8'),
        });
        const importApproved = await s.agent().consent(await ra.consentFor(importId), { userPin: PIN });
        expect(importApproved.status, importApproved.stderr).toBe(0);
        await imported;
      } finally {
        await ra.close();
      }
      // The user now approves the signature shown before the import.
      const approved = await s.agent().consent(signRequest, { userPin: PIN });
      expect(approved.status, approved.stderr).toBe(0);
      const e = await signed.then(
        () => null,
        (error: unknown) => error as RpcError,
      );
      expect(e?.data?.code).toBe('ERR_KEY_PURPOSE');
    });
  });
});
