import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

/**
 * A private SoftHSM2 token directory and config for one test file. Nothing touches the system's
 * tokens: every softhsm2-util / pkcs11-tool call gets this SOFTHSM2_CONF explicitly.
 */
export class SoftHsm {
  readonly dir: string;
  readonly tokenDir: string;
  readonly conf: string;
  readonly module = SOFTHSM_MODULE;

  constructor(prefix = 'kelid-softhsm-') {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
    this.tokenDir = join(this.dir, 'tokens');
    mkdirSync(this.tokenDir, { recursive: true });
    this.conf = join(this.dir, 'softhsm2.conf');
    writeFileSync(
      this.conf,
      `directories.tokendir = ${this.tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = true\n`,
    );
  }

  get env(): Record<string, string> {
    return { SOFTHSM2_CONF: this.conf };
  }

  /** Initialize a token in the first free slot (as another process would); returns its serial. */
  initToken(label: string, soPin: string, userPin: string): string {
    const out = execFileSync(
      'softhsm2-util',
      ['--init-token', '--free', '--label', label, '--so-pin', soPin, '--pin', userPin],
      { env: { ...process.env, ...this.env }, encoding: 'utf8' },
    );
    const slot = /reassigned to slot (\d+)/.exec(out)?.[1];
    if (!slot) throw new Error('softhsm2-util did not report the new slot');
    return this.serialOf(label);
  }

  serialOf(label: string): string {
    const out = this.tool(['-L']);
    const blocks = out.split(/\nSlot /);
    for (const b of blocks) {
      if (new RegExp(`token label\\s*:\\s*${label}\\s*\\n`).test(b)) {
        const serial = /serial num\s*:\s*(\S+)/.exec(b)?.[1];
        if (serial) return serial;
      }
    }
    throw new Error(`no token labelled ${label}`);
  }

  /** Run pkcs11-tool against this token directory. */
  tool(args: string[], input?: string): string {
    return execFileSync('pkcs11-tool', ['--module', this.module, ...args], {
      env: { ...process.env, ...this.env },
      encoding: 'utf8',
      input,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  }

  /** Run p11tool (GnuTLS) against this token directory. */
  p11tool(args: string[], env: Record<string, string> = {}): string {
    return execFileSync('p11tool', ['--provider', this.module, ...args], {
      env: { ...process.env, ...this.env, ...env },
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
