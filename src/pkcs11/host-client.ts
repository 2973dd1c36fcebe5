import { fork, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KelidError } from '../model/errors.js';
import type { WriteHooks } from '../model/test-hooks.js';
import { silentLogger } from '../log.js';
import { MODULE_HOST_ARG, isPackagedProgram, packagePath } from '../package-files.js';
import { CKA } from './templates.js';
import type { Logger } from '../log.js';
import type {
  HostEvent,
  HostMethod,
  HostMethods,
  HostResponse,
  ModuleHost,
  ModuleInfo,
} from './host-protocol.js';

export type HostState = 'starting' | 'ready' | 'backoff' | 'failed' | 'stopped';

export interface HostClientOptions {
  moduleId: string;
  path: string;
  /** Set only in this module's host process (e.g. SOFTHSM2_CONF). */
  env?: Record<string, string>;
  logger?: Logger;
  /** Deadline for a call that names none (ms). A call past its deadline gets the host killed. */
  defaultTimeoutMs?: number;
  /** Restart backoff after a crash: first delay and cap (ms). */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Test hooks around each call (crash points); only the entry point gives them. */
  hooks?: WriteHooks;
}

interface Pending {
  method: HostMethod;
  /** Index in the module's output when the call was sent. */
  outputMark: number;
  /** Its number among this process's token writes (0: not a write); for the test crash points. */
  write: number;
  resolve: (v: unknown) => void;
  reject: (e: KelidError) => void;
  timer: NodeJS.Timeout;
}

/** Calls whose template a module may refuse, naming the attribute only on stderr. */
const TEMPLATE_METHODS: ReadonlySet<HostMethod> = new Set<HostMethod>(['generateKeyPair', 'createObject']);
/** How long a refused template call waits for the module's stderr (a separate pipe from the answer). */
const OUTPUT_GRACE_MS = 30;
const OUTPUT_LINES = 20;
const CKA_NAMES = new Map<number, string>(Object.entries(CKA).map(([name, value]) => [value, `CKA_${name}`]));

/**
 * The attribute a module names in its own output when it refuses a template, e.g. tpm2-pkcs11's
 * "User specified and TPM specified attr mismatch: 0x10a". Only the attribute is taken from the
 * output: the rest of a vendor library's output is never passed on.
 */
export function refusedAttribute(lines: readonly string[]): string | undefined {
  for (const line of [...lines].reverse()) {
    const m = /\battr(?:ibute)?\b[^\n]*?\b0x([0-9a-f]{1,8})\b/i.exec(line);
    if (!m) continue;
    const value = Number.parseInt(m[1]!, 16);
    return CKA_NAMES.get(value) ?? `0x${value.toString(16)}`;
  }
  return undefined;
}

/**
 * Node options of a module host. Its young generation is capped at 2 MiB a semi-space (V8's default
 * grows to 16): a host only passes small messages, and under a stream of sign.batch requests the
 * default let it grow from 50 to 84 MiB resident; capped, it stays near 64 MiB at the same signing
 * rate (bench/results, "Memory").
 */
export const HOST_NODE_OPTIONS: readonly string[] = ['--max-semi-space-size=2'];

/** The host's entry and node options: the packaged program is its own host (src/packaged/sea-main.ts). */
function hostEntry(): { entry: string; execArgv: string[] } {
  if (isPackagedProgram()) return { entry: MODULE_HOST_ARG, execArgv: [] };
  const here = fileURLToPath(import.meta.url);
  // Under vitest/tsx this file is the .ts source; after the build it is dist/pkcs11/host-client.js
  // or part of the agent bundle dist/kelid.mjs (scripts/build-agent.mjs), whose host is tsc's. The
  // host's process entry is cli/module-host (it alone may load the test hooks).
  const runningFromSource = here.endsWith('.ts');
  return {
    entry: runningFromSource
      ? join(dirname(here), '..', 'cli', 'module-host.ts')
      : packagePath('dist', 'cli', 'module-host.js'),
    execArgv: [...HOST_NODE_OPTIONS, ...(runningFromSource ? ['--import', 'tsx'] : [])],
  };
}

