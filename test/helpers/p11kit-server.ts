import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const P11KIT_CLIENT_MODULE = '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so';

/**
 * Serves one SoftHSM token through `p11-kit server`; the agent loads p11-kit-client.so. Killing the
 * per-connection `p11-kit-remote` child is a real "token pulled out" (CKR_DEVICE_ERROR).
 */
export class P11KitServer {
  private proc: ChildProcess | undefined;
  readonly socket: string;

  constructor(
    dir: string,
    private readonly providerModule: string,
    private readonly tokenLabel: string,
    private readonly env: Record<string, string>,
  ) {
    this.socket = join(dir, 'p11kit.sock');
  }

  get clientEnv(): Record<string, string> {
    return { P11_KIT_SERVER_ADDRESS: `unix:path=${this.socket}` };
  }

  async start(): Promise<void> {
    this.proc = spawn(
      'p11-kit',
      [
        'server',
        '-f',
        '-n',
        this.socket,
        '--provider',
        this.providerModule,
        `pkcs11:token=${this.tokenLabel}`,
      ],
      { env: { ...process.env, ...this.env }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const deadline = Date.now() + 10_000;
    while (!existsSync(this.socket)) {
      if (Date.now() > deadline) throw new Error('p11-kit server did not create its socket');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** PIDs of the p11-kit-remote children serving connections. */
  remoteChildren(): number[] {
    if (!this.proc?.pid) return [];
    try {
      return execFileSync('pgrep', ['-P', String(this.proc.pid)], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean)
        .map(Number);
    } catch {
      return [];
    }
  }

  async stop(): Promise<void> {
    for (const pid of this.remoteChildren()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGTERM');
    });
  }
}
