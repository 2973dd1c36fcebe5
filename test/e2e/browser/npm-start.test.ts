import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, kelidSync } from '../../helpers/agent-process.js';
import { ChromiumHarness, assertClientBuilt, screenshot, testId, until } from '../../helpers/browser.js';

// `npm start` (scripts/demo.sh) as a user runs it, minus the install step: it must bring up the
// agent, the SoftHSM demo token, the demo CA and both pages, print their URLs, and stop everything on
// a signal. The browser trusts the agent through `kelid ca install --nssdb`, as the script tells users.

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('npm start (scripts/demo.sh)', () => {
  let tmp: string;
  let script: ChildProcess;
  let output = '';
  let browser: ChromiumHarness | undefined;
  const ports = { agent: 0, ca: 0, ra: 0, site: 0 };

  beforeAll(async () => {
    assertClientBuilt(REPO);
    tmp = mkdtempSync(join(tmpdir(), 'kelid-e2e-start-'));
    for (const k of Object.keys(ports) as Array<keyof typeof ports>) ports[k] = await freePort();
    script = spawn(join(REPO, 'scripts', 'demo.sh'), [], {
      cwd: REPO,
      env: {
        ...process.env,
        KELID_DEMO_NO_SETUP: '1',
        KELID_DEMO_DIR: join(tmp, 'demo'),
        KELID_DEMO_LAUNCHER: 'none',
        KELID_PORT: String(ports.agent),
        KELID_DEMO_CA_PORT: String(ports.ca),
        KELID_DEMO_RA_PORT: String(ports.ra),
        KELID_DEMO_SITE_PORT: String(ports.site),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    script.stdout?.on('data', (d: Buffer) => (output += d.toString('utf8')));
    script.stderr?.on('data', (d: Buffer) => (output += d.toString('utf8')));
    await until(
      async () => output,
      (o) => o.includes('Press Ctrl-C'),
      'the demo to start',
      60_000,
    );
  });

  afterAll(async () => {
    await browser?.close();
    if (script.exitCode === null) script.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  });

  it('prints the URLs of the agent, both pages and the CA', () => {
    expect(output).toContain(`wss://127.0.0.1:${ports.agent}/v1`);
    expect(output).toContain(`http://localhost:${ports.ra}/`);
    expect(output).toContain(`http://localhost:${ports.site}/`);
    expect(output).toContain(`http://127.0.0.1:${ports.ca}/`);
    expect(output).toContain('kelid ca install');
  });

  it('serves a working RA console over TLS trusted with `kelid ca install --nssdb`', async () => {
    const stateDir = join(tmp, 'demo', 'state');
    browser = await ChromiumHarness.launch({
      prepareHome: (home) => {
        const r = kelidSync([
          'ca',
          'install',
          '--state-dir',
          stateDir,
          '--nssdb',
          join(home, '.pki', 'nssdb'),
        ]);
        if (r.status !== 0) throw new Error(`kelid ca install failed: ${r.stderr}`);
      },
    });
    const page = await browser.page();
    await page.goto(`http://localhost:${ports.ra}/?lang=en`);
    await page.getByTestId('ra-status').filter({ hasText: 'tier: ra' }).waitFor();
    // The demo token and the free SoftHSM slot next to it.
    await until(
      () => page.locator(`${testId('ra-token-select')} option`).count(),
      (n) => n === 2,
      'two tokens',
    );
    expect(await page.getByTestId('ra-token-info').textContent()).toContain('Kelid Demo');
    await screenshot(page, 'npm-start-ra-console-en');
  });

  it('stops the agent and the demo servers when stopped', async () => {
    const agentPid = (
      JSON.parse(readFileSync(join(tmp, 'demo', 'state', 'agent.json'), 'utf8')) as { pid: number }
    ).pid;
    expect(alive(agentPid)).toBe(true);
    script.kill('SIGTERM');
    await new Promise((resolve) => script.once('exit', resolve));
    expect(output).toContain('demo: stopping');
    await until(
      async () => alive(agentPid),
      (a) => !a,
      'the agent to exit',
      15_000,
    );
    for (const port of [ports.agent, ports.ca, ports.ra, ports.site]) {
      const free = await new Promise<boolean>((resolve) => {
        const s = createServer();
        s.once('error', () => resolve(false));
        s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
      });
      expect(free, `port ${port}`).toBe(true);
    }
  });
});