// A host whose agent died exits when its IPC channel closes, but not while it is stuck in a
// synchronous PKCS#11 call (its event loop never sees the close) — and then it would live on holding
// the token. On Linux the host is started through util-linux `setpriv --pdeathsig KILL`, so the kernel
// kills it with its agent (PR_SET_PDEATHSIG, kept across the exec of node). Probed once.
let parentDeathWrapper: string[] | null | undefined;
function deathSignalWrapper(): string[] | null {
  if (parentDeathWrapper === undefined) {
    parentDeathWrapper = null;
    if (process.platform === 'linux') {
      const probe = spawnSync('setpriv', ['--pdeathsig', 'KILL', 'true'], { stdio: 'ignore', timeout: 5000 });
      if (probe.status === 0) parentDeathWrapper = ['setpriv', '--pdeathsig', 'KILL', '--'];
    }
  }
  return parentDeathWrapper;
}

/**
 * The agent's side of one module host process: spawns it, sends typed requests, enforces deadlines,
 * fails in-flight calls with ERR_MODULE_FAILED when the host dies, and restarts it with backoff.
 *
 * Events: `ready` (ModuleInfo), `exit` ({code, signal, expected}), `state` (HostState), and `call`
 * (the {@link HostMethod}) for every round trip sent to the host: tests count them at this seam.
 */
export class HostClient extends EventEmitter implements ModuleHost {
  readonly moduleId: string;
  readonly path: string;
  private readonly env: Record<string, string>;
  private readonly log: Logger;
  private readonly defaultTimeoutMs: number;
  private readonly backoffInitialMs: number;
  private readonly backoffMaxMs: number;
  private readonly hooks: WriteHooks | undefined;

  private child: ChildProcess | undefined;
  private pending = new Map<number, Pending>();
  private nextId = 1;
  private _state: HostState = 'stopped';
  private _info: ModuleInfo | undefined;
  private _loadError: KelidError | undefined;
  private restarts = 0;
  private startedAt = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private readyWaiters: Array<() => void> = [];
  private _generation = 0;
  /** The module's last stderr lines, and how many were ever received (marks for calls). */
  private output: string[] = [];
  private outputCount = 0;

  constructor(options: HostClientOptions) {
    super();
    this.moduleId = options.moduleId;
    this.path = options.path;
    this.env = options.env ?? {};
    this.log = (options.logger ?? silentLogger).child({ module: options.moduleId });
    this.defaultTimeoutMs = options.defaultTimeoutMs ?? 30_000;
    this.backoffInitialMs = options.backoffInitialMs ?? 250;
    this.backoffMaxMs = options.backoffMaxMs ?? 30_000;
    this.hooks = options.hooks;
  }

  get state(): HostState {
    return this._state;
  }
  get info(): ModuleInfo | undefined {
    return this._info;
  }
  get loadError(): KelidError | undefined {
    return this._loadError;
  }
  get pid(): number | undefined {
    return this.child?.pid;
  }
  /** Increments on every (re)start: object handles and sessions of older generations are gone. */
  get generation(): number {
    return this._generation;
  }

  /** Start the host; resolves once the module is loaded (state `ready`) or failed to load (`failed`). */
  start(): Promise<void> {
    if (this._state === 'ready' || this._state === 'starting') return this.whenSettled();
    this.spawn();
    return this.whenSettled();
  }

