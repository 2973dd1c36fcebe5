// softhsm-only: tests `kelid status` against a live OCSP responder; the module only stores the certificate (not ported yet)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Certificate, Status } from '../../../src/model/types.js';
import { SoftHsm } from '../../helpers/softhsm.js';
import { TestPki } from '../../helpers/test-ca.js';

const BIN = join(process.cwd(), 'bin', 'kelid.js');
const PIN = '1122';

describe('kelid status --certificate-id (a certificate on a token, live openssl ocsp)', () => {
  const hsm = new SoftHsm('kelid-status-cli-');
  const work = mkdtempSync(join(tmpdir(), 'kelid-status-cli-'));
  const config = join(work, 'kelid.json');
  let pki: TestPki;

  const kelid = (args: string[], stdin = '') =>
    spawnSync('node', [BIN, ...args], { input: stdin, encoding: 'utf8' });

  beforeAll(async () => {
    hsm.initToken('status', 'SoPin4455', PIN);
    writeFileSync(
      config,
      JSON.stringify({
        autoDetectModules: false,
        modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
      }),
    );
    pki = await TestPki.create();
    await pki.startOcsp();
  });

  afterAll(async () => {
    await pki.cleanup();
    hsm.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  it('answers good from OCSP for the imported certificate, then revoked after the CA revokes it', async () => {
    const gen = kelid(
      [
        'keygen',
        '--config',
        config,
        '-a',
        'p256',
        '-l',
        'st',
        '--subject',
        'CN=وضعیت,C=IR',
        '--pin-stdin',
        '--json',
      ],
      `${PIN}\n`,
    );
    expect(gen.status).toBe(0);
    const csr = (JSON.parse(gen.stdout) as { csr: string }).csr;
    const issued = await pki.issueFromCsr('status-leaf', csr);
    writeFileSync(join(work, 'leaf.pem'), issued.pem);
    writeFileSync(join(work, 'chain.pem'), pki.intermediate.pem + pki.root.pem);
    const imp = kelid(
      [
        'import',
        '--config',
        config,
        '--cert',
        join(work, 'leaf.pem'),
        '--chain',
        join(work, 'chain.pem'),
        '--pin-stdin',
        '--json',
      ],
      `${PIN}\n`,
    );
    expect(imp.status).toBe(0);
    const cert = JSON.parse(imp.stdout) as Certificate;

    const good = kelid([
      'status',
      '--config',
      config,
      '--certificate-id',
      cert.certificateId,
      '--json',
      '--no-cache',
    ]);
    expect(good.status).toBe(0);
    expect((JSON.parse(good.stdout) as Status).status).toBe('good');

    await pki.revoke(issued, 'keyCompromise');
    const revoked = kelid([
      'status',
      '--config',
      config,
      '--certificate-id',
      cert.certificateId,
      '--json',
      '--no-cache',
    ]);
    expect(revoked.status).toBe(3);
    const st = JSON.parse(revoked.stdout) as Status;
    expect(st.status).toBe('revoked');
    expect(st.reason).toBe('keyCompromise');
  });
});
