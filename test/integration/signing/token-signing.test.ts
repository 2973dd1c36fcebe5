import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AsnConvert } from '@peculiar/asn1-schema';
import { ContentInfo, SignedData } from '@peculiar/asn1-cms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PIN_POLICY } from '../../../src/tokens/pin-policy.js';
import { isKelidError } from '../../../src/model/errors.js';
import type { HostMethods, ModuleHost } from '../../../src/pkcs11/host-protocol.js';
import { ModuleManager } from '../../../src/pkcs11/module-manager.js';
import type { LoadedModule } from '../../../src/pkcs11/module-manager.js';
import type { Certificate, DigestAlgorithm, SignatureScheme } from '../../../src/model/types.js';
import { verifyAuthToken } from '../../../src/signing/auth-token.js';
import { SigningService } from '../../../src/signing/signing-service.js';
import { ProvisioningService } from '../../../src/tokens/provisioning-service.js';
import { TokenService } from '../../../src/tokens/token-service.js';
import { opensslCmsVerify } from '../../helpers/openssl-cms.js';
import { describeBackends, skipOn } from '../../helpers/token-backend.js';
import type { TokenBackend } from '../../helpers/token-backend.js';
import { REQUESTED_EXTENSIONS_ONLY, TestPki } from '../../helpers/test-ca.js';
import { startTestTsa } from '../../helpers/test-tsa.js';
import type { TestTsa } from '../../helpers/test-tsa.js';

const PIN = '2468';

/** Counts host calls by method at the pkcs11/ seam (logins, signatures) and can abort after N signatures. */
class Seam {
  counts = new Map<string, number>();
  onSign: (() => void) | undefined;
  constructor(private readonly inner: ModuleManager) {}
  count(m: string): number {
    return this.counts.get(m) ?? 0;
  }
  reset(): void {
    this.counts.clear();
  }
  modules(): LoadedModule[] {
    return this.inner.modules().map((m) => {
      const host: ModuleHost = {
        moduleId: m.host.moduleId,
        call: async (method, params, options) => {
          this.counts.set(method, this.count(method) + 1);
          if (method === 'sign' || method === 'signMany') this.onSign?.();
          const result = await m.host.call(method, params, options);
          const made =
            method === 'sign'
              ? 1
              : method === 'signMany'
                ? (result as HostMethods['signMany']['result']).signatures.length
                : 0;
          this.counts.set('signatures', this.count('signatures') + made);
          return result;
        },
      };
      return { ...m, host };
    });
  }
}

function run(cmd: string, args: string[], cwd: string): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

