// A throwaway PKI run by the openssl CLI, for tests that need certificates, CRLs and OCSP answers made by
// someone else's code: root → intermediate → leaves, with AIA (OCSP, caIssuers) and CRL distribution
// points on 127.0.0.1, a delegated OCSP responder certificate (id-kp-OCSPSigning), `openssl ca -revoke`
// / `-gencrl`, `openssl ocsp` as a live responder or offline (-reqin/-respout), and a small static HTTP
// server for CRLs and caIssuers files. Everything lives in one temp directory; call cleanup().
//
//   const pki = await TestPki.create();
//   const leaf = await pki.issueLeaf('alice');
//   await pki.generateCrl();
//   const responder = await pki.startOcsp();
//   ...
//   await pki.cleanup();
//
// `openssl ocsp` reads index.txt once at start: issuing and revoking restart the running responders of
// that CA, so they always answer from the current database.
// `openssl ocsp` 3.0 also spins at 100% CPU after a connection that closes without a request, so never
// probe its port with a bare TCP connect (readiness is read from its "ACCEPT" line instead).
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export type TestKeyType = 'ec-p256' | 'ec-p384' | 'rsa-2048';

/** `openssl ca -crl_reason` names (RFC 5280 spellings, except OpenSSL's `CACompromise`). */
export type RevocationReason =
  | 'unspecified'
  | 'keyCompromise'
  | 'CACompromise'
  | 'affiliationChanged'
  | 'superseded'
  | 'cessationOfOperation'
  | 'certificateHold'
  | 'removeFromCRL';

export type CaName = 'root' | 'intermediate';

export interface TestCertificate {
  /** Short name; also the file stem in the PKI directory. */
  name: string;
  certPath: string;
  /** Absent for certificates issued from a caller's CSR. */
  keyPath?: string;
  pem: string;
  der: Uint8Array;
  /** Uppercase hex, as openssl writes it in index.txt. */
  serial: string;
}

export interface LeafOptions {
  /** openssl `-subj` form; default `/CN=<name>`. Values are UTF-8. */
  subject?: string;
  key?: TestKeyType;
  /** issueLeaf: certify this existing private key (PEM file) instead of generating one. */
  keyPath?: string;
  /** Issuing CA; default the intermediate. */
  issuer?: CaName;
  /** AIA OCSP URL; default the PKI's responder URL; `null` for none. */
  ocspUrl?: string | null;
  /** CRL distribution point; default the issuing CA's CRL URL; `null` for none. */
  crlUrl?: string | null;
  /** AIA caIssuers URL; default the issuing CA's certificate URL; `null` for none. */
  caIssuersUrl?: string | null;
  /**
   * openssl extension syntax; default `critical,digitalSignature,nonRepudiation`; `null` for none of
   * the CA's own (a CSR's keyUsage, if any, is then copied).
   */
  keyUsage?: string | null;
  /** openssl syntax, e.g. `clientAuth,emailProtection`. */
  extendedKeyUsage?: string;
  /** openssl syntax, e.g. `email:a@example.ir,DNS:example.ir`. */
  subjectAltName?: string;
  /** More `name = value` extension lines, verbatim. */
  extraExtensions?: string[];
  /** Restart the CA's running responders so they know the new certificate (default true). */
  reloadResponders?: boolean;
  days?: number;
  /** Serial number (hex) instead of the CA's next one: a look-alike of another CA's certificate. */
  serial?: string;
  /** Explicit validity (e.g. an already expired certificate); recorded issuance only. */
  startDate?: Date;
  endDate?: Date;
}

/**
 * For issuing from a caller's CSR as a plain `openssl ca` would: no keyUsage, AIA or CRL distribution
 * point of the CA's own, so the certificate carries the request's extensions only.
 */
export const REQUESTED_EXTENSIONS_ONLY: Readonly<LeafOptions> = {
  keyUsage: null,
  ocspUrl: null,
  crlUrl: null,
  caIssuersUrl: null,
};

export interface ResponderCertificateOptions {
  issuer?: CaName;
  /** Include id-kp-OCSPSigning (default true). */
  ocspSigning?: boolean;
  key?: TestKeyType;
}

