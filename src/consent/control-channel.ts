import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as net from 'node:net';
import { KelidError, isKelidError } from '../model/errors.js';
import type { ErrorCode } from '../model/errors.js';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import { CONTROL_PIPE_ID_FILE, controlChannelPath, currentPlatformEnv } from '../platform-paths.js';

// PROTOCOL.md section 5, the CLI's way to the running agent: a Unix socket `<stateDir>/control.sock`
// that only the same OS user can open (the socket is 0600 inside a 0700 directory the user owns).
// Newline-delimited JSON: one request object per line, one response object per line.
//   request:  {op:'list'} | {op:'approve', requestId, secrets} | {op:'deny', requestId}
//             | {op:'sites.list'} | {op:'sites.revoke', origin} | {op:'ui.url'}
//   response: {ok:true, result} | {ok:false, error:{code, message, need?}}

export { CONTROL_SOCKET } from '../platform-paths.js';
const MAX_LINE_BYTES = 64 * 1024;
// Requests served per connection: the CLI sends one; this bounds a misbehaving client.
const MAX_REQUESTS_PER_CONNECTION = 100;

export type ControlRequest =
  | { op: 'list' }
  | { op: 'approve'; requestId: string; secrets: unknown }
  | { op: 'deny'; requestId: string }
  | { op: 'sites.list' }
  | { op: 'sites.revoke'; origin: string }
  | { op: 'ui.url' };

export interface ControlError {
  code: ErrorCode;
  message: string;
  need?: string;
}

export type ControlResponse = { ok: true; result: unknown } | { ok: false; error: ControlError };

/** Serves one request; errors are thrown as KelidError (their `data.need` is passed on). */
export type ControlHandler = (request: ControlRequest) => Promise<unknown>;

/** The control channel of the agent of `stateDir`: a socket in it, or a per-user named pipe on Windows. */
export function controlSocketPath(stateDir: string): string {
  const platform = currentPlatformEnv().platform;
  if (platform !== 'win32') return controlChannelPath(stateDir, platform);
  const idFile = path.join(stateDir, CONTROL_PIPE_ID_FILE);
  let id: string;
  try {
    id = fs.readFileSync(idFile, 'utf8').trim();
  } catch {
    id = randomBytes(16).toString('hex');
    try {
      fs.writeFileSync(idFile, id, { mode: 0o600, flag: 'wx' });
    } catch {
      id = fs.readFileSync(idFile, 'utf8').trim();
    }
  }
  return controlChannelPath(stateDir, platform, id);
}

/**
 * Create the state directory (0700) if missing, and refuse one that another user owns or that others
 * may write to: whoever can write there could replace the control socket or the TLS material.
 */
export function ensurePrivateDirectory(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (process.platform === 'win32') return;
  const st = fs.statSync(dir);
  if (!st.isDirectory()) throw new KelidError('ERR_FORBIDDEN', `state directory ${dir} is not a directory`);
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
    throw new KelidError('ERR_FORBIDDEN', `state directory ${dir} is owned by another user`);
  }
  if ((st.mode & 0o022) !== 0) {
    throw new KelidError(
      'ERR_FORBIDDEN',
      `state directory ${dir} is writable by group or others (chmod 700 it)`,
    );
  }
}

const OPS = new Set(['list', 'approve', 'deny', 'sites.list', 'sites.revoke', 'ui.url']);

function parseRequest(line: string): ControlRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new KelidError('ERR_INVALID_INPUT', 'request is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new KelidError('ERR_INVALID_INPUT', 'request must be a JSON object');
  }
  const r = value as Record<string, unknown>;
  if (typeof r.op !== 'string' || !OPS.has(r.op)) throw new KelidError('ERR_INVALID_INPUT', 'unknown op');
  const str = (k: string): string => {
    const v = r[k];
    if (typeof v !== 'string' || v.length === 0 || v.length > 512)
      throw new KelidError('ERR_INVALID_INPUT', `${k} must be a string`);
    return v;
  };
  switch (r.op) {
    case 'approve':
      return { op: 'approve', requestId: str('requestId'), secrets: r.secrets };
    case 'deny':
      return { op: 'deny', requestId: str('requestId') };
    case 'sites.revoke':
      return { op: 'sites.revoke', origin: str('origin') };
    default:
      return { op: r.op as 'list' | 'sites.list' | 'ui.url' };
  }
}

