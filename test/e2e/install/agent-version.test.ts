import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { KelidClient, compareVersions } from '../../../src/client/kelid-client.js';
import type { WebSocketLike } from '../../../src/client/rpc-connection.js';
import { AgentProcess } from '../../helpers/agent-process.js';

// `minimumAgentVersion` against the real agent (version 0.1.0 from package.json): an approved site
// learns the version at connect; a new site only after `requestAccess` (issue 13 keeps the version
// from unknown-tier pages), and the check follows as soon as it is known.

const SITE = 'https://approved.example';
const NEW_SITE = 'https://new.example';

describe('SDK minimumAgentVersion', () => {
  let agent: AgentProcess;
  beforeAll(async () => {
    agent = await AgentProcess.start({ config: { sites: [SITE] } });
  });
  afterAll(async () => {
    await agent?.stop();
    agent?.cleanup();
  });

  const factory =
    (origin: string) =>
    (url: string): WebSocketLike =>
      new WebSocket(url, {
        ca: agent.info.caCertificatePem,
        headers: { Origin: origin },
      }) as unknown as WebSocketLike;

  it('fails an approved site at connect with ERR_AGENT_OUTDATED and a download hint', async () => {
    const err = await KelidClient.connect({
      url: `wss://127.0.0.1:${agent.port}/v1`,
      webSocket: factory(SITE),
      reconnect: false,
      minimumAgentVersion: '99.0.0',
      downloadUrl: 'https://kelid.example/download',
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'ERR_AGENT_OUTDATED',
      retriable: false,
      data: { version: '0.1.0', minimumVersion: '99.0.0' },
    });
    expect((err as { data: { hint: string } }).data.hint).toContain('https://kelid.example/download');
  });

  it('accepts an agent that is new enough', async () => {
    const client = await KelidClient.connect({
      url: `wss://127.0.0.1:${agent.port}/v1`,
      webSocket: factory(SITE),
      reconnect: false,
      minimumAgentVersion: '0.1.0',
    });
    expect((await client.info()).version).toBe('0.1.0');
    client.close();
  });

  it('checks an unknown site once requestAccess is approved (the version is hidden before)', async () => {
    const client = await KelidClient.connect({
      url: `wss://127.0.0.1:${agent.port}/v1`,
      webSocket: factory(NEW_SITE),
      reconnect: false,
      minimumAgentVersion: '99.0.0',
    });
    try {
      const info = await client.info();
      expect(info.tier).toBe('unknown');
      expect(info.version).toBeUndefined();
      expect(info.protocol).toBe(1);
      const access = client.requestAccess().catch((e: unknown) => e);
      let pending: Array<{ requestId: string }> = [];
      for (let i = 0; i < 100 && pending.length === 0; i++) {
        pending = await agent.pendingConsents();
        if (pending.length === 0) await new Promise((r) => setTimeout(r, 100));
      }
      expect((await agent.consent(pending[0].requestId)).status).toBe(0);
      expect(await access).toMatchObject({ code: 'ERR_AGENT_OUTDATED', data: { version: '0.1.0' } });
    } finally {
      client.close();
    }
  });

  it('compares versions numerically, pre-releases first', () => {
    expect(compareVersions('0.10.0', '0.9.9')).toBe(1);
    expect(compareVersions('1.0.0-rc.1', '1.0.0')).toBe(-1);
    expect(compareVersions('v1.2.3', '1.2.3')).toBe(0);
    expect(compareVersions('1.2', '1.2.1')).toBe(-1);
  });
});
