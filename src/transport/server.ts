import * as http from 'node:http';
import * as https from 'node:https';
import type * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import type { ConsoleSecrets } from '../consent/console-secrets.js';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import type { Tier } from '../model/types.js';
import { checkHandshake } from './handshake.js';
import type { HandshakeConfig } from './handshake.js';
import { TRANSPORT_LIMITS } from './limits.js';
import type { ConnectionLimits } from './limits.js';
import { PeerUserCheck } from './peer-uid.js';

// PROTOCOL.md sections 1 and 2: one HTTPS server on 127.0.0.1 (plus, for development only, a plain
// one with the same rules). WebSocket upgrades are decided in the `upgrade` event, before `ws` sees
// the request: path `/v1`, Host, Origin, the console secret, connection limits. A refusal is an HTTP
// 403 written to the raw socket, which is then closed; no upgrade ever happens.
// Before all that, in the `connection` event, a socket whose peer is another OS user is destroyed
// (peer-uid.ts): no TLS, no HTTP route, no upgrade for other accounts on the machine.

export interface AcceptedConnection {
  origin: string;
  tier: Tier;
  /** Frees the connection's slot in the limits (call once, when it closes). */
  release: () => void;
}

export interface AgentServerOptions {
  /** The port, or candidate ports tried in order (the first free one is used). */
  port: number | readonly number[];
  insecurePort: number | null;
  /** Config `wss`: when false, only the agent's own pages (console tier) may open a WebSocket. */
  pagesOverWebSocket?: boolean;
  tls: { key: string; cert: string };
  /** The HTTP routes (http-routes.ts). */
  app: http.RequestListener;
  /** Largest message of the `site`, `ra` and console tiers (config `maxMessageBytes`). */
  maxPayload: number;
  limits: ConnectionLimits;
  /** The handshake rules for a listener's port (sites are read per handshake: approvals apply at once). */
  handshakeConfig: (localPort: number) => HandshakeConfig;
  consoleSecrets: ConsoleSecrets;
  onConnection: (ws: WebSocket, info: AcceptedConnection) => void;
  logger?: Logger;
}

export interface ListeningPorts {
  port: number;
  insecurePort: number | null;
}

export class AgentServer {
  readonly #options: AgentServerOptions;
  readonly #log: Logger;
  /** Upgrades of the known tiers, and of the `unknown` tier (small frames): ws fixes maxPayload per server. */
  readonly #wss: WebSocketServer;
  readonly #unknownWss: WebSocketServer;
  readonly #servers: http.Server[] = [];
  readonly #peerCheck = new PeerUserCheck();
  #lastRefusalLog = -Infinity;
  #suppressedRefusals = 0;

  constructor(options: AgentServerOptions) {
    this.#options = options;
    this.#log = options.logger ?? silentLogger;
    this.#wss = webSocketServer(options.maxPayload);
    this.#unknownWss = webSocketServer(unknownMaxPayload(options.maxPayload));
  }

