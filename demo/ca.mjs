// The demo CA: a root and an issuing CA kept in a directory, run by the openssl CLI (`openssl ca`
// keeps the index that OCSP and the CRL are made from). Certificates it issues carry an AIA OCSP URL
// and a CRL distribution point pointing at this CA's HTTP service (demo/server.mjs).
// For demonstrations only: the keys are unencrypted files.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

const MAX_CSR_BYTES = 64 * 1024;

export class DemoCa {
  /**
   * @param {{ dir: string, baseUrl: string, name?: string }} options
   *   dir: where keys, index and issued certificates live (created; reused on the next start);
   *   baseUrl: this CA's HTTP address, e.g. http://127.0.0.1:17480 (for the OCSP and CRL URLs).
   */
  constructor(options) {
    this.dir = options.dir;
    this.baseUrl = options.baseUrl.replace(/\/$/, '');
    this.name = options.name ?? 'Kelid Demo';
    this.queue = Promise.resolve();
  }

  get ocspUrl() {
    return `${this.baseUrl}/ocsp`;
  }

  get crlUrl() {
    return `${this.baseUrl}/crl/issuing-ca.crl`;
  }

  /** Create the CA on first use; (re)write the config so the URLs match this run's address. */
  async init() {
    const d = this.dir;
    mkdirSync(join(d, 'issued'), { recursive: true });
    if (!existsSync(join(d, 'index.txt'))) writeFileSync(join(d, 'index.txt'), '');
    if (!existsSync(join(d, 'serial'))) writeFileSync(join(d, 'serial'), `${randomSerial()}\n`);
    if (!existsSync(join(d, 'crlnumber'))) writeFileSync(join(d, 'crlnumber'), '01\n');
    writeFileSync(join(d, 'index.txt.attr'), 'unique_subject = no\n');
    writeFileSync(join(d, 'ca.cnf'), this.config());
    if (!existsSync(join(d, 'root.pem'))) {
      await this.openssl([
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
        '-sha256',
        '-subj',
        `/C=IR/O=${this.name}/CN=${this.name} Root CA`,
        '-config',
        'ca.cnf',
        '-extensions',
        'v3_root',
      ]);
      await this.openssl([
        'req',
        '-new',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        'issuing-ca.key',
        '-out',
        'issuing-ca.csr',
        '-subj',
        `/C=IR/O=${this.name}/CN=${this.name} Issuing CA`,
        '-config',
        'ca.cnf',
      ]);
      await this.openssl([
        'x509',
        '-req',
        '-in',
        'issuing-ca.csr',
        '-CA',
        'root.pem',
        '-CAkey',
        'root.key',
        '-set_serial',
        `0x${randomSerial()}`,
        '-out',
        'issuing-ca.pem',
        '-days',
        '1825',
        '-sha256',
        '-extfile',
        'ca.cnf',
        '-extensions',
        'v3_issuing',
      ]);
    }
    this.rootPem = readFileSync(join(d, 'root.pem'), 'utf8');
    this.issuingPem = readFileSync(join(d, 'issuing-ca.pem'), 'utf8');
    await this.updateCrl();
  }

  config() {
    const d = this.dir;
    return `# written by demo/ca.mjs on every start
[ca]
default_ca = issuing

[issuing]
dir = ${d}
database = $dir/index.txt
serial = $dir/serial
crlnumber = $dir/crlnumber
new_certs_dir = $dir/issued
certificate = $dir/issuing-ca.pem
private_key = $dir/issuing-ca.key
default_md = sha256
default_days = 365
default_crl_days = 7
policy = policy_any
preserve = yes
unique_subject = no
copy_extensions = copy
x509_extensions = signing
string_mask = utf8only
utf8 = yes

[policy_any]
countryName = optional
stateOrProvinceName = optional
localityName = optional
organizationName = optional
organizationalUnitName = optional
commonName = supplied
serialNumber = optional
emailAddress = optional
givenName = optional
surname = optional
title = optional

# A qualified-signature-like profile: the CA decides key usage, whatever the request asks for.
[signing]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = emailProtection,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
authorityInfoAccess = OCSP;URI:${this.ocspUrl},caIssuers;URI:${this.baseUrl}/issuing-ca.cer
crlDistributionPoints = URI:${this.crlUrl}

[v3_root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[v3_issuing]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[req]
distinguished_name = dn
string_mask = utf8only
utf8 = yes
[dn]
`;
  }

