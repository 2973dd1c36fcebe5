// softhsm-only: tests what `kelid doctor --bundle` leaves out; the module does not matter
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess, REPO } from '../../helpers/agent-process.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// `kelid doctor --json --bundle` against a running agent with a SoftHSM token. The run plants secrets
// the bundle must never carry: PINs typed during the run (a PIN change approved with both PINs), the
// one-time consent secret in the URL the launcher got, the origin-ids secret and the TLS private key,
// and a careless log line holding a few of them.

const BIN = path.join(REPO, 'bin', 'kelid.js');
const RA = 'https://ra.example';
const SO_PIN = 'So7Pin4Doctor';
const USER_PIN = '5820417396';
const NEW_PIN = '7719305518';

describe('kelid doctor', () => {
  const hsm = new SoftHsm('kelid-e2e-doctor-hsm-');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-e2e-doctor-'));
  const urlFile = path.join(work, 'urls.txt');
  const home = path.join(work, 'home');
  let agent: AgentProcess;
  let tsa: http.Server;
  let tsaPort = 0;

  beforeAll(async () => {
    fs.mkdirSync(home, { mode: 0o700 });
    // A stand-in for the TSA: reachability and its Date header (the clock check) are all doctor reads.
    tsa = http.createServer((_req, res) => res.writeHead(405).end());
    await new Promise<void>((r) => tsa.listen(0, '127.0.0.1', () => r()));
    tsaPort = (tsa.address() as { port: number }).port;
    hsm.initToken('doctor-token', SO_PIN, USER_PIN);
    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-doctor-',
      config: {
        modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
        raOrigins: [RA],
        tsaUrl: `http://127.0.0.1:${tsaPort}/tsa`,
        revocation: { allowPrivateNetworks: true },
        consent: {
          timeoutSeconds: 60,
          language: 'en',
          launcher: `sh -c 'printf "%s\\n" "$1" >> ${urlFile}' launcher {url}`,
        },
      },
    });
  });

  afterAll(async () => {
    await agent?.stop();
    agent?.cleanup();
    hsm.cleanup();
    tsa?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  // Not spawnSync: the stand-in TSA answers from this very process.
  function doctor(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [BIN, 'doctor', '--config', agent.configFile, '--state-dir', agent.stateDir, ...args],
        {
          env: { ...process.env, HOME: home },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
      child.once('error', reject);
      child.once('close', (status) => resolve({ status: status ?? -1, stdout, stderr }));
    });
  }

  it('reports the running agent, its port, modules, tokens, the TSA and the clock (--json)', async () => {
    const r = await doctor(['--json']);
    const report = JSON.parse(r.stdout) as { checks: Array<{ id: string; status: string; summary: string }> };
    const byId = (id: string) => report.checks.filter((c) => c.id === id);
    expect(byId('agent')[0]).toMatchObject({ status: 'ok' });
    expect(byId('port')[0]).toMatchObject({
      status: 'ok',
      summary: `the agent listens on 127.0.0.1:${agent.port}`,
    });
    expect(byId('modules')[0]).toMatchObject({ status: 'ok' });
    expect(byId('tokens')[0]).toMatchObject({ status: 'ok' });
    expect(byId('tsa')[0]).toMatchObject({ status: 'ok' });
    expect(byId('clock')[0]).toMatchObject({ status: 'ok' });
    // the temporary HOME has no browser database: nothing trusted, nothing touched
    expect(byId('trust').every((c) => c.status === 'skip')).toBe(true);
    expect(fs.readdirSync(home)).toEqual([]);
  });

  it('writes a bundle with the report, config and log, and none of the secrets planted during the run', async () => {
    // A PIN change, approved in the consent page with both PINs typed.
    const ra = await agent.connect(RA);
    const { tokens } = await ra.call<{ tokens: Array<{ tokenId: string; label: string }> }>('tokens.list');
    const tokenId = tokens.find((t) => t.label === 'doctor-token')!.tokenId;
    const id = ra.nextId;
    const call = ra.call('pin.change', { tokenId, role: 'user' });
    await ra.consentFor(id);
    let url = '';
    for (let i = 0; i < 200 && url === ''; i++) {
      if (fs.existsSync(urlFile)) url = fs.readFileSync(urlFile, 'utf8').trim();
      else await new Promise((r) => setTimeout(r, 50));
    }
    const consentSecret = new URL(url).hash.slice(1);
    expect(consentSecret.length).toBeGreaterThan(8);
    const approve = await fetchApprove(agent, consentSecret, { oldUserPin: USER_PIN, newUserPin: NEW_PIN });
    expect(approve).toBe(200);
    await call;
    await ra.close();

    const originIds = fs.readFileSync(path.join(agent.stateDir, 'origin-ids.key'));
    const leafKey = fs.readFileSync(path.join(agent.stateDir, 'tls', 'leaf-key.pem'), 'utf8');
    const leafKeyBody = leafKey
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('-----'))
      .join('');
    // A careless log line (what redaction is for): the consent URL, a PIN field, the key material.
    fs.appendFileSync(
      path.join(agent.stateDir, 'logs', 'kelid.log'),
      `${JSON.stringify({ level: 30, msg: `opened ${url}`, pin: USER_PIN, newPin: NEW_PIN, key: originIds.toString('hex'), leafKey })}\n`,
    );

    const bundle = path.join(work, 'bundle.tar.gz');
    const r = await doctor(['--json', '--bundle', bundle]);
    expect(r.stderr).toBe('');
    expect(fs.statSync(bundle).mode & 0o777).toBe(0o600);
    const out = path.join(work, 'extracted');
    fs.mkdirSync(out);
    execFileSync('tar', ['-xzf', bundle, '-C', out]);
    const names = fs.readdirSync(path.join(out, 'kelid-doctor')).sort();
    expect(names).toEqual(['config.json', 'doctor.json', 'log.txt', 'versions.json']);
    const all = names.map((n) => fs.readFileSync(path.join(out, 'kelid-doctor', n), 'utf8')).join('\n');
    expect(all).toContain('Kelid agent listening');
    expect(all).toContain('"tsaUrl"');
    for (const secret of [
      USER_PIN,
      NEW_PIN,
      SO_PIN,
      consentSecret,
      originIds.toString('hex'),
      originIds.toString('base64'),
      leafKeyBody.slice(0, 40),
      'PRIVATE KEY',
      hsm.conf,
    ]) {
      expect(all).not.toContain(secret);
    }
    // grep as a help desk would, on the raw archive too
    const grep = execFileSync(
      'sh',
      ['-c', `zcat "${bundle}" | grep -c -e "${USER_PIN}" -e "${NEW_PIN}" -e "${consentSecret}" || true`],
      {
        encoding: 'utf8',
      },
    );
    expect(grep.trim()).toBe('0');
  });
});

async function fetchApprove(
  agent: AgentProcess,
  secret: string,
  secrets: Record<string, string>,
): Promise<number> {
  const https = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: agent.port,
        path: '/consent/api/approve',
        method: 'POST',
        ca: agent.info.caCertificatePem,
        agent: false,
        headers: { Authorization: `Bearer ${secret}`, 'Content-Type': 'application/json' },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify({ secrets }));
  });
}