  private whenSettled(): Promise<void> {
    if (this._state === 'ready' || this._state === 'failed' || this._state === 'stopped')
      return Promise.resolve();
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  private setState(s: HostState): void {
    this._state = s;
    this.emit('state', s);
    if (s === 'ready' || s === 'failed' || s === 'stopped') {
      const waiters = this.readyWaiters;
      this.readyWaiters = [];
      for (const w of waiters) w();
    }
  }

  private spawn(): void {
    this.setState('starting');
    this._generation++;
    this.startedAt = Date.now();
    const options: SpawnOptions = {
      env: { ...process.env, ...this.env },
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    };
    const wrapper = deathSignalWrapper();
    const { entry, execArgv } = hostEntry();
    const child = wrapper
      ? spawn(wrapper[0], [...wrapper.slice(1), process.execPath, ...execArgv, entry, this.path], options)
      : fork(entry, [this.path], { ...options, execArgv });
    this.child = child;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      for (const line of chunk.split('\n')) {
        if (!line.trim()) continue;
        this.log.debug({ stderr: line.slice(0, 500) }, 'module output');
        this.output.push(line.slice(0, 500));
        this.outputCount++;
        if (this.output.length > OUTPUT_LINES) this.output.shift();
      }
    });
    child.on('message', (m: HostResponse | HostEvent) => this.onMessage(m));
    child.on('error', (e) => this.log.warn({ err: e.message }, 'module host process error'));
    child.on('exit', (code, signal) => this.onExit(child, code, signal));
  }

  private onMessage(m: HostResponse | HostEvent): void {
    if ('event' in m) {
      if (m.event === 'ready') {
        this._info = m.info;
        this._loadError = undefined;
        this.log.info(
          { library: m.info.libraryDescription, version: m.info.libraryVersion },
          'module loaded',
        );
        this.setState('ready');
        this.emit('ready', m.info);
      } else {
        this._loadError = KelidError.fromJSON(m.error);
        this.log.warn({ reason: m.error.message }, 'module failed to load');
        this.setState('failed');
      }
      return;
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    clearTimeout(p.timer);
    this.hooks?.afterWrite(p.method, p.write);
    if (m.ok) p.resolve(m.result);
    else if (TEMPLATE_METHODS.has(p.method)) {
      const error = m.error;
      setTimeout(
        () => p.reject(this.withRefusedAttribute(KelidError.fromJSON(error), p.outputMark)),
        OUTPUT_GRACE_MS,
      );
    } else p.reject(KelidError.fromJSON(m.error));
  }

  /** Adds `data.attribute` when the module named the attribute it refused in its output since `mark`. */
  private withRefusedAttribute(e: KelidError, mark: number): KelidError {
    const since = this.output.slice(Math.max(0, this.output.length - (this.outputCount - mark)));
    const attribute = refusedAttribute(since);
    if (attribute === undefined) return e;
    return new KelidError(e.code, e.message, { retriable: e.retriable, data: { ...e.data, attribute } });
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child) return;
    this.child = undefined;
    const expected = this._state === 'stopped' || this._state === 'failed';
    const reason = signal ? `signal ${signal}` : `exit code ${code}`;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(
        new KelidError('ERR_MODULE_FAILED', `the PKCS#11 module host stopped unexpectedly (${reason})`),
      );
      this.pending.delete(id);
    }
    this.emit('exit', { code, signal, expected });
    if (expected) return;
    this.log.warn({ reason }, 'module host exited; restarting');
    if (Date.now() - this.startedAt > 60_000) this.restarts = 0;
    const delay = Math.min(this.backoffInitialMs * 2 ** this.restarts, this.backoffMaxMs);
    this.restarts++;
    this.setState('backoff');
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this._state === 'backoff') this.spawn();
    }, delay);
    this.restartTimer.unref();
  }

  async call<M extends HostMethod>(
    method: M,
    params: HostMethods[M]['params'],
    options: { timeoutMs?: number } = {},
  ): Promise<HostMethods[M]['result']> {
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    if (this._state === 'backoff' || this._state === 'starting') {
      // A referenced timer: a waiting call keeps a CLI process alive (the restart timer does not),
      // and it is cleared once the host settles, so it does not hold the process any longer.
      let wait: NodeJS.Timeout | undefined;
      await Promise.race([this.whenSettled(), new Promise((r) => (wait = setTimeout(r, timeoutMs)))]);
      clearTimeout(wait);
    }
    if (this._state === 'failed')
      throw this._loadError ?? new KelidError('ERR_MODULE_FAILED', 'the module failed to load');
    const child = this.child;
    if (this._state !== 'ready' || !child) {
      throw new KelidError('ERR_MODULE_FAILED', 'the PKCS#11 module host is not running');
    }
    const id = this.nextId++;
    this.emit('call', method);
    return new Promise<HostMethods[M]['result']>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!this.pending.delete(id)) return;
        this.log.warn({ method, timeoutMs }, 'module call passed its deadline; killing the host');
        // Calls made from now on wait for the restarted host instead of going to the dying one.
        if (this.child === child) this.setState('backoff');
        reject(
          new KelidError(
            'ERR_MODULE_FAILED',
            `the PKCS#11 module did not answer within ${Math.round(timeoutMs / 1000)} s`,
          ),
        );
        child.kill('SIGKILL');
      }, timeoutMs);
      const write = this.hooks?.beforeWrite(method) ?? 0;
      this.pending.set(id, {
        method,
        outputMark: this.outputCount,
        write,
        resolve: resolve as (v: unknown) => void,
        reject,
        timer,
      });
      child.send({ id, method, params }, (err) => {
        if (err && this.pending.delete(id)) {
          clearTimeout(timer);
          reject(new KelidError('ERR_MODULE_FAILED', 'the PKCS#11 module host is not reachable'));
        }
      });
    });
  }

  /** Stop the host for good (agent shutdown). */
  async stop(): Promise<void> {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const child = this.child;
    this.setState('stopped');
    if (!child) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        child.kill('SIGKILL');
        resolve();
      }, 2000);
      child.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      child.disconnect();
    });
  }
}
