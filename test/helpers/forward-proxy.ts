// A real forward proxy for tests: tinyproxy (Debian package `tinyproxy`, installed by scripts/setup.sh)
// in the foreground on a free 127.0.0.1 port, logging every request it handles. `requests()` reads its
// log, so a test can prove which requests went through it (and which did not).
//
//   const proxy = await startForwardProxy();
//   process.env.HTTP_PROXY = proxy.url;
//   ...
//   expect(proxy.requests()).toContainEqual(expect.stringContaining('GET http://127.0.0.1'));
//   await proxy.close();
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from './test-ca.js';

export interface ForwardProxy {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  /** The request lines it has handled so far, e.g. `GET http://127.0.0.1:8080/x HTTP/1.1`, `CONNECT h:443 HTTP/1.1`. */
  requests(): string[];
  close(): Promise<void>;
}

export async function startForwardProxy(): Promise<ForwardProxy> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-tinyproxy-'));
  const port = await freePort();
  const log = path.join(dir, 'tinyproxy.log');
  const conf = path.join(dir, 'tinyproxy.conf');
  // No ConnectPort lines: CONNECT to any port (the test servers are not on 443).
  fs.writeFileSync(
    conf,
    [
      `Port ${port}`,
      'Listen 127.0.0.1',
      'Timeout 30',
      `LogFile "${log}"`,
      'LogLevel Connect',
      'MaxClients 50',
      'Allow 127.0.0.1',
      'DisableViaHeader Yes',
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn('tinyproxy', ['-d', '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitForPort(port, child, () => stderr);

  return {
    port,
    url: `http://127.0.0.1:${port}`,
    requests(): string[] {
      const text = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
      return [...text.matchAll(/Request \(file descriptor \d+\): (.*)$/gm)].map((m) => m[1]!.trim());
    },
    async close(): Promise<void> {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitForPort(port: number, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`tinyproxy exited (${child.exitCode}): ${output()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`tinyproxy did not listen on ${port}: ${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