export interface OcspResponderOptions {
  /** Signing certificate: the delegated responder (default), the CA itself, or any certificate with a key. */
  signer?: 'delegated' | 'ca' | TestCertificate;
  /** The CA whose index.txt the responder answers from; default the intermediate. */
  ca?: CaName;
  /** nextUpdate = now + nmin minutes (or ndays days); none when both are absent. */
  nmin?: number;
  ndays?: number;
  /** Digest for the response signature (`sha256`, `sha384`, `sha512`). */
  rmd?: string;
  /** `-rsigopt` values, e.g. `rsa_padding_mode:pss`. */
  rsigopt?: string[];
  /** Listening port; default the PKI's OCSP port (the one in leaves' AIA). */
  port?: number;
  /** Leave certificates out of responses (`-resp_no_certs`). */
  noCerts?: boolean;
  /** Identify the responder by key hash instead of by name (`-resp_key_id`). */
  responderIdByKey?: boolean;
}

export interface TestHttpServer {
  readonly port: number;
  url(pathname?: string): string;
  /** Every request seen, in order. */
  readonly requests: { method: string; url: string }[];
  close(): Promise<void>;
}

/** Run openssl; rejects with its stderr on failure. */
export async function openssl(
  args: string[],
  options: { cwd?: string } = {},
): Promise<{ stdout: string; stderr: string }> {
  try {
    const r = await execFileAsync('openssl', args, { cwd: options.cwd, maxBuffer: 64 * 1024 * 1024 });
    return { stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`openssl ${args[0]} failed: ${err.stderr ?? err.message}`);
  }
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** An HTTP server on 127.0.0.1 (port 0 = any free port) that records every request. */
export async function startHttpServer(
  handler: http.RequestListener,
  options: { port?: number } = {},
): Promise<TestHttpServer> {
  const requests: { method: string; url: string }[] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '' });
    handler(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    port,
    requests,
    url: (pathname = '/') => `http://127.0.0.1:${port}${pathname.startsWith('/') ? '' : '/'}${pathname}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A server that accepts connections and requests and never answers (for timeout tests). */
export async function startHangingServer(): Promise<TestHttpServer> {
  return startHttpServer(() => undefined);
}

/**
 * An HTTP proxy to `target` (e.g. an `openssl ocsp` responder) that can rewrite response bodies: flip a
 * byte, replay an earlier answer, substitute another. `transform` gets the real body and the request
 * number (0-based).
 */
export async function startProxy(
  target: string,
  transform: (body: Uint8Array, index: number) => Uint8Array = (b) => b,
): Promise<TestHttpServer> {
  let count = 0;
  const base = target.replace(/\/$/, '');
  return startHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const index = count++;
      const body = Buffer.concat(chunks);
      const headers: Record<string, string> = {};
      if (req.headers['content-type']) headers['content-type'] = req.headers['content-type'];
      fetch(`${base}${req.url ?? '/'}`, {
        method: req.method ?? 'GET',
        headers,
        ...(body.length > 0 ? { body } : {}),
      })
        .then(async (r) => {
          const out = transform(new Uint8Array(await r.arrayBuffer()), index);
          res.writeHead(r.status, {
            'content-type': r.headers.get('content-type') ?? 'application/octet-stream',
          });
          res.end(out);
        })
        .catch(() => res.writeHead(502).end());
    });
  });
}

const CONTENT_TYPES: Record<string, string> = {
  '.crl': 'application/pkix-crl',
  '.crt': 'application/pkix-cert',
  '.cer': 'application/pkix-cert',
  '.p7c': 'application/pkcs7-mime',
  '.pem': 'application/x-pem-file',
};

/** A request handler serving the files of `dir` (no directory listing, no `..`). */
export function serveDirectory(dir: string): http.RequestListener {
  return (req, res) => {
    const pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const file = path.join(dir, path.normalize(pathname).replace(/^([/\\])+/, ''));
    if (!file.startsWith(dir + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    const body = fs.readFileSync(file);
    res
      .writeHead(200, {
        'content-type': CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream',
        'content-length': body.length,
      })
      .end(body);
  };
}

/** A running `openssl ocsp` responder. */
export class OcspResponder {
  private child: ChildProcess | undefined;

  constructor(
    readonly port: number,
    private readonly args: string[],
    private readonly cwd: string,
    /** The CA whose database it answers from. */
    readonly ca: CaName = 'intermediate',
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}/`;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  async start(): Promise<void> {
    if (this.child) return;
    const child = spawn('openssl', ['ocsp', ...this.args, '-port', String(this.port)], {
      cwd: this.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`openssl ocsp did not start: ${output}`)), 10_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('ACCEPT')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`openssl ocsp exited (${code}): ${output}`));
      });
    }).catch((e: unknown) => {
      this.child = undefined;
      throw e;
    });
    child.once('exit', () => {
      if (this.child === child) this.child = undefined;
    });
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  }

  /** Stop and start again on the same port (to load a changed index.txt). */
  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

