import {
  X509Certificate as NodeX509Certificate,
  createPrivateKey,
  randomBytes,
  webcrypto,
} from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  TAG_BIT_STRING,
  TAG_BOOLEAN,
  TAG_OCTET_STRING,
  TAG_SEQUENCE,
  ecdsaRawToDer,
  encodeOid,
  encodePem,
  encodeSmallInteger,
  encodeTime,
  encodeTlv,
  encodeUnsignedInteger,
} from '../pki/der.js';
import { encodeName } from '../pki/dn.js';
import { keyIdFromSpki } from '../pki/key-id.js';
import { EXTENDED_KEY_USAGE_OIDS, OID } from '../pki/oids.js';

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
const ECDSA_WITH_SHA256 = encodeTlv(TAG_SEQUENCE, encodeOid(OID.ecdsaWithSHA256));
const OID_NAME_CONSTRAINTS = '2.5.29.30';
const BOOLEAN_TRUE = encodeTlv(TAG_BOOLEAN, Uint8Array.of(0xff));
const IPV6_LOOPBACK = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);

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
  const subtle = webcrypto.subtle;
  const notBefore = new Date(now.getTime() - 60 * 60 * 1000);

  const caKeys = (await subtle.generateKey(EC_P256, false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const caSpki = new Uint8Array(await subtle.exportKey('spki', caKeys.publicKey));
  const caKeyId = Buffer.from(keyIdFromSpki(caSpki), 'hex');
  // Array order is RFC 4514 order (most significant last): the DER holds CN, then O, as before.
  const caName = encodeName([
    { type: 'O', value: 'Kelid' },
    { type: 'CN', value: `Kelid local CA ${randomBytes(4).toString('hex')}` },
  ]);
  const ca = await signCertificate({
    issuer: caName,
    subject: caName,
    notBefore,
    notAfter: new Date(now.getTime() + CA_VALIDITY_DAYS * DAY_MS),
    spki: caSpki,
    signingKey: caKeys.privateKey,
    extensions: [
      // cA TRUE, pathLenConstraint 0: it signs leaves, never another CA.
      extension(OID.basicConstraints, true, sequence(BOOLEAN_TRUE, encodeSmallInteger(0))),
      // keyCertSign (bit 5) and cRLSign (bit 6).
      extension(OID.keyUsage, true, encodeTlv(TAG_BIT_STRING, Uint8Array.of(1, 0x06))),
      extension(OID_NAME_CONSTRAINTS, true, nameConstraints()),
      extension(OID.subjectKeyIdentifier, false, encodeTlv(TAG_OCTET_STRING, caKeyId)),
    ],
  });

  const leafKeys = (await subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const leafSpki = new Uint8Array(await subtle.exportKey('spki', leafKeys.publicKey));
  const leaf = await signCertificate({
    issuer: caName,
    subject: encodeName([
      { type: 'O', value: 'Kelid' },
      { type: 'CN', value: 'localhost' },
    ]),
    notBefore,
    notAfter: new Date(now.getTime() + LEAF_VALIDITY_DAYS * DAY_MS),
    spki: leafSpki,
    signingKey: caKeys.privateKey,
    extensions: [
      // cA FALSE (the DEFAULT, so an empty SEQUENCE).
      extension(OID.basicConstraints, true, sequence()),
      // digitalSignature (bit 0): ECDHE key exchange signs with it.
      extension(OID.keyUsage, true, encodeTlv(TAG_BIT_STRING, Uint8Array.of(7, 0x80))),
      extension(OID.extendedKeyUsage, false, sequence(encodeOid(EXTENDED_KEY_USAGE_OIDS.serverAuth))),
      extension(
        OID.subjectAltName,
        false,
        sequence(
          encodeTlv(0x82, new TextEncoder().encode('localhost')),
          encodeTlv(0x87, Uint8Array.of(127, 0, 0, 1)),
          encodeTlv(0x87, IPV6_LOOPBACK),
        ),
      ),
      extension(
        OID.subjectKeyIdentifier,
        false,
        encodeTlv(TAG_OCTET_STRING, Buffer.from(keyIdFromSpki(leafSpki), 'hex')),
      ),
      extension(OID.authorityKeyIdentifier, false, sequence(encodeTlv(0x80, caKeyId))),
    ],
  });

  const pkcs8 = await subtle.exportKey('pkcs8', leafKeys.privateKey);
  return {
    key: encodePem('PRIVATE KEY', new Uint8Array(pkcs8)),
    cert: leaf,
    caCertificatePem: ca,
    generated: true,
  };
}

interface CertificateFields {
  issuer: Uint8Array;
  subject: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  spki: Uint8Array;
  extensions: Uint8Array[];
  signingKey: webcrypto.CryptoKey;
}

/** An X.509 v3 certificate (RFC 5280 section 4.1), ecdsa-with-SHA256, as PEM. */
async function signCertificate(f: CertificateFields): Promise<string> {
  const tbs = sequence(
    encodeTlv(0xa0, encodeSmallInteger(2)),
    encodeUnsignedInteger(serial()),
    ECDSA_WITH_SHA256,
    f.issuer,
    sequence(encodeTime(f.notBefore), encodeTime(f.notAfter)),
    f.subject,
    f.spki,
    encodeTlv(0xa3, sequence(...f.extensions)),
  );
  const signature = new Uint8Array(await webcrypto.subtle.sign(SIGNING_ALGORITHM, f.signingKey, tbs));
  const der = sequence(
    tbs,
    ECDSA_WITH_SHA256,
    encodeTlv(TAG_BIT_STRING, Uint8Array.of(0), ecdsaRawToDer(signature)),
  );
  return encodePem('CERTIFICATE', der);
}

function sequence(...content: Uint8Array[]): Uint8Array {
  return encodeTlv(TAG_SEQUENCE, ...content);
}

function extension(oid: string, critical: boolean, value: Uint8Array): Uint8Array {
  return sequence(encodeOid(oid), ...(critical ? [BOOLEAN_TRUE] : []), encodeTlv(TAG_OCTET_STRING, value));
}

// A positive 16-byte serial (high bit clear, never zero).
function serial(): Uint8Array {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return new Uint8Array(bytes);
}

// NameConstraints { permittedSubtrees [0] { dNSName localhost, iPAddress 127.0.0.1/32, iPAddress ::1/128 } }
function nameConstraints(): Uint8Array {
  const subtree = (base: Uint8Array): Uint8Array => encodeTlv(0x30, base);
  const dns = encodeTlv(0x82, new TextEncoder().encode('localhost'));
  const ipv4 = encodeTlv(0x87, Uint8Array.of(127, 0, 0, 1, 255, 255, 255, 255));
  const ipv6 = encodeTlv(0x87, IPV6_LOOPBACK, new Uint8Array(16).fill(0xff));
  return encodeTlv(0x30, encodeTlv(0xa0, subtree(dns), subtree(ipv4), subtree(ipv6)));
}
