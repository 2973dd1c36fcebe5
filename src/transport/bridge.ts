import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import type { Tier } from '../model/types.js';
import type { HandshakeResult } from './handshake.js';
import { TRANSPORT_LIMITS } from './limits.js';
import type { ConnectionLimits } from './limits.js';

// The extension transport's way into the agent (docs/extension.md, PROTOCOL.md section 1a): the
// browser starts `kelid native-host`, which opens this local socket and relays one page's messages.
// Same-user only: a Unix socket 0600 in the 0700 state directory (like control.sock); on Windows a
// named pipe whose default ACL admits the creating user (and SYSTEM/administrators) only.
//
// Frames both ways: u32 big-endian length of (type byte + payload), the type byte, the payload.
//   type 1: one message of the page (JSON-RPC text, UTF-8), counted against the tier's frame limit;
//   type 2: control JSON: host → agent `{t:'hello', origin, browser, extensionId}` (first frame, once);
//           agent → host `{t:'welcome', tier}` or `{t:'close', code, reason}` (then the agent hangs up).
// The origin in the hello is the one the browser reported for the page's frame (sender.origin), never
// one the page wrote; the agent gives it a tier by the handshake rules of the WebSocket path.

export const BRIDGE_SOCKET = 'bridge.sock';
export const FRAME_TEXT = 1;
export const FRAME_CONTROL = 2;
/** Largest hello (control) frame the agent reads before it knows the tier. */
const MAX_HELLO_BYTES = 4 * 1024;
const HELLO_TIMEOUT_MS = 5_000;

/**
 * Where the bridge listens for a state directory: `<stateDir>/bridge.sock`; on Windows a named pipe
 * named after the state directory (pipes live in their own namespace, not in the file system).
 */
export function bridgeSocketPath(stateDir: string, platform: NodeJS.Platform = process.platform): string {
  if (platform === 'win32') {
    const tag = createHash('sha256').update(path.win32.resolve(stateDir).toLowerCase()).digest('hex');
    return `\\\\.\\pipe\\kelid-bridge-${tag.slice(0, 32)}`;
  }
  return path.posix.join(stateDir, BRIDGE_SOCKET);
}

/** Encode one bridge frame. */
export function encodeFrame(type: number, payload: string | Buffer): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const header = Buffer.alloc(5);
  header.writeUInt32BE(body.length + 1, 0);
  header[4] = type;
  return Buffer.concat([header, body]);
}

/** Incremental frame reader; `limit()` is asked for each frame's largest allowed payload. */
export class FrameReader {
  #buffer: Buffer = Buffer.alloc(0);

  constructor(
    private readonly limit: () => number,
    private readonly onFrame: (type: number, payload: Buffer) => void,
    private readonly onTooBig: (bytes: number, limit: number) => void,
  ) {}

  push(chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    while (this.#buffer.length >= 4) {
      const length = this.#buffer.readUInt32BE(0);
      const max = this.limit();
      // Refused from the length header, before the payload is read (as ws does with close 1009).
      if (length === 0 || length - 1 > max) {
        this.#buffer = Buffer.alloc(0);
        this.onTooBig(Math.max(0, length - 1), max);
        return;
      }
      if (this.#buffer.length < 4 + length) return;
      const type = this.#buffer[4];
      const payload = this.#buffer.subarray(5, 4 + length);
      this.#buffer = this.#buffer.subarray(4 + length);
      this.onFrame(type, payload);
    }
  }
}

export interface BridgeHello {
  origin: string;
  browser: 'chromium' | 'firefox';
  extensionId: string;
}

/** One page's connection through the extension, as the agent sees it. */
export class BridgeConnection {
  #limit: number;
  #onMessage: ((text: string, bytes: number) => void) | undefined;
  #closed = false;
  #paused = false;
  readonly #queue: Buffer[] = [];

  constructor(
    private readonly socket: net.Socket,
    readonly hello: BridgeHello,
    limit: number,
  ) {
    this.#limit = limit;
  }

  get open(): boolean {
    return !this.#closed && !this.socket.destroyed;
  }

  get bufferedAmount(): number {
    return this.socket.writableLength;
  }

  get limit(): number {
    return this.#limit;
  }

  setMessageLimit(bytes: number): boolean {
    this.#limit = bytes;
    return true;
  }

  onMessage(listener: (text: string, bytes: number) => void): void {
    this.#onMessage = listener;
  }

  onClose(listener: () => void): void {
    this.socket.once('close', listener);
  }

  /** @internal called by the server for each text frame */
  deliver(payload: Buffer): void {
    // Frames of a chunk read before pause() wait here: a paused connection is handed nothing.
    if (this.#paused) {
      this.#queue.push(payload);
      return;
    }
    this.#onMessage?.(payload.toString('utf8'), payload.length);
  }