  /** Issue a certificate for a PEM CSR (signature checked by openssl). */
  issue(csrPem) {
    return this.serialized(async () => {
      if (
        typeof csrPem !== 'string' ||
        csrPem.length > MAX_CSR_BYTES ||
        !csrPem.includes('CERTIFICATE REQUEST')
      ) {
        throw new DemoCaError(400, 'a PEM certificate request is required');
      }
      const work = mkdtempSync(join(this.dir, 'req-'));
      try {
        writeFileSync(join(work, 'req.pem'), csrPem);
        // openssl 3.0 exits 0 even when the self-signature is wrong: read its verdict.
        const verdict = await this.openssl(['req', '-in', join(work, 'req.pem'), '-noout', '-verify']).catch(
          (e) => e,
        );
        if (!/verify OK/.test(`${verdict.stdout ?? ''}${verdict.stderr ?? ''}`)) {
          throw new DemoCaError(400, 'the certificate request is malformed or its signature is wrong');
        }
        const issued = await this.openssl([
          'ca',
          '-config',
          'ca.cnf',
          '-batch',
          '-notext',
          '-utf8',
          '-preserveDN',
          '-in',
          join(work, 'req.pem'),
          '-out',
          join(work, 'cert.pem'),
        ]).catch((e) => e);
        if (!existsSync(join(work, 'cert.pem'))) {
          throw new DemoCaError(
            400,
            `the CA refused the request: ${String(issued.stderr ?? '')
              .trim()
              .split('\n')
              .pop()}`,
          );
        }
        const certificate = readFileSync(join(work, 'cert.pem'), 'utf8');
        return { certificate, chain: [this.issuingPem, this.rootPem] };
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    });
  }

  /** Revoke an issued certificate (PEM) and publish a new CRL. */
  revoke(certificatePem, reason = 'keyCompromise') {
    return this.serialized(async () => {
      if (typeof certificatePem !== 'string' || !certificatePem.includes('BEGIN CERTIFICATE')) {
        throw new DemoCaError(400, 'a PEM certificate is required');
      }
      const work = mkdtempSync(join(this.dir, 'rev-'));
      try {
        writeFileSync(join(work, 'cert.pem'), certificatePem);
        // `openssl ca -revoke` would add a certificate it never issued: look for the serial first.
        const { stdout } = await this.openssl([
          'x509',
          '-in',
          join(work, 'cert.pem'),
          '-noout',
          '-serial',
        ]).catch(() => ({
          stdout: '',
        }));
        const serial = /serial=([0-9A-F]+)/i.exec(stdout)?.[1]?.toUpperCase();
        const index = readFileSync(join(this.dir, 'index.txt'), 'utf8').split('\n');
        if (!serial || !index.some((line) => line.split('\t')[3] === serial)) {
          throw new DemoCaError(400, 'this CA did not issue that certificate');
        }
        try {
          await this.openssl([
            'ca',
            '-config',
            'ca.cnf',
            '-revoke',
            join(work, 'cert.pem'),
            '-crl_reason',
            reason,
          ]);
        } catch (e) {
          const detail = String(e.stderr ?? '');
          if (/already revoked/i.test(detail)) return { revoked: true };
          throw new DemoCaError(400, 'this CA did not issue that certificate');
        }
        await this.updateCrlNow();
        return { revoked: true };
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    });
  }

  /** Answer a DER OCSP request from the index, signed by the issuing CA (openssl's one-shot responder). */
  ocsp(requestDer) {
    return this.serialized(async () => {
      const work = mkdtempSync(join(this.dir, 'ocsp-'));
      try {
        writeFileSync(join(work, 'req.der'), requestDer);
        await this.openssl([
          'ocsp',
          '-index',
          'index.txt',
          '-CA',
          'issuing-ca.pem',
          '-rsigner',
          'issuing-ca.pem',
          '-rkey',
          'issuing-ca.key',
          '-reqin',
          join(work, 'req.der'),
          '-respout',
          join(work, 'resp.der'),
          '-nmin',
          '10',
        ]);
        if (!existsSync(join(work, 'resp.der'))) throw new DemoCaError(400, 'malformed OCSP request');
        return readFileSync(join(work, 'resp.der'));
      } catch (e) {
        if (e instanceof DemoCaError) throw e;
        throw new DemoCaError(400, 'malformed OCSP request');
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    });
  }

  /** The current CRL (DER). */
  crlDer() {
    return readFileSync(join(this.dir, 'issuing-ca.crl'));
  }

  updateCrl() {
    return this.serialized(() => this.updateCrlNow());
  }

  async updateCrlNow() {
    await this.openssl(['ca', '-config', 'ca.cnf', '-gencrl', '-out', 'issuing-ca.crl.pem']);
    await this.openssl(['crl', '-in', 'issuing-ca.crl.pem', '-outform', 'DER', '-out', 'issuing-ca.crl']);
  }

  /** DER of the issuing CA certificate (the AIA caIssuers URL). */
  issuingDer() {
    return pemToDer(this.issuingPem);
  }

  serialized(fn) {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  openssl(args) {
    return run('openssl', args, { cwd: this.dir, maxBuffer: 4 * 1024 * 1024 });
  }
}

export class DemoCaError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function randomSerial() {
  // 16 hex digits, first one 1-7 so the DER integer stays positive and 8 octets long.
  const hex = Array.from({ length: 16 }, () => Math.floor(Math.random() * 16).toString(16)).join('');
  return `${1 + Math.floor(Math.random() * 7)}${hex.slice(1)}`;
}

function pemToDer(pem) {
  const b64 = pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  return Buffer.from(b64, 'base64');
}
