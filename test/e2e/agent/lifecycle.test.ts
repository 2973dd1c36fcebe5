// softhsm-only: the hot-plug notification is made by creating a SoftHSM token out of band with softhsm2-util while the agent runs
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { AgentProcess, RpcClient, kelidSync } from '../../helpers/agent-process.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// What surrounds the API: agent.json, one agent per state directory, the private state directory,
// the plain development listener, hot-plug notifications, and the CLI commands that work without an
// agent (ca show/install, sites) or report that none runs.

describe('Agent lifecycle', () => {
  const hsm = new SoftHsm('kelid-e2e-life-hsm-');
  let agent: AgentProcess;

  beforeAll(async () => {
    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-life-',
      config: {
        modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
        raOrigins: ['https://ra.example'],
        sites: ['https://bank.example'],
        insecureWsPort: 0,
      },
    });
  });

  afterAll(async () => {
    await agent?.stop();
    agent?.cleanup();
    hsm.cleanup();
  });

  it('writes agent.json (0600) with pid, port, url and the CA, and a 0600 control socket', async () => {
    const file = path.join(agent.stateDir, 'agent.json');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(agent.stateDir, 'control.sock')).mode & 0o777).toBe(0o600);
    expect(fs.statSync(agent.stateDir).mode & 0o777).toBe(0o700);
    expect(agent.info).toMatchObject({ pid: agent.child.pid, url: `https://127.0.0.1:${agent.port}` });
    expect(agent.info.caCertificatePem).toContain('BEGIN CERTIFICATE');
    // The line is printed right after agent.json is written; the pipe may deliver it a moment later.
    for (let i = 0; i < 100 && !agent.stdout.includes('listening on'); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(agent.stdout).toContain(`listening on https://127.0.0.1:${agent.port}`);
  });

  it('refuses a second agent on the same state directory', () => {
    const r = kelidSync([
      'serve',
      '--config',
      agent.configFile,
      '--state-dir',
      agent.stateDir,
      '--port',
      '0',
    ]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('already running');
    // The first one is untouched.
    expect(fs.existsSync(path.join(agent.stateDir, 'agent.json'))).toBe(true);
  });

  it('refuses a state directory that others may write to', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-e2e-open-'));
    fs.chmodSync(dir, 0o777);
    try {
      const r = kelidSync(['serve', '--config', agent.configFile, '--state-dir', dir, '--port', '0']);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('writable by group or others');
      expect(fs.readdirSync(dir)).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serves the plain development listener with the same handshake rules', async () => {
    const port = agent.info.insecureWsPort!;
    expect(port).toBeGreaterThan(0);
    const open = (headers: Record<string, string>): Promise<WebSocket> =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/v1`, { headers });
        ws.once('open', () => resolve(ws));
        ws.once('unexpected-response', (_q, res) => reject(new Error(String(res.statusCode))));
        ws.once('error', reject);
      });
    const client = new RpcClient(await open({ Origin: 'https://ra.example' }));
    expect((await client.call('agent.info')).tier).toBe('ra');
    await client.close();
    await expect(open({ Origin: 'https://ra.example', Host: `127.0.0.1:${agent.port}` })).rejects.toThrow(
      '403',
    );
    await expect(open({ Origin: 'http://evil.example' })).rejects.toThrow('403');
  });

  it('sends tokens.changed to site and ra connections, not to unknown ones, when a token appears', async () => {
    const ra = await agent.connect('https://ra.example');
    const site = await agent.connect('https://bank.example');
    const unknown = await agent.connect('https://nobody.example');
    hsm.initToken('plugged', 'Plug9SoPin', '7364519280');
    const isPlugged = (p: Record<string, unknown>): boolean =>
      (p.added as Array<{ label: string }>).some((t) => t.label === 'plugged');
    const [toRa, toSite] = await Promise.all([
      ra.waitForNotification('tokens.changed', isPlugged),
      site.waitForNotification('tokens.changed', isPlugged),
    ]);
    // Same token, named per origin (PROTOCOL.md section 4); the site does not get its serial.
    const [raToken, siteToken] = [toRa, toSite].map((n) =>
      (n.params.added as Array<{ label: string; tokenId: string; serialNumber: string }>).find(
        (t) => t.label === 'plugged',
      )!,
    );
    expect(siteToken).toMatchObject({ label: raToken.label, serialNumber: '' });
    expect(raToken.serialNumber).not.toBe('');
    expect(siteToken.tokenId).not.toBe(raToken.tokenId);
    expect(toRa.params.removed).toEqual(expect.any(Array));
    // Anything sent to `unknown` before this reply would have arrived first.
    await unknown.call('agent.info');
    expect(unknown.notifications.filter((n) => n.method === 'tokens.changed')).toEqual([]);
    await Promise.all([ra.close(), site.close(), unknown.close()]);
  });
});

describe('CLI without a running agent', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-e2e-cli-'));
  const stateDir = path.join(dir, 'state');
  const env = { KELID_STATE_DIR: stateDir };

  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('says that no agent runs for consent and ui commands', () => {
    for (const args of [
      ['consent', 'list'],
      ['consent', 'deny', 'abc'],
      ['ui', '--print'],
    ]) {
      const r = kelidSync(args, env);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr).toContain('no Kelid agent is running');
    }
  });

  it('`kelid ca show` creates the CA once and prints the same PEM afterwards', () => {
    const first = kelidSync(['ca', 'show'], env);
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\n$/);
    expect(kelidSync(['ca', 'show'], env).stdout).toBe(first.stdout);
    expect(
      execFileSync('openssl', ['x509', '-noout', '-subject'], { input: first.stdout, encoding: 'utf8' }),
    ).toContain('Kelid local CA');
  });

  it('`kelid ca install --nssdb` trusts the CA in an NSS database, replacing an earlier one', () => {
    const db = path.join(dir, 'nssdb');
    for (let i = 0; i < 2; i++) {
      const r = kelidSync(['ca', 'install', '--nssdb', db], env);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain(`installed "Kelid local CA" in ${db}`);
    }
    const list = execFileSync('certutil', ['-L', '-d', `sql:${db}`], { encoding: 'utf8' });
    const rows = list.split('\n').filter((l) => l.startsWith('Kelid local CA'));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatch(/C,,\s*$/);
    const pem = execFileSync('certutil', ['-L', '-d', `sql:${db}`, '-n', 'Kelid local CA', '-a'], {
      encoding: 'utf8',
    });
    const der = (p: string) => Buffer.from(p.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    expect(der(pem).equals(der(kelidSync(['ca', 'show'], env).stdout))).toBe(true);
  });

  it('lists and revokes site approvals directly in the state directory, with an audit line', () => {
    fs.writeFileSync(
      path.join(stateDir, 'sites.json'),
      JSON.stringify({
        version: 1,
        sites: [{ origin: 'https://shop.example', grantedAt: '2026-01-01T00:00:00.000Z' }],
      }),
    );
    const list = kelidSync(['sites', 'list', '--json'], env);
    expect(JSON.parse(list.stdout)).toEqual({
      approved: [{ origin: 'https://shop.example', grantedAt: '2026-01-01T00:00:00.000Z' }],
    });
    expect(kelidSync(['sites', 'revoke', 'https://SHOP.example:443'], env).stdout).toContain(
      'revoked https://shop.example',
    );
    expect(kelidSync(['sites', 'revoke', 'https://shop.example'], env).status).toBe(1);
    expect(kelidSync(['sites', 'revoke', 'https://shop.example/path'], env).status).toBe(1);
    const audit = fs
      .readFileSync(path.join(stateDir, 'audit.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(audit).toEqual([
      expect.objectContaining({ origin: 'https://shop.example', method: 'sites.revoke', result: 'ok' }),
    ]);
  });
});
