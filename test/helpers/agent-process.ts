// Runs the real, built agent (`node bin/kelid.js serve`) in a temporary state directory and talks to it
// the way pages and the CLI do: WebSocket clients with chosen Origin/Host headers that trust the
// agent's CA from agent.json, and `kelid consent …` processes on the control channel.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { rssKb } from './process-stats.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
const BIN = path.join(REPO, 'bin', 'kelid.js');

export interface AgentInfoJson {
  pid: number;
  port: number;
  url: string;
  caCertificatePem: string;
  insecureWsPort?: number;
}

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data: { code?: string; retriable?: boolean; [k: string]: unknown } | undefined,
  ) {
    super(message);
    this.name = 'RpcError';
  }
}

/** Fail fast without dist/, and warn when it is older than the sources (tests run the built agent). */
export function assertBuilt(): void {
  const main = path.join(REPO, 'dist', 'cli', 'main.js');
  if (!fs.existsSync(main)) throw new Error('dist/ is missing: run "npm run build" before the e2e tests');
  const built = fs.statSync(main).mtimeMs;
  const stale: string[] = [];
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'client' && e.name !== 'ui') walk(p);
      } else if (e.name.endsWith('.ts') && fs.statSync(p).mtimeMs > built) stale.push(path.relative(REPO, p));
    }
  };
  walk(path.join(REPO, 'src'));
  if (stale.length > 0)
    console.warn(`dist/ is older than ${stale.slice(0, 3).join(', ')}: run "npm run build"`);
}

/** A JSON-RPC client over one WebSocket, recording every frame both ways. */
export class RpcClient {
  readonly frames: string[] = [];
  readonly notifications: Array<{ method: string; params: Record<string, unknown> }> = [];
  #nextId = 1;
  readonly #pending = new Map<string, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  readonly #waiters: Array<{
    match: (n: { method: string; params: Record<string, unknown> }) => boolean;
    resolve: (n: { method: string; params: Record<string, unknown> }) => void;
  }> = [];
  readonly closed: Promise<void>;

  constructor(readonly ws: WebSocket) {
    this.closed = new Promise((resolve) => ws.once('close', () => resolve()));
    ws.on('message', (data: Buffer) => {
      const text = data.toString('utf8');
      this.frames.push(text);
      const msg = JSON.parse(text) as {
        id?: unknown;
        method?: string;
        params?: Record<string, unknown>;
        result?: unknown;
        error?: { code: number; message: string; data?: RpcError['data'] };
      };
      if (msg.method !== undefined && msg.id === undefined) {
        const n = { method: msg.method, params: msg.params ?? {} };
        this.notifications.push(n);
        for (const w of [...this.#waiters]) {
          if (w.match(n)) {
            this.#waiters.splice(this.#waiters.indexOf(w), 1);
            w.resolve(n);
          }
        }
        return;
      }
      const p = this.#pending.get(JSON.stringify(msg.id));
      if (!p) return;
      this.#pending.delete(JSON.stringify(msg.id));
      if (msg.error) p.reject(new RpcError(msg.error.code, msg.error.message, msg.error.data));
      else p.resolve(msg.result);
    });
    ws.on('close', () => {
      for (const p of this.#pending.values()) p.reject(new Error('connection closed'));
      this.#pending.clear();
    });
  }

  /** Send a call; resolves to its result, rejects with RpcError. */
  call<T = Record<string, unknown>>(
    method: string,
    params?: unknown,
    id: string | number = this.#nextId++,
  ): Promise<T> {
    const text = JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });
    this.frames.push(text);
    const result = new Promise<T>((resolve, reject) => {
      this.#pending.set(JSON.stringify(id), { resolve: resolve as (v: unknown) => void, reject });
      this.ws.send(text);
    });
    // Tests often look at a failure only after acting on the consent: not an unhandled rejection.
    result.catch(() => undefined);
    return result;
  }

  /** The id the next `call` without an explicit id will use. */
  get nextId(): number {
    return this.#nextId;
  }

  /** Resolves with the first (past or future) notification matching. */
  waitForNotification(
    method: string,
    match: (params: Record<string, unknown>) => boolean = () => true,
  ): Promise<{ method: string; params: Record<string, unknown> }> {
    const past = this.notifications.find((n) => n.method === method && match(n.params));
    if (past) return Promise.resolve(past);
    return new Promise((resolve) =>
      this.#waiters.push({ match: (n) => n.method === method && match(n.params), resolve }),
    );
  }

  /** The requestId of the consent the call with JSON-RPC `id` waits for. */
  async consentFor(id: string | number): Promise<string> {
    const n = await this.waitForNotification('consent.pending', (p) => p.id === id);
    return n.params.requestId as string;
  }

  /** Ask for access `times` times, withdrawing each prompt (request.cancel) once it is pending. */
  async promptAndWithdraw(times: number): Promise<void> {
    for (let i = 0; i < times; i++) {
      const id = this.nextId;
      const call = this.call('agent.requestAccess', {});
      await this.consentFor(id);
      await this.call('request.cancel', { id });
      await rpcError(call);
    }
  }

  close(): Promise<void> {
    this.ws.close();
    return this.closed;
  }
}

/** Call and return the RpcError it fails with (throws if it succeeds). */
export async function rpcError(p: Promise<unknown>): Promise<RpcError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RpcError) return e;
    throw e;
  }
  throw new Error('expected the call to fail');
}