// On every backend of the suite (test/helpers/token-backend.ts): SoftHSM, and tpm2-pkcs11 on swtpm.
describeBackends('SigningService (checked by openssl)', (b) => {
  let hsm: TokenBackend;
  const work = mkdtempSync(join(tmpdir(), 'kelid-sign-work-'));
  let pki: TestPki;
  let modules: ModuleManager;
  let seam: Seam;
  let signing: SigningService;
  let tsa: TestTsa;
  const certs: Record<'rsa' | 'p256' | 'p384', Certificate> = {} as never;
  let authCert: Certificate;
  const rootFile = join(work, 'root.pem');

  beforeAll(async () => {
    hsm = await b.start('kelid-sign-');
    hsm.initToken('signer', 'SoPin123', PIN);
    pki = await TestPki.create();
    modules = new ModuleManager([{ ...hsm.moduleConfig(), quirks: hsm.quirks }]);
    await modules.start();
    seam = new Seam(modules);
    const tokens = new TokenService(seam);
    const provisioning = new ProvisioningService(tokens, DEFAULT_PIN_POLICY);
    const tokenId = (await tokens.listTokens()).find((t) => t.label === 'signer')!.tokenId;
    const algs = {
      rsa: { name: 'RSA', modulusLength: 2048 },
      p256: { name: 'EC', namedCurve: 'P-256' },
      p384: { name: 'EC', namedCurve: 'P-384' },
    } as const;
    for (const [name, algorithm] of Object.entries(algs) as Array<
      [keyof typeof algs, (typeof algs)[keyof typeof algs]]
    >) {
      const { csr } = await provisioning.generateKey(tokenId, PIN, {
        algorithm,
        label: name,
        csr: { subject: `CN=امضاکننده ${name},C=IR`, keyUsage: ['digitalSignature', 'nonRepudiation'] },
      });
      const leaf = await pki.issueFromCsr(name, csr!, REQUESTED_EXTENSIONS_ONLY);
      certs[name] = await provisioning.importCertificate(tokenId, PIN, {
        certificate: leaf.pem,
        chain: [pki.intermediate.pem, pki.root.pem],
      });
    }
    // A login certificate: the key-purpose rule keeps auth.challenge away from the signing keys above.
    const { csr: authCsr } = await provisioning.generateKey(tokenId, PIN, {
      algorithm: algs.p256,
      label: 'auth',
      csr: { subject: 'CN=ورود,C=IR', keyUsage: ['digitalSignature'], extendedKeyUsage: ['clientAuth'] },
    });
    const authLeaf = await pki.issueFromCsr('auth', authCsr!, REQUESTED_EXTENSIONS_ONLY);
    authCert = await provisioning.importCertificate(tokenId, PIN, {
      certificate: authLeaf.pem,
      chain: [pki.intermediate.pem, pki.root.pem],
    });
    writeFileSync(rootFile, pki.root.pem);
    tsa = await startTestTsa();
    signing = new SigningService(tokens, { tsaUrl: tsa.url });
  });

  afterAll(async () => {
    await tsa?.close();
    await modules?.stop();
    hsm?.cleanup();
    await pki?.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  describe('#signCms', () => {
    const cases: Array<{ key: 'rsa' | 'p256' | 'p384'; alg: DigestAlgorithm; attached: boolean }> = [
      { key: 'rsa', alg: 'SHA-256', attached: false },
      { key: 'rsa', alg: 'SHA-384', attached: true },
      { key: 'p256', alg: 'SHA-256', attached: true },
      { key: 'p256', alg: 'SHA-384', attached: false },
      { key: 'p384', alg: 'SHA-384', attached: false },
    ];
    for (const c of cases) {
      it(`makes a ${c.attached ? 'attached' : 'detached'} CAdES-B-B signature with ${c.key} and ${c.alg} that openssl verifies with the chain from the token`, async () => {
        const content = Buffer.from(`سند شماره ${c.key} ${c.alg}\n`, 'utf8');
        const { cms } = await signing.signCms(certs[c.key].certificateId, PIN, {
          content,
          digestAlgorithm: c.alg,
          detached: !c.attached,
        });
        const dir = mkdtempSync(join(work, 'cms-'));
        writeFileSync(join(dir, 'data.txt'), content);
        writeFileSync(join(dir, 'sig.p7s'), cms);
        const verify = (signature: string, data?: string) =>
          opensslCmsVerify({
            signature,
            caFile: rootFile,
            cwd: dir,
            ...(c.attached ? {} : { content: data }),
          });
        expect(verify('sig.p7s', 'data.txt').output).toContain('CAdES Verification successful');
        // tampered content
        writeFileSync(join(dir, 'bad.txt'), Buffer.concat([content, Buffer.from('x')]));
        if (!c.attached) expect(verify('sig.p7s', 'bad.txt').ok).toBe(false);
        // tampered signature value (last byte of the SignerInfo signature is near the end)
        const bad = Buffer.from(cms);
        bad[bad.length - 3]! ^= 0x01;
        writeFileSync(join(dir, 'sig.p7s'), bad);
        expect(verify('sig.p7s', 'data.txt').ok).toBe(false);
      });
    }

    it('shows the CAdES signed attributes in openssl cms -cmsout -print', async () => {
      const { cms } = await signing.signCms(certs.rsa.certificateId, PIN, {
        content: Buffer.from('x'),
        digestAlgorithm: 'SHA-256',
      });
      writeFileSync(join(work, 'print.p7s'), cms);
      const out = execFileSync(
        'openssl',
        ['cms', '-cmsout', '-print', '-inform', 'DER', '-in', 'print.p7s'],
        { cwd: work, encoding: 'utf8' },
      );
      for (const a of ['contentType', 'signingTime', 'messageDigest', 'id-smime-aa-signingCertificateV2'])
        expect(out).toContain(a);
    });

    it('signs a precomputed digest as a detached signature that verifies against the content', async () => {
      const content = randomBytes(5000);
      const digest = createHash('sha256').update(content).digest();
      const { cms } = await signing.signCms(certs.p256.certificateId, PIN, {
        digest,
        digestAlgorithm: 'SHA-256',
      });
      writeFileSync(join(work, 'pre.bin'), content);
      writeFileSync(join(work, 'pre.p7s'), cms);
      const r = opensslCmsVerify({ signature: 'pre.p7s', content: 'pre.bin', caFile: rootFile, cwd: work });
      expect(r.output).toContain('CAdES Verification successful');
    });

    it('adds an RFC 3161 timestamp (CAdES-B-T) that openssl ts -verify accepts', async () => {
      const content = Buffer.from('timestamped document');
      const { cms } = await signing.signCms(certs.rsa.certificateId, PIN, {
        content,
        digestAlgorithm: 'SHA-256',
        timestamp: true,
      });
      writeFileSync(join(work, 'bt.bin'), content);
      writeFileSync(join(work, 'bt.p7s'), cms);
      const v = opensslCmsVerify({ signature: 'bt.p7s', content: 'bt.bin', caFile: rootFile, cwd: work });
      expect(v.output).toContain('CAdES Verification successful');
      const signed = AsnConvert.parse(AsnConvert.parse(cms, ContentInfo).content, SignedData);
      const si = signed.signerInfos[0]!;
      const attr = si.unsignedAttrs?.find((a) => a.attrType === '1.2.840.113549.1.9.16.2.14');
      expect(attr).toBeDefined();
      writeFileSync(join(work, 'token.der'), Buffer.from(attr!.attrValues[0]!));
      writeFileSync(join(work, 'sigvalue.bin'), Buffer.from(si.signature.buffer));
      const ts = run(
        'openssl',
        ['ts', '-verify', '-in', 'token.der', '-token_in', '-data', 'sigvalue.bin', '-CAfile', tsa.caCertPem],
        work,
      );
      expect(ts.out).toContain('Verification: OK');
    });
  });

  describe('#signRaw', () => {
    const schemes: Array<{
      key: 'rsa' | 'p256' | 'p384';
      scheme: SignatureScheme;
      alg: DigestAlgorithm;
      opts: string[];
    }> = [
      { key: 'rsa', scheme: 'RSASSA-PKCS1-v1_5', alg: 'SHA-256', opts: ['-pkeyopt', 'digest:sha256'] },
      { key: 'rsa', scheme: 'RSASSA-PKCS1-v1_5', alg: 'SHA-512', opts: ['-pkeyopt', 'digest:sha512'] },
      {
        key: 'rsa',
        scheme: 'RSA-PSS',
        alg: 'SHA-256',
        opts: [
          '-pkeyopt',
          'digest:sha256',
          '-pkeyopt',
          'rsa_padding_mode:pss',
          '-pkeyopt',
          'rsa_pss_saltlen:32',
        ],
      },
      {
        key: 'rsa',
        scheme: 'RSA-PSS',
        alg: 'SHA-384',
        opts: [
          '-pkeyopt',
          'digest:sha384',
          '-pkeyopt',
          'rsa_padding_mode:pss',
          '-pkeyopt',
          'rsa_pss_saltlen:48',
        ],
      },
      { key: 'p256', scheme: 'ECDSA', alg: 'SHA-256', opts: [] },
      { key: 'p384', scheme: 'ECDSA', alg: 'SHA-384', opts: [] },
    ];
    for (const s of schemes) {
      (s.scheme === 'RSASSA-PKCS1-v1_5'
        ? skipOn(
            b,
            'tpm2',
            'tpm2-pkcs11 performs CKM_RSA_PKCS as a decryption, so a raw PKCS#1 v1.5 signature of a bare digest is refused up front (tpm2-cli.test.ts checks the refusal)',
          )
        : it)(
        `signs a ${s.alg} digest with ${s.key} ${s.scheme}; openssl pkeyutl -verify accepts it`,
        async () => {
          const digest = createHash(s.alg.replace('-', '').toLowerCase()).update(randomBytes(64)).digest();
          const { signature, signatureAlgorithm } = await signing.signRaw(certs[s.key].certificateId, PIN, {
            digest,
            digestAlgorithm: s.alg,
            scheme: s.scheme,
          });
          expect(signatureAlgorithm).toMatch(/^(RS|PS|ES)(256|384|512)$/);
          const dir = mkdtempSync(join(work, 'raw-'));
          writeFileSync(join(dir, 'd.bin'), digest);
          writeFileSync(join(dir, 's.bin'), signature);
          writeFileSync(join(dir, 'pub.der'), Buffer.from(certs[s.key].certificate, 'base64'));
          execFileSync(
            'openssl',
            ['x509', '-inform', 'DER', '-in', 'pub.der', '-pubkey', '-noout', '-out', 'pub.pem'],
            { cwd: dir },
          );
          const verify = () =>
            run(
              'openssl',
              [
                'pkeyutl',
                '-verify',
                '-pubin',
                '-inkey',
                'pub.pem',
                '-in',
                'd.bin',
                '-sigfile',
                's.bin',
                ...s.opts,
              ],
              dir,
            );
          expect(verify().out).toContain('Signature Verified Successfully');
          signature[signature.length - 1]! ^= 1;
          writeFileSync(join(dir, 's.bin'), signature);
          expect(verify().ok).toBe(false);
        },
      );
    }

    it('refuses RSA-PSS for an EC key and a digest of the wrong length', async () => {
      const e1 = await signing
        .signRaw(certs.p256.certificateId, PIN, {
          digest: randomBytes(32),
          digestAlgorithm: 'SHA-256',
          scheme: 'RSA-PSS',
        })
        .catch((e: unknown) => e);
      expect(isKelidError(e1) && ['ERR_MECHANISM_UNSUPPORTED', 'ERR_INVALID_INPUT'].includes(e1.code)).toBe(
        true,
      );
      const e2 = await signing
        .signRaw(certs.rsa.certificateId, PIN, { digest: randomBytes(20), digestAlgorithm: 'SHA-256' })
        .catch((e: unknown) => e);
      expect(isKelidError(e2, 'ERR_INVALID_INPUT')).toBe(true);
    });
  });

  describe('#signBatch', () => {
    skipOn(
      b,
      'tpm2',
      '10,000 signatures on swtpm take minutes; batches on tpm2 are checked by the next two tests and ra-flow.test.ts',
    )('signs 10,000 digests under one login, in order, each verifiable', async () => {
      const data = Array.from({ length: 10_000 }, (_, i) => Buffer.from(`document ${i}`));
      const digests = data.map((d) => createHash('sha256').update(d).digest());
      seam.reset();
      const before = process.memoryUsage().heapUsed;
      const { results, cancelled } = await signing.signBatch(certs.p256.certificateId, PIN, {
        format: 'raw',
        digestAlgorithm: 'SHA-256',
        digests,
      });
      expect(cancelled).toBe(false);
      expect(results.length).toBe(10_000);
      expect(seam.count('login') + seam.count('openLogin')).toBe(1);
      expect(seam.count('signatures')).toBe(10_000);
      // runs of signatures per host call, not one IPC round trip each
      expect(seam.count('signMany')).toBeLessThan(10_000 / 10);
      const pub = createPublicKey(
        `-----BEGIN CERTIFICATE-----\n${certs.p256.certificate}\n-----END CERTIFICATE-----`,
      );
      results.forEach((r, i) => {
        expect(verify('sha256', data[i]!, pub, (r as { signature: Uint8Array }).signature)).toBe(true);
      });
      // bounded memory: 10,000 small signatures, not 10,000 copies of anything large
      expect(process.memoryUsage().heapUsed - before).toBeLessThan(200 * 1024 * 1024);
    });

    it('stops a raw batch between runs when cancelled and returns the verifiable signatures made', async () => {
      const controller = new AbortController();
      seam.reset();
      seam.onSign = () => controller.abort();
      const data = Array.from({ length: 5000 }, (_, i) => Buffer.from(`cancelled ${i}`));
      const r = await signing.signBatch(
        certs.p256.certificateId,
        PIN,
        {
          format: 'raw',
          digestAlgorithm: 'SHA-256',
          digests: data.map((d) => createHash('sha256').update(d).digest()),
        },
        { signal: controller.signal },
      );
      seam.onSign = undefined;
      expect(r.cancelled).toBe(true);
      expect(seam.count('signMany')).toBe(1);
      expect(r.results.length).toBe(seam.count('signatures'));
      expect(r.results.length).toBeGreaterThan(0);
      expect(r.results.length).toBeLessThan(5000);
      const pub = createPublicKey(
        `-----BEGIN CERTIFICATE-----\n${certs.p256.certificate}\n-----END CERTIFICATE-----`,
      );
      r.results.forEach((x, i) =>
        expect(verify('sha256', data[i]!, pub, (x as { signature: Uint8Array }).signature)).toBe(true),
      );
    });

    it('stops after the current item when cancelled and reports what was signed', async () => {
      const controller = new AbortController();
      let n = 0;
      seam.onSign = () => {
        if (++n === 5) controller.abort();
      };
      const digests = Array.from({ length: 100 }, () => randomBytes(32));
      const r = await signing.signBatch(
        certs.p256.certificateId,
        PIN,
        { format: 'cms', digestAlgorithm: 'SHA-256', digests },
        { signal: controller.signal },
      );
      seam.onSign = undefined;
      expect(r.cancelled).toBe(true);
      expect(r.results.length).toBe(5);
      expect(r.results.every((x) => 'cms' in x)).toBe(true);
    });
  });

  describe('concurrent consented operations on one token', () => {
    it('runs them one login at a time, so no logout ends another operation', async () => {
      // Login state belongs to the token: overlapping operations once failed with CKR_OBJECT_HANDLE_INVALID
      // when the first one's C_Logout invalidated the second one's key handle.
      let active = 0;
      let maxActive = 0;
      const inner = seam.modules.bind(seam);
      const watching = {
        modules: () =>
          inner().map((m) => ({
            ...m,
            host: {
              moduleId: m.host.moduleId,
              call: ((method, params, options) => {
                if (method === 'login' || method === 'openLogin') maxActive = Math.max(maxActive, ++active);
                if (
                  method === 'logout' ||
                  (method === 'logoutClose' && (params as { logout: boolean }).logout)
                )
                  active--;
                return m.host.call(method, params, options);
              }) as ModuleHost['call'],
            },
          })),
      };
      const concurrent = new SigningService(new TokenService(watching));
      const data = Array.from({ length: 12 }, (_, i) => Buffer.from(`concurrent document ${i}`));
      const digest = (d: Buffer): Buffer => createHash('sha256').update(d).digest();
      const [batch, ...singles] = await Promise.all([
        concurrent.signBatch(certs.p256.certificateId, PIN, {
          format: 'raw',
          digestAlgorithm: 'SHA-256',
          digests: data.map(digest),
        }),
        ...data.map((d) =>
          concurrent.signRaw(certs.p256.certificateId, PIN, {
            digest: digest(d),
            digestAlgorithm: 'SHA-256',
          }),
        ),
      ]);
      const pub = createPublicKey(
        `-----BEGIN CERTIFICATE-----\n${certs.p256.certificate}\n-----END CERTIFICATE-----`,
      );
      singles.forEach((r, i) => expect(verify('sha256', data[i]!, pub, r.signature)).toBe(true));
      batch.results.forEach((r, i) =>
        expect(verify('sha256', data[i]!, pub, (r as { signature: Uint8Array }).signature)).toBe(true),
      );
      expect(maxActive).toBe(1);
      expect(active).toBe(0);
    });
  });

  describe('certificate locations', () => {
    it('remembers where a certificate is between operations, and forgets it after a write to a token', async () => {
      const tokens = new TokenService(seam);
      const provisioning = new ProvisioningService(tokens, DEFAULT_PIN_POLICY);
      const service = new SigningService(tokens);
      const tokenId = (await tokens.listTokens()).find((t) => t.label === 'signer')!.tokenId;
      const { key, csr } = await provisioning.generateKey(tokenId, PIN, {
        algorithm: { name: 'EC', namedCurve: 'P-256' },
        label: 'short-lived',
        csr: { subject: 'CN=short-lived,C=IR' },
      });
      const leaf = await pki.issueFromCsr('short-lived', csr!, REQUESTED_EXTENSIONS_ONLY);
      const cert = await provisioning.importCertificate(tokenId, PIN, { certificate: leaf.pem });
      const digest = { digest: randomBytes(32), digestAlgorithm: 'SHA-256' as const };

      await service.preflight(cert.certificateId);
      seam.reset();
      await service.signRaw(cert.certificateId, PIN, digest);
      expect(seam.count('listSlots')).toBe(0);

      // Deleting through this agent invalidates the location at once: the certificate is reported
      // missing (not its key, which a stale location would have led to).
      await provisioning.deleteObjects(tokenId, PIN, key.keyId, 'all');
      const e = await service.signRaw(cert.certificateId, PIN, digest).catch((x: unknown) => x);
      expect(isKelidError(e, 'ERR_CERTIFICATE_NOT_FOUND')).toBe(true);
    });
  });

  describe('#authChallenge', () => {
    it('makes a kelid-auth:1 token the exported verifier accepts, and rejects for another origin', async () => {
      const nonce = randomBytes(32);
      const token = await signing.authChallenge(authCert.certificateId, PIN, {
        origin: 'https://bank.example',
        nonce,
      });
      const roots = [pki.root.der];
      const intermediates = [pki.intermediate.der];
      const ok = await verifyAuthToken(token, {
        expectedOrigin: 'https://bank.example',
        expectedNonce: nonce,
        trustedRoots: roots,
        intermediates,
      });
      expect(ok.origin).toBe('https://bank.example');
      const bad = await verifyAuthToken(token, {
        expectedOrigin: 'https://evil.example',
        expectedNonce: nonce,
        trustedRoots: roots,
        intermediates,
      }).catch((e: unknown) => e);
      expect(isKelidError(bad, 'ERR_AUTH_TOKEN_INVALID')).toBe(true);
    });

    it('refuses a signing certificate, and sign.* refuse the login certificate, before any login (ERR_KEY_PURPOSE)', async () => {
      seam.reset();
      const nonce = randomBytes(32);
      const login = await signing
        .authChallenge(certs.p256.certificateId, PIN, { origin: 'https://bank.example', nonce })
        .catch((e: unknown) => e);
      expect(login).toMatchObject({ code: 'ERR_KEY_PURPOSE', data: { keyPurpose: 'signing' } });
      const digest = randomBytes(32);
      const refused = [
        await signing
          .signRaw(authCert.certificateId, PIN, { digest, digestAlgorithm: 'SHA-256' })
          .catch((e: unknown) => e),
        await signing
          .signCms(authCert.certificateId, PIN, { digest, digestAlgorithm: 'SHA-256' })
          .catch((e: unknown) => e),
        await signing
          .signBatch(authCert.certificateId, PIN, {
            format: 'raw',
            digestAlgorithm: 'SHA-256',
            digests: [digest],
          })
          .catch((e: unknown) => e),
        await signing
          .signBatch(authCert.certificateId, PIN, {
            format: 'cms',
            digestAlgorithm: 'SHA-256',
            digests: [digest],
          })
          .catch((e: unknown) => e),
      ];
      for (const e of refused)
        expect(e).toMatchObject({ code: 'ERR_KEY_PURPOSE', data: { keyPurpose: 'authentication' } });
      expect(seam.count('login') + seam.count('openLogin')).toBe(0);
      expect(seam.count('signatures')).toBe(0);
    });
  });
});
