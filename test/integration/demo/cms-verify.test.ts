import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DemoCa } from '../../../demo/ca.mjs';
import { pemToDer, verifyCms } from '../../../demo/signing-site/cms-verify.js';

const openssl = (args: string[]): Buffer =>
  execFileSync('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'] });

describe('verifyCms (demo signing site)', () => {
  let dir: string;
  let ca: DemoCa;
  let root: Uint8Array;
  const content = Buffer.from('قرارداد — contract 42\n', 'utf8');

  /** A key and a certificate from the demo CA; returns [key file, cert file]. */
  const signer = async (name: string, keyArgs: string[]): Promise<[string, string]> => {
    const key = join(dir, `${name}.key`);
    openssl([
      'req',
      '-new',
      '-newkey',
      ...keyArgs,
      '-nodes',
      '-utf8',
      '-keyout',
      key,
      '-out',
      join(dir, `${name}.csr`),
      '-subj',
      `/C=IR/CN=امضاکننده ${name}`,
    ]);
    const { certificate } = await ca.issue(readFileSync(join(dir, `${name}.csr`), 'utf8'));
    writeFileSync(join(dir, `${name}.pem`), certificate);
    return [key, join(dir, `${name}.pem`)];
  };

  const sign = (key: string, cert: string, extra: string[]): Uint8Array =>
    new Uint8Array(
      openssl([
        'cms',
        '-sign',
        '-binary',
        '-cades',
        '-md',
        'sha256',
        '-in',
        join(dir, 'content.txt'),
        '-signer',
        cert,
        '-inkey',
        key,
        '-certfile',
        join(dir, 'issuing.pem'),
        '-outform',
        'DER',
        ...extra,
      ]),
    );

  let rsa: [string, string];
  let ec: [string, string];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kelid-cms-verify-'));
    ca = new DemoCa({ dir: join(dir, 'ca'), baseUrl: 'http://127.0.0.1:1' });
    await ca.init();
    root = pemToDer(ca.rootPem);
    writeFileSync(join(dir, 'issuing.pem'), ca.issuingPem);
    writeFileSync(join(dir, 'content.txt'), content);
    rsa = await signer('rsa', ['rsa:2048']);
    ec = await signer('ec', ['ec', '-pkeyopt', 'ec_paramgen_curve:P-384']);
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('accepts an openssl detached CAdES signature (RSA) and reports the signer and chain', async () => {
    const v = await verifyCms(sign(...rsa, []), { content, trustedRoots: [root] });
    expect(v.problems).toEqual([]);
    expect(v.valid).toBe(true);
    expect(v.attached).toBe(false);
    expect(v.signingCertificateBound).toBe(true);
    expect(v.chainTrusted).toBe(true);
    expect(v.signer.subject).toBe('CN=امضاکننده rsa, C=IR');
    expect(v.chain.map((c) => c.subject)).toEqual([
      'CN=امضاکننده rsa, C=IR',
      'CN=Kelid Demo Issuing CA, O=Kelid Demo, C=IR',
      'CN=Kelid Demo Root CA, O=Kelid Demo, C=IR',
    ]);
    expect(v.signer.keyUsage).toEqual(['digitalSignature', 'nonRepudiation']);
  });

  it('accepts an attached ECDSA P-384 signature and returns its content', async () => {
    const v = await verifyCms(sign(...ec, ['-nodetach']), { trustedRoots: [root] });
    expect(v.problems).toEqual([]);
    expect(Buffer.from(v.content ?? []).equals(content)).toBe(true);
  });

  it('accepts an RSA-PSS signature', async () => {
    const v = await verifyCms(sign(...rsa, ['-keyopt', 'rsa_padding_mode:pss']), {
      content,
      trustedRoots: [root],
    });
    expect(v.problems).toEqual([]);
  });

  it('checks a detached signature against a digest instead of the content', async () => {
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', content));
    const v = await verifyCms(sign(...ec, []), { digest, trustedRoots: [root] });
    expect(v.valid).toBe(true);
    digest[0] ^= 1;
    const bad = await verifyCms(sign(...ec, []), { digest, trustedRoots: [root] });
    expect(bad.contentDigestMatches).toBe(false);
    expect(bad.valid).toBe(false);
  });

  it('rejects changed content, a changed signature and an untrusted root', async () => {
    const der = sign(...rsa, []);
    const changed = await verifyCms(der, { content: Buffer.from('contract 43'), trustedRoots: [root] });
    expect(changed.contentDigestMatches).toBe(false);
    expect(changed.valid).toBe(false);

    const tampered = Uint8Array.from(der);
    // The RSA signature value sits at the end of the SignerInfo: flip a bit inside it.
    tampered[tampered.length - 10] ^= 0x01;
    const broken = await verifyCms(tampered, { content, trustedRoots: [root] });
    expect(broken.signatureValid).toBe(false);
    expect(broken.valid).toBe(false);

    const untrusted = await verifyCms(der, { content });
    expect(untrusted.chainTrusted).toBe(false);
    expect(untrusted.valid).toBe(false);
  });
});