export interface StartOptions {
  /** Config file contents (port 0, no auto-detected modules and launcher "none" unless given). */
  config?: Record<string, unknown>;
  /** Extra environment for the agent process. */
  env?: Record<string, string>;
  /** Node options before the script (e.g. `--cpu-prof`). */
  nodeArgs?: string[];
  /** Debug logging (default true); the bench turns it off, as in normal use. */
  verbose?: boolean;
  prefix?: string;
  /** Restart in the directory (state dir and config) of an earlier agent, e.g. one that was killed. */
  dir?: string;
  /** Run this program (e.g. the packaged one) instead of `node bin/kelid.js`, with `env` only. */
  program?: string;
}

export class AgentProcess {
  readonly dir: string;
  readonly stateDir: string;
  readonly configFile: string;
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  info!: AgentInfoJson;
  readonly exited: Promise<number | null>;

  private constructor(options: StartOptions) {
    this.dir = options.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), options.prefix ?? 'kelid-agent-'));
    this.stateDir = path.join(this.dir, 'state');
    // A killed agent leaves its agent.json behind: wait for the new one, not the stale one.
    fs.rmSync(path.join(this.stateDir, 'agent.json'), { force: true });
    this.configFile = path.join(this.dir, 'config.json');
    const config: Record<string, unknown> = {
      port: 0,
      autoDetectModules: false,
      ...options.config,
      consent: { launcher: 'none', ...(options.config?.consent as object | undefined) },
    };
    fs.writeFileSync(this.configFile, JSON.stringify(config, null, 2));
    const serve = [
      'serve',
      '--config',
      this.configFile,
      '--state-dir',
      this.stateDir,
      ...(options.verbose === false ? [] : ['--verbose']),
    ];
    this.child = options.program
      ? spawn(options.program, serve, {
          cwd: this.dir,
          env: options.env ?? {},
          stdio: ['ignore', 'pipe', 'pipe'],
        })
      : spawn(process.execPath, [...(options.nodeArgs ?? []), BIN, ...serve], {
          cwd: REPO,
          env: { ...process.env, ...options.env },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
    this.child.stdout?.on('data', (d: Buffer) => (this.stdout += d.toString('utf8')));
    this.child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString('utf8')));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  /** Spawn `kelid serve` and wait until agent.json appears. */
  static async start(options: StartOptions = {}): Promise<AgentProcess> {
    if (!options.program) assertBuilt();
    const agent = new AgentProcess(options);
    const file = path.join(agent.stateDir, 'agent.json');
    const deadline = Date.now() + 30_000;
    let exited = false;
    void agent.exited.then(() => (exited = true));
    while (!fs.existsSync(file)) {
      if (exited || Date.now() > deadline) {
        throw new Error(
          `agent did not start (exit: ${exited}):\n${agent.stdout}\n${agent.stderr.slice(-4000)}`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    agent.info = JSON.parse(fs.readFileSync(file, 'utf8')) as AgentInfoJson;
    return agent;
  }

  get port(): number {
    return this.info.port;
  }

  get pid(): number {
    return this.info.pid;
  }

  /** Resident set size of the agent process (kB), from /proc. */
  rssKb(): number {
    return rssKb(this.pid);
  }

  /** Open a WebSocket as a page of `origin` (Host defaults to 127.0.0.1:PORT). */
  async connect(origin: string, options: { host?: string; query?: string } = {}): Promise<RpcClient> {
    const ws = await this.open(origin, options);
    return new RpcClient(ws);
  }

  /** Open a raw WebSocket; rejects with the HTTP status when the upgrade is refused. */
  open(origin: string, options: { host?: string; query?: string } = {}): Promise<WebSocket> {
    const url = `wss://127.0.0.1:${this.port}/v1${options.query ? `?${options.query}` : ''}`;
    const ws = new WebSocket(url, {
      ca: this.info.caCertificatePem,
      headers: { Origin: origin, ...(options.host ? { Host: options.host } : {}) },
      perMessageDeflate: false,
    });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(ws));
      ws.once('unexpected-response', (_req, res) => {
        reject(new UpgradeRefused(res.statusCode ?? 0));
        ws.terminate();
      });
      ws.once('error', (e) => reject(e));
    });
  }

  /** A TLS socket to the agent that trusts its CA (for raw HTTP requests). */
  tlsSocket(): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: this.port, ca: this.info.caCertificatePem }, () =>
        resolve(s),
      );
      s.once('error', reject);
    });
  }

  /** Run `kelid <args>` against this agent's state directory. */
  cli(args: string[], input?: string): Promise<CliResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, ...args], {
        cwd: REPO,
        env: { ...process.env, KELID_STATE_DIR: this.stateDir },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
      child.once('error', reject);
      child.once('close', (status) => resolve({ status: status ?? -1, stdout, stderr }));
      child.stdin.end(input ?? '');
    });
  }

  /** `kelid consent approve <requestId> --secrets-stdin` with the secrets as JSON on stdin. */
  consent(requestId: string, secrets: Record<string, string> = {}): Promise<CliResult> {
    return this.cli(['consent', 'approve', requestId, '--secrets-stdin'], JSON.stringify(secrets));
  }

  deny(requestId: string): Promise<CliResult> {
    return this.cli(['consent', 'deny', requestId]);
  }

  /** `kelid consent list --json`. */
  async pendingConsents(): Promise<Array<Record<string, unknown> & { requestId: string }>> {
    const r = await this.cli(['consent', 'list', '--json']);
    if (r.status !== 0) throw new Error(`consent list failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as Array<Record<string, unknown> & { requestId: string }>;
  }

  /** SIGTERM and wait for the exit code. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }

  cleanup(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export class UpgradeRefused extends Error {
  constructor(readonly status: number) {
    super(`upgrade refused with HTTP ${status}`);
    this.name = 'UpgradeRefused';
  }
}

/** Synchronous `kelid` run outside any agent (ca, audit …). */
export function kelidSync(args: string[], env: Record<string, string> = {}, input?: string): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
    input,
    encoding: 'utf8',
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
