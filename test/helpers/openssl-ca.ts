import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A throwaway two-level CA run by `openssl ca` (root → intermediate → leaves), for tests that need
 * certificates issued from our CSRs by someone else's code.
 */
export class OpensslCa {
  readonly dir: string;
  readonly rootPem: string;
  readonly subPem: string;
  private serial = 0x1000;

  constructor(options: { ocspUrl?: string; crlUrl?: string } = {}) {
    this.dir = mkdtempSync(join(tmpdir(), 'kelid-ca-'));
    const d = this.dir;
    mkdirSync(join(d, 'issued'));
    writeFileSync(join(d, 'index.txt'), '');
    writeFileSync(join(d, 'serial'), '1000\n');
    writeFileSync(join(d, 'crlnumber'), '01\n');
    const aia = options.ocspUrl ? `authorityInfoAccess = OCSP;URI:${options.ocspUrl}\n` : '';
    const cdp = options.crlUrl ? `crlDistributionPoints = URI:${options.crlUrl}\n` : '';
    writeFileSync(
      join(d, 'ca.cnf'),
      `[ca]\ndefault_ca = sub\n[sub]\ndir = ${d}\ndatabase = $dir/index.txt\nserial = $dir/serial\ncrlnumber = $dir/crlnumber\nnew_certs_dir = $dir/issued\ncertificate = $dir/sub.pem\nprivate_key = $dir/sub.key\ndefault_md = sha256\ndefault_days = 365\ndefault_crl_days = 7\npolicy = any\npreserve = yes\ncopy_extensions = copy\nunique_subject = no\nx509_extensions = leaf\nstring_mask = utf8only\nutf8 = yes\n[any]\ncountryName = optional\nstateOrProvinceName = optional\nlocalityName = optional\norganizationName = optional\norganizationalUnitName = optional\ncommonName = supplied\nserialNumber = optional\nemailAddress = optional\ngivenName = optional\nsurname = optional\ntitle = optional\n[leaf]\nbasicConstraints = critical,CA:FALSE\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n${aia}${cdp}[v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n[req]\ndistinguished_name = dn\nstring_mask = utf8only\nutf8 = yes\n[dn]\n`,
    );
    const ossl = (args: string[]) =>
      execFileSync('openssl', args, { cwd: d, stdio: ['pipe', 'pipe', 'pipe'] });
    ossl([
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'root.key',
      '-out',
      'root.pem',
      '-days',
      '3650',
      '-subj',
      '/C=IR/O=Kelid Test/CN=Kelid Test Root',
      '-config',
      'ca.cnf',
      '-extensions',
      'v3_ca',
    ]);
    ossl([
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'sub.key',
      '-out',
      'sub.csr',
      '-subj',
      '/C=IR/O=Kelid Test/CN=Kelid Test Issuing CA',
      '-config',
      'ca.cnf',
    ]);
    ossl([
      'x509',
      '-req',
      '-in',
      'sub.csr',
      '-CA',
      'root.pem',
      '-CAkey',
      'root.key',
      '-CAcreateserial',
      '-out',
      'sub.pem',
      '-days',
      '1825',
      '-extfile',
      'ca.cnf',
      '-extensions',
      'v3_ca',
    ]);
    this.rootPem = readFileSync(join(d, 'root.pem'), 'utf8');
    this.subPem = readFileSync(join(d, 'sub.pem'), 'utf8');
  }

  /** Issue a certificate from a PEM CSR with `openssl ca` (extensions copied from the request). */
  issue(csrPem: string, options: { days?: number } = {}): string {
    const name = `req-${this.serial++}`;
    const csr = join(this.dir, `${name}.csr`);
    const out = join(this.dir, `${name}.pem`);
    writeFileSync(csr, csrPem);
    execFileSync(
      'openssl',
      [
        'ca',
        '-config',
        'ca.cnf',
        '-batch',
        '-notext',
        '-utf8',
        '-in',
        csr,
        '-out',
        out,
        '-days',
        String(options.days ?? 365),
      ],
      { cwd: this.dir, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    return readFileSync(out, 'utf8');
  }

  /** root + intermediate, for `-CAfile`. */
  bundleFile(): string {
    const f = join(this.dir, 'bundle.pem');
    writeFileSync(f, this.subPem + this.rootPem);
    return f;
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