  send(text: string): void {
    if (!this.open) return;
    this.socket.write(encodeFrame(FRAME_TEXT, text));
  }

  close(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.socket.destroyed)
      this.socket.end(encodeFrame(FRAME_CONTROL, JSON.stringify({ t: 'close', code, reason })));
    // A host that does not read its socket must not keep it open.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  pause(): void {
    this.#paused = true;
    this.socket.pause();
  }

  resume(): void {
    this.#paused = false;
    while (!this.#paused && this.#queue.length > 0 && this.open) this.deliver(this.#queue.shift() as Buffer);
    if (!this.#paused) this.socket.resume();
  }
}

export interface BridgeServerOptions {
  socketPath: string;
  /** The tier of an origin, by the same rules as the WebSocket handshake. */
  tierFor: (origin: string) => HandshakeResult;
  /** Largest message of the `site` and `ra` tiers (config `maxMessageBytes`). */
  maxPayload: number;
  limits: ConnectionLimits;
  onConnection: (
    connection: BridgeConnection,
    info: { origin: string; tier: Tier; release: () => void },
  ) => void;
  logger?: Logger;
}

/** Accepts the native hosts' connections on the same-user socket. */
export class BridgeServer {
  readonly #options: BridgeServerOptions;
  readonly #log: Logger;
  readonly #sockets = new Set<net.Socket>();
  #server: net.Server | undefined;

  constructor(options: BridgeServerOptions) {
    this.#options = options;
    this.#log = options.logger ?? silentLogger;
  }

  async listen(): Promise<void> {
    const socketPath = this.#options.socketPath;
    // The control socket (taken first) is the one-agent lock: a bridge socket left here is stale.
    if (process.platform !== 'win32') fs.rmSync(socketPath, { force: true });
    const server = net.createServer({ allowHalfOpen: false }, (socket) => this.#serve(socket));
    const previous = process.platform === 'win32' ? undefined : process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(socketPath, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      if (previous !== undefined) process.umask(previous);
    }
    if (process.platform !== 'win32') fs.chmodSync(socketPath, 0o600);
    server.on('error', (e) => this.#log.warn({ err: e.message }, 'bridge socket error'));
    this.#server = server;
  }

  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (process.platform !== 'win32') fs.rmSync(this.#options.socketPath, { force: true });
  }

  #serve(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let connection: BridgeConnection | undefined;
    const refuse = (reason: string): void => {
      this.#log.debug({ reason }, 'bridge connection refused');
      socket.end(encodeFrame(FRAME_CONTROL, JSON.stringify({ t: 'close', code: 1008, reason })));
      setTimeout(() => socket.destroy(), 1000).unref();
    };
    const helloTimer = setTimeout(() => socket.destroy(), HELLO_TIMEOUT_MS);
    helloTimer.unref();
    const reader = new FrameReader(
      () => connection?.limit ?? MAX_HELLO_BYTES,
      (type, payload) => {
        if (connection === undefined) {
          clearTimeout(helloTimer);
          if (type !== FRAME_CONTROL) return refuse('the first frame must be the hello');
          const hello = parseHello(payload);
          if (hello === null) return refuse('malformed hello');
          const result = this.#options.tierFor(hello.origin);
          // The agent's own pages never come through the extension: no console tier on the bridge.
          if (!result.ok || result.tier === 'console')
            return refuse(result.ok ? 'origin not allowed' : result.reason);
          const release = this.#options.limits.acquire(result.origin, result.tier);
          if (release === null) return refuse('connection limit reached');
          const limit =
            result.tier === 'unknown'
              ? Math.min(this.#options.maxPayload, TRANSPORT_LIMITS.unknownMaxMessageBytes)
              : this.#options.maxPayload;
          connection = new BridgeConnection(socket, { ...hello, origin: result.origin }, limit);
          socket.write(encodeFrame(FRAME_CONTROL, JSON.stringify({ t: 'welcome', tier: result.tier })));
          this.#options.onConnection(connection, { origin: result.origin, tier: result.tier, release });
          return;
        }
        if (type === FRAME_TEXT) connection.deliver(payload);
        else connection.close(1003, 'unexpected control frame');
      },
      (bytes, limit) => {
        const reason = `message too big: ${bytes} bytes, the limit is ${limit}`;
        if (connection) connection.close(1009, reason);
        else refuse(reason);
      },
    );
    socket.on('data', (chunk: Buffer) => {
      if (!socket.destroyed) reader.push(chunk);
    });
  }
}

function parseHello(payload: Buffer): BridgeHello | null {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Record<string, unknown>;
  if (v.t !== 'hello' || typeof v.origin !== 'string' || v.origin.length > 300) return null;
  if (v.browser !== 'chromium' && v.browser !== 'firefox') return null;
  if (typeof v.extensionId !== 'string' || v.extensionId.length > 200) return null;
  return { origin: v.origin, browser: v.browser, extensionId: v.extensionId };
}
