// The demo CA: a root and an issuing CA kept in a directory, run by the openssl CLI (`openssl ca`
// keeps the index that the CRL and the OCSP answers are made from; the OCSP responder is built here
// with @peculiar/asn1-ocsp). Certificates it issues carry an AIA OCSP URL and a CRL distribution
// point pointing at this CA's HTTP service (demo/server.mjs).
// For demonstrations only: the keys are unencrypted files.
import { execFile } from 'node:child_process';
import { createHash, sign } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import {
  BasicOCSPResponse,
  CertStatus,
  KeyHash,
  OCSPRequest,
  OCSPResponse,
  OCSPResponseStatus,
  ResponderID,
  ResponseBytes,
  ResponseData,
  RevokedInfo,
  SingleResponse,
  id_pkix_ocsp_basic,
  id_pkix_ocsp_nonce,
} from '@peculiar/asn1-ocsp';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, CRLReason, Certificate, Extension } from '@peculiar/asn1-x509';

const run = promisify(execFile);

const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';
const HASHES = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};
// openssl's index.txt reason words → CRLReason codes.
const REASONS = {
  unspecified: 0,
  keyCompromise: 1,
  CACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  removeFromCRL: 8,
};

const digest = (hash, data) => createHash(hash).update(data).digest();
const toArrayBuffer = (buf) => buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);

// YYMMDDHHMMSSZ (index.txt) → Date.
function parseAsn1Time(t) {
  const y = Number(t.slice(0, 2));
  return new Date(
    Date.UTC(
      y < 50 ? 2000 + y : 1900 + y,
      Number(t.slice(2, 4)) - 1,
      Number(t.slice(4, 6)),
      Number(t.slice(6, 8)),
      Number(t.slice(8, 10)),
      Number(t.slice(10, 12)),
    ),
  );
}

const MAX_CSR_BYTES = 64 * 1024;

