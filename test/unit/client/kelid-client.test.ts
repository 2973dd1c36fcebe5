import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import type { WebSocket as ServerSocket } from 'ws';
import { KelidClient } from '../../../src/client/kelid-client.js';
import { KelidError } from '../../../src/client/kelid-error.js';
import type { WebSocketLike } from '../../../src/client/rpc-connection.js';

interface Request {
  jsonrpc: string;
  id: number;
  method: string;
  params: Record<string, unknown>;
}
type Handler = (req: Request, socket: ServerSocket) => unknown;

/** A scriptable JSON-RPC peer on a real WebSocket server: answers with `handlers`, records requests. */
class FakeAgent {
  readonly received: Request[] = [];
  readonly handlers = new Map<string, Handler>();
  readonly sockets = new Set<ServerSocket>();
  private wss!: WebSocketServer;
  port = 0;

  async start(port = 0): Promise<void> {
    this.wss = new WebSocketServer({ host: '127.0.0.1', port });
    await new Promise<void>((resolve) => this.wss.once('listening', () => resolve()));
    this.port = (this.wss.address() as AddressInfo).port;
    this.wss.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('message', (raw) => {
        const req = JSON.parse(String(raw)) as Request;
        this.received.push(req);
        const handler = this.handlers.get(req.method);
        if (!handler) return; // stays pending
        let reply: unknown;
        try {
          reply = { jsonrpc: '2.0', id: req.id, result: handler(req, socket) };
        } catch (e) {
          reply = { jsonrpc: '2.0', id: req.id, error: e };
        }
        if ((reply as { result?: unknown }).result !== PENDING) socket.send(JSON.stringify(reply));
      });
    });
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/v1`;
  }

  notify(method: string, params: unknown): void {
    for (const s of this.sockets) s.send(JSON.stringify({ jsonrpc: '2.0', method, params }));
  }

  /** Wait until a request for `method` has arrived. */
  async request(method: string): Promise<Request> {
    for (;;) {
      const r = this.received.find((q) => q.method === method);
      if (r) return r;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}

const PENDING = Symbol('pending');
const factory = (url: string): WebSocketLike => new WebSocket(url) as unknown as WebSocketLike;
const agentError = (code: string, data: Record<string, unknown> = {}): unknown => ({
  code: -32000,
  message: `failed: ${code}`,
  data: { code, retriable: true, ...data },
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('KelidClient', () => {
  let agent: FakeAgent;
  let client: KelidClient | undefined;

  beforeEach(async () => {
    agent = new FakeAgent();
    await agent.start();
    agent.handlers.set('agent.info', () => ({
      name: 'kelid',
      version: '0.1.0',
      protocol: 1,
      origin: 'null',
      tier: 'unknown',
    }));
    agent.handlers.set('request.cancel', () => ({ cancelled: true }));
  });

  afterEach(async () => {
    client?.close();
    client = undefined;
    await agent.stop();
  });

  const connect = async (options: Parameters<typeof KelidClient.connect>[0] = {}): Promise<KelidClient> => {
    client = await KelidClient.connect({ url: agent.url, webSocket: factory, ...options });
    return client;
  };

  describe('.connect', () => {
    it('fails with ERR_AGENT_UNREACHABLE and a local-network-access hint when nothing listens', async () => {
      const port = await freePort();
      const err = await KelidClient.connect({ url: `ws://127.0.0.1:${port}/v1`, webSocket: factory }).catch(
        (e) => e,
      );
      expect(err).toBeInstanceOf(KelidError);
      expect(err.code).toBe('ERR_AGENT_UNREACHABLE');
      expect(err.retriable).toBe(true);
      expect(err.data.hint).toMatch(/loopback-network/);
      expect(err.data.permission).toBe('unsupported');
    });

    it('fails with ERR_AGENT_UNREACHABLE when a listener never completes the handshake', async () => {
      const silent: Server = createServer(() => undefined);
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', () => resolve()));
      const { port } = silent.address() as AddressInfo;
      try {
        const err = await KelidClient.connect({
          url: `ws://127.0.0.1:${port}/v1`,
          webSocket: factory,
          timeoutMs: 200,
        }).catch((e) => e);
        expect(err.code).toBe('ERR_AGENT_UNREACHABLE');
        expect(err.message).toMatch(/no answer/);
      } finally {
        silent.close();
      }
    });

    it('reports a malformed URL as ERR_AGENT_UNREACHABLE', async () => {
      const err = await KelidClient.connect({ url: 'not a url', webSocket: factory }).catch((e) => e);
      expect(err.code).toBe('ERR_AGENT_UNREACHABLE');
    });
  });

  describe('#call', () => {
    it('sends JSON-RPC 2.0 requests and matches answers that arrive out of order', async () => {
      const kelid = await connect();
      agent.handlers.set('tokens.list', () => PENDING);
      agent.handlers.set('keys.list', () => PENDING);
      const tokens = kelid.listTokens();
      const keys = kelid.listKeys('tok-1');
      const [t, k] = [await agent.request('tokens.list'), await agent.request('keys.list')];
      expect(t.jsonrpc).toBe('2.0');
      expect(k.params).toEqual({ tokenId: 'tok-1' });
      expect(t.id).not.toBe(k.id);
      const socket = [...agent.sockets][0];
      socket.send(JSON.stringify({ jsonrpc: '2.0', id: k.id, result: { keys: [{ keyId: 'k' }] } }));
      socket.send(JSON.stringify({ jsonrpc: '2.0', id: t.id, result: { tokens: [{ tokenId: 't' }] } }));
      expect(await keys).toEqual([{ keyId: 'k' }]);
      expect(await tokens).toEqual([{ tokenId: 't' }]);
    });

    it('turns agent errors into KelidError with code, retriable and PIN flags', async () => {
      const kelid = await connect();
      const pin = { countLow: true, finalTry: true, locked: false, toBeChanged: false };
      agent.handlers.set('sign.raw', () => {
        throw agentError('ERR_PIN_INCORRECT', { pin });
      });
      const err = await kelid
        .signRaw({ certificateId: 'c', digest: randomBytes(32), digestAlgorithm: 'SHA-256', summary: 's' })
        .catch((e) => e);
      expect(err).toBeInstanceOf(KelidError);
      expect(err.code).toBe('ERR_PIN_INCORRECT');
      expect(err.retriable).toBe(true);
      expect(err.pin).toEqual(pin);
      expect(err.rpcCode).toBe(-32000);
      expect(err.data).not.toHaveProperty('code');
    });

    it('maps JSON-RPC standard errors to their own codes', async () => {
      const kelid = await connect();
      agent.handlers.set('tokens.list', () => {
        throw { code: -32602, message: 'invalid params' };
      });
      await expect(kelid.listTokens()).rejects.toMatchObject({
        code: 'ERR_INVALID_PARAMS',
        retriable: false,
      });
    });

    it('rejects with ERR_TIMEOUT after timeoutMs and sends request.cancel for that id', async () => {
      const kelid = await connect();
      const err = await kelid.listTokens({ timeoutMs: 50 }).catch((e) => e);
      expect(err.code).toBe('ERR_TIMEOUT');
      const call = await agent.request('tokens.list');
      const cancel = await agent.request('request.cancel');
      expect(cancel.params).toEqual({ id: call.id });
    });

    it('rejects with ERR_ABORTED when the signal aborts and cancels the pending consent', async () => {
      const kelid = await connect();
      const controller = new AbortController();
      const pending = kelid.initToken({ tokenId: 't', label: 'x' }, { signal: controller.signal });
      const call = await agent.request('tokens.init');
      controller.abort();
      await expect(pending).rejects.toMatchObject({ code: 'ERR_ABORTED' });
      expect((await agent.request('request.cancel')).params).toEqual({ id: call.id });
    });

    it('tells the caller and the listeners when a call waits for consent', async () => {
      const kelid = await connect();
      const seen: unknown[] = [];
      kelid.on('consentPending', (p) => seen.push(p));
      const onPending: unknown[] = [];
      agent.handlers.set('pin.change', (req, socket) => {
        socket.send(
          JSON.stringify({
            jsonrpc: '2.0',
            method: 'consent.pending',
            params: { id: req.id, requestId: 'r-1' },
          }),
        );
        return {};
      });
      await kelid.changePin({ tokenId: 't', role: 'user' }, { onPending: (p) => onPending.push(p) });
      const call = await agent.request('pin.change');
      expect(onPending).toEqual([{ id: call.id, requestId: 'r-1' }]);
      expect(seen).toEqual([{ id: call.id, requestId: 'r-1' }]);
    });

    it('cancels a call by id through request.cancel', async () => {
      const kelid = await connect();
      expect(await kelid.cancel(42)).toBe(true);
      expect((await agent.request('request.cancel')).params).toEqual({ id: 42 });
    });
  });

  describe('#on', () => {
    it('emits tokensChanged for tokens.changed notifications until unsubscribed', async () => {
      const kelid = await connect();
      const seen: unknown[] = [];
      const off = kelid.on('tokensChanged', (e) => seen.push(e));
      agent.notify('tokens.changed', { added: [{ tokenId: 'a' }], removed: ['b'] });
      await kelid.info(); // the notification was sent before this answer
      off();
      agent.notify('tokens.changed', { added: [], removed: ['c'] });
      await kelid.info();
      expect(seen).toEqual([{ added: [{ tokenId: 'a' }], removed: ['b'] }]);
    });
  });

  describe('reconnection', () => {
    it('fails pending calls with ERR_DISCONNECTED, emits disconnected, then reconnects', async () => {
      const kelid = await connect();
      const events: string[] = [];
      const reconnected = new Promise<void>((resolve) =>
        kelid.on('reconnected', () => {
          events.push('reconnected');
          resolve();
        }),
      );
      kelid.on('disconnected', () => events.push('disconnected'));
      const pending = kelid.signCms({ certificateId: 'c', content: 'x', summary: 's' });
      await agent.request('sign.cms');
      for (const s of agent.sockets) s.terminate();
      const err = await pending.catch((e) => e);
      expect(err.code).toBe('ERR_DISCONNECTED');
      expect(err.retriable).toBe(true);
      await reconnected;
      expect(events).toEqual(['disconnected', 'reconnected']);
      expect((await kelid.info()).name).toBe('kelid');
      expect(kelid.connected).toBe(true);
    });

    it('lets a call made while reconnecting wait for the new connection', async () => {
      const kelid = await connect({ timeoutMs: 5000 });
      const disconnected = new Promise<void>((resolve) => kelid.on('disconnected', () => resolve()));
      for (const s of agent.sockets) s.terminate();
      await disconnected;
      expect(kelid.connected).toBe(false);
      expect((await kelid.info()).protocol).toBe(1);
    });

    it('keeps trying while the agent is down and reconnects when it is back on the same port', async () => {
      const kelid = await connect();
      const port = agent.port;
      const reconnected = new Promise<{ attempts: number }>((resolve) => kelid.on('reconnected', resolve));
      await agent.stop();
      await new Promise((resolve) => setTimeout(resolve, 600)); // let a few attempts fail
      const handlers = agent.handlers;
      agent = new FakeAgent();
      for (const [k, v] of handlers) agent.handlers.set(k, v);
      await agent.start(port);
      expect((await reconnected).attempts).toBeGreaterThan(1);
      expect((await kelid.info()).tier).toBe('unknown');
    });

    it('does not reconnect when reconnect is false', async () => {
      const kelid = await connect({ reconnect: false });
      const disconnected = new Promise<void>((resolve) => kelid.on('disconnected', () => resolve()));
      for (const s of agent.sockets) s.terminate();
      await disconnected;
      await expect(kelid.info()).rejects.toMatchObject({ code: 'ERR_DISCONNECTED' });
    });
  });

  describe('#close', () => {
    it('rejects pending calls and later calls with ERR_CLOSED', async () => {
      const kelid = await connect();
      const pending = kelid.requestAccess('why');
      await agent.request('agent.requestAccess');
      kelid.close();
      await expect(pending).rejects.toMatchObject({ code: 'ERR_CLOSED' });
      await expect(kelid.info()).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    });
  });

  describe('#signCms', () => {
    it('sends text content as base64 UTF-8 and refuses content together with digest', async () => {
      const kelid = await connect();
      agent.handlers.set('sign.cms', () => ({ cms: 'AAAA' }));
      expect(await kelid.signCms({ certificateId: 'c', content: 'سلام', summary: 'greeting' })).toEqual({
        cms: 'AAAA',
      });
      const req = await agent.request('sign.cms');
      expect(Buffer.from(req.params['content'] as string, 'base64').toString('utf8')).toBe('سلام');
      expect(req.params['digestAlgorithm']).toBe('SHA-256');
      await expect(
        kelid.signCms({ certificateId: 'c', content: 'a', digest: randomBytes(32), summary: 's' }),
      ).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    });
  });

  describe('#signRaw', () => {
    it('refuses a digest whose length does not match the algorithm, before sending', async () => {
      const kelid = await connect();
      await expect(
        kelid.signRaw({
          certificateId: 'c',
          digest: randomBytes(32),
          digestAlgorithm: 'SHA-384',
          summary: 's',
        }),
      ).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
      expect(agent.received.some((r) => r.method === 'sign.raw')).toBe(false);
    });
  });

  describe('#signBatch', () => {
    it('sends every item digest as base64 in order', async () => {
      const kelid = await connect();
      agent.handlers.set('sign.batch', (req) => ({
        results: (req.params['items'] as unknown[]).map(() => ({ signature: 'AA==' })),
      }));
      const digests = Array.from({ length: 5 }, () => randomBytes(48));
      const r = await kelid.signBatch({
        certificateId: 'c',
        format: 'raw',
        digestAlgorithm: 'SHA-384',
        items: digests.map((digest, i) => ({ digest, summary: `doc ${i}` })),
      });
      expect(r.results).toHaveLength(5);
      const req = await agent.request('sign.batch');
      expect(req.params['items']).toEqual(
        digests.map((d, i) => ({ digest: d.toString('base64'), summary: `doc ${i}` })),
      );
    });
  });

  describe('#signFile', () => {
    it('hashes the file in chunks and asks for a detached CMS over that digest', async () => {
      const kelid = await connect();
      agent.handlers.set('sign.cms', () => ({ cms: 'MIIB' }));
      const data = randomBytes(3 * 1024 * 1024 + 5);
      const file = new File([data], 'report.pdf');
      const progress: number[] = [];
      const r = await kelid.signFile(file, {
        certificateId: 'c',
        digestAlgorithm: 'SHA-512',
        chunkSize: 1024 * 1024,
        onProgress: (n) => progress.push(n),
      });
      const expected = createHash('sha512').update(data).digest('base64');
      expect(r).toEqual({ cms: 'MIIB', digest: expected, digestAlgorithm: 'SHA-512', size: data.length });
      const req = await agent.request('sign.cms');
      expect(req.params).toMatchObject({
        certificateId: 'c',
        digest: expected,
        digestAlgorithm: 'SHA-512',
        detached: true,
      });
      expect(req.params).not.toHaveProperty('content');
      expect(req.params['summary']).toMatch(/report\.pdf/);
      expect(progress).toEqual([1, 2, 3, 3].map((n, i) => (i < 3 ? n * 1024 * 1024 : data.length)));
    });
  });
});
