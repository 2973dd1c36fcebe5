import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TLS_DIR, ensureTlsMaterial, readCaCertificate } from '../../../src/transport/tls.js';

// The local CA and leaf, checked by openssl: chain, SANs, name constraints, purposes, file modes.

function openssl(args: string[], cwd: string): { ok: boolean; out: string } {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

describe('ensureTlsMaterial', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-tls-'));
  const stateDir = path.join(dir, 'state');

  beforeAll(async () => {
    const m = await ensureTlsMaterial(stateDir);
    expect(m.generated).toBe(true);
    fs.writeFileSync(path.join(dir, 'ca.pem'), m.caCertificatePem);
    fs.writeFileSync(path.join(dir, 'leaf.pem'), m.cert);
  });

  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('stores only the leaf key, the leaf and the CA certificate, each 0600', () => {
    const files = fs.readdirSync(path.join(stateDir, TLS_DIR)).sort();
    expect(files).toEqual(['ca-cert.pem', 'leaf-cert.pem', 'leaf-key.pem']);
    for (const f of files) expect(fs.statSync(path.join(stateDir, TLS_DIR, f)).mode & 0o777, f).toBe(0o600);
    // The one private key on disk is the leaf's.
    const leaf = new X509Certificate(fs.readFileSync(path.join(dir, 'leaf.pem')));
    const keyPem = fs.readFileSync(path.join(stateDir, TLS_DIR, 'leaf-key.pem'), 'utf8');
    expect(keyPem.match(/PRIVATE KEY-----/g)).toHaveLength(2);
    expect(
      openssl(['pkey', '-in', path.join(stateDir, TLS_DIR, 'leaf-key.pem'), '-pubout'], dir).out.trim(),
    ).toBe(leaf.publicKey.export({ type: 'spki', format: 'pem' }).toString().trim());
  });

  it('issues a leaf openssl verifies for 127.0.0.1, ::1 and localhost as a TLS server', () => {
    for (const check of [
      ['-verify_ip', '127.0.0.1'],
      ['-verify_ip', '::1'],
      ['-verify_hostname', 'localhost'],
    ]) {
      const r = openssl(['verify', '-CAfile', 'ca.pem', '-purpose', 'sslserver', ...check, 'leaf.pem'], dir);
      expect(r.ok, r.out).toBe(true);
    }
    for (const check of [
      ['-verify_ip', '127.0.0.2'],
      ['-verify_hostname', 'example.com'],
    ]) {
      expect(openssl(['verify', '-CAfile', 'ca.pem', ...check, 'leaf.pem'], dir).ok).toBe(false);
    }
  });

  it('makes a CA limited to the loopback names (name constraints, pathlen 0, about 10 years)', () => {
    const text = openssl(['x509', '-in', 'ca.pem', '-noout', '-text'], dir).out;
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(text).toMatch(
      /Name Constraints: critical\s+Permitted:\s+DNS:localhost\s+IP:127\.0\.0\.1\/255\.255\.255\.255\s+IP:0:0:0:0:0:0:0:1\/FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF/,
    );
    const ca = new X509Certificate(fs.readFileSync(path.join(dir, 'ca.pem')));
    const years = (Date.parse(ca.validTo) - Date.parse(ca.validFrom)) / (365.25 * 24 * 3600 * 1000);
    expect(years).toBeGreaterThan(9.9);
    const leaf = new X509Certificate(fs.readFileSync(path.join(dir, 'leaf.pem')));
    const days = (Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)) / (24 * 3600 * 1000);
    expect(days).toBeGreaterThan(365);
    expect(days).toBeLessThan(825);
    expect(leaf.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    expect(leaf.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
  });

  it('keeps the certificate profile: P-256 keys, ecdsa-with-SHA256, critical basic constraints and key usage, key ids that chain', () => {
    const caText = openssl(['x509', '-in', 'ca.pem', '-noout', '-text'], dir).out;
    const leafText = openssl(['x509', '-in', 'leaf.pem', '-noout', '-text'], dir).out;
    for (const text of [caText, leafText]) {
      expect(text).toMatch(/Version: 3 \(0x2\)/);
      expect(text).toMatch(/Signature Algorithm: ecdsa-with-SHA256/);
      expect(text).toMatch(/Public-Key: \(256 bit\)[\s\S]*NIST CURVE: P-256/);
    }
    expect(caText).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(caText).toMatch(/Subject: CN = Kelid local CA [0-9a-f]{8}, O = Kelid/);
    expect(leafText).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(leafText).toMatch(/Key Usage: critical\s+Digital Signature\n/);
    expect(leafText).toMatch(/Extended Key Usage: \n\s+TLS Web Server Authentication\n/);
    expect(leafText).toMatch(/Subject: CN = localhost, O = Kelid/);
    const caKeyId = /Subject Key Identifier: \n\s+([0-9A-F:]+)/.exec(caText)?.[1];
    expect(caKeyId).toMatch(/^([0-9A-F]{2}:){19}[0-9A-F]{2}$/);
    expect(/Authority Key Identifier: \n\s+(?:keyid:)?([0-9A-F:]+)/.exec(leafText)?.[1]).toBe(caKeyId);
    // Serial numbers: 16 bytes, positive.
    for (const pem of ['ca.pem', 'leaf.pem']) {
      const serial = openssl(['x509', '-in', pem, '-noout', '-serial'], dir).out.trim().split('=')[1]!;
      expect(serial).toMatch(/^[0-7][0-9A-F]{31}$/);
    }
  });

  it('refuses, per the CA name constraints, a leaf for another name signed by a CA of the same shape', () => {
    // The CA key is gone, so build the proof with openssl: a CA with the same constraints cannot vouch for example.com.
    const cnf = path.join(dir, 'nc.cnf');
    fs.writeFileSync(
      cnf,
      '[ca]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign\nnameConstraints=critical,permitted;DNS:localhost,permitted;IP:127.0.0.1/255.255.255.255\n[leaf]\nsubjectAltName=DNS:example.com\nextendedKeyUsage=serverAuth\n',
    );
    const run = (args: string[]): void => {
      const r = openssl(args, dir);
      expect(r.ok, r.out).toBe(true);
    };
    run([
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'nc.key',
      '-out',
      'nc.pem',
      '-subj',
      '/CN=nc',
      '-config',
      cnf,
      '-extensions',
      'ca',
      '-days',
      '1',
    ]);
    run([
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'ex.key',
      '-out',
      'ex.csr',
      '-subj',
      '/CN=example.com',
      '-config',
      cnf,
    ]);
    run([
      'x509',
      '-req',
      '-in',
      'ex.csr',
      '-CA',
      'nc.pem',
      '-CAkey',
      'nc.key',
      '-CAcreateserial',
      '-out',
      'ex.pem',
      '-extfile',
      cnf,
      '-extensions',
      'leaf',
      '-days',
      '1',
    ]);
    const r = openssl(['verify', '-CAfile', 'nc.pem', 'ex.pem'], dir);
    expect(r.ok).toBe(false);
    expect(r.out).toMatch(/permitted subtree violation/);
  });

  it('reuses valid material and regenerates CA and leaf when the leaf is about to expire', async () => {
    const again = await ensureTlsMaterial(stateDir);
    expect(again.generated).toBe(false);
    expect(again.caCertificatePem).toBe(readCaCertificate(stateDir));
    const leaf = new X509Certificate(again.cert);
    const later = new Date(Date.parse(leaf.validTo) - 10 * 24 * 3600 * 1000);
    const renewed = await ensureTlsMaterial(stateDir, { now: () => later });
    expect(renewed.generated).toBe(true);
    expect(renewed.caCertificatePem).not.toBe(again.caCertificatePem);
    expect(
      new X509Certificate(renewed.cert).verify(new X509Certificate(renewed.caCertificatePem).publicKey),
    ).toBe(true);
  });

  it('regenerates when a file is missing or damaged', async () => {
    const before = readCaCertificate(stateDir);
    fs.writeFileSync(path.join(stateDir, TLS_DIR, 'leaf-key.pem'), 'garbage');
    const m = await ensureTlsMaterial(stateDir);
    expect(m.generated).toBe(true);
    expect(m.caCertificatePem).not.toBe(before);
  });
});