export class ControlChannel {
  readonly socketPath: string;
  // A named pipe (Windows) is no file: nothing stale to remove, chmod or remove again. Its default
  // DACL gives write access only to its creator, SYSTEM and administrators.
  readonly #isPipe: boolean;
  readonly #handler: ControlHandler;
  readonly #log: Logger;
  readonly #sockets = new Set<net.Socket>();
  #server: net.Server | undefined;

  constructor(socketPath: string, handler: ControlHandler, options: { logger?: Logger } = {}) {
    this.socketPath = socketPath;
    this.#isPipe = socketPath.startsWith('\\\\.\\pipe\\');
    this.#handler = handler;
    this.#log = options.logger ?? silentLogger;
  }

  /** Bind the socket (mode 0600). Refuses when another agent already serves this state directory. */
  async start(): Promise<void> {
    if (!this.#isPipe) await removeStaleSocket(this.socketPath);
    const server = net.createServer({ allowHalfOpen: false }, (socket) => this.#serve(socket));
    // The umask covers the window between bind() and chmod(): the socket is never more open than 0600.
    const previous = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.socketPath, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(previous);
    }
    if (!this.#isPipe) fs.chmodSync(this.socketPath, 0o600);
    server.on('error', (e) => this.#log.warn({ err: e.message }, 'control channel error'));
    this.#server = server;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (!this.#isPipe) fs.rmSync(this.socketPath, { force: true });
  }

  #serve(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(5 * 60_000, () => socket.destroy());
    let buffered = '';
    let served = 0;
    let chain = Promise.resolve();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      if (Buffer.byteLength(buffered) > MAX_LINE_BYTES && !buffered.includes('\n')) {
        socket.destroy();
        return;
      }
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (++served > MAX_REQUESTS_PER_CONNECTION) {
          socket.destroy();
          return;
        }
        chain = chain.then(async () => {
          const response = await this.#answer(line);
          if (!socket.destroyed) socket.write(`${JSON.stringify(response)}\n`);
        });
      }
    });
  }

  async #answer(line: string): Promise<ControlResponse> {
    try {
      const request = parseRequest(line);
      return { ok: true, result: await this.#handler(request) };
    } catch (e) {
      if (isKelidError(e) && e.code !== 'ERR_INTERNAL') {
        const need = typeof e.data.need === 'string' ? { need: e.data.need } : {};
        return { ok: false, error: { code: e.code, message: e.message, ...need } };
      }
      this.#log.error({ err: e instanceof Error ? e.message : String(e) }, 'control request failed');
      return { ok: false, error: { code: 'ERR_INTERNAL', message: 'internal error' } };
    }
  }
}

async function removeStaleSocket(socketPath: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socketPath);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new KelidError('ERR_FORBIDDEN', `${socketPath} exists and is not a socket`);
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive)
    throw new KelidError('ERR_BUSY', 'another Kelid agent is already running with this state directory');
  fs.rmSync(socketPath, { force: true });
}

/** The control socket has no agent behind it. */
export class AgentNotRunningError extends Error {
  constructor(stateDir: string) {
    super(`no Kelid agent is running for state directory ${stateDir} (start one with "kelid serve")`);
    this.name = 'AgentNotRunningError';
  }
}

/** Send one request to the agent of `stateDir`; resolves to its result or throws its KelidError. */
export async function sendControlRequest(
  stateDir: string,
  request: ControlRequest,
  timeoutMs = 30_000,
): Promise<unknown> {
  const socketPath = controlSocketPath(stateDir);
  const response = await new Promise<ControlResponse>((resolve, reject) => {
    const socket = net.connect(socketPath);
    let buffered = '';
    let connected = false;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new KelidError('ERR_INTERNAL', 'the agent did not answer in time'));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      connected = true;
      socket.write(`${JSON.stringify(request)}\n`);
    });
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      const nl = buffered.indexOf('\n');
      if (nl === -1) return;
      clearTimeout(timer);
      socket.end();
      try {
        resolve(JSON.parse(buffered.slice(0, nl)) as ControlResponse);
      } catch {
        reject(new KelidError('ERR_INTERNAL', 'the agent sent an unreadable answer'));
      }
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (!connected && (e.code === 'ENOENT' || e.code === 'ECONNREFUSED'))
        reject(new AgentNotRunningError(stateDir));
      else reject(new KelidError('ERR_INTERNAL', `control channel: ${e.code ?? e.message}`));
    });
    socket.on('close', () => {
      clearTimeout(timer);
      reject(new KelidError('ERR_INTERNAL', 'the agent closed the control channel'));
    });
  });
  if (response.ok) return response.result;
  const { code, message, need } = response.error;
  throw new KelidError(code, message, need === undefined ? {} : { data: { need } });
}
