import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { CommanderError } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STATUS_EXIT_CODES, statusCommand } from '../../../src/cli/commands/status.js';
import { KelidError } from '../../../src/model/errors.js';
import type { Status } from '../../../src/model/types.js';
import { STATUS_CACHE_DIR } from '../../../src/status/status-cache.js';
import { TestPki, freePort, startProxy } from '../../helpers/test-ca.js';
import type { TestCertificate, TestHttpServer } from '../../helpers/test-ca.js';

const execFileAsync = promisify(execFile);

interface Run {
  stdout: string;
  stderr: string;
  exitCode: number | undefined;
}

async function run(args: string[]): Promise<Run> {
  const result: Run = { stdout: '', stderr: '', exitCode: undefined };
  const command = statusCommand({
    stdout: (t) => void (result.stdout += t),
    stderr: (t) => void (result.stderr += t),
    setExitCode: (c) => void (result.exitCode = c),
  });
  command.exitOverride().configureOutput({ writeOut: () => undefined, writeErr: () => undefined });
  await command.parseAsync(args, { from: 'user' });
  return result;
}

describe('statusCommand', () => {
  let pki: TestPki;
  let dir: string;
  let good: TestCertificate;
  let revoked: TestCertificate;
  let ghost: TestCertificate;
  let counted: TestCertificate;
  let proxy: TestHttpServer;
  let issuerFile: string;

  beforeAll(async () => {
    pki = await TestPki.create();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-status-cli-'));
    good = await pki.issueLeaf('good', { caIssuersUrl: null });
    revoked = await pki.issueLeaf('revoked');
    ghost = await pki.issueUnrecorded('ghost');
    await pki.revoke(revoked, 'superseded');
    const responder = await pki.startOcsp({ nmin: 60 });
    proxy = await startProxy(responder.url);
    counted = await pki.issueLeaf('counted', { ocspUrl: proxy.url('/'), crlUrl: null });
    issuerFile = path.join(dir, 'issuer.pem');
    fs.writeFileSync(issuerFile, pki.intermediate.pem);
  });

  afterAll(async () => {
    await proxy?.close();
    await pki?.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('prints good for a PEM certificate with --issuer and exits 0', async () => {
    const r = await run(['--cert', good.certPath, '--issuer', issuerFile, '--no-cache']);
    expect(r.exitCode).toBe(STATUS_EXIT_CODES.good);
    expect(r.stdout).toMatch(/^certificate: +CN=good \(serial [0-9a-f]+\)$/m);
    expect(r.stdout).toMatch(/^status: +good$/m);
    expect(r.stdout).toMatch(/^source: +OCSP$/m);
    expect(r.stderr).toBe('');
  });

  it('prints the revoked Status as JSON for a DER certificate and exits 3', async () => {
    const der = path.join(dir, 'revoked.der');
    fs.writeFileSync(der, revoked.der);
    const r = await run(['--cert', der, '--json', '--no-cache']);
    expect(r.exitCode).toBe(STATUS_EXIT_CODES.revoked);
    const status = JSON.parse(r.stdout) as Status;
    expect(status).toMatchObject({ status: 'revoked', source: 'ocsp', reason: 'superseded' });
    expect(Object.keys(status).sort()).toEqual(
      ['checkedAt', 'nextUpdate', 'reason', 'revokedAt', 'source', 'status', 'thisUpdate'].sort(),
    );
  });

  it('exits 4 for a certificate the responder does not know', async () => {
    const r = await run(['--cert', ghost.certPath, '--issuer', issuerFile, '--no-cache']);
    expect(r.exitCode).toBe(STATUS_EXIT_CODES.unknown);
    expect(r.stdout).toMatch(/^status: +unknown$/m);
  });

  it('takes issuer candidates from the rest of the --cert file', async () => {
    const chain = path.join(dir, 'good-chain.pem');
    fs.writeFileSync(chain, good.pem + pki.chainPem);
    const r = await run(['--cert', chain, '--json', '--no-cache']);
    expect(r.exitCode).toBe(0);
    expect((JSON.parse(r.stdout) as Status).status).toBe('good');
    // Without the chain there is no issuer (no caIssuers URL in this certificate).
    const alone = await run(['--cert', good.certPath, '--json', '--no-cache']);
    expect(alone.exitCode).toBe(STATUS_EXIT_CODES.failed);
    expect(JSON.parse(alone.stdout)).toMatchObject({ error: { code: 'ERR_STATUS_UNAVAILABLE' } });
  });

  it('lists every failed source and exits 1 when no status is available', async () => {
    const down = await pki.issueLeaf('down', {
      ocspUrl: `http://127.0.0.1:${await freePort()}/`,
      crlUrl: null,
    });
    const r = await run(['--cert', down.certPath, '--issuer', issuerFile, '--timeout', '2', '--no-cache']);
    expect(r.exitCode).toBe(STATUS_EXIT_CODES.failed);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/ERR_STATUS_UNAVAILABLE/);
    expect(r.stderr).toMatch(/^ {2}ocsp http:\/\/127\.0\.0\.1:\d+\/: network/m);
  });

  it('answers a second run from the cache in --state-dir', async () => {
    const stateDir = path.join(dir, 'state');
    const before = proxy.requests.length;
    const first = await run([
      '--cert',
      counted.certPath,
      '--issuer',
      issuerFile,
      '--state-dir',
      stateDir,
      '--json',
    ]);
    const second = await run([
      '--cert',
      counted.certPath,
      '--issuer',
      issuerFile,
      '--state-dir',
      stateDir,
      '--json',
    ]);
    expect(JSON.parse(second.stdout)).toEqual(JSON.parse(first.stdout));
    expect(proxy.requests.length - before).toBe(1);
    expect(fs.readdirSync(path.join(stateDir, STATUS_CACHE_DIR))).toHaveLength(1);
  });

  it('refuses to run without a certificate, and refuses a bad --timeout', async () => {
    await expect(run(['--json'])).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT' });
    await expect(run(['--cert', issuerFile.replace('.pem', '.missing')])).rejects.toBeInstanceOf(KelidError);
    await expect(run(['--cert', good.certPath, '--timeout', 'soon'])).rejects.toBeInstanceOf(CommanderError);
  });

  it('runs as its own process with the exit status of the answer', async () => {
    const harness = path.join(import.meta.dirname, 'status-cli-harness.ts');
    const stateDir = path.join(dir, 'process-state');
    const child = await execFileAsync(
      process.execPath,
      ['--import', 'tsx', harness, '--cert', revoked.certPath, '--json', '--state-dir', stateDir],
      { cwd: path.resolve(import.meta.dirname, '../../..') },
    ).then(
      () => ({ code: 0, stdout: '' }),
      (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
    );
    expect(child.code).toBe(STATUS_EXIT_CODES.revoked);
    expect(JSON.parse(child.stdout)).toMatchObject({ status: 'revoked', reason: 'superseded' });
  });
});
