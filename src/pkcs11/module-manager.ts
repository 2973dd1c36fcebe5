import { EventEmitter } from 'node:events';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import { HostClient } from './host-client.js';
import type { HostState } from './host-client.js';
import type { ModuleHost } from './host-protocol.js';
import type { ModuleSource, ModuleStatus } from '../model/services.js';
import type { WriteHooks } from '../model/test-hooks.js';
import type { TemplateQuirks } from './templates.js';

export type { ModuleStatus };

/** A PKCS#11 module to load (from the config file, native-config or p11-kit's registry). */
export interface ModuleSpec {
  id: string;
  path: string;
  name?: string;
  env?: Record<string, string>;
  source?: ModuleSource;
  /** SoftHSM, p11-kit and ykcs11 only see new tokens after C_Finalize + C_Initialize. */
  reinitializeToDetectTokens?: boolean;
  quirks?: { keyTemplate?: TemplateQuirks } & Record<string, unknown>;
}

/** A loaded module: its host plus what the rest of the agent needs to know about it. */
export interface LoadedModule {
  spec: ModuleSpec;
  host: ModuleHost;
  isReady(): boolean;
  /** Changes whenever the host process is (re)started: handles and sessions are gone then. */
  generation(): number;
}

function stateOf(s: HostState): ModuleStatus['state'] {
  switch (s) {
    case 'ready':
      return 'loaded';
    case 'backoff':
      return 'restarting';
    default:
      return s;
  }
}

/** Owns one {@link HostClient} per module. Emits `host-restarted` (moduleId) after a crash recovery. */
export class ModuleManager extends EventEmitter {
  private readonly clients = new Map<string, { spec: ModuleSpec; client: HostClient }>();
  private readonly log: Logger;

  constructor(
    specs: ModuleSpec[],
    options: { logger?: Logger; callTimeoutMs?: number; backoffInitialMs?: number; hooks?: WriteHooks } = {},
  ) {
    super();
    this.log = options.logger ?? silentLogger;
    for (const spec of specs) {
      if (this.clients.has(spec.id)) continue;
      const hostOptions: ConstructorParameters<typeof HostClient>[0] = {
        moduleId: spec.id,
        path: spec.path,
        env: spec.env ?? {},
        logger: this.log,
      };
      if (options.callTimeoutMs !== undefined) hostOptions.defaultTimeoutMs = options.callTimeoutMs;
      if (options.backoffInitialMs !== undefined) hostOptions.backoffInitialMs = options.backoffInitialMs;
      if (options.hooks !== undefined) hostOptions.hooks = options.hooks;
      const client = new HostClient(hostOptions);
      client.on('exit', (e: { expected: boolean }) => {
        if (!e.expected) this.emit('host-crashed', spec.id);
      });
      client.on('ready', () => this.emit('host-ready', spec.id));
      this.clients.set(spec.id, { spec, client });
    }
  }

  /** Start every host in parallel; never throws (a failed module is reported by {@link status}). */
  async start(): Promise<void> {
    await Promise.all([...this.clients.values()].map(({ client }) => client.start()));
  }

  async stop(): Promise<void> {
    await Promise.all([...this.clients.values()].map(({ client }) => client.stop()));
  }

  status(): ModuleStatus[] {
    return [...this.clients.values()].map(({ spec, client }) => {
      const s: ModuleStatus = {
        id: spec.id,
        name: spec.name ?? spec.id,
        path: spec.path,
        source: spec.source ?? 'config',
        state: stateOf(client.state),
      };
      if (client.loadError) s.reason = client.loadError.message;
      if (client.info) s.info = client.info;
      return s;
    });
  }

  modules(): LoadedModule[] {
    return [...this.clients.values()].map(({ spec, client }) => ({
      spec,
      host: client,
      isReady: () => client.state === 'ready',
      generation: () => client.generation,
    }));
  }

  module(id: string): LoadedModule | undefined {
    return this.modules().find((m) => m.spec.id === id);
  }

  /** The host process id (tests kill it to prove crash recovery). */
  pidOf(id: string): number | undefined {
    return this.clients.get(id)?.client.pid;
  }
}
