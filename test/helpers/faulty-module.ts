// The faulty PKCS#11 module of test/fixtures/faulty-pkcs11: a C shim over SoftHSM that forwards every
// call and injects faults named in a control file (crash, hang, CK_RV values, PIN flags, a PIN pad).
// It is compiled with gcc on first use into node_modules/.cache, keyed by the source's hash.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SOFTHSM_MODULE } from './softhsm.js';
import type { SoftHsm } from './softhsm.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const SOURCE = path.join(REPO, 'test', 'fixtures', 'faulty-pkcs11', 'faulty-pkcs11.c');
const CACHE = path.join(REPO, 'node_modules', '.cache', 'kelid-faulty-pkcs11');
/** p11-kit's pkcs11.h (Debian package libp11-kit-dev, installed by scripts/setup.sh). */
const PKCS11_INCLUDE = '/usr/include/p11-kit-1';

/** The functions the shim can crash, hang or fail in. */
export type Pkcs11Function =
  | 'C_GetTokenInfo'
  | 'C_OpenSession'
  | 'C_GetSessionInfo'
  | 'C_Login'
  | 'C_Logout'
  | 'C_InitPIN'
  | 'C_SetPIN'
  | 'C_CreateObject'
  | 'C_DestroyObject'
  | 'C_GetAttributeValue'
  | 'C_SetAttributeValue'
  | 'C_FindObjectsInit'
  | 'C_FindObjects'
  | 'C_FindObjectsFinal'
  | 'C_SignInit'
  | 'C_Sign'
  | 'C_SignUpdate'
  | 'C_SignFinal'
  | 'C_GenerateKeyPair';

export type TokenFlag =
  | 'user-pin-count-low'
  | 'user-pin-final-try'
  | 'user-pin-locked'
  | 'user-pin-to-be-changed'
  | 'so-pin-count-low'
  | 'so-pin-final-try'
  | 'so-pin-locked'
  | 'so-pin-to-be-changed'
  | 'protected-authentication-path';

/** One line of the control file (see the comment at the top of faulty-pkcs11.c). */
export type Fault =
  | `segfault ${Pkcs11Function}`
  | `hang ${Pkcs11Function}`
  | `rv ${Pkcs11Function} 0x${string}`
  | 'device-removed'
  | `device-removed ${Pkcs11Function}`
  | `flags ${TokenFlag}`
  | 'pin-expired'
  | `pinpad ${string}`;

export interface LoginCall {
  /** CKU_SO 0, CKU_USER 1, CKU_CONTEXT_SPECIFIC 2. */
  userType: number;
  /** Whether the caller passed a PIN (never the PIN itself). */
  withPin: boolean;
}

/** Compile the shim when this source has not been compiled yet; returns the .so path. */
export function buildFaultyModule(): string {
  const source = fs.readFileSync(SOURCE);
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const out = path.join(CACHE, `faulty-pkcs11-${hash}.so`);
  if (fs.existsSync(out)) return out;
  if (!fs.existsSync(path.join(PKCS11_INCLUDE, 'p11-kit', 'pkcs11.h'))) {
    throw new Error(`${PKCS11_INCLUDE}/p11-kit/pkcs11.h is missing: run scripts/setup.sh (libp11-kit-dev)`);
  }
  fs.mkdirSync(CACHE, { recursive: true });
  // Compile to a private name, then rename: parallel test files may build at the same time.
  const tmp = `${out}.${process.pid}.tmp`;
  execFileSync(
    'gcc',
    ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-Werror', `-I${PKCS11_INCLUDE}`, '-o', tmp, SOURCE],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  fs.renameSync(tmp, out);
  return out;
}

/**
 * One faulty module over one SoftHSM token directory: its module path, the env its module host
 * needs, and typed control of its faults while the agent runs.
 */
export class FaultyModule {
  readonly path: string;
  readonly dir: string;
  readonly controlFile: string;
  readonly callsFile: string;

  constructor(readonly hsm: SoftHsm) {
    this.path = buildFaultyModule();
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-faulty-'));
    this.controlFile = path.join(this.dir, 'control');
    this.callsFile = path.join(this.dir, 'calls');
    this.set();
  }

  /** For the module's `env` in the agent config. */
  get env(): Record<string, string> {
    return {
      ...this.hsm.env,
      KELID_FAULTY_TARGET: SOFTHSM_MODULE,
      KELID_FAULTY_CONTROL: this.controlFile,
      KELID_FAULTY_CALLS: this.callsFile,
    };
  }

  /** Replace the active faults (none: the module behaves like SoftHSM). */
  set(...faults: Fault[]): void {
    // Written whole and renamed: the shim never reads a half-written file.
    const tmp = `${this.controlFile}.tmp`;
    fs.writeFileSync(tmp, faults.map((f) => `${f}\n`).join(''));
    fs.renameSync(tmp, this.controlFile);
  }

  clear(): void {
    this.set();
  }

  /** Every C_Login the module received since the last reset. */
  loginCalls(): LoginCall[] {
    if (!fs.existsSync(this.callsFile)) return [];
    return fs
      .readFileSync(this.callsFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [, type, pin] = line.split(' ');
        return { userType: Number(type), withPin: pin === 'pin' };
      });
  }

  resetCalls(): void {
    fs.rmSync(this.callsFile, { force: true });
  }

  cleanup(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * An EC P-256 key pair and a self-signed signing certificate (two days) written onto the token by
 * pkcs11-tool, all three objects with CKA_ID 01 and the token's label.
 */
export function seedSigner(hsm: SoftHsm, label: string, pin: string): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-faulty-seed-'));
  const openssl = (...args: string[]): void =>
    void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  try {
    openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'key.pem');
    const subject = `/CN=${label}/O=Kelid/C=IR`;
    const usage = 'keyUsage=critical,digitalSignature,nonRepudiation';
    const req = 'req -x509 -new -key key.pem -days 2 -outform DER -out cert.der'.split(' ');
    openssl(...req, '-subj', subject, '-addext', usage);
    openssl('pkey', '-in', 'key.pem', '-pubout', '-outform', 'DER', '-out', 'pub.der');
    const objects = { 'key.pem': 'privkey', 'pub.der': 'pubkey', 'cert.der': 'cert' };
    for (const [file, type] of Object.entries(objects)) {
      const write = ['--write-object', path.join(dir, file), '--type', type, '--id', '01', '--label', label];
      hsm.tool(['--token-label', label, '--login', '--pin', pin, ...write]);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
