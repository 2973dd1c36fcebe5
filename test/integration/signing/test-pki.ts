// Test PKI made with the openssl CLI (root → intermediate → leaves), and a DigestSigner over a
// node:crypto private key standing in for a token.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  X509Certificate,
  constants,
  createHash,
  createPrivateKey,
  createPublicKey,
  privateEncrypt,
  generateKeyPairSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DigestAlgorithm, SignatureScheme } from '../../../src/protocol/types.js';
import { DIGEST_LENGTH, DIGEST_NODE_NAME, encodeDigestInfo } from '../../../src/pki/der.js';
import type { DigestSigner } from '../../../src/signing/signer.js';

export function openssl(args: string[], cwd: string, input?: Uint8Array): Buffer {
  return execFileSync('openssl', args, { cwd, input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Runs openssl and returns exit status and combined output instead of throwing. */
export function opensslStatus(args: string[], cwd: string): { ok: boolean; output: string } {
  const r = spawnSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  return { ok: r.status === 0, output: `${r.stdout.toString()}${r.stderr.toString()}` };
}

// MGF1 (RFC 8017 B.2.1).
function mgf1(hash: string, seed: Uint8Array, length: number): Buffer {
  const out: Buffer[] = [];
  for (let counter = 0; out.length * createHash(hash).digest().length < length; counter++) {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(counter);
    out.push(createHash(hash).update(seed).update(c).digest());
  }
  return Buffer.concat(out).subarray(0, length);
}

const CURVE_ORDER: Record<string, bigint> = {
  prime256v1: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
  secp384r1:
    0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
};

function bigintFrom(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt(`0x${Buffer.from(bytes).toString('hex')}`);
}

function modPow(base: bigint, exp: bigint, mod: bigint): bigint {
  let result = 1n;
  base %= mod;
  for (; exp > 0n; exp >>= 1n) {
    if (exp & 1n) result = (result * base) % mod;
    base = (base * base) % mod;
  }
  return result;
}

function derInteger(value: bigint): Buffer {
  let hex = value.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let bytes = Buffer.from(hex, 'hex');
  if (bytes[0]! & 0x80) bytes = Buffer.concat([Buffer.of(0), bytes]);
  return Buffer.concat([Buffer.of(0x02, bytes.length), bytes]);
}

/**
 * ECDSA over a precomputed digest (node:crypto always hashes for EC keys). The ephemeral pair (k, kG)
 * comes from node's key generator, so only the scalar formula s = k⁻¹(z + r·d) mod n is done here.
 */
function ecdsaSignDigest(key: KeyObject, digest: Uint8Array): Uint8Array {
  const curve = key.asymmetricKeyDetails!.namedCurve!;
  const n = CURVE_ORDER[curve]!;
  const nBits = n.toString(2).length;
  const d = bigintFrom(Buffer.from(key.export({ format: 'jwk' }).d!, 'base64url'));
  let z = bigintFrom(digest);
  if (digest.length * 8 > nBits) z >>= BigInt(digest.length * 8 - nBits);
  for (;;) {
    const eph = generateKeyPairSync('ec', { namedCurve: curve });
    const jwk = eph.privateKey.export({ format: 'jwk' });
    const k = bigintFrom(Buffer.from(jwk.d!, 'base64url'));
    const r = bigintFrom(Buffer.from(jwk.x!, 'base64url')) % n;
    const s = (modPow(k, n - 2n, n) * ((z + r * d) % n)) % n;
    if (r === 0n || s === 0n) continue;
    const body = Buffer.concat([derInteger(r), derInteger(s)]);
    return new Uint8Array(Buffer.concat([Buffer.of(0x30, body.length), body]));
  }
}

/** A DigestSigner over a node:crypto private key; RSA-PSS is EMSA-PSS encoded here (RFC 8017 9.1.1)
 * and ECDSA is computed from the digest (see ecdsaSignDigest). */
export class NodeKeySigner implements DigestSigner {
  readonly publicKey: Uint8Array;
  readonly keyType: 'RSA' | 'EC';
  calls = 0;

  constructor(private readonly key: KeyObject) {
    this.publicKey = new Uint8Array(createPublicKey(key).export({ format: 'der', type: 'spki' }));
    this.keyType = key.asymmetricKeyType === 'rsa' ? 'RSA' : 'EC';
  }

  async signDigest(digest: Uint8Array, alg: DigestAlgorithm, scheme: SignatureScheme): Promise<Uint8Array> {
    this.calls++;
    if (digest.length !== DIGEST_LENGTH[alg]) throw new Error('digest length mismatch');
    switch (scheme) {
      case 'ECDSA':
        return ecdsaSignDigest(this.key, digest);
      case 'RSASSA-PKCS1-v1_5':
        return new Uint8Array(
          privateEncrypt(
            { key: this.key, padding: constants.RSA_PKCS1_PADDING },
            encodeDigestInfo(digest, alg),
          ),
        );
      case 'RSA-PSS': {
        const hash = DIGEST_NODE_NAME[alg];
        const hLen = digest.length;
        const modBits = this.key.asymmetricKeyDetails!.modulusLength!;
        const emBits = modBits - 1;
        const emLen = Math.ceil(emBits / 8);
        const salt = randomBytes(hLen);
        const h = createHash(hash).update(Buffer.alloc(8)).update(digest).update(salt).digest();
        const db = Buffer.concat([Buffer.alloc(emLen - 2 * hLen - 2), Buffer.of(1), salt]);
        const mask = mgf1(hash, h, emLen - hLen - 1);
        for (let i = 0; i < db.length; i++) db[i]! ^= mask[i]!;
        db[0]! &= 0xff >> (8 * emLen - emBits);
        const em = Buffer.concat([db, h, Buffer.of(0xbc)]);
        const k = Math.ceil(modBits / 8);
        const block = Buffer.concat([Buffer.alloc(k - em.length), em]);
        return new Uint8Array(privateEncrypt({ key: this.key, padding: constants.RSA_NO_PADDING }, block));
      }
    }
  }
}

export interface LeafMaterial {
  keyPath: string;
  certPath: string;
  der: Uint8Array;
  key: KeyObject;
  signer: NodeKeySigner;
}

export interface TestPki {
  dir: string;
  rootPath: string;
  intermediatePath: string;
  root: Uint8Array;
  intermediate: Uint8Array;
  leaves: Record<'rsa' | 'p256' | 'p384', LeafMaterial>;
}

const EXTENSIONS = `
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

function der(pemPath: string): Uint8Array {
  return new Uint8Array(new X509Certificate(fs.readFileSync(pemPath)).raw);
}

function serial(): string {
  return `0x${randomBytes(8).toString('hex')}`;
}

const KEYGEN: Record<'rsa' | 'p256' | 'p384', string[]> = {
  rsa: ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'],
  p256: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
  p384: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384'],
};

function issue(
  dir: string,
  name: string,
  subject: string,
  issuerCert: string,
  issuerKey: string,
  profile: string,
): void {
  openssl(['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`], dir);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      issuerCert,
      '-CAkey',
      issuerKey,
      '-set_serial',
      serial(),
      '-days',
      '2',
      '-sha256',
      '-extfile',
      'ext.cnf',
      '-extensions',
      profile,
      '-out',
      `${name}.pem`,
    ],
    dir,
  );
}

