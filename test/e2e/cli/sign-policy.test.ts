// softhsm-only: the deadlines are tested through the faulty PKCS#11 shim, which forwards to SoftHSM's library only
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Certificate } from '../../../src/model/types.js';
import { FaultyModule, seedSigner } from '../../helpers/faulty-module.js';
import { SoftHsm } from '../../helpers/softhsm.js';
import { TestPki } from '../../helpers/test-ca.js';

// `kelid sign` is built by the same composition root as the agent (src/services.ts): it applies the
// config's revocation policy and the config's PKCS#11 deadlines, as `kelid serve` does.

const BIN = join(process.cwd(), 'bin', 'kelid.js');
const PIN = '3344';

function kelid(args: string[], stdin = '') {
  // A CLI that ignored the deadlines would wait for the module's 120 s default: cut it short.
  return spawnSync('node', [BIN, ...args], { input: stdin, encoding: 'utf8', timeout: 25_000 });
}

/** `kelid sign -f raw` of `input` into `out` with the certificate's key, the PIN on stdin. */
function signRaw(configFile: string, certificateId: string, input: string, out: string) {
  return kelid(
    [
      'sign',
      '--config',
      configFile,
      '--cert',
      certificateId,
      '-i',
      input,
      '-o',
      out,
      '-f',
      'raw',
      '--pin-stdin',
    ],
    `${PIN}\n`,
  );
}

describe('kelid sign and revocation.enforceOnSign (live openssl ocsp)', () => {
  const hsm = new SoftHsm('kelid-sign-policy-');
  const work = mkdtempSync(join(tmpdir(), 'kelid-sign-policy-'));
  const input = join(work, 'document.txt');
  let pki: TestPki;
  let certificateId: string;
  let states = 0;

  /** A config file; each sign gets a fresh state directory, so no status is served from a cache. */
  function config(revocation: Record<string, unknown>): string {
    const file = join(work, `kelid-${++states}.json`);
    writeFileSync(
      file,
      JSON.stringify({
        autoDetectModules: false,
        modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
        revocation,
        stateDir: join(work, `state-${states}`),
      }),
    );
    return file;
  }

  const sign = (configFile: string, out: string) => signRaw(configFile, certificateId, input, out);

  beforeAll(async () => {
    hsm.initToken('policy', 'SoPin6677', PIN);
    writeFileSync(input, 'a document to sign\n');
    pki = await TestPki.create();
    await pki.startOcsp();
    const setup = config({});
    const gen = kelid(
      [
        'keygen',
        '--config',
        setup,
        '-a',
        'p256',
        '-l',
        'pol',
        '--subject',
        'CN=Policy,C=IR',
        '--pin-stdin',
        '--json',
      ],
      `${PIN}\n`,
    );
    expect(gen.status, gen.stderr).toBe(0);
    const issued = await pki.issueFromCsr('policy-leaf', (JSON.parse(gen.stdout) as { csr: string }).csr);
    writeFileSync(join(work, 'leaf.pem'), issued.pem);
    writeFileSync(join(work, 'chain.pem'), pki.intermediate.pem + pki.root.pem);
    const imp = kelid(
      [
        'import',
        '--config',
        setup,
        '--cert',
        join(work, 'leaf.pem'),
        '--chain',
        join(work, 'chain.pem'),
        '--pin-stdin',
        '--json',
      ],
      `${PIN}\n`,
    );
    expect(imp.status, imp.stderr).toBe(0);
    certificateId = (JSON.parse(imp.stdout) as Certificate).certificateId;

    // Good while it is good: the policy lets it sign.
    const good = sign(config({ enforceOnSign: 'block-revoked' }), join(work, 'good.sig'));
    expect(good.status, good.stderr).toBe(0);
    expect(existsSync(join(work, 'good.sig'))).toBe(true);

    await pki.revoke(issued, 'keyCompromise');
  });

  afterAll(async () => {
    await pki.cleanup();
    hsm.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  it('refuses a revoked certificate under block-revoked with ERR_CERTIFICATE_REVOKED and writes nothing', () => {
    const out = join(work, 'revoked.sig');
    const r = sign(config({ enforceOnSign: 'block-revoked' }), out);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/\(ERR_CERTIFICATE_REVOKED\)/);
    expect(existsSync(out)).toBe(false);
  });

  it('signs with the same revoked certificate when the config turns the check off', () => {
    const out = join(work, 'off.sig');
    const r = sign(config({ enforceOnSign: 'off' }), out);
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(out)).toBe(true);
  });
});

describe('kelid sign keeps the config PKCS#11 deadlines (faulty module that hangs)', () => {
  const hsm = new SoftHsm('kelid-sign-deadline-');
  const work = mkdtempSync(join(tmpdir(), 'kelid-sign-deadline-'));
  const input = join(work, 'document.txt');
  let faulty: FaultyModule;
  let configFile: string;
  let certificateId: string;

  beforeAll(() => {
    hsm.initToken('hangs', 'SoPin8899', PIN);
    seedSigner(hsm, 'hangs', PIN);
    faulty = new FaultyModule(hsm);
    writeFileSync(input, 'a document to sign\n');
    configFile = join(work, 'kelid.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        autoDetectModules: false,
        modules: [{ id: 'faulty', path: faulty.path, env: faulty.env }],
        revocation: { enforceOnSign: 'off' },
        pkcs11: { callTimeoutSeconds: 2, loginTimeoutSeconds: 3 },
        stateDir: join(work, 'state'),
      }),
    );
    const certs = kelid(['certs', '--config', configFile, '--json']);
    expect(certs.status, certs.stderr).toBe(0);
    certificateId = (JSON.parse(certs.stdout) as Certificate[])[0]!.certificateId;
  });

  afterAll(() => {
    faulty.cleanup();
    hsm.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  const sign = () => signRaw(configFile, certificateId, input, join(work, 'x.sig'));

  it('a hung C_Login fails with ERR_MODULE_FAILED at pkcs11.loginTimeoutSeconds', () => {
    faulty.set('hang C_Login');
    const r = sign();
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/did not answer within 3 s \(ERR_MODULE_FAILED\)/);
  });

  it('a hung C_SignInit fails with ERR_MODULE_FAILED at pkcs11.callTimeoutSeconds', () => {
    faulty.set('hang C_SignInit');
    const r = sign();
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/did not answer within 2 s \(ERR_MODULE_FAILED\)/);
  });
});
