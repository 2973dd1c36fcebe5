// softhsm-only: SIGKILLs the agent and checks the host process exits; the module does not matter
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SoftHsm } from '../../helpers/softhsm.js';

// When the agent is killed (SIGKILL, OOM killer, crash), its module host must not live on holding
// the token. An idle host sees its IPC channel close and exits; a host stuck in a synchronous
// PKCS#11 call cannot see that, so on Linux it is started with a parent-death signal.

const HOST_CLIENT = fileURLToPath(new URL('../../../src/pkcs11/host-client.ts', import.meta.url));

// A stand-in agent: starts the host, prints its pid, then (optionally) blocks the host in a 60 s call.
const AGENT = `
import { HostClient } from ${JSON.stringify(HOST_CLIENT)};
const host = new HostClient({
  moduleId: 'softhsm',
  path: process.env.MODULE,
  env: JSON.parse(process.env.HOST_ENV),
});
await host.start();
process.stdout.write(host.pid + '\\n');
if (process.env.HANG === '1') host.call('testHang', { ms: 60000 }, { timeoutMs: 120000 }).catch(() => {});
setInterval(() => {}, 1000);
`;

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false;
  }
}

/** utime + stime of a process, in clock ticks (/proc/<pid>/stat fields 14 and 15). */
function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

async function gone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !alive(pid);
}

describe('HostClient when the agent is killed', () => {
  const hsm = new SoftHsm('kelid-orphan-');
  let agent: ChildProcess | undefined;
  let hostPid = 0;

  afterEach(() => {
    agent?.kill('SIGKILL');
    if (hostPid && alive(hostPid)) process.kill(hostPid, 'SIGKILL');
  });

  afterAll(() => hsm.cleanup());

  async function startAgent(hang: boolean): Promise<number> {
    agent = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', AGENT], {
      env: {
        ...process.env,
        MODULE: hsm.module,
        HOST_ENV: JSON.stringify({ ...hsm.env, KELID_TEST_HOOKS: '1' }),
        HANG: hang ? '1' : '0',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      agent!.stdout!.on('data', (d: Buffer) => {
        out += d.toString('utf8');
        if (out.includes('\n')) resolve(out.trim());
      });
      agent!.once('exit', () => reject(new Error('the stand-in agent exited')));
    });
    hostPid = Number(line);
    expect(alive(hostPid)).toBe(true);
    return hostPid;
  }

  it('the idle module host exits with it', async () => {
    const pid = await startAgent(false);
    agent!.kill('SIGKILL');
    expect(await gone(pid, 10_000)).toBe(true);
  });

  it.runIf(process.platform === 'linux')(
    'the module host stuck in a synchronous call is killed with it (parent-death signal)',
    async () => {
      const pid = await startAgent(true);
      // The host is inside the busy 60 s call once it has burnt half a second of CPU time.
      const start = cpuTicks(pid);
      while (cpuTicks(pid) - start < 50) await new Promise((r) => setTimeout(r, 50));
      agent!.kill('SIGKILL');
      expect(await gone(pid, 10_000)).toBe(true);
    },
    30_000,
  );
});
