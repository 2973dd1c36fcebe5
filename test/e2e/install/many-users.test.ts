import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { KelidClient } from '../../../src/client/kelid-client.js';
import type { WebSocketLike } from '../../../src/client/rpc-connection.js';
import { AgentProcess, REPO, assertBuilt } from '../../helpers/agent-process.js';
import type { AgentInfoJson } from '../../helpers/agent-process.js';
import { OTHER_UID } from '../../helpers/other-user.js';

// Two OS users on one machine, each with an agent on the default port: the second takes the next
// port of the range 17443-17447, and the SDK (probing the range) reaches its own user's agent; the
// other user's agent, on a lower port, refuses us at TCP level and is skipped.

const RANGE = [17443, 17444, 17445, 17446, 17447];

describe('many users on one machine', () => {
  let otherDir: string;
  let other: ChildProcess;
  let otherInfo: AgentInfoJson;
  let mine: AgentProcess;

  beforeAll(async () => {
    assertBuilt();
    otherDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-other-user-'));
    fs.chmodSync(otherDir, 0o755);
    const config = path.join(otherDir, 'config.json');
    fs.writeFileSync(config, JSON.stringify({ autoDetectModules: false, consent: { launcher: 'none' } }));
    const state = path.join(otherDir, 'state');
    fs.mkdirSync(state, { mode: 0o700 });
    fs.chownSync(state, OTHER_UID, OTHER_UID);
    other = spawn(
      'setpriv',
      [
        `--reuid=${OTHER_UID}`,
        `--regid=${OTHER_UID}`,
        '--clear-groups',
        process.execPath,
        path.join(REPO, 'bin', 'kelid.js'),
        'serve',
        '--config',
        config,
        '--state-dir',
        state,
      ],
      { stdio: 'ignore', env: { ...process.env, HOME: otherDir } },
    );
    const file = path.join(state, 'agent.json');
    for (let i = 0; i < 600 && !fs.existsSync(file); i++) await new Promise((r) => setTimeout(r, 50));
    otherInfo = JSON.parse(fs.readFileSync(file, 'utf8')) as AgentInfoJson;
    mine = await AgentProcess.start({ config: { port: 17443 } });
  });

  afterAll(async () => {
    await mine?.stop();
    mine?.cleanup();
    other?.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    fs.rmSync(otherDir, { recursive: true, force: true });
  });

  it('gives each user its own port of the range and remembers it in the state directory', () => {
    expect(RANGE).toContain(otherInfo.port);
    expect(RANGE).toContain(mine.port);
    expect(mine.port).not.toBe(otherInfo.port);
    expect(fs.readFileSync(path.join(mine.stateDir, 'port'), 'utf8').trim()).toBe(String(mine.port));
  });

  it("the SDK probes the range and connects to its own user's agent, skipping the other user's", async () => {
    const factory = (url: string): WebSocketLike =>
      new WebSocket(url, {
        ca: mine.info.caCertificatePem,
        headers: { Origin: 'https://shop.example' },
      }) as unknown as WebSocketLike;
    const client = await KelidClient.connect({ webSocket: factory, reconnect: false });
    try {
      expect(client.url).toBe(`wss://127.0.0.1:${mine.port}/v1`);
      const info = await client.info();
      expect(info.tier).toBe('unknown');
      expect(info.protocol).toBe(1);
    } finally {
      client.close();
    }
  });

  it("the other user's agent refuses us even when we trust its CA (peer-uid check)", async () => {
    const factory = (url: string): WebSocketLike =>
      new WebSocket(url, {
        ca: otherInfo.caCertificatePem,
        headers: { Origin: 'https://shop.example' },
      }) as unknown as WebSocketLike;
    const err = await KelidClient.connect({
      url: `wss://127.0.0.1:${otherInfo.port}/v1`,
      webSocket: factory,
      reconnect: false,
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_AGENT_UNREACHABLE' });
  });
});
