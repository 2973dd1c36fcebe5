// softhsm-only: tests the revocation cache against a fake CA; the module only stores certificates (not ported yet)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeCertificate } from '../../../src/pki/certificate.js';
import { AgentProcess, REPO, RpcError } from '../../helpers/agent-process.js';
import type { RpcClient } from '../../helpers/agent-process.js';
import { SoftHsm } from '../../helpers/softhsm.js';
import { TestPki } from '../../helpers/test-ca.js';
import type { LeafOptions, TestCertificate } from '../../helpers/test-ca.js';

// Revocation-cache poisoning (issue 13, section 2), against the real agent and SoftHSM, with openssl as
// both the real CA and the attacker's fake one. The token holds genuinely revoked certificates. A
// compromised RA page builds a fake CA with the real issuing CA's name and key identifier, and
// look-alikes of the revoked certificates (same issuer name, AKI and serial) whose CRL or OCSP
// responder says `good`. Whatever it does with them, the genuine certificates must still read
// `revoked`, to sites and to the `block-revoked` signing policy.

const SO_PIN = 'So77Poison';
const PIN = '66190423';
const RA = 'https://ra.example';
const BANK = 'https://bank.example';
const BIN = path.join(REPO, 'bin', 'kelid.js');

interface CertificateJson {
  certificateId: string;
  fingerprintSha256: string;
}

const sha256 = (der: Uint8Array): string => createHash('sha256').update(der).digest('hex');