export class DemoCa {
  /**
   * @param {{ dir: string, baseUrl: string, name?: string, statusValiditySeconds?: number }} options
   *   dir: where keys, index and issued certificates live (created; reused on the next start);
   *   baseUrl: this CA's HTTP address, e.g. http://127.0.0.1:17480 (for the OCSP and CRL URLs);
   *   statusValiditySeconds: freshness of OCSP answers and CRLs (default 10).
   */
  constructor(options) {
    this.dir = options.dir;
    this.baseUrl = options.baseUrl.replace(/\/$/, '');
    this.name = options.name ?? 'Kelid Demo';
    // How long OCSP answers and CRLs stay fresh: short, so a revocation shows within seconds.
    this.statusValiditySeconds = options.statusValiditySeconds ?? 10;
    this.crlIssuedAt = 0;
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

  /**
   * Answer a DER OCSP request from the index (RFC 6960), signed by the issuing CA itself. Answers are
   * fresh for `statusValiditySeconds` only, so a revocation shows within seconds even where clients
   * cache answers until nextUpdate (openssl's responder cannot go below one minute).
   */
  async ocsp(requestDer) {
    let request;
    try {
      request = AsnConvert.parse(requestDer, OCSPRequest);
    } catch {
      throw new DemoCaError(400, 'malformed OCSP request');
    }
    const requests = request.tbsRequest.requestList;
    if (requests.length === 0 || requests.length > 16) throw new DemoCaError(400, 'malformed OCSP request');
    const issuer = this.issuerIdentity();
    const index = this.readIndex();
    const now = new Date(Math.floor(Date.now() / 1000) * 1000);
    const nextUpdate = new Date(now.getTime() + this.statusValiditySeconds * 1000);
    const responses = requests.map(({ reqCert }) => {
      const hash = HASHES[reqCert.hashAlgorithm.algorithm];
      const ours =
        hash !== undefined &&
        Buffer.from(reqCert.issuerNameHash.buffer).equals(digest(hash, issuer.subjectDer)) &&
        Buffer.from(reqCert.issuerKeyHash.buffer).equals(digest(hash, issuer.keyBits));
      const serial = Buffer.from(reqCert.serialNumber)
        .toString('hex')
        .toUpperCase()
        .replace(/^(00)+(?=.)/, '');
      const entry = ours ? index.get(serial) : undefined;
      let certStatus;
      if (entry?.status === 'R') {
        certStatus = new CertStatus({
          revoked: new RevokedInfo({
            revocationTime: entry.revokedAt,
            ...(entry.reason !== undefined ? { revocationReason: new CRLReason(entry.reason) } : {}),
          }),
        });
      } else if (entry?.status === 'V') {
        certStatus = new CertStatus({ good: null });
      } else {
        certStatus = new CertStatus({ unknown: null });
      }
      return new SingleResponse({ certID: reqCert, certStatus, thisUpdate: now, nextUpdate });
    });
    const nonce = request.tbsRequest.requestExtensions?.find((e) => e.extnID === id_pkix_ocsp_nonce);
    const data = new ResponseData({
      responderID: new ResponderID({ byKey: new KeyHash(digest('sha1', issuer.keyBits)) }),
      producedAt: now,
      responses,
      ...(nonce
        ? { responseExtensions: [new Extension({ extnID: id_pkix_ocsp_nonce, extnValue: nonce.extnValue })] }
        : {}),
    });
    const tbs = Buffer.from(AsnConvert.serialize(data));
    const signature = sign('sha256', tbs, readFileSync(join(this.dir, 'issuing-ca.key')));
    const basic = new BasicOCSPResponse({
      tbsResponseData: data,
      signatureAlgorithm: new AlgorithmIdentifier({ algorithm: ECDSA_WITH_SHA256 }),
      signature: toArrayBuffer(signature),
    });
    const response = new OCSPResponse({
      responseStatus: OCSPResponseStatus.successful,
      responseBytes: new ResponseBytes({
        responseType: id_pkix_ocsp_basic,
        response: new OctetString(AsnConvert.serialize(basic)),
      }),
    });
    return Buffer.from(AsnConvert.serialize(response));
  }

  /** The issuing CA's subject DER and public key bits, for matching CertIDs. */
  issuerIdentity() {
    if (!this.identity) {
      const cert = AsnConvert.parse(pemToDer(this.issuingPem), Certificate);
      this.identity = {
        subjectDer: Buffer.from(AsnConvert.serialize(cert.tbsCertificate.subject)),
        keyBits: Buffer.from(cert.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey),
      };
    }
    return this.identity;
  }

  /** index.txt as serial (uppercase hex) → {status, revokedAt?, reason?}. */
  readIndex() {
    const entries = new Map();
    for (const line of readFileSync(join(this.dir, 'index.txt'), 'utf8').split('\n')) {
      const [status, , revocation, serial] = line.split('\t');
      if (!serial) continue;
      const entry = { status };
      if (status === 'R' && revocation) {
        const [when, reason] = revocation.split(',');
        entry.revokedAt = parseAsn1Time(when);
        if (reason && REASONS[reason] !== undefined) entry.reason = REASONS[reason];
      }
      entries.set(serial.toUpperCase().replace(/^(00)+(?=.)/, ''), entry);
    }
    return entries;
  }

  /** The current CRL (DER), reissued when it is older than half its validity. */
  async crlDer() {
    if (Date.now() - this.crlIssuedAt > (this.statusValiditySeconds * 1000) / 2) await this.updateCrl();
    return readFileSync(join(this.dir, 'issuing-ca.crl'));
  }

  updateCrl() {
    return this.serialized(() => this.updateCrlNow());
  }

  async updateCrlNow() {
    await this.openssl([
      'ca',
      '-config',
      'ca.cnf',
      '-gencrl',
      '-crlsec',
      String(this.statusValiditySeconds),
      '-out',
      'issuing-ca.crl.pem',
    ]);
    this.crlIssuedAt = Date.now();
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
