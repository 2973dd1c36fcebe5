// A page's connection (over the WebSocket or through the extension's bridge) and its message loop:
// the unknown tier's shared byte budget, the per-connection rate limit, then the dispatcher.

import { randomBytes } from 'node:crypto';
import type { WebSocket } from 'ws';
import type { KelidConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { Tier } from '../model/types.js';
import type { ConnectionContext, PendingCall } from '../protocol/context.js';
import { JSON_RPC, rateLimitedResponse } from '../protocol/dispatcher.js';
import type { Dispatcher } from '../protocol/dispatcher.js';
import type { BridgeConnection } from '../transport/bridge.js';
import { RequestRateLimiter, TRANSPORT_LIMITS, UnknownByteBudget } from '../transport/limits.js';
import { setMessageLimit, unknownMaxPayload } from '../transport/server.js';
import type { AcceptedConnection } from '../transport/server.js';

/** What a connection needs from its transport: a WebSocket, or a bridge connection of the extension. */
export interface PageChannel {
  readonly open: boolean;
  readonly bufferedAmount: number;
  send(text: string): void;
  close(code: number, reason: string): void;
  /** Change the largest message accepted from now on; false when it cannot be changed. */
  setMessageLimit(bytes: number): boolean;
  pause(): void;
  resume(): void;
}

function webSocketChannel(ws: WebSocket): PageChannel {
  return {
    get open() {
      return ws.readyState === ws.OPEN;
    },
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
    send: (text) => ws.send(text),
    close: (code, reason) => ws.close(code, reason),
    setMessageLimit: (bytes) => setMessageLimit(ws, bytes),
    pause: () => ws.pause(),
    resume: () => ws.resume(),
  };
}

/** One page's connection: its origin, tier, pending calls and the channel its answers go to. */
export class Connection implements ConnectionContext {
  readonly id = randomBytes(8).toString('hex');
  readonly calls = new Map<string, PendingCall>();
  readonly #closed = new AbortController();
  #tier: Tier;

  constructor(
    readonly channel: PageChannel,
    readonly origin: string,
    tier: Tier,
    readonly maxMessageBytes: number,
  ) {
    this.#tier = tier;
  }

  get tier(): Tier {
    return this.#tier;
  }

  /** A site approved (or revoked) on an open connection: its frame limit follows the tier. */
  set tier(tier: Tier) {
    const limit = tier === 'unknown' ? unknownMaxPayload(this.maxMessageBytes) : this.maxMessageBytes;
    // If the limit cannot be changed (ws internals moved), an approved connection keeps the small
    // limit (the page reconnects), and a demoted one is closed rather than keep the large limit.
    if (!this.channel.setMessageLimit(limit) && tier === 'unknown') this.channel.close(1008, 'tier changed');
    this.#tier = tier;
  }

  get closed(): AbortSignal {
    return this.#closed.signal;
  }

  close(): void {
    this.#closed.abort();
  }

  send(text: string): void {
    if (!this.channel.open) return;
    if (this.channel.bufferedAmount > TRANSPORT_LIMITS.maxSendBufferBytes) {
      // The page does not read its answers: stop queueing them in memory.
      this.channel.close(1008, 'too many unread messages');
      return;
    }
    this.channel.send(text);
  }

  notify(method: string, params: unknown): void {
    this.send(JSON.stringify({ jsonrpc: '2.0', method, params }));
  }
}

/** The open page connections of an agent, and how a new one is served. */
export class PageConnections implements Iterable<Connection> {
  readonly #connections = new Set<Connection>();
  readonly #unknownBytes: UnknownByteBudget;
  readonly #config: Pick<KelidConfig, 'maxMessageBytes' | 'limits'>;
  readonly #log: Logger;

  constructor(config: Pick<KelidConfig, 'maxMessageBytes' | 'limits'>, logger: Logger) {
    this.#config = config;
    this.#log = logger;
    // One budget for every unknown-tier connection; its burst is one second's worth.
    const perSecond = config.limits.unknownBytesPerSecond;
    this.#unknownBytes = new UnknownByteBudget({ perSecond, burst: perSecond });
  }

  [Symbol.iterator](): Iterator<Connection> {
    return this.#connections.values();
  }

  /** Move the open connections of `origin` from one tier to another (a site approved or revoked). */
  retier(origin: string, from: Tier, to: Tier): void {
    for (const c of this.#connections) if (c.origin === origin && c.tier === from) c.tier = to;
  }

  /** Forget every connection (agent stop); their transports are closed by the servers. */
  closeAll(): void {
    for (const c of this.#connections) c.close();
    this.#connections.clear();
  }

  acceptWebSocket(ws: WebSocket, info: AcceptedConnection, dispatcher: Dispatcher): void {
    const serve = this.#serve(webSocketChannel(ws), info, dispatcher, 'wss');
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      if (isBinary) serve.message(null, byteLength(data));
      else
        serve.message(
          Array.isArray(data)
            ? Buffer.concat(data).toString('utf8')
            : Buffer.from(data as ArrayBuffer).toString('utf8'),
          byteLength(data),
        );
    });
    ws.on('error', () => ws.terminate());
    ws.on('close', serve.closed);
  }

  /** A page's connection through the extension: the same connection, limits and dispatcher as WSS. */
  acceptBridge(bridge: BridgeConnection, info: AcceptedConnection, dispatcher: Dispatcher): void {
    const serve = this.#serve(bridge, info, dispatcher, `extension:${bridge.hello.browser}`);
    bridge.onMessage((text, bytes) => serve.message(text, bytes));
    bridge.onClose(serve.closed);
  }

  /** What both transports do with a page's messages: byte budget, rate limit, dispatch. */
  #serve(
    channel: PageChannel,
    info: AcceptedConnection,
    dispatcher: Dispatcher,
    transport: string,
  ): { message(text: string | null, bytes: number): void; closed(): void } {
    const conn = new Connection(channel, info.origin, info.tier, this.#config.maxMessageBytes);
    this.#connections.add(conn);
    this.#log.info({ conn: conn.id, origin: info.origin, tier: info.tier, transport }, 'connection opened');
    const rate = new RequestRateLimiter({
      perSecond: this.#config.limits.requestsPerSecond,
      burst: this.#config.limits.requestBurst,
      strikes: TRANSPORT_LIMITS.rateLimitStrikes,
    });
    let readAgainAt = 0;
    let resumeTimer: NodeJS.Timeout | undefined;
    const message = (text: string | null, bytes: number): void => {
      if (!channel.open) return;
      if (conn.tier === 'unknown') {
        // The unknown tier's shared byte budget: over it, this connection is not read until paid.
        const wait = this.#unknownBytes.take(bytes);
        if (wait > 0) {
          readAgainAt = Math.max(readAgainAt, performance.now() + wait);
          channel.pause();
          clearTimeout(resumeTimer);
          resumeTimer = setTimeout(() => channel.resume(), readAgainAt - performance.now());
        }
      }
      const allowed = rate.take();
      if (!allowed.ok && allowed.close) {
        this.#log.info({ conn: conn.id, origin: info.origin }, 'request flood: connection closed');
        channel.close(1008, 'request rate limit exceeded');
        return;
      }
      if (!allowed.ok && text === null) {
        conn.send(rateLimitedResponse('', allowed.retryAfterMs));
        return;
      }
      if (text === null) {
        conn.send(
          JSON.stringify({
            jsonrpc: '2.0',
            id: null,
            error: {
              code: JSON_RPC.INVALID_REQUEST,
              message: 'binary frames are not accepted; send JSON text frames',
            },
          }),
        );
        return;
      }
      if (!allowed.ok) {
        conn.send(rateLimitedResponse(text, allowed.retryAfterMs));
        return;
      }
      dispatcher.handle(conn, text).then(
        (reply) => conn.send(reply),
        (e: unknown) =>
          this.#log.error({ err: e instanceof Error ? e.message : String(e) }, 'dispatch failed'),
      );
    };
    const closed = (): void => {
      clearTimeout(resumeTimer);
      if (!this.#connections.delete(conn)) return;
      conn.close();
      info.release();
      this.#log.info({ conn: conn.id }, 'connection closed');
    };
    return { message, closed };
  }
}

function byteLength(data: Buffer | ArrayBuffer | Buffer[]): number {
  return Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength;
}
