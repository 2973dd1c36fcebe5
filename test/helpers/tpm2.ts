// A second, independent PKCS#11 implementation for the suite: tpm2-pkcs11 on a software TPM.
// One Tpm2Stack per test file: swtpm (TCP), tpm2-abrmd on a private dbus session bus (talking
// straight to swtpm runs out of TPM object slots during `tpm2_ptool addtoken`), and a tpm2-pkcs11
// store, all in one temporary directory, torn down by cleanup(). Nothing touches the system's TPM,
// dbus or ~/.tpm2_pkcs11.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const TPM2_MODULE_PATHS = [
  '/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so',
  '/usr/lib/aarch64-linux-gnu/pkcs11/libtpm2_pkcs11.so',
  '/usr/lib64/pkcs11/libtpm2_pkcs11.so',
];

const BINARIES = ['swtpm', 'tpm2-abrmd', 'tpm2_ptool', 'dbus-daemon', 'pkcs11-tool'];

function onPath(bin: string): boolean {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin']);
  return dirs.some((d) => d !== '' && existsSync(join(d, bin)));
}

/**
 * Why the tpm2 tests cannot run here, or undefined when they can. scripts/setup.sh installs
 * everything (swtpm, swtpm-tools, tpm2-abrmd, libtpm2-pkcs11-1, libtpm2-pkcs11-tools, dbus-daemon),
 * so in CI this is always undefined.
 */
export function tpm2SkipReason(): string | undefined {
  if (process.platform !== 'linux') return 'tpm2-pkcs11 on swtpm: Linux only';
  const missing = BINARIES.filter((b) => !onPath(b));
  if (missing.length > 0) return `tpm2-pkcs11 on swtpm: missing ${missing.join(', ')} (scripts/setup.sh)`;
  if (!TPM2_MODULE_PATHS.some((p) => existsSync(p)))
    return 'tpm2-pkcs11 on swtpm: libtpm2_pkcs11.so not installed (scripts/setup.sh)';
  return undefined;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A free TCP port whose successor is free too. */
async function freePortPair(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const address = srv.address();
        const p = typeof address === 'object' && address ? address.port : 0;
        srv.close(() => resolve(p));
      });
    });
    if (port < 65535 && (await portFree(port + 1))) return port;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Tpm2Stack {
  readonly dir: string;
  readonly store: string;
  readonly module: string;
  private readonly children: ChildProcess[] = [];
  private busAddress = '';
  private port = 0;
  /** The tpm2_ptool primary object id (one per stack). */
  private pid = '1';
  private errors = '';

  private constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'kelid-tpm2-'));
    this.store = join(this.dir, 'store');
    mkdirSync(this.store);
    mkdirSync(join(this.dir, 'state'));
    this.module = TPM2_MODULE_PATHS.find((p) => existsSync(p)) ?? TPM2_MODULE_PATHS[0]!;
  }

  /** Start swtpm, a private dbus bus and tpm2-abrmd, and create the tpm2-pkcs11 store. */
  static async start(): Promise<Tpm2Stack> {
    const s = new Tpm2Stack();
    try {
      await s.boot();
    } catch (e) {
      s.cleanup();
      throw e;
    }
    return s;
  }

  private spawnChild(cmd: string, args: string[], env: Record<string, string> = {}): ChildProcess {
    const child = spawn(cmd, args, {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    // Kept (bounded) for the error when a part of the stack does not come up.
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      this.errors = (this.errors + d).slice(-2000);
    });
    this.children.push(child);
    return child;
  }

  private async boot(): Promise<void> {
    // The swtpm TCTI finds the control channel at the server port + 1; a port taken in between
    // (another test file's stack) is retried with new ones.
    for (let attempt = 0; ; attempt++) {
      const server = await freePortPair();
      const swtpm = this.spawnChild('swtpm', [
        'socket',
        '--tpm2',
        '--tpmstate',
        `dir=${join(this.dir, 'state')}`,
        '--server',
        `type=tcp,port=${server},bindaddr=127.0.0.1`,
        '--ctrl',
        `type=tcp,port=${server + 1},bindaddr=127.0.0.1`,
        '--flags',
        'not-need-init,startup-clear',
      ]);
      await sleep(150);
      if (swtpm.exitCode === null) {
        this.port = server;
        break;
      }
      if (attempt >= 5) throw new Error(`swtpm did not start: ${this.errors}`);
    }

    const busConf = join(this.dir, 'bus.conf');
    const socket = join(this.dir, 'bus');
    writeFileSync(
      busConf,
      `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:path=${socket}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>
<allow own="*"/><allow user="*"/></policy>
</busconfig>\n`,
    );
    this.spawnChild('dbus-daemon', ['--config-file', busConf, '--nofork', '--nopidfile']);
    this.busAddress = `unix:path=${socket}`;
    await this.until(() => existsSync(socket), 'dbus-daemon');

    const abrmdArgs = ['--session', `--tcti=swtpm:host=127.0.0.1,port=${this.port}`];
    if (process.getuid?.() === 0) abrmdArgs.push('--allow-root');
    const abrmd = this.spawnChild('tpm2-abrmd', abrmdArgs, { DBUS_SESSION_BUS_ADDRESS: this.busAddress });
    // tpm2_ptool init fails until tpm2-abrmd has taken its bus name.
    await this.until(() => {
      if (abrmd.exitCode !== null) throw new Error(`tpm2-abrmd exited: ${this.errors}`);
      return (
        spawnSync('tpm2_ptool', ['init', '--path', this.store], { env: this.toolEnv, stdio: 'ignore' })
          .status === 0
      );
    }, 'tpm2-abrmd');
  }

  private async until(ok: () => boolean, what: string): Promise<void> {
    for (let i = 0; i < 100; i++) {
      if (ok()) return;
      await sleep(50);
    }
    throw new Error(`${what} did not come up: ${this.errors}`);
  }

  /** The module's `env` in a Kelid config (PROTOCOL.md section 8). */
  get env(): Record<string, string> {
    return {
      TPM2_PKCS11_TCTI: 'tabrmd:bus_type=session',
      TPM2_PKCS11_STORE: this.store,
      DBUS_SESSION_BUS_ADDRESS: this.busAddress,
      // The TSS warns on stderr otherwise; tpm2-pkcs11's own errors (which name refused attributes) stay.
      TSS2_LOG: 'all+NONE',
    };
  }

  private get toolEnv(): NodeJS.ProcessEnv {
    return { ...process.env, ...this.env, TPM2TOOLS_TCTI: 'tabrmd:bus_type=session' };
  }

  /** `tpm2_ptool addtoken`: a new initialized token with both PINs set (as another tool would). */
  addToken(label: string, soPin: string, userPin: string): void {
    execFileSync(
      'tpm2_ptool',
      [
        'addtoken',
        `--pid=${this.pid}`,
        `--sopin=${soPin}`,
        `--userpin=${userPin}`,
        `--label=${label}`,
        '--path',
        this.store,
      ],
      { env: this.toolEnv, stdio: ['ignore', 'ignore', 'pipe'] },
    );
  }

  /** Run pkcs11-tool against this store. */
  tool(args: string[], input?: string): string {
    return execFileSync('pkcs11-tool', ['--module', this.module, ...args], {
      env: this.toolEnv,
      encoding: 'utf8',
      input,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  }

  /** Stop every process of the stack (in reverse order) and remove its directory. */
  cleanup(): void {
    for (const c of [...this.children].reverse()) {
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