/** Root and intermediate (EC P-256) and RSA-2048, P-256 and P-384 leaves with digitalSignature,nonRepudiation. */
export function createTestPki(dir: string): TestPki {
  fs.writeFileSync(path.join(dir, 'ext.cnf'), EXTENSIONS);
  openssl(['genpkey', ...KEYGEN.p256, '-out', 'root.key'], dir);
  openssl(
    [
      'req',
      '-x509',
      '-new',
      '-key',
      'root.key',
      '-subj',
      '/CN=Kelid Test Root/O=Kelid',
      '-days',
      '3',
      '-sha256',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-out',
      'root.pem',
    ],
    dir,
  );
  openssl(['genpkey', ...KEYGEN.p256, '-out', 'int.key'], dir);
  issue(dir, 'int', '/CN=Kelid Test Intermediate/O=Kelid', 'root.pem', 'root.key', 'ca');
  const leaves = {} as Record<'rsa' | 'p256' | 'p384', LeafMaterial>;
  for (const kind of ['rsa', 'p256', 'p384'] as const) {
    openssl(['genpkey', ...KEYGEN[kind], '-out', `${kind}.key`], dir);
    issue(dir, kind, `/CN=Signer ${kind}/O=Kelid/C=IR`, 'int.pem', 'int.key', 'leaf');
    const key = createPrivateKey(fs.readFileSync(path.join(dir, `${kind}.key`)));
    leaves[kind] = {
      keyPath: path.join(dir, `${kind}.key`),
      certPath: path.join(dir, `${kind}.pem`),
      der: der(path.join(dir, `${kind}.pem`)),
      key,
      signer: new NodeKeySigner(key),
    };
  }
  return {
    dir,
    rootPath: path.join(dir, 'root.pem'),
    intermediatePath: path.join(dir, 'int.pem'),
    root: der(path.join(dir, 'root.pem')),
    intermediate: der(path.join(dir, 'int.pem')),
    leaves,
  };
}

/**
 * A leaf for `keyPath` issued by the intermediate with explicit validity dates (`YYYYMMDDHHMMSSZ`),
 * through `openssl ca`, which (unlike `openssl x509` in 3.0) accepts -startdate/-enddate.
 */
export function issueWithDates(
  pki: TestPki,
  keyPath: string,
  name: string,
  startdate: string,
  enddate: string,
): Uint8Array {
  const dir = pki.dir;
  const caDir = path.join(dir, `ca-${name}`);
  fs.mkdirSync(caDir);
  fs.writeFileSync(path.join(caDir, 'index.txt'), '');
  fs.writeFileSync(path.join(caDir, 'serial'), `${randomBytes(8).toString('hex')}\n`);
  fs.writeFileSync(
    path.join(caDir, 'ca.cnf'),
    `[ca]\ndefault_ca = d\n[d]\ndatabase = ${caDir}/index.txt\nnew_certs_dir = ${caDir}\nserial = ${caDir}/serial\n` +
      `default_md = sha256\npolicy = any\nunique_subject = no\n[any]\ncommonName = supplied\n`,
  );
  openssl(['req', '-new', '-key', keyPath, '-subj', `/CN=${name}`, '-out', `${caDir}/req.csr`], dir);
  openssl(
    [
      'ca',
      '-config',
      `${caDir}/ca.cnf`,
      '-batch',
      '-notext',
      '-in',
      `${caDir}/req.csr`,
      '-cert',
      pki.intermediatePath,
      '-keyfile',
      path.join(dir, 'int.key'),
      '-startdate',
      startdate,
      '-enddate',
      enddate,
      '-extfile',
      'ext.cnf',
      '-extensions',
      'leaf',
      '-out',
      `${caDir}/cert.pem`,
    ],
    dir,
  );
  return der(`${caDir}/cert.pem`);
}
