// softhsm-only: tests transport limits under flood; the module does not matter
import * as net from 'node:net';
import type * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { AgentProcess, UpgradeRefused } from '../../helpers/agent-process.js';
import type { RpcClient } from '../../helpers/agent-process.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// Floods against the real agent (default limits: 8 connections per origin, 64 in all, 100 calls/s with
// a burst of 200 per connection, 1 MiB messages, 1024 fragments, 10 s for headers and TLS handshakes).
// In every case the limit holds (403, ERR_RATE_LIMITED, close 1008/1009, or a dropped socket), a page
// of another origin connected beforehand keeps getting answers from the token during and after the
// flood, and the agent's resident memory stays bounded.

const SITE = 'https://site.example';
const FLOOD = 'https://flood.example';
const EVIL = 'https://evil.example';
/** Growth of the agent's RSS allowed over the whole file: generous, it catches unbounded buffering. */
const RSS_BOUND_KB = 200 * 1024;

/** A page of another origin calling tokens.list and agent.info in a loop (paced under its own rate). */
class Bystander {
  ok = 0;
  readonly failures: string[] = [];
  #running = false;
  #loop: Promise<void> = Promise.resolve();

  constructor(private readonly client: RpcClient) {}

  start(): void {
    this.#running = true;
    this.#loop = (async () => {
      while (this.#running) {
        try {
          const { tokens } = await this.client.call<{ tokens: Array<{ label: string }> }>('tokens.list');
          if (!tokens.some((t) => t.label === 'resident')) this.failures.push('token missing');
          await this.client.call('agent.info');
          this.ok += 1;
        } catch (e) {
          this.failures.push(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
  }

  /** Stop the loop; resolves to the number of successful rounds since start. */
  async stop(): Promise<number> {
    this.#running = false;
    await this.#loop;
    const n = this.ok;
    this.ok = 0;
    return n;
  }
}

function closeCode(ws: WebSocket): Promise<number> {
  return new Promise((resolve) => {
    if (ws.readyState === ws.CLOSED) resolve(-1);
    else ws.once('close', (code: number) => resolve(code));
  });
}

/** Resolves when the socket is closed by the other side (or rejects after `ms`). */
function closedWithin(socket: net.Socket, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    if (socket.destroyed) return resolve();
    const timer = setTimeout(() => reject(new Error('socket still open')), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

describe('Agent under floods', () => {
  const hsm = new SoftHsm('kelid-e2e-flood-hsm-');
  let agent: AgentProcess;
  let site: RpcClient;
  let bystander: Bystander;
  let rssStart = 0;

  beforeAll(async () => {
    hsm.initToken('resident', 'so-pin-r', '1234');
    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-flood-',
      config: {
        modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
        sites: [SITE, FLOOD],
      },
    });
    site = await agent.connect(SITE);
    bystander = new Bystander(site);
    // Warm up (module host, TLS, JIT) before taking the reference RSS.
    for (let i = 0; i < 20; i++) await site.call('tokens.list');
    rssStart = agent.rssKb();
  });

  afterAll(async () => {
    await bystander?.stop();
    await site?.close();
    await agent?.stop();
    agent?.cleanup();
    hsm.cleanup();
  });

  async function afterFlood(): Promise<void> {
    // Served after the flood, on the old connection and on a new one.
    expect(await site.call('agent.info')).toMatchObject({ tier: 'site' });
    const fresh = await agent.connect(SITE);
    expect(await fresh.call('tokens.list')).toHaveProperty('tokens');
    await fresh.close();
    expect(agent.rssKb() - rssStart).toBeLessThan(RSS_BOUND_KB);
    expect(agent.child.exitCode).toBeNull();
  }

  it('1,000 connection attempts at once from one origin: 8 upgrade, the rest get 403', async () => {
    bystander.start();
    const attempts = await Promise.allSettled(Array.from({ length: 1000 }, () => agent.open(EVIL)));
    const served = await bystander.stop();
    const open = attempts.filter((a) => a.status === 'fulfilled').map((a) => a.value);
    const refused = attempts.filter((a) => a.status === 'rejected' && a.reason instanceof UpgradeRefused);
    expect(open.length).toBeLessThanOrEqual(8);
    expect(open.length).toBeGreaterThan(0);
    expect(refused.length).toBe(1000 - open.length);
    for (const r of refused) expect((r as PromiseRejectedResult).reason).toMatchObject({ status: 403 });
    expect(bystander.failures).toEqual([]);
    expect(served).toBeGreaterThan(0);
    // Another origin still gets a connection of its own while the flooder holds its 8.
    const other = await agent.connect('https://other.example');
    expect(await other.call('agent.info')).toMatchObject({ tier: 'unknown' });
    await other.close();
    await Promise.all(open.map((ws) => (ws.close(), closeCode(ws))));
    await afterFlood();
  });

  it('1,000 connection attempts at once from 125 unknown origins: at most 32 open, sites still connect', async () => {
    bystander.start();
    const flood = Promise.allSettled(
      Array.from({ length: 1000 }, (_, i) => agent.open(`https://n${i % 125}.evil.example`)),
    );
    // A configured site gets a new connection while the flood is going on (and after it).
    const during = await agent.connect(FLOOD);
    expect(await during.call('tokens.list')).toHaveProperty('tokens');
    const attempts = await flood;
    const after = await agent.connect(FLOOD);
    expect(await after.call('agent.info')).toMatchObject({ tier: 'site' });
    await Promise.all([during.close(), after.close()]);
    const served = await bystander.stop();
    const open = attempts.filter((a) => a.status === 'fulfilled').map((a) => a.value);
    const refused = attempts.filter((a) => a.status === 'rejected' && a.reason instanceof UpgradeRefused);
    // Unknown origins share half of limits.connections (64).
    expect(open.length).toBeLessThanOrEqual(32);
    expect(open.length).toBeGreaterThan(0);
    expect(refused.length).toBe(1000 - open.length);
    expect(bystander.failures).toEqual([]);
    expect(served).toBeGreaterThan(0);
    await Promise.all(open.map((ws) => (ws.close(), closeCode(ws))));
    await afterFlood();
  });

  it('10,000 calls at once on one connection: a burst is served, the rest get ERR_RATE_LIMITED, then close 1008', async () => {
    const ws = await agent.open(FLOOD);
    const code = closeCode(ws);
    const results = new Set<number>();
    const limited: Array<{ id: unknown; retryAfterMs: unknown }> = [];
    const other: string[] = [];
    ws.on('message', (d: Buffer) => {
      const m = JSON.parse(d.toString('utf8')) as {
        id: number;
        result?: unknown;
        error?: { code: number; data?: { code?: string; retryAfterMs?: number } };
      };
      if (m.result !== undefined) results.add(m.id);
      else if (m.error?.data?.code === 'ERR_RATE_LIMITED')
        limited.push({ id: m.id, retryAfterMs: m.error.data.retryAfterMs });
      else other.push(d.toString('utf8').slice(0, 200));
    });
    bystander.start();
    for (let i = 1; i <= 10_000; i++) {
      ws.send(JSON.stringify({ jsonrpc: '2.0', id: i, method: i % 2 ? 'tokens.list' : 'agent.info' }));
    }
    expect(await code).toBe(1008);
    const served = await bystander.stop();

    // Up to the burst (200) plus a refill of 100/s while the frames arrived, and ERR_BUSY for calls
    // beyond the 8 in flight: nothing else.
    expect(results.size).toBeGreaterThan(0);
    expect(results.size).toBeLessThan(1000);
    expect(limited.length).toBeGreaterThan(900);
    for (const l of limited) {
      expect(typeof l.id).toBe('number');
      expect(l.retryAfterMs).toBeGreaterThan(0);
    }
    for (const o of other) expect(o).toContain('ERR_BUSY');
    expect(bystander.failures).toEqual([]);
    expect(served).toBeGreaterThan(0);
    await afterFlood();
  });

  it('a page that keeps 8 calls in flight meets the rate limit only after the burst, and is served again after retryAfterMs', async () => {
    const client = await agent.connect(FLOOD);
    let served = 0;
    let refusal: (Error & { data?: { code?: string; retryAfterMs?: number } }) | undefined;
    while (refusal === undefined && served < 2000) {
      const wave = await Promise.allSettled(Array.from({ length: 8 }, () => client.call('agent.info')));
      for (const w of wave) {
        if (w.status === 'fulfilled') served += 1;
        else refusal ??= w.reason as typeof refusal;
      }
    }
    // The burst (200) is served before any refusal; calls keep going at 100/s after it.
    expect(served).toBeGreaterThanOrEqual(200);
    expect(refusal?.data?.code).toBe('ERR_RATE_LIMITED');
    expect(refusal?.data?.retryAfterMs).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, (refusal?.data?.retryAfterMs ?? 0) + 50));
    expect(await client.call('agent.info')).toMatchObject({ tier: 'site' });
    expect(client.ws.readyState).toBe(client.ws.OPEN);
    await client.close();
  });

  it('slow handshakes: headers sent byte by byte and silent TLS sockets are dropped; others connect meanwhile', async () => {
    const request = `GET /v1 HTTP/1.1\r\nHost: 127.0.0.1:${agent.port}\r\nOrigin: ${EVIL}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Pad: ${'a'.repeat(400)}\r\n\r\n`;
    const slow: tls.TLSSocket[] = [];
    for (let i = 0; i < 100; i++) slow.push(await agent.tlsSocket());
    // Plain TCP sockets that never start the TLS handshake.
    const silent = await Promise.all(
      Array.from(
        { length: 100 },
        () =>
          new Promise<net.Socket>((resolve, reject) => {
            const s = net.connect(agent.port, '127.0.0.1', () => resolve(s));
            s.once('error', reject);
          }),
      ),
    );
    for (const s of [...slow, ...silent]) s.on('error', () => undefined);
    let position = 0;
    const drip = setInterval(() => {
      // One more header byte on every slow socket, never reaching the end of the headers.
      if (position < request.length - 4) {
        for (const s of slow) if (!s.destroyed) s.write(request[position]);
        position += 1;
      }
    }, 100);
    bystander.start();
    try {
      // New connections of other origins are accepted while the slow sockets are held.
      const during = await agent.connect('https://other.example');
      expect(await during.call('agent.info')).toMatchObject({ tier: 'unknown' });
      await during.close();
      // headersTimeout and the TLS handshake timeout are 10 s, checked every second (Node checks
      // only every 30 s by default); 25 s leaves room for a loaded machine.
      await Promise.all([...slow, ...silent].map((s) => closedWithin(s, 25_000)));
    } finally {
      clearInterval(drip);
      for (const s of [...slow, ...silent]) s.destroy();
    }
    expect(position).toBeLessThan(request.length - 4);
    const served = await bystander.stop();
    expect(bystander.failures).toEqual([]);
    expect(served).toBeGreaterThan(0);
    await afterFlood();
  }, 45_000);

  it('oversized frames: 4 MiB messages, and frame headers announcing 1 TiB, close the connection (1009)', async () => {
    const sockets = await Promise.all(Array.from({ length: 8 }, () => agent.open(EVIL)));
    bystander.start();
    const codes = sockets.map((ws) => closeCode(ws));
    const big = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'agent.info',
      params: { pad: 'x'.repeat(4 << 20) },
    });
    // A masked text frame header whose 64-bit length says 1 TiB, followed by a few bytes only.
    const huge = Buffer.concat([
      Buffer.from([0x81, 0x80 | 127]),
      Buffer.from([0, 0, 0x01, 0, 0, 0, 0, 0]),
      Buffer.from([1, 2, 3, 4]),
      Buffer.from('{"jsonrpc"'),
    ]);
    sockets.forEach((ws, i) => {
      if (i < 4) ws.send(big, () => undefined);
      else (ws as unknown as { _socket: net.Socket })._socket.write(huge);
    });
    const closed = await Promise.all(codes);
    // A header announcing too much is refused before any payload: 1009, always.
    expect(closed.slice(4)).toEqual([1009, 1009, 1009, 1009]);
    // 1009 too for the 4 MiB messages, or 1006 when the agent's close arrives while this side is still
    // writing the 4 MiB and the socket is reset before the close frame is read.
    for (const c of closed.slice(0, 4)) expect([1009, 1006]).toContain(c);
    const served = await bystander.stop();
    expect(bystander.failures).toEqual([]);
    expect(served).toBeGreaterThan(0);
    await afterFlood();
  });

