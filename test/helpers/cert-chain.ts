// Small certificate chains with chosen extensions, made by the openssl CLI (`req -x509` for roots,
// `x509 -req -CA` for the rest), for path-validation tests that need CAs TestPki does not make: an
// intermediate without cA, a pathLenConstraint exceeded, name constraints, a short-lived CA.
//
//   const chain = CertChain.create();
//   const root = chain.root('root');
//   const ca = chain.issue('ca', root, { ext: ['basicConstraints = critical,CA:true'] });
//   ...
//   chain.cleanup();
import { execFileSync } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { NodeDigestSigner } from './node-signer.js';

export interface ChainCertificate {
  name: string;
  keyPath: string;
  certPath: string;
  der: Uint8Array;
  signer: NodeDigestSigner;
}

export interface IssueOptions {
  /** openssl `-subj` form; default `/CN=<name>`. */
  subject?: string;
  /** Extension lines in openssl config syntax (more `[section]`s may follow the extension lines). */
  ext?: string[];
  days?: number;
  /** issue: certify this existing key (PEM) instead of a new one. */
  keyPath?: string;
}

/** The extension lines of a CA: cA, keyCertSign; `pathLen` when given. */
export function caExtensions(pathLen?: number): string[] {
  return [
    `basicConstraints = critical,CA:true${pathLen === undefined ? '' : `,pathlen:${pathLen}`}`,
    'keyUsage = critical,keyCertSign,cRLSign',
    'subjectKeyIdentifier = hash',
  ];
}

/** keyUsage digitalSignature + extendedKeyUsage clientAuth: a login certificate. */
export const AUTHENTICATION_EXTENSIONS = [
  'basicConstraints = critical,CA:false',
  'keyUsage = critical,digitalSignature',
  'extendedKeyUsage = clientAuth',
];

export interface CertifiedCsr {
  /** The signing certificate (PEM). */
  certificate: string;
  /** The self-signed CA that issued it (PEM). */
  ca: string;
}

/**
 * A signing certificate (keyUsage digitalSignature, nonRepudiation; two days) for a CSR made elsewhere,
 * e.g. for a key generated on a token, issued by a one-off self-signed P-256 CA. Files in `dir` are
 * named after `stem`.
 */
export function certifySigningCsr(
  dir: string,
  stem: string,
  csr: string,
  options: { caSubject: string; serial: number },
): CertifiedCsr {
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  fs.writeFileSync(path.join(dir, `${stem}.csr`), csr);
  run(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${stem}-ca.key`]);
  run([
    'req',
    '-x509',
    '-new',
    '-key',
    `${stem}-ca.key`,
    '-subj',
    options.caSubject,
    '-days',
    '2',
    '-out',
    `${stem}-ca.pem`,
  ]);
  fs.writeFileSync(path.join(dir, `${stem}.ext`), '[e]\nkeyUsage=critical,digitalSignature,nonRepudiation\n');
  run([
    'x509',
    '-req',
    '-in',
    `${stem}.csr`,
    '-CA',
    `${stem}-ca.pem`,
    '-CAkey',
    `${stem}-ca.key`,
    '-set_serial',
    String(options.serial),
    '-days',
    '2',
    '-extfile',
    `${stem}.ext`,
    '-extensions',
    'e',
    '-out',
    `${stem}.pem`,
  ]);
  return {
    certificate: fs.readFileSync(path.join(dir, `${stem}.pem`), 'utf8'),
    ca: fs.readFileSync(path.join(dir, `${stem}-ca.pem`), 'utf8'),
  };
}

export class CertChain {
  private serial = 0x1000;

  private constructor(readonly dir: string) {}

  static create(): CertChain {
    return new CertChain(fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-chain-')));
  }

  private openssl(args: string[]): void {
    execFileSync('openssl', args, { cwd: this.dir, stdio: 'pipe' });
  }

  private key(name: string): string {
    const keyPath = path.join(this.dir, `${name}.key`);
    this.openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyPath]);
    return keyPath;
  }

  private load(name: string, keyPath: string, certPath: string): ChainCertificate {
    this.openssl(['x509', '-in', certPath, '-outform', 'DER', '-out', `${name}.der`]);
    return {
      name,
      keyPath,
      certPath,
      der: new Uint8Array(fs.readFileSync(path.join(this.dir, `${name}.der`))),
      signer: new NodeDigestSigner(createPrivateKey(fs.readFileSync(keyPath))),
    };
  }

  private extFile(name: string, ext: string[]): string {
    const file = path.join(this.dir, `${name}.ext`);
    fs.writeFileSync(file, `[ext]\n${ext.join('\n')}\n`);
    return file;
  }

  /** A self-signed root (CA extensions unless `ext` says otherwise). */
  root(name: string, options: IssueOptions = {}): ChainCertificate {
    const keyPath = this.key(name);
    const certPath = path.join(this.dir, `${name}.pem`);
    const ext = this.extFile(name, options.ext ?? caExtensions());
    this.openssl([
      'req',
      '-x509',
      '-new',
      '-utf8',
      '-key',
      keyPath,
      '-subj',
      options.subject ?? `/CN=${name}`,
      '-days',
      String(options.days ?? 30),
      '-config',
      ext,
      '-extensions',
      'ext',
      '-out',
      certPath,
      '-set_serial',
      String(this.serial++),
    ]);
    return this.load(name, keyPath, certPath);
  }

  /** A certificate for a new key, signed by `issuer`. */
  issue(name: string, issuer: ChainCertificate, options: IssueOptions = {}): ChainCertificate {
    const keyPath = options.keyPath ?? this.key(name);
    const csr = path.join(this.dir, `${name}.csr`);
    const certPath = path.join(this.dir, `${name}.pem`);
    this.openssl([
      'req',
      '-new',
      '-utf8',
      '-key',
      keyPath,
      '-subj',
      options.subject ?? `/CN=${name}`,
      '-out',
      csr,
    ]);
    // First: `ext` may open sections of its own (a nameConstraints dirName) after its lines.
    const ext = this.extFile(name, [
      'authorityKeyIdentifier = keyid',
      ...(options.ext ?? AUTHENTICATION_EXTENSIONS),
    ]);
    this.openssl([
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      issuer.certPath,
      '-CAkey',
      issuer.keyPath,
      '-set_serial',
      String(this.serial++),
      '-days',
      String(options.days ?? 30),
      '-sha256',
      '-extfile',
      ext,
      '-extensions',
      'ext',
      '-out',
      certPath,
    ]);
    return this.load(name, keyPath, certPath);
  }

  /** Write `<stem>.p8.der` (PKCS#8) and `<stem>.pub.der` (SPKI) of a certificate's key, for pkcs11-tool. */
  exportKey(c: ChainCertificate, stem: string): void {
    this.openssl([
      'pkcs8',
      '-topk8',
      '-nocrypt',
      '-in',
      c.keyPath,
      '-outform',
      'DER',
      '-out',
      `${stem}.p8.der`,
    ]);
    this.openssl(['pkey', '-in', c.keyPath, '-pubout', '-outform', 'DER', '-out', `${stem}.pub.der`]);
  }

  cleanup(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