  async listen(): Promise<ListeningPorts> {
    const secure = https.createServer(
      {
        key: this.#options.tls.key,
        cert: this.#options.tls.cert,
        minVersion: 'TLSv1.2',
        // A socket that connects and never finishes the TLS handshake is dropped (default: 120 s).
        handshakeTimeout: TRANSPORT_LIMITS.tlsHandshakeTimeoutMs,
        ...serverLimits(),
      },
      this.#options.app,
    );
    const port = await this.#start(secure, this.#options.port);
    let insecurePort: number | null = null;
    if (this.#options.insecurePort !== null) {
      const plain = http.createServer(serverLimits(), this.#options.app);
      insecurePort = await this.#start(plain, this.#options.insecurePort);
    }
    return { port, insecurePort };
  }

  async #start(server: http.Server, port: number | readonly number[]): Promise<number> {
    server.headersTimeout = TRANSPORT_LIMITS.headersTimeoutMs;
    server.requestTimeout = TRANSPORT_LIMITS.requestTimeoutMs;
    server.maxHeadersCount = TRANSPORT_LIMITS.maxHeadersCount;
    this.#gatePeers(server);
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) =>
      this.#upgrade(req, socket, head),
    );
    server.on('clientError', (_e, socket: Duplex) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      socket.destroy();
    });
    if (server instanceof https.Server) {
      server.on('tlsClientError', () => undefined);
    }
    const candidates = typeof port === 'number' ? [port] : port;
    for (let i = 0; ; i++) {
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ port: candidates[i], host: '127.0.0.1', exclusive: true }, () => {
            server.off('error', reject);
            resolve();
          });
        });
        break;
      } catch (e) {
        // Another user's agent (or anything else) holds this port: try the next one of the range.
        if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || i === candidates.length - 1) throw e;
      }
    }
    this.#servers.push(server);
    const address = server.address();
    if (address === null || typeof address === 'string') throw new TypeError('server has no TCP address');
    return address.port;
  }

  /**
   * Run the server's own `connection` listeners (TLS, or the HTTP parser) only for sockets of the
   * agent's OS user; others are destroyed before a byte is read, whatever route they were heading for.
   */
  #gatePeers(server: http.Server): void {
    const inner = server.listeners('connection') as Array<(socket: net.Socket) => void>;
    server.removeAllListeners('connection');
    server.on('connection', (socket: net.Socket) => {
      const verdict = this.#peerCheck.check(socket);
      if (!verdict.ok) {
        // One line per second at most: another account must not be able to fill the log.
        const now = performance.now();
        if (now - this.#lastRefusalLog >= 1000) {
          this.#lastRefusalLog = now;
          const suppressed = this.#suppressedRefusals;
          this.#suppressedRefusals = 0;
          this.#log.warn(
            { uid: verdict.uid, ...(suppressed > 0 ? { suppressed } : {}) },
            'connection from another OS user refused',
          );
        } else {
          this.#suppressedRefusals += 1;
        }
        socket.destroy();
        return;
      }
      for (const listener of inner) listener.call(server, socket);
    });
  }

  #upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const localPort = (socket as Duplex & { localPort?: number }).localPort ?? 0;
    const { path, query } = splitUrl(req.url ?? '');
    if (path !== '/v1') return refuse(socket, 404, 'Not Found');
    const result = checkHandshake(
      { host: req.headersDistinct.host, origin: req.headersDistinct.origin },
      this.#options.handshakeConfig(localPort),
    );
    if (!result.ok) {
      this.#log.debug({ reason: result.reason }, 'handshake refused');
      return refuse(socket, 403, 'Forbidden');
    }
    const consoleSecret = consoleParam(query);
    if (consoleSecret === undefined) {
      this.#log.debug('handshake refused: unexpected query');
      return refuse(socket, 403, 'Forbidden');
    }
    if (result.tier !== 'console' && consoleSecret !== null) return refuse(socket, 403, 'Forbidden');
    if (result.tier !== 'console' && this.#options.pagesOverWebSocket === false) {
      this.#log.debug('handshake refused: config wss is false (pages use the extension)');
      return refuse(socket, 403, 'Forbidden');
    }
    const release = this.#options.limits.acquire(result.origin, result.tier);
    if (release === null) {
      this.#log.info({ origin: result.origin }, 'connection limit reached');
      return refuse(socket, 403, 'Forbidden');
    }
    // The console tier needs the one-time secret the agent gave the page it opened.
    if (
      result.tier === 'console' &&
      (consoleSecret === null || !this.#options.consoleSecrets.consume(consoleSecret))
    ) {
      release();
      this.#log.info('console connection without a valid secret refused');
      return refuse(socket, 403, 'Forbidden');
    }
    const wss = result.tier === 'unknown' ? this.#unknownWss : this.#wss;
    wss.handleUpgrade(req, socket, head, (ws) => {
      this.#options.onConnection(ws, { origin: result.origin, tier: result.tier, release });
    });
  }

  async close(): Promise<void> {
    const clients = [...this.#wss.clients, ...this.#unknownWss.clients];
    for (const ws of clients) ws.close(1001, 'agent shutting down');
    for (const ws of clients) ws.terminate();
    await Promise.all(
      this.#servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
    this.#servers.length = 0;
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
    await new Promise<void>((resolve) => this.#unknownWss.close(() => resolve()));
  }
}

function webSocketServer(maxPayload: number): WebSocketServer {
  return new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload,
    clientTracking: true,
    // ws >= 8.21: bound fragments and buffered chunks of one message (tiny-fragment DoS).
    ...({
      maxFragments: TRANSPORT_LIMITS.maxFragments,
      maxBufferedChunks: TRANSPORT_LIMITS.maxBufferedChunks,
    } as object),
  });
}

/** The largest frame of an `unknown`-tier connection (never above the configured maximum). */
export function unknownMaxPayload(maxPayload: number): number {
  return Math.min(maxPayload, TRANSPORT_LIMITS.unknownMaxMessageBytes);
}

/**
 * Change the largest frame an open connection accepts: a connection's tier changes when its site is
 * approved (agent.requestAccess) or revoked, and its frame limit follows. ws fixes maxPayload when the
 * connection opens and has no API to change it, so this sets its receiver's `_maxPayload` (ws 8,
 * checked against every frame's length header and a fragmented message's total). Returns false when
 * ws no longer has that field: the caller must then not rely on the new limit.
 */
export function setMessageLimit(ws: WebSocket, maxPayload: number): boolean {
  const receiver = (ws as unknown as { _receiver?: { _maxPayload?: unknown } | null })._receiver;
  if (receiver === null || receiver === undefined || typeof receiver._maxPayload !== 'number') return false;
  receiver._maxPayload = maxPayload;
  return true;
}

function serverLimits(): http.ServerOptions {
  return {
    maxHeaderSize: TRANSPORT_LIMITS.maxHeaderSize,
    requestTimeout: TRANSPORT_LIMITS.requestTimeoutMs,
    // Node checks the header and request timeouts only this often (default 30 s): without it a
    // slowloris socket lives up to 40 s instead of the 10 s of headersTimeout.
    connectionsCheckingInterval: TRANSPORT_LIMITS.timeoutCheckIntervalMs,
  };
}

function splitUrl(url: string): { path: string; query: string } {
  const q = url.indexOf('?');
  return q === -1 ? { path: url, query: '' } : { path: url.slice(0, q), query: url.slice(q + 1) };
}

/** The `console` query parameter: null when there is no query; undefined when the query is anything else. */
function consoleParam(query: string): string | null | undefined {
  if (query === '') return null;
  const m = /^console=([A-Za-z0-9_-]{16,128})$/.exec(query);
  return m ? m[1] : undefined;
}

function refuse(socket: Duplex, status: 403 | 404, text: string): void {
  if (socket.writable) {
    socket.once('finish', () => socket.destroy());
    socket.end(
      `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${text.length + 1}\r\n\r\n${text}\n`,
    );
  } else {
    socket.destroy();
  }
}
