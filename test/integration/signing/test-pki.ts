// The signing tests' PKI: a TestPki (openssl ca, root → intermediate) with RSA-2048, P-256 and P-384
// leaves whose keys sign through a NodeDigestSigner standing in for a token, plus sync openssl runners
// for the cross-checks.
import { execFileSync, spawnSync } from 'node:child_process';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NodeDigestSigner } from '../../helpers/node-signer.js';
import { TestPki, type LeafOptions, type TestKeyType } from '../../helpers/test-ca.js';

export function openssl(args: string[], cwd: string, input?: Uint8Array): Buffer {
  return execFileSync('openssl', args, { cwd, input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Runs openssl and returns exit status and combined output instead of throwing. */
export function opensslStatus(args: string[], cwd: string): { ok: boolean; output: string } {
  const r = spawnSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  return { ok: r.status === 0, output: `${r.stdout.toString()}${r.stderr.toString()}` };
}

export interface LeafMaterial {
  keyPath: string;
  certPath: string;
  der: Uint8Array;
  key: KeyObject;
  signer: NodeDigestSigner;
}

export interface SigningPki {
  ca: TestPki;
  root: Uint8Array;
  intermediate: Uint8Array;
  leaves: Record<'rsa' | 'p256' | 'p384', LeafMaterial>;
  /** Stops the CA's servers and deletes its directory. */
  cleanup(): Promise<void>;
}

const KEYS: Record<'rsa' | 'p256' | 'p384', TestKeyType> = {
  rsa: 'rsa-2048',
  p256: 'ec-p256',
  p384: 'ec-p384',
};

// digitalSignature,nonRepudiation leaves without AIA or CRL distribution points: nothing to fetch.
const OFFLINE: LeafOptions = { ocspUrl: null, crlUrl: null, caIssuersUrl: null };

/** Leaves for logins: keyUsage digitalSignature, extendedKeyUsage clientAuth. */
export const AUTHENTICATION_LEAF: Readonly<LeafOptions> = {
  keyUsage: 'critical,digitalSignature',
  extendedKeyUsage: 'clientAuth',
};

/**
 * Root and intermediate (EC P-256) and RSA-2048, P-256 and P-384 leaves valid for two days (by default
 * digitalSignature,nonRepudiation; `leafOptions` overrides); also writes
 * the root to `<dir>/root.pem` for `openssl … -CAfile root.pem` run in `dir`.
 */
export async function createSigningPki(dir: string, leafOptions: LeafOptions = {}): Promise<SigningPki> {
  const ca = await TestPki.create();
  try {
    const leaves = {} as Record<'rsa' | 'p256' | 'p384', LeafMaterial>;
    for (const kind of ['rsa', 'p256', 'p384'] as const) {
      const cert = await ca.issueLeaf(kind, {
        ...OFFLINE,
        ...leafOptions,
        key: KEYS[kind],
        subject: `/CN=Signer ${kind}/O=Kelid/C=IR`,
        days: 2,
      });
      const key = createPrivateKey(fs.readFileSync(cert.keyPath!));
      leaves[kind] = {
        keyPath: cert.keyPath!,
        certPath: cert.certPath,
        der: cert.der,
        key,
        signer: new NodeDigestSigner(key),
      };
    }
    fs.writeFileSync(path.join(dir, 'root.pem'), ca.root.pem);
    return {
      ca,
      root: ca.root.der,
      intermediate: ca.intermediate.der,
      leaves,
      cleanup: () => ca.cleanup(),
    };
  } catch (e) {
    await ca.cleanup();
    throw e;
  }
}

/** A leaf for the existing key at `keyPath`, issued by the intermediate with explicit validity dates. */
export async function issueWithDates(
  pki: SigningPki,
  keyPath: string,
  name: string,
  startDate: Date,
  endDate: Date,
  leafOptions: LeafOptions = {},
): Promise<Uint8Array> {
  const cert = await pki.ca.issueLeaf(name.replace(/\W+/g, '-'), {
    ...OFFLINE,
    ...leafOptions,
    keyPath,
    subject: `/CN=${name}`,
    startDate,
    endDate,
  });
  return cert.der;
}
