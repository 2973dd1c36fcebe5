// softhsm-only: checks with p11tool (GnuTLS) as a third implementation against SoftHSM; the CLI flow on tpm2 is tpm2-cli.test.ts
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Certificate, Key, Token } from '../../../src/model/types.js';
import { SoftHsm } from '../../helpers/softhsm.js';
import { REQUESTED_EXTENSIONS_ONLY, TestPki } from '../../helpers/test-ca.js';

const BIN = join(process.cwd(), 'bin', 'kelid.js');
const SO = 'Officer99';
const PIN = '4815162342';

describe('kelid CLI (RA officer flow against SoftHSM, checked by openssl, pkcs11-tool and p11tool)', () => {
  const hsm = new SoftHsm('kelid-cli-');
  const work = mkdtempSync(join(tmpdir(), 'kelid-cli-work-'));
  const config = join(work, 'kelid.json');
  let pki: TestPki;
  let keyId = '';

  /** Each call is a new process: nothing survives between steps but the token itself. */
  function kelid(args: string[], stdin?: string): { code: number; stdout: string; stderr: string } {
    const r = spawnSync('node', [BIN, ...args, '--config', config], { input: stdin ?? '', encoding: 'utf8' });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }
  function json<T>(args: string[], stdin?: string): T {
    const r = kelid([...args, '--json'], stdin);
    if (r.code !== 0) throw new Error(`kelid ${args.join(' ')} failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  beforeAll(async () => {
    pki = await TestPki.create();
    writeFileSync(
      config,
      JSON.stringify({
        autoDetectModules: false,
        modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
      }),
    );
  });
  afterAll(async () => {
    hsm.cleanup();
    await pki?.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  it('prints help, and refuses unknown flags and commands with exit code 2', () => {
    const help = kelid(['--help']);
    expect(help.code).toBe(0);
    for (const c of [
      'tokens',
      'modules',
      'init',
      'pin',
      'keygen',
      'csr',
      'import',
      'keys',
      'certs',
      'delete',
      'sign',
    ]) {
      expect(help.stdout).toMatch(new RegExp(`\\n  ${c}\\b`));
    }
    expect(kelid(['tokens', '--no-such-flag']).code).toBe(2);
    expect(kelid(['frobnicate']).code).toBe(2);
  });

  it('lists modules as loaded, and a broken module entry as failed with the reason', () => {
    const broken = join(work, 'broken.json');
    writeFileSync(
      broken,
      JSON.stringify({
        autoDetectModules: false,
        modules: [
          { id: 'softhsm', path: hsm.module, env: hsm.env },
          { id: 'missing', path: '/nonexistent/lib.so' },
          { id: 'not-pkcs11', path: '/etc/hostname' },
        ],
      }),
    );
    const r = spawnSync('node', [BIN, 'modules', '--json', '--config', broken], { encoding: 'utf8' });
    const mods = JSON.parse(r.stdout) as Array<{ id: string; state: string; reason?: string }>;
    expect(mods.find((m) => m.id === 'softhsm')?.state).toBe('loaded');
    expect(mods.find((m) => m.id === 'missing')?.reason).toMatch(/cannot load the PKCS#11 module/);
    expect(mods.find((m) => m.id === 'not-pkcs11')?.state).toBe('failed');
    const text = spawnSync('node', [BIN, 'modules', '--config', broken], { encoding: 'utf8' }).stdout;
    expect(text).toMatch(/missing\s+FAILED/);
  });

  it('initializes the free token with PINs from stdin, never echoing them', () => {
    const r = kelid(['init', '--label', 'شهروند', '--pin-stdin'], `${SO}\n${PIN}\n`);
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(PIN);
    expect(r.stdout + r.stderr).not.toContain(SO);
    const tokens = json<Token[]>(['tokens']);
    const t = tokens.find((x) => x.label === 'شهروند');
    expect(t?.initialized).toBe(true);
    expect(t?.userPinInitialized).toBe(true);
  });

  it('day 1: generates the key and CSR in one process; openssl ca issues from it', async () => {
    const out = join(work, 'req.csr');
    const r = json<{ key: Key; csr: string }>(
      [
        'keygen',
        '--token',
        'شهروند',
        '-a',
        'rsa2048',
        '-l',
        'signing key',
        '--subject',
        'CN=مریم احمدی,O=دفترخانه ۱۲,C=IR',
        '--san',
        'email:maryam@example.ir',
        '--pin-stdin',
      ],
      `${PIN}\n`,
    );
    keyId = r.key.keyId;
    writeFileSync(out, r.csr);
    const v = spawnSync('openssl', ['req', '-in', out, '-verify', '-noout'], { encoding: 'utf8' });
    expect(v.stderr + v.stdout).toMatch(/self-signature verify OK/);
    const keys = json<Key[]>(['keys', '--token', 'شهروند']);
    expect(keys.find((k) => k.keyId === keyId)?.hasCertificate).toBe(false);
    const leaf = await pki.issueFromCsr('leaf', r.csr, REQUESTED_EXTENSIONS_ONLY);
    writeFileSync(join(work, 'leaf.pem'), leaf.pem);
    writeFileSync(join(work, 'chain.pem'), pki.chainPem);
  });

  it('day 8: a new process imports the certificate and chain next to the key', () => {
    const cert = json<Certificate>(
      [
        'import',
        '--token',
        'شهروند',
        '--cert',
        join(work, 'leaf.pem'),
        '--chain',
        join(work, 'chain.pem'),
        '--pin-stdin',
      ],
      `${PIN}\n`,
    );
    expect(cert.keyId).toBe(keyId);
    expect(cert.label).toBe('signing key');
    expect(cert.subject).toBe('CN=مریم احمدی,O=دفترخانه ۱۲,C=IR');
    const certs = json<Certificate[]>(['certs', '--token', 'شهروند']);
    expect(certs.filter((c) => c.category === 'user').length).toBe(1);
    expect(certs.filter((c) => c.category === 'authority').length).toBe(2);
  });

  it('shows key and certificate with the same ID and label in pkcs11-tool and p11tool', () => {
    const out = hsm.tool(['--token-label', 'شهروند', '--login', '--pin', PIN, '--list-objects']);
    const blocks = out.split(/\n(?=\S)/);
    const cert = blocks.find((b) => b.startsWith('Certificate Object') && b.includes(`ID:         ${keyId}`));
    const priv = blocks.find((b) => b.startsWith('Private Key Object'));
    expect(cert).toMatch(/label:\s+signing key/);
    expect(priv).toMatch(/label:\s+signing key/);
    expect(priv).toContain(`ID:         ${keyId}`);
    expect(priv).toMatch(/Access:\s+sensitive, always sensitive, never extractable, local/);
    const p11 = hsm.p11tool(
      ['--login', '--list-all-certs', 'pkcs11:token=%D8%B4%D9%87%D8%B1%D9%88%D9%86%D8%AF'],
      { GNUTLS_PIN: PIN },
    );
    expect(p11.match(/CKA_CERTIFICATE_CATEGORY=CA/g)?.length).toBe(2);
    // the certificate on the token is byte-identical to what the CA issued
    const fp = execFileSync(
      'openssl',
      ['x509', '-in', join(work, 'leaf.pem'), '-noout', '-fingerprint', '-sha256'],
      { encoding: 'utf8' },
    )
      .split('=')[1]!
      .trim()
      .replace(/:/g, '')
      .toLowerCase();
    const certs = json<Certificate[]>(['certs', '--token', 'شهروند']);
    expect(certs.find((c) => c.category === 'user')?.fingerprintSha256).toBe(fp);
  });

  it('re-imports idempotently, and refuses a certificate that matches no key without writing anything', () => {
    const before = json<Certificate[]>(['certs', '--token', 'شهروند']).length;
    json<Certificate>(
      [
        'import',
        '--token',
        'شهروند',
        '--cert',
        join(work, 'leaf.pem'),
        '--chain',
        join(work, 'chain.pem'),
        '--pin-stdin',
      ],
      `${PIN}\n`,
    );
    expect(json<Certificate[]>(['certs', '--token', 'شهروند']).length).toBe(before);
    const foreign = join(work, 'foreign.pem');
    writeFileSync(foreign, pki.intermediate.pem);
    const r = kelid(['import', '--token', 'شهروند', '--cert', foreign, '--pin-stdin'], `${PIN}\n`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ERR_CERTIFICATE_MISMATCH');
    expect(json<Certificate[]>(['certs', '--token', 'شهروند']).length).toBe(before);
  });

  it('deletes the certificate, then the key pair, each scope on its own', () => {
    const r1 = json<{ deleted: number }>(
      ['delete', '--token', 'شهروند', '-k', keyId, '--scope', 'certificate', '--pin-stdin'],
      `${PIN}\n`,
    );
    expect(r1.deleted).toBe(1);
    expect(json<Key[]>(['keys', '--token', 'شهروند']).find((k) => k.keyId === keyId)?.hasCertificate).toBe(
      false,
    );
    const r2 = json<{ deleted: number }>(
      ['delete', '--token', 'شهروند', '-k', keyId, '--scope', 'keypair', '--pin-stdin'],
      `${PIN}\n`,
    );
    expect(r2.deleted).toBe(2);
    expect(json<Key[]>(['keys', '--token', 'شهروند']).length).toBe(0);
    const again = kelid(
      ['delete', '--token', 'شهروند', '-k', keyId, '--scope', 'all', '--pin-stdin'],
      `${PIN}\n`,
    );
    expect(again.stderr).toContain('ERR_KEY_NOT_FOUND');
    // chain certificates stay
    expect(
      json<Certificate[]>(['certs', '--token', 'شهروند']).filter((c) => c.category === 'authority').length,
    ).toBe(2);
  });

  it('reads the PIN from stdin only: without a terminal or --pin-stdin it refuses', () => {
    const r = kelid(['keys', '--token', 'شهروند']);
    expect(r.code).toBe(0);
    const k = kelid(['keygen', '--token', 'شهروند']);
    expect(k.code).toBe(1);
    expect(k.stderr).toMatch(/--pin-stdin/);
  });

  it('keeps the PEM file readable by openssl (sanity of the issued chain)', () => {
    expect(readFileSync(join(work, 'leaf.pem'), 'utf8')).toContain('BEGIN CERTIFICATE');
  });
});