  it('tiny fragments: a message of 2,000 one-byte fragments is closed with 1008 at the 1,024th', async () => {
    const sockets = await Promise.all(Array.from({ length: 8 }, () => agent.open(EVIL)));
    bystander.start();
    const codes = sockets.map((ws) => closeCode(ws));
    for (const ws of sockets) {
      for (let i = 0; i < 2000; i++) ws.send('x', { fin: false }, () => undefined);
    }
    expect(await Promise.all(codes)).toEqual(Array(8).fill(1008));
    const served = await bystander.stop();
    expect(bystander.failures).toEqual([]);
    expect(served).toBeGreaterThan(0);
    await afterFlood();
  });

  it('tiny messages: 20,000 one-byte frames are refused by the rate limit and the connection closed (1008)', async () => {
    const ws = await agent.open(FLOOD);
    const code = closeCode(ws);
    const kinds = new Map<string, number>();
    ws.on('message', (d: Buffer) => {
      const m = JSON.parse(d.toString('utf8')) as { error: { code: number; data?: { code?: string } } };
      const k = m.error.data?.code ?? String(m.error.code);
      kinds.set(k, (kinds.get(k) ?? 0) + 1);
    });
    bystander.start();
    for (let i = 0; i < 20_000; i++) ws.send('x', () => undefined);
    expect(await code).toBe(1008);
    const served = await bystander.stop();
    // Parse errors up to the burst, rate-limit refusals after it.
    expect([...kinds.keys()].sort()).toEqual(['-32700', 'ERR_RATE_LIMITED']);
    expect(kinds.get('-32700')).toBeLessThan(1000);
    expect(bystander.failures).toEqual([]);
    expect(served).toBeGreaterThan(0);
    await afterFlood();
  });
});
