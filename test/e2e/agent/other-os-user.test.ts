// softhsm-only: tests the peer-uid check on the listener; the module does not matter
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess } from '../../helpers/agent-process.js';
import { OTHER_UID, OtherUserClient } from '../../helpers/other-user.js';
import type { Probe } from '../../helpers/other-user.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// Issue 13, section 3: loopback TCP is open to every OS account and Origin is only a header. A process
// of another account (uid 65534 via setpriv; the agent runs as root here) claims the RA origin: it must
// not get a TLS handshake, let alone an upgrade, on any route or listener. The same client run as the
// agent's own user shows the client works. Linux only (the check reads /proc/net/tcp).

const RA = 'https://ra.example';

describe.runIf(OtherUserClient.available())('Agent and other OS users', () => {
  const hsm = new SoftHsm('kelid-e2e-uid-hsm-');
  const client = new OtherUserClient();
  let agent: AgentProcess;
  let wsPort: number;

  beforeAll(async () => {
    hsm.initToken('citizen-7', 'so-pin-7', '1234');
    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-uid-',
      config: {
        modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
        raOrigins: [RA],
        insecureWsPort: 0,
      },
    });
    wsPort = agent.info.insecureWsPort ?? 0;
  });

  afterAll(async () => {
    await agent?.stop();
    agent?.cleanup();
    hsm.cleanup();
    client.cleanup();
  });

  const wss = (): Probe => ({ mode: 'wss', port: agent.port, origin: RA, method: 'tokens.list' });

  it('refuses uid 65534 claiming the RA origin before TLS: no upgrade, no tokens.list', async () => {
    const r = await client.run(wss(), true);
    expect(r).toMatchObject({ result: 'refused' });
    expect(r.reply).toBeUndefined();
  });

  it('refuses uid 65534 connecting from an IPv6 socket to the v4-mapped address', async () => {
    expect(await client.run({ ...wss(), v4Mapped: true }, true)).toMatchObject({ result: 'refused' });
    expect(await client.run({ ...wss(), v4Mapped: true }, false)).toMatchObject({ result: 'upgraded' });
  });

  it('refuses uid 65534 on the plain development port, and on every HTTP route', async () => {
    expect(
      await client.run({ mode: 'ws', port: wsPort, origin: RA, method: 'tokens.list' }, true),
    ).toMatchObject({ result: 'refused' });
    for (const p of ['/health', '/consent/', '/consent/api/request', '/manager/', '/sdk/kelid.js', '/v1']) {
      expect(await client.run({ mode: 'https-get', port: agent.port, path: p }, true), p).toMatchObject({
        result: 'refused',
      });
    }
  });

  it("serves the same client run as the agent's own user (upgrade, tokens.list)", async () => {
    const r = await client.run(wss(), false);
    expect(r).toMatchObject({ result: 'upgraded', status: 101 });
    const reply = JSON.parse(r.reply ?? '{}') as { result?: { tokens: Array<{ label: string }> } };
    expect(reply.result?.tokens.map((t) => t.label)).toContain('citizen-7');
    const plain = await client.run({ mode: 'ws', port: wsPort, origin: RA, method: 'agent.info' }, false);
    expect(plain).toMatchObject({ result: 'upgraded' });
    const health = await client.run({ mode: 'https-get', port: agent.port, path: '/health' }, false);
    expect(health).toMatchObject({ result: 'http', status: 200 });
  });

  it('logs refusals with the uid only, and cannot be made to fill the log', async () => {
    const count = (): number => agent.stderr.split('\n').filter((l) => l.includes('another OS user')).length;
    const before = count();
    // 50 connections at once from uid 65534: each refused, a line a second at most.
    const out = client.runScript(`
      import * as net from 'node:net';
      let closed = 0;
      for (let i = 0; i < 50; i++) {
        const s = net.connect(${agent.port}, '127.0.0.1');
        s.on('error', () => undefined);
        s.on('close', () => { if (++closed === 50) console.log('done'); });
      }
    `);
    expect(out.trim()).toBe('done');
    await new Promise((r) => setTimeout(r, 1100));
    await client.run(wss(), true);
    const lines = agent.stderr.split('\n').filter((l) => l.includes('another OS user'));
    expect(lines.length - before).toBeGreaterThan(0);
    expect(lines.length - before).toBeLessThan(50);
    const entries = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const e of entries) {
      expect(e.uid).toBe(OTHER_UID);
      expect(['level', 'msg', 'pid', 'suppressed', 'time', 'uid']).toEqual(
        expect.arrayContaining(Object.keys(e)),
      );
    }
    expect(entries.some((e) => typeof e.suppressed === 'number')).toBe(true);
  });

  it('keeps the control socket and the state files closed to uid 65534, even in a state directory opened to 0755', async () => {
    expect(fs.statSync(agent.stateDir).mode & 0o777).toBe(0o700);
    const files = fs.readdirSync(agent.stateDir);
    expect(files).toContain('control.sock');
    expect(files).toContain('agent.json');
    for (const f of files) {
      const st = fs.statSync(path.join(agent.stateDir, f));
      expect(st.mode & 0o077, f).toBe(0);
    }
    // Whoever made the state directory traversable: each file still refuses another account.
    fs.chmodSync(agent.dir, 0o755);
    fs.chmodSync(agent.stateDir, 0o755);
    try {
      const out = client.runScript(`
        import * as fs from 'node:fs';
        import * as net from 'node:net';
        const dir = ${JSON.stringify(agent.stateDir)};
        const results = {};
        for (const f of fs.readdirSync(dir)) {
          if (f === 'control.sock') continue;
          try { fs.readFileSync(dir + '/' + f); results[f] = 'read'; } catch (e) { results[f] = e.code; }
        }
        const s = net.connect(dir + '/control.sock');
        s.on('connect', () => { results['control.sock'] = 'connected'; s.write('{"op":"list"}\\n'); });
        s.on('data', (d) => { results['control.sock'] = 'answered'; s.destroy(); });
        s.on('error', (e) => { results['control.sock'] = e.code; });
        s.on('close', () => console.log(JSON.stringify(results)));
      `);
      const results = JSON.parse(out) as Record<string, string>;
      expect(results['control.sock']).toBe('EACCES');
      for (const [f, r] of Object.entries(results)) expect(['EACCES', 'EISDIR'], f).toContain(r);
    } finally {
      fs.chmodSync(agent.stateDir, 0o700);
    }
  });
});
