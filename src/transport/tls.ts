import 'reflect-metadata';
import {
  X509Certificate as NodeX509Certificate,
  createPrivateKey,
  randomBytes,
  webcrypto,
} from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as x509 from '@peculiar/x509';
import { encodePem, encodeTlv } from '../pki/der.js';

// PROTOCOL.md section 1: TLS for 127.0.0.1, ::1 and localhost from a per-install CA. The CA key pair
// is generated non-extractable, signs the one leaf certificate, and is dropped: nothing can sign with
// it afterwards, so installing the CA in a trust store trusts exactly this leaf. The CA also carries
// name constraints (localhost, 127.0.0.1/32, ::1/128), so even a stolen CA key could not vouch for
// any other name. Only the leaf key, the leaf certificate and the CA certificate are stored.

/** The files inside `<stateDir>/tls/`. */
export const TLS_DIR = 'tls';
const LEAF_KEY = 'leaf-key.pem';
const LEAF_CERT = 'leaf-cert.pem';
const CA_CERT = 'ca-cert.pem';

const DAY_MS = 24 * 60 * 60 * 1000;
const CA_VALIDITY_DAYS = 3650;
// Apple platforms refuse TLS server certificates valid for more than 825 days.
const LEAF_VALIDITY_DAYS = 800;
// Renew a while before expiry, so a running agent is never caught with an expired leaf.
const RENEW_BEFORE_DAYS = 30;

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;

export interface TlsMaterial {
  /** Leaf private key, PKCS#8 PEM. */
  key: string;
  /** Leaf certificate, PEM. */
  cert: string;
  /** The local CA certificate, PEM (what `kelid ca install` trusts and agent.json publishes). */
  caCertificatePem: string;
  /** True when this call generated new material (a new CA to install). */
  generated: boolean;
}

export interface TlsOptions {
  now?: () => Date;
}

/** Load the TLS material from `<stateDir>/tls`, generating a new CA and leaf when missing, damaged or expiring. */
export async function ensureTlsMaterial(stateDir: string, options: TlsOptions = {}): Promise<TlsMaterial> {
  const now = options.now?.() ?? new Date();
  const dir = path.join(stateDir, TLS_DIR);
  const existing = loadTlsMaterial(dir, now);
  if (existing) return existing;
  const material = await generateTlsMaterial(now);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  writePrivate(path.join(dir, LEAF_KEY), material.key);
  writePrivate(path.join(dir, LEAF_CERT), material.cert);
  writePrivate(path.join(dir, CA_CERT), material.caCertificatePem);
  return material;
}

/** The stored CA certificate (PEM), or null when none was generated yet. */
export function readCaCertificate(stateDir: string): string | null {
  try {
    return fs.readFileSync(path.join(stateDir, TLS_DIR, CA_CERT), 'utf8');
  } catch {
    return null;
  }
}

function writePrivate(file: string, text: string): void {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
  fs.renameSync(tmp, file);
}

/** The stored material when it is complete, consistent and not about to expire; else null. */
function loadTlsMaterial(dir: string, now: Date): TlsMaterial | null {
  let key: string, cert: string, ca: string;
  try {
    key = fs.readFileSync(path.join(dir, LEAF_KEY), 'utf8');
    cert = fs.readFileSync(path.join(dir, LEAF_CERT), 'utf8');
    ca = fs.readFileSync(path.join(dir, CA_CERT), 'utf8');
  } catch {
    return null;
  }
  try {
    const leaf = new NodeX509Certificate(cert);
    const caCert = new NodeX509Certificate(ca);
    const renewAt = Date.parse(leaf.validTo) - RENEW_BEFORE_DAYS * DAY_MS;
    if (now.getTime() >= renewAt || now.getTime() < Date.parse(leaf.validFrom)) return null;
    if (now.getTime() >= Date.parse(caCert.validTo)) return null;
    if (!leaf.verify(caCert.publicKey) || !leaf.checkPrivateKey(createPrivateKey(key))) return null;
  } catch {
    return null;
  }
  return { key, cert, caCertificatePem: ca, generated: false };
}

/** Generate a fresh CA (its key never leaves this function) and a leaf certificate signed by it. */
export async function generateTlsMaterial(now = new Date()): Promise<TlsMaterial> {
  const crypto = webcrypto;
  x509.cryptoProvider.set(crypto);
  const notBefore = new Date(now.getTime() - 60 * 60 * 1000);

  const caKeys = (await crypto.subtle.generateKey(EC_P256, false, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const caName = `CN=Kelid local CA ${randomBytes(4).toString('hex')}, O=Kelid`;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: caName,
    notBefore,
    notAfter: new Date(now.getTime() + CA_VALIDITY_DAYS * DAY_MS),
    signingAlgorithm: SIGNING_ALGORITHM,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.Extension('2.5.29.30', true, nameConstraints()),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const leafKeys = (await crypto.subtle.generateKey(EC_P256, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: 'CN=localhost, O=Kelid',
    issuer: ca.subject,
    notBefore,
    notAfter: new Date(now.getTime() + LEAF_VALIDITY_DAYS * DAY_MS),
    signingAlgorithm: SIGNING_ALGORITHM,
    publicKey: leafKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension(
        [
          { type: 'dns', value: 'localhost' },
          { type: 'ip', value: '127.0.0.1' },
          { type: 'ip', value: '::1' },
        ],
        false,
      ),
      await x509.SubjectKeyIdentifierExtension.create(leafKeys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const pkcs8 = await crypto.subtle.exportKey('pkcs8', leafKeys.privateKey);
  return {
    key: encodePem('PRIVATE KEY', new Uint8Array(pkcs8)),
    cert: leaf.toString('pem') + '\n',
    caCertificatePem: ca.toString('pem') + '\n',
    generated: true,
  };
}

// A positive 16-byte serial (high bit clear, never zero).
function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] & 0x7f) | 0x01;
  return bytes.toString('hex');
}

// NameConstraints { permittedSubtrees [0] { dNSName localhost, iPAddress 127.0.0.1/32, iPAddress ::1/128 } }
function nameConstraints(): Uint8Array {
  const subtree = (base: Uint8Array): Uint8Array => encodeTlv(0x30, base);
  const dns = encodeTlv(0x82, new TextEncoder().encode('localhost'));
  const ipv4 = encodeTlv(0x87, Uint8Array.of(127, 0, 0, 1, 255, 255, 255, 255));
  const ipv6Address = new Uint8Array(16);
  ipv6Address[15] = 1;
  const ipv6 = encodeTlv(0x87, ipv6Address, new Uint8Array(16).fill(0xff));
  return encodeTlv(0x30, encodeTlv(0xa0, subtree(dns), subtree(ipv4), subtree(ipv6)));
}