describe('Revocation cache poisoning with look-alike certificates and a fake CA', () => {
  const hsm = new SoftHsm('kelid-e2e-poison-hsm-');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-e2e-poison-'));
  const cliConfig = path.join(work, 'cli.json');
  let pki: TestPki;
  let fake: TestPki;
  let agent: AgentProcess;
  let ra: RpcClient;
  let bank: RpcClient;
  let tokenId: string;

  const kelid = (args: string[], stdin = ''): string => {
    const r = spawnSync(process.execPath, [BIN, ...args, '--config', cliConfig], {
      input: stdin,
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`kelid ${args[0]} failed: ${r.stderr}`);
    return r.stdout;
  };

  /** A key made on the token by `kelid keygen`, and its CSR. */
  const tokenKey = (label: string): string =>
    (
      JSON.parse(
        kelid(
          ['keygen', '-a', 'p256', '-l', label, '--subject', `CN=${label},C=IR`, '--pin-stdin', '--json'],
          `${PIN}\n`,
        ),
      ) as { csr: string }
    ).csr;

  /** Write `certificate` with `chain` onto the token (`kelid import`, before the agent runs). */
  const importCli = (certificate: TestCertificate, chain: string): void => {
    const cert = path.join(work, `${certificate.name}.pem`);
    const chainFile = path.join(work, `${certificate.name}-chain.pem`);
    fs.writeFileSync(cert, certificate.pem);
    fs.writeFileSync(chainFile, chain);
    kelid(['import', '--cert', cert, '--chain', chainFile, '--pin-stdin', '--json'], `${PIN}\n`);
  };

  /** A certificate of the real CA for a new token key, imported with the real chain, then revoked. */
  const revokedOnToken = async (name: string, options: LeafOptions): Promise<{ cert: TestCertificate }> => {
    const csr = tokenKey(name);
    const cert = await pki.issueFromCsr(name, csr, options);
    importCli(cert, pki.chainPem);
    await pki.revoke(cert, 'keyCompromise');
    return { cert };
  };

  /** The fake CA's certificate with the same issuer name, AKI and serial as `genuine`. */
  const lookAlike = async (
    name: string,
    genuine: TestCertificate,
    options: LeafOptions = {},
  ): Promise<TestCertificate> => {
    const cert = await fake.issueLeaf(name, { issuer: 'root', serial: genuine.serial, ...options });
    const a = describeCertificate(cert.der);
    const b = describeCertificate(genuine.der);
    // The attack's premise: everything the old cache key was made of is identical.
    expect(Buffer.from(a.issuerDer)).toEqual(Buffer.from(b.issuerDer));
    expect(a.authorityKeyIdentifier).toBe(b.authorityKeyIdentifier);
    expect(a.serialNumber).toBe(b.serialNumber);
    return cert;
  };

  /** The bank's own id of a certificate on the token (ids are per origin). */
  const bankId = async (certificate: TestCertificate): Promise<string> => {
    const { certificates } = await bank.call<{ certificates: CertificateJson[] }>('certificates.list', {});
    const found = certificates.find((c) => c.fingerprintSha256 === sha256(certificate.der));
    if (!found) throw new Error(`${certificate.name} is not on the token`);
    return found.certificateId;
  };

  /** Sign with the genuine certificate as an approved site: refused before any prompt, or a failure. */
  const signRefusal = async (certificateId: string): Promise<RpcError> => {
    const id = bank.nextId;
    const call = bank.call('sign.cms', {
      certificateId,
      content: Buffer.from('a contract').toString('base64'),
      digestAlgorithm: 'SHA-256',
      summary: 'contract',
    });
    const prompted = bank.consentFor(id).then((requestId) => ({ prompted: requestId }));
    const outcome: unknown = await Promise.race([
      call.then(
        () => 'signed',
        (e: unknown) => e,
      ),
      prompted,
    ]);
    if (typeof outcome === 'object' && outcome !== null && 'prompted' in outcome) {
      await agent.deny(String(outcome.prompted));
      throw new Error('the revoked certificate reached the signing prompt');
    }
    if (!(outcome instanceof RpcError)) throw new Error(`unexpected outcome ${String(outcome)}`);
    return outcome;
  };

  let crlCase: { cert: TestCertificate };
  let ocspCase: { cert: TestCertificate };
  let storedCase: { cert: TestCertificate };
  let noAiaCase: { cert: TestCertificate };
  let storedLookAlike: TestCertificate;

  beforeAll(async () => {
    pki = await TestPki.create();
    await pki.startOcsp();
    const intermediate = describeCertificate(pki.intermediate.der);
    // The attacker's CA: a root with the real issuing CA's name and subjectKeyIdentifier (so its
    // certificates carry the same AKI), its own key, and an empty CRL at a URL of its own.
    fake = await TestPki.create({
      rootSubject: '/C=IR/O=Kelid Test/CN=Kelid Test Issuing CA',
      rootSubjectKeyIdentifier: intermediate.subjectKeyIdentifier!,
    });
    expect(Buffer.from(describeCertificate(fake.root.der).subjectDer)).toEqual(
      Buffer.from(intermediate.subjectDer),
    );

    fs.writeFileSync(
      cliConfig,
      JSON.stringify({
        autoDetectModules: false,
        modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
      }),
    );
    hsm.initToken('citizen', SO_PIN, PIN);
    crlCase = await revokedOnToken('crl-genuine', { ocspUrl: null });
    ocspCase = await revokedOnToken('ocsp-genuine', { crlUrl: null });
    storedCase = await revokedOnToken('stored-genuine', { ocspUrl: null });
    // No caIssuers URL: the issuer can only come from the token, where the fake CA will sit too.
    noAiaCase = await revokedOnToken('no-aia-genuine', { ocspUrl: null, caIssuersUrl: null });
    await pki.generateCrl();
    // A key for the compromised RA's look-alike: certificates.import needs a matching key on the token.
    const raCsr = tokenKey('ra-planted');
    storedLookAlike = await fake.issueFromCsr('stored-look-alike', raCsr, {
      issuer: 'root',
      serial: storedCase.cert.serial,
      ocspUrl: null,
    });
    await fake.generateCrl({ ca: 'root' });
    await fake.startOcsp({ ca: 'root', signer: 'ca' });

    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-poison-',
      config: {
        modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
        raOrigins: [RA],
        sites: [BANK],
        // The worst case for this attack: the fake CA's URLs (on 127.0.0.1) are reachable.
        revocation: { enforceOnSign: 'block-revoked', timeoutSeconds: 5, allowPrivateNetworks: true },
      },
    });
    ra = await agent.connect(RA);
    bank = await agent.connect(BANK);
    const { tokens } = await ra.call<{ tokens: Array<{ tokenId: string; label: string }> }>('tokens.list');
    tokenId = tokens.find((t) => t.label === 'citizen')!.tokenId;
  });

  afterAll(async () => {
    await ra?.close();
    await bank?.close();
    await agent?.stop();
    agent?.cleanup();
    hsm.cleanup();
    await pki?.cleanup();
    await fake?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('a page-supplied look-alike and fake CA with an empty CRL: the genuine certificate stays revoked', async () => {
    const alike = await lookAlike('crl-look-alike', crlCase.cert, { ocspUrl: null });
    const before = fake.http.requests.length;
    const poisoned = await ra.call<{ status: string; source: string }>('certificates.status', {
      certificate: alike.pem,
      issuer: fake.root.pem,
    });
    // The look-alike is good in the fake CA's eyes: the attack ran, its CRL was fetched.
    expect(poisoned).toMatchObject({ status: 'good', source: 'crl' });
    expect(fake.http.requests.slice(before).map((r) => r.url)).toContain('/root.crl');

    const byId = await bank.call<{ status: string; source: string }>('certificates.status', {
      certificateId: await bankId(crlCase.cert),
    });
    expect(byId).toMatchObject({ status: 'revoked', source: 'crl', reason: 'keyCompromise' });
    expect((await signRefusal(await bankId(crlCase.cert))).data?.code).toBe('ERR_CERTIFICATE_REVOKED');
    // The page's own copy of the genuine certificate, with the fake CA as its issuer, changes nothing.
    expect(
      await ra.call('certificates.status', { certificate: crlCase.cert.pem, issuer: fake.root.pem }),
    ).toMatchObject({ status: 'revoked' });
    expect((await signRefusal(await bankId(crlCase.cert))).data?.code).toBe('ERR_CERTIFICATE_REVOKED');
  });

  it('the OCSP variant: a look-alike whose responder (signed by the fake CA) says good', async () => {
    const alike = await lookAlike('ocsp-look-alike', ocspCase.cert, { crlUrl: null, ocspUrl: fake.ocspUrl });
    const poisoned = await ra.call<{ status: string; source: string }>('certificates.status', {
      certificate: alike.pem,
      issuer: fake.root.pem,
    });
    expect(poisoned).toMatchObject({ status: 'good', source: 'ocsp' });
    const byId = await bank.call('certificates.status', { certificateId: await bankId(ocspCase.cert) });
    expect(byId).toMatchObject({ status: 'revoked', source: 'ocsp' });
    expect((await signRefusal(await bankId(ocspCase.cert))).data?.code).toBe('ERR_CERTIFICATE_REVOKED');
  });

  it('a compromised RA stores the fake CA and a look-alike on the token (certificates.import): still revoked', async () => {
    const id = ra.nextId;
    const imported = ra.call<{ certificate: CertificateJson }>('certificates.import', {
      tokenId,
      certificate: storedLookAlike.pem,
      chain: [fake.root.pem],
      label: 'ra-planted',
    });
    const requestId = await ra.consentFor(id);
    const approved = await agent.consent(requestId, { userPin: PIN });
    expect(approved.status, approved.stderr).toBe(0);
    const planted = (await imported).certificate;

    // By id, from the token: the fake CA on the token is the look-alike's issuer, its CRL says good.
    expect(await ra.call('certificates.status', { certificateId: planted.certificateId })).toMatchObject({
      status: 'good',
      source: 'crl',
    });
    expect(
      await bank.call('certificates.status', { certificateId: await bankId(storedCase.cert) }),
    ).toMatchObject({ status: 'revoked', source: 'crl' });
    expect((await signRefusal(await bankId(storedCase.cert))).data?.code).toBe('ERR_CERTIFICATE_REVOKED');
  });

  it('with the fake CA on the token, a certificate without caIssuers still finds its real issuer there', async () => {
    // The fake CA (stored by the previous test) has the real issuing CA's name: the token's chain must
    // skip it, or the check ends "unavailable" and block-revoked lets the revoked certificate sign.
    for (let i = 0; i < 3; i++) {
      expect(
        await bank.call('certificates.status', { certificateId: await bankId(noAiaCase.cert) }),
      ).toMatchObject({ status: 'revoked' });
    }
    expect((await signRefusal(await bankId(noAiaCase.cert))).data?.code).toBe('ERR_CERTIFICATE_REVOKED');
  });

  it('audit lines of status checks name the SHA-256 of the certificate checked', () => {
    const lines = fs
      .readFileSync(path.join(agent.stateDir, 'audit.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { method: string; origin: string; certificateSha256?: string });
    const checked = lines.filter((l) => l.method === 'certificates.status' && l.origin === RA);
    expect(checked.length).toBeGreaterThanOrEqual(3);
    for (const l of checked) expect(l.certificateSha256).toMatch(/^[0-9a-f]{64}$/);
    const hashes = checked.map((l) => l.certificateSha256);
    expect(hashes).toContain(sha256(storedLookAlike.der));
    expect(hashes).toContain(sha256(crlCase.cert.der));
  });
});