function opensslTime(d: Date): string {
  return `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

// index.txt times are YYMMDDHHMMSSZ (or YYYYMMDDHHMMSSZ for years past 2049).
function parseIndexTime(text: string): Date {
  const full = text.length === 15 ? text : `${Number(text.slice(0, 2)) >= 50 ? '19' : '20'}${text}`;
  const [y, mo, d, h, mi, s] = [0, 4, 6, 8, 10, 12].map((i, n) =>
    Number(full.slice(i, i + (n === 0 ? 4 : 2))),
  );
  return new Date(Date.UTC(y!, mo! - 1, d!, h!, mi!, s!));
}

function keyArgs(key: TestKeyType): string[] {
  switch (key) {
    case 'ec-p256':
      return ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'];
    case 'ec-p384':
      return ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384'];
    case 'rsa-2048':
      return ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'];
  }
}

export class TestPki {
  readonly root!: TestCertificate;
  readonly intermediate!: TestCertificate;
  /** Delegated OCSP responder certificate of the intermediate (id-kp-OCSPSigning, ocsp-nocheck). */
  readonly ocspSigner!: TestCertificate;
  /** Serves `<dir>/www/`: the CRLs and the CA certificates (caIssuers). */
  readonly http: TestHttpServer;
  private readonly responders = new Set<OcspResponder>();
  private unrecordedSerial = 0xa0000000;

  private constructor(
    readonly dir: string,
    http: TestHttpServer,
    readonly ocspPort: number,
    private readonly defaultKey: TestKeyType,
  ) {
    this.http = http;
  }

  /** Root and intermediate CAs plus the delegated responder certificate; the HTTP server is started. */
  static async create(
    options: {
      key?: TestKeyType;
      rootSubject?: string;
      intermediateSubject?: string;
      /** The root's subjectKeyIdentifier (hex) instead of its key hash: a fake CA copying a real one's. */
      rootSubjectKeyIdentifier?: string;
    } = {},
  ) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-test-pki-'));
    const www = path.join(dir, 'www');
    fs.mkdirSync(www);
    const httpServer = await startHttpServer(serveDirectory(www));
    const pki = new TestPki(dir, httpServer, await freePort(), options.key ?? 'ec-p256');
    try {
      await pki.init(
        options.rootSubject ?? '/C=IR/O=Kelid Test/CN=Kelid Test Root',
        options.intermediateSubject,
        options.rootSubjectKeyIdentifier,
      );
    } catch (e) {
      await pki.cleanup();
      throw e;
    }
    return pki;
  }

  /** The URL in leaves' AIA OCSP field. */
  get ocspUrl(): string {
    return `http://127.0.0.1:${this.ocspPort}/`;
  }

  crlUrl(ca: CaName = 'intermediate'): string {
    return this.http.url(`/${ca}.crl`);
  }

  /** The caIssuers URL for certificates issued by `ca` (its certificate, DER). */
  certificateUrl(ca: CaName = 'intermediate'): string {
    return this.http.url(`/${ca}.crt`);
  }

  /** Intermediate then root, PEM (a `chain` for certificates.import). */
  get chainPem(): string {
    return this.intermediate.pem + this.root.pem;
  }

  /** A file with root and intermediate, PEM (for `-CAfile`). */
  get caBundlePath(): string {
    return path.join(this.dir, 'ca-bundle.pem');
  }

  /** Write a file under the HTTP server's root. */
  publish(name: string, content: string | Uint8Array): string {
    fs.writeFileSync(path.join(this.dir, 'www', name), content);
    return this.http.url(`/${name}`);
  }

  /** Run openssl in the PKI directory. */
  openssl(args: string[]): Promise<{ stdout: string; stderr: string }> {
    return openssl(args, { cwd: this.dir });
  }

  async generateKey(name: string, key: TestKeyType = this.defaultKey): Promise<string> {
    const keyPath = path.join(this.dir, `${name}.key`);
    await this.openssl(['genpkey', ...keyArgs(key), '-out', keyPath]);
    return keyPath;
  }

  /** A PKCS#10 request for `subject` (openssl `-subj` form) signed by the key in `keyPath`. */
  private async makeCsr(keyPath: string, subject: string, csrPath: string): Promise<void> {
    await this.openssl([
      'req',
      '-new',
      '-utf8',
      '-config',
      this.configPath,
      '-key',
      keyPath,
      '-subj',
      subject,
      '-out',
      csrPath,
    ]);
  }

  /** A leaf from a key generated here, issued by `openssl ca` (recorded in index.txt). */
  async issueLeaf(name: string, options: LeafOptions = {}): Promise<TestCertificate> {
    const keyPath = options.keyPath ?? (await this.generateKey(name, options.key));
    const csrPath = path.join(this.dir, `${name}.csr`);
    await this.makeCsr(keyPath, options.subject ?? `/CN=${name}`, csrPath);
    const cert = await this.caSign(
      name,
      csrPath,
      options.issuer ?? 'intermediate',
      this.leafExtensions(options),
      options,
    );
    return { ...cert, keyPath };
  }

  /** A leaf for a caller's CSR (PEM or DER); the subject is taken from the CSR unless `subject` is given. */
  async issueFromCsr(
    name: string,
    csr: string | Uint8Array,
    options: LeafOptions = {},
  ): Promise<TestCertificate> {
    const csrPath = path.join(this.dir, `${name}.csr`);
    if (typeof csr === 'string') {
      fs.writeFileSync(csrPath, csr);
    } else {
      fs.writeFileSync(`${csrPath}.der`, csr);
      await this.openssl(['req', '-inform', 'DER', '-in', `${csrPath}.der`, '-out', csrPath]);
    }
    const extra = options.subject ? ['-subj', options.subject] : [];
    return this.caSign(
      name,
      csrPath,
      options.issuer ?? 'intermediate',
      this.leafExtensions(options),
      options,
      extra,
    );
  }

  /**
   * A leaf signed with the intermediate's key but never entered in its database: the CA "never issued"
   * it, so `openssl ocsp` answers `unknown` (and the CRL does not list it).
   */
  async issueUnrecorded(name: string, options: LeafOptions = {}): Promise<TestCertificate> {
    const keyPath = await this.generateKey(name, options.key);
    const csrPath = path.join(this.dir, `${name}.csr`);
    const certPath = path.join(this.dir, `${name}.crt`);
    const extPath = path.join(this.dir, `${name}.ext`);
    fs.writeFileSync(extPath, `[ext]\n${this.leafExtensions(options).join('\n')}\n`);
    await this.makeCsr(keyPath, options.subject ?? `/CN=${name}`, csrPath);
    const serial = (this.unrecordedSerial++).toString(16).toUpperCase();
    await this.openssl([
      'x509',
      '-req',
      '-in',
      csrPath,
      '-CA',
      this.intermediate.certPath,
      '-CAkey',
      path.join(this.dir, 'intermediate.key'),
      '-set_serial',
      `0x${serial}`,
      '-days',
      String(options.days ?? 365),
      '-sha256',
      '-extfile',
      extPath,
      '-extensions',
      'ext',
      '-out',
      certPath,
    ]);
    return { ...this.load(name, certPath, serial), keyPath };
  }

  /** An OCSP responder certificate (with or without id-kp-OCSPSigning) issued by `issuer`. */
  async issueResponder(name: string, options: ResponderCertificateOptions = {}): Promise<TestCertificate> {
    const lines = [
      'basicConstraints = critical,CA:false',
      'keyUsage = critical,digitalSignature',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid',
    ];
    if (options.ocspSigning ?? true) lines.push('extendedKeyUsage = OCSPSigning', 'noCheck = ignored');
    else lines.push('extendedKeyUsage = clientAuth');
    const keyPath = await this.generateKey(name, options.key);
    const csrPath = path.join(this.dir, `${name}.csr`);
    await this.openssl([
      'req',
      '-new',
      '-utf8',
      '-config',
      this.configPath,
      '-key',
      keyPath,
      '-subj',
      `/O=Kelid Test/CN=${name}`,
      '-out',
      csrPath,
    ]);
    const cert = await this.caSign(name, csrPath, options.issuer ?? 'intermediate', lines, {});
    return { ...cert, keyPath };
  }

  /**
   * `openssl ca -revoke`; returns the revocation time openssl recorded (second precision). Running
   * responders of that CA are restarted so they see it.
   */
  async revoke(
    cert: TestCertificate,
    reason?: RevocationReason,
    options: { ca?: CaName; compromiseTime?: Date } = {},
  ): Promise<Date> {
    const ca = options.ca ?? 'intermediate';
    const args = ['ca', '-config', this.configPath, '-name', `ca_${ca}`, '-revoke', cert.certPath];
    if (reason === 'certificateHold') args.push('-crl_hold', 'holdInstructionReject');
    else if (reason === 'keyCompromise' && options.compromiseTime)
      args.push('-crl_compromise', opensslTime(options.compromiseTime));
    else if (reason) args.push('-crl_reason', reason);
    await this.openssl(args);
    const line = fs
      .readFileSync(path.join(this.dir, ca, 'index.txt'), 'utf8')
      .split('\n')
      .map((l) => l.split('\t'))
      .find((f) => f[0] === 'R' && f[3] === cert.serial);
    if (!line) throw new Error(`serial ${cert.serial} not revoked in index.txt`);
    await this.reloadResponders(ca);
    return parseIndexTime(line[2]!.split(',')[0]!);
  }

  /** `openssl ca -gencrl`: writes `<ca>.crl` (DER) to the HTTP root and returns it. */
  async generateCrl(options: { ca?: CaName; hours?: number } = {}): Promise<Uint8Array> {
    const ca = options.ca ?? 'intermediate';
    const pem = path.join(this.dir, `${ca}.crl.pem`);
    const der = path.join(this.dir, 'www', `${ca}.crl`);
    await this.openssl([
      'ca',
      '-config',
      this.configPath,
      '-name',
      `ca_${ca}`,
      '-gencrl',
      '-crlhours',
      String(options.hours ?? 24),
      '-out',
      pem,
    ]);
    await this.openssl(['crl', '-in', pem, '-outform', 'DER', '-out', der]);
    return new Uint8Array(fs.readFileSync(der));
  }

  /** Start `openssl ocsp` as a responder (default: delegated signer, the PKI's OCSP port). */
  async startOcsp(options: OcspResponderOptions = {}): Promise<OcspResponder> {
    const responder = new OcspResponder(
      options.port ?? this.ocspPort,
      [...this.responderArgs(options), '-ignore_err'],
      this.dir,
      options.ca ?? 'intermediate',
    );
    await responder.start();
    this.responders.add(responder);
    return responder;
  }

  /** Answer a DER OCSP request offline (`openssl ocsp -reqin … -respout …`), as the responder would. */
  async ocspRespond(requestDer: Uint8Array, options: OcspResponderOptions = {}): Promise<Uint8Array> {
    const stem = path.join(this.dir, `ocsp-${process.hrtime.bigint()}`);
    fs.writeFileSync(`${stem}.req`, requestDer);
    await this.openssl([
      'ocsp',
      ...this.responderArgs(options),
      '-reqin',
      `${stem}.req`,
      '-respout',
      `${stem}.resp`,
    ]);
    return new Uint8Array(fs.readFileSync(`${stem}.resp`));
  }

  async stopAllResponders(): Promise<void> {
    for (const r of this.responders) await r.stop();
  }

  /** Stop responders and the HTTP server and delete the directory. */
  async cleanup(): Promise<void> {
    await this.stopAllResponders();
    this.responders.clear();
    await this.http.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  // -- internals ---------------------------------------------------------------------------------

  private get configPath(): string {
    return path.join(this.dir, 'ca.cnf');
  }

  // `openssl ocsp` reads index.txt once: running responders of `ca` must restart to see a change.
  private async reloadResponders(ca: CaName): Promise<void> {
    for (const r of this.responders) if (r.running && r.ca === ca) await r.restart();
  }

  private responderArgs(options: OcspResponderOptions): string[] {
    const ca = options.ca ?? 'intermediate';
    const caCert = ca === 'root' ? this.root : this.intermediate;
    let signerCert: string;
    let signerKey: string;
    if (options.signer === 'ca') {
      signerCert = caCert.certPath;
      signerKey = path.join(this.dir, `${ca}.key`);
    } else if (options.signer === undefined || options.signer === 'delegated') {
      signerCert = this.ocspSigner.certPath;
      signerKey = this.ocspSigner.keyPath!;
    } else {
      if (!options.signer.keyPath) throw new TypeError('the responder signer needs a key');
      signerCert = options.signer.certPath;
      signerKey = options.signer.keyPath;
    }
    const args = [
      '-index',
      path.join(this.dir, ca, 'index.txt'),
      '-CA',
      caCert.certPath,
      '-rsigner',
      signerCert,
      '-rkey',
      signerKey,
    ];
    if (options.nmin !== undefined) args.push('-nmin', String(options.nmin));
    if (options.ndays !== undefined) args.push('-ndays', String(options.ndays));
    if (options.rmd) args.push('-rmd', options.rmd);
    for (const o of options.rsigopt ?? []) args.push('-rsigopt', o);
    if (options.noCerts) args.push('-resp_no_certs');
    if (options.responderIdByKey) args.push('-resp_key_id');
    return args;
  }

  private leafExtensions(options: LeafOptions): string[] {
    const issuer = options.issuer ?? 'intermediate';
    const ocsp = options.ocspUrl === undefined ? this.ocspUrl : options.ocspUrl;
    const crl = options.crlUrl === undefined ? this.crlUrl(issuer) : options.crlUrl;
    const caIssuers = options.caIssuersUrl === undefined ? this.certificateUrl(issuer) : options.caIssuersUrl;
    const keyUsage =
      options.keyUsage === undefined ? 'critical,digitalSignature,nonRepudiation' : options.keyUsage;
    const lines = [
      'basicConstraints = critical,CA:false',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid',
    ];
    if (keyUsage !== null) lines.splice(1, 0, `keyUsage = ${keyUsage}`);
    const aia = [ocsp ? `OCSP;URI:${ocsp}` : '', caIssuers ? `caIssuers;URI:${caIssuers}` : ''].filter(
      Boolean,
    );
    if (aia.length > 0) lines.push(`authorityInfoAccess = ${aia.join(',')}`);
    if (crl) lines.push(`crlDistributionPoints = URI:${crl}`);
    if (options.extendedKeyUsage) lines.push(`extendedKeyUsage = ${options.extendedKeyUsage}`);
    if (options.subjectAltName) lines.push(`subjectAltName = ${options.subjectAltName}`);
    lines.push(...(options.extraExtensions ?? []));
    return lines;
  }

  private async caSign(
    name: string,
    csrPath: string,
    ca: CaName,
    extensions: string[],
    options: LeafOptions,
    extraArgs: string[] = [],
  ): Promise<TestCertificate> {
    const certPath = path.join(this.dir, `${name}.crt`);
    const extPath = path.join(this.dir, `${name}.ext`);
    fs.writeFileSync(extPath, `[ext]\n${extensions.join('\n')}\n`);
    const args = [
      'ca',
      '-batch',
      '-utf8',
      '-notext',
      '-config',
      this.configPath,
      '-name',
      `ca_${ca}`,
      '-in',
      csrPath,
      '-out',
      certPath,
      '-extfile',
      extPath,
      '-extensions',
      'ext',
      ...extraArgs,
    ];
    if (options.serial) fs.writeFileSync(path.join(this.dir, ca, 'serial'), `${options.serial}\n`);
    if (options.startDate) args.push('-startdate', opensslTime(options.startDate));
    if (options.endDate) args.push('-enddate', opensslTime(options.endDate));
    else if (options.days !== undefined) args.push('-days', String(options.days));
    await this.openssl(args);
    // A responder that has not learnt of a new certificate yet answers `unknown` for it.
    if (options.reloadResponders !== false) await this.reloadResponders(ca);
    const { stdout } = await this.openssl(['x509', '-in', certPath, '-noout', '-serial']);
    return this.load(name, certPath, stdout.trim().replace(/^serial=/, ''));
  }

  private load(name: string, certPath: string, serial: string): TestCertificate {
    const text = fs.readFileSync(certPath, 'utf8');
    const pem = text.slice(text.indexOf('-----BEGIN CERTIFICATE-----'));
    const body = pem.replace(/-----(BEGIN|END) CERTIFICATE-----|\s/g, '');
    return { name, certPath, pem, der: new Uint8Array(Buffer.from(body, 'base64')), serial };
  }

  private async init(
    rootSubject: string,
    intermediateSubject?: string,
    rootSubjectKeyIdentifier?: string,
  ): Promise<void> {
    const d = this.dir;
    for (const ca of ['root', 'intermediate'] as const) {
      fs.mkdirSync(path.join(d, ca, 'newcerts'), { recursive: true });
      fs.writeFileSync(path.join(d, ca, 'index.txt'), '');
      fs.writeFileSync(path.join(d, ca, 'index.txt.attr'), 'unique_subject = no\n');
      fs.writeFileSync(path.join(d, ca, 'serial'), ca === 'root' ? '1000\n' : '2000\n');
      fs.writeFileSync(path.join(d, ca, 'crlnumber'), '01\n');
    }
    const caSection = (ca: CaName) => `[ ca_${ca} ]
dir = ${path.join(d, ca)}
database = $dir/index.txt
serial = $dir/serial
crlnumber = $dir/crlnumber
new_certs_dir = $dir/newcerts
certificate = ${path.join(d, `${ca}.crt`)}
private_key = ${path.join(d, `${ca}.key`)}
default_md = sha256
default_days = 365
default_crl_days = 1
policy = policy_any
preserve = yes
unique_subject = no
copy_extensions = copy
string_mask = utf8only
utf8 = yes
crl_extensions = crl_ext
`;
    fs.writeFileSync(
      this.configPath,
      `[ req ]
distinguished_name = req_dn
string_mask = utf8only
utf8 = yes
[ req_dn ]
[ ca ]
default_ca = ca_intermediate
${caSection('root')}
${caSection('intermediate')}
[ policy_any ]
countryName = optional
stateOrProvinceName = optional
localityName = optional
organizationName = optional
organizationalUnitName = optional
commonName = optional
serialNumber = optional
emailAddress = optional
givenName = optional
surname = optional
title = optional
[ v3_root ]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = ${rootSubjectKeyIdentifier ?? 'hash'}
[ v3_intermediate ]
basicConstraints = critical,CA:true,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
authorityInfoAccess = caIssuers;URI:${this.certificateUrl('root')}
crlDistributionPoints = URI:${this.crlUrl('root')}
[ crl_ext ]
authorityKeyIdentifier = keyid
`,
    );
    const rootKey = await this.generateKey('root');
    const rootCert = path.join(d, 'root.crt');
    await this.openssl([
      'req',
      '-x509',
      '-new',
      '-utf8',
      '-config',
      this.configPath,
      '-extensions',
      'v3_root',
      '-key',
      rootKey,
      '-subj',
      rootSubject,
      '-days',
      '3650',
      '-sha256',
      '-set_serial',
      '0x0100',
      '-out',
      rootCert,
    ]);
    const mutable = this as {
      root: TestCertificate;
      intermediate: TestCertificate;
      ocspSigner: TestCertificate;
    };
    mutable.root = { ...this.load('root', rootCert, '0100'), keyPath: rootKey };

    const intKey = await this.generateKey('intermediate');
    const intCsr = path.join(d, 'intermediate.csr');
    await this.openssl([
      'req',
      '-new',
      '-utf8',
      '-config',
      this.configPath,
      '-key',
      intKey,
      '-subj',
      intermediateSubject ?? '/C=IR/O=Kelid Test/CN=Kelid Test Issuing CA',
      '-out',
      intCsr,
    ]);
    const intermediate = await this.caSign(
      'intermediate',
      intCsr,
      'root',
      [
        'basicConstraints = critical,CA:true,pathlen:0',
        'keyUsage = critical,keyCertSign,cRLSign',
        'subjectKeyIdentifier = hash',
        'authorityKeyIdentifier = keyid',
        `authorityInfoAccess = caIssuers;URI:${this.certificateUrl('root')}`,
        `crlDistributionPoints = URI:${this.crlUrl('root')}`,
      ],
      { days: 3650 },
    );
    mutable.intermediate = { ...intermediate, keyPath: intKey };
    mutable.ocspSigner = await this.issueResponder('ocsp-signer');

    fs.writeFileSync(this.caBundlePath, this.root.pem + this.intermediate.pem);
    this.publish('root.crt', this.root.der);
    this.publish('intermediate.crt', this.intermediate.der);
    await this.generateCrl({ ca: 'root' });
    await this.generateCrl({ ca: 'intermediate' });
  }
}
