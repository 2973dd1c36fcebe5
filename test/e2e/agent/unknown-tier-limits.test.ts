import type * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { AgentProcess } from '../../helpers/agent-process.js';
import type { RpcClient } from '../../helpers/agent-process.js';

// Issue 13, section 8: frames of the `unknown` tier (any page at all) are limited to 8 KiB, and all
// unknown connections together share a byte budget; the known tiers keep maxMessageBytes (1 MiB). The
// limit follows the tier on an open connection: up when the user approves the site, down on revoke.

const SITE = 'https://bank.example';
const UNKNOWN_LIMIT = 8 * 1024;

/** A valid call padded with JSON whitespace to exactly `bytes` bytes. */
function padded(method: string, bytes: number, id: number | string = 1): string {
  const text = JSON.stringify({ jsonrpc: '2.0', id, method, params: {} });
  return text.slice(0, -1) + ' '.repeat(bytes - text.length) + '}';
}

/** The first of: a message from the agent, or the connection's close (with its code). */
function firstEvent(ws: WebSocket): Promise<{ message: string } | { close: number }> {
  return new Promise((resolve) => {
    ws.once('message', (d: Buffer) => resolve({ message: d.toString('utf8') }));
    ws.once('close', (code: number) => resolve({ close: code }));
  });
}

describe('Unknown-tier message limits', () => {
  let agent: AgentProcess;

  beforeAll(async () => {
    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-unknown-limits-',
      // The smallest budget the config takes: 8 KiB/s for all unknown connections together.
      config: { sites: [SITE], limits: { unknownBytesPerSecond: 8192 } },
    });
  });

  afterAll(async () => {
    await agent?.stop();
    agent?.cleanup();
  });

  it('closes an unknown-tier connection sending a 1 MiB frame with 1009, without answering it', async () => {
    const ws = await agent.open('https://huge.example');
    const first = firstEvent(ws);
    ws.send(padded('agent.info', 1024 * 1024), () => undefined);
    const event = await first;
    expect(event).not.toHaveProperty('message');
    // 1006 when the agent's close lands while this side still writes the megabyte.
    expect([1009, 1006]).toContain((event as { close: number }).close);
  });

  it('refuses the frame from its length header alone, before the payload is sent', async () => {
    const ws = await agent.open('https://header.example');
    const first = firstEvent(ws);
    const socket = (ws as unknown as { _socket: net.Socket })._socket;
    // A masked text frame whose 16-bit length says 65,535 bytes, followed by nothing.
    socket.write(Buffer.from([0x81, 0x80 | 126, 0xff, 0xff, 1, 2, 3, 4]));
    expect(await first).toEqual({ close: 1009 });
  });

  it('answers unknown-tier frames up to 8 KiB (agent.requestAccess with the longest reason fits)', async () => {
    const client = await agent.connect('https://fits.example');
    const info = await client.call('agent.info');
    expect(info).toMatchObject({ tier: 'unknown' });
    // The largest legitimate unknown-tier message: a 500-character reason of astral characters, each
    // escaped as a surrogate pair (12 bytes), and a 128-character id.
    const ws = client.ws;
    const reason = '\\ud83d\\ude00'.repeat(500);
    const escaped = `{"jsonrpc":"2.0","id":"${'i'.repeat(128)}","method":"agent.requestAccess","params":{"reason":"${reason}"}}`;
    expect(escaped.length).toBeLessThan(UNKNOWN_LIMIT);
    const first = firstEvent(ws);
    ws.send(escaped);
    // Read and parsed: the consent is shown (its notification is the first message back).
    const shown = await client.waitForNotification('consent.pending');
    expect(await first).toHaveProperty('message');
    await agent.deny(shown.params.requestId as string);
    const last = firstEvent(ws);
    ws.send(padded('agent.info', UNKNOWN_LIMIT + 1));
    expect(await last).toEqual({ close: 1009 });
  });

  it('keeps maxMessageBytes for a configured site', async () => {
    const site = await agent.open(SITE);
    const first = firstEvent(site);
    site.send(padded('agent.info', 1024 * 1024));
    const event = await first;
    expect(JSON.parse((event as { message: string }).message)).toMatchObject({ result: { tier: 'site' } });
    site.close();
  });

  it('raises the limit when the site is approved on this connection, and lowers it on revoke', async () => {
    const origin = 'https://approved.example';
    const client: RpcClient = await agent.connect(origin);
    const id = client.nextId;
    const access = client.call('agent.requestAccess', {});
    const approved = await agent.consent(await client.consentFor(id));
    expect(approved.status, approved.stderr).toBe(0);
    expect(await access).toEqual({ tier: 'site' });
    // Same connection, now `site`: a 512 KiB frame is read and answered.
    const big = firstEvent(client.ws);
    client.ws.send(padded('agent.info', 512 * 1024, 'big'));
    expect(JSON.parse(((await big) as { message: string }).message)).toMatchObject({
      result: { tier: 'site' },
    });

    // Revoked while open: back to `unknown`, and to 8 KiB.
    const revoked = await agent.cli(['sites', 'revoke', origin]);
    expect(revoked.status, revoked.stderr).toBe(0);
    expect(await client.call('agent.info')).toMatchObject({ tier: 'unknown' });
    const after = firstEvent(client.ws);
    client.ws.send(padded('agent.info', 64 * 1024, 'after'));
    expect(await after).toEqual({ close: 1009 });
  });

  it('holds unknown connections together to the byte budget while a site is served at once', async () => {
    const flooders = await Promise.all(
      ['a', 'b', 'c', 'd'].map((n) => agent.open(`https://${n}.flood.example`)),
    );
    let answered = 0;
    for (const ws of flooders) ws.on('message', () => (answered += 1));
    // 4 × 10 frames of 7 KiB: 280 KiB, 35 seconds of an 8 KiB/s budget.
    for (const ws of flooders) for (let i = 0; i < 10; i++) ws.send(padded('agent.info', 7 * 1024, i));
    const site = await agent.connect(SITE);
    expect(await site.call('agent.info')).toMatchObject({ tier: 'site' });
    // The site was answered while most of the unknown frames still wait to be read.
    expect(answered).toBeLessThan(20);
    await site.close();
    for (const ws of flooders) ws.terminate();
  });
});
