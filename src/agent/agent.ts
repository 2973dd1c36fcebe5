import * as fs from 'node:fs';
import * as path from 'node:path';
import { AUDIT_LOG_FILE, AuditLog } from '../audit/audit-log.js';
import type { AuditRecord } from '../audit/audit-log.js';
import type { KelidConfig } from '../config.js';
import { ConsentBroker } from '../consent/consent-broker.js';
import type { PinRulesView } from '../consent/consent-broker.js';
import { ConsoleSecrets } from '../consent/console-secrets.js';
import { ControlChannel, controlSocketPath, ensurePrivateDirectory } from '../consent/control-channel.js';
import type { ControlRequest } from '../consent/control-channel.js';
import { createLauncher } from '../consent/launcher.js';
import type { Launcher } from '../consent/launcher.js';
import { PromptLimiter } from '../consent/rate-limit.js';
import { SITE_GRANTS_FILE, SiteGrants } from '../consent/site-grants.js';
import { reinstallTrust } from '../install/installer.js';
import {
  UPDATE_PUBLIC_KEY_PEM,
  checkForUpdate,
  readUpdateCheck,
  recordUpdateCheck,
} from '../install/update-manifest.js';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import { KelidError } from '../model/errors.js';
import { normalizeOrigin } from '../model/origin.js';
import type { RunningAgentServices } from '../model/services.js';
import type { TestHooks } from '../model/test-hooks.js';
import type { Token } from '../model/types.js';
import { packageVersion } from '../package-files.js';
import { AGENT_PORT_RANGE, currentPlatformEnv } from '../platform-paths.js';
import type { ProtocolEnv } from '../protocol/context.js';
import { Dispatcher } from '../protocol/dispatcher.js';
import { METHODS } from '../protocol/methods/index.js';
import { OriginIds, loadOriginIdsSecret } from '../protocol/origin-ids.js';
import { createAgentServices } from '../services.js';
import { BridgeServer, bridgeSocketPath } from '../transport/bridge.js';
import { allowedHosts, tierForOrigin } from '../transport/handshake.js';
import type { HandshakeConfig } from '../transport/handshake.js';
import { createHttpApp } from '../transport/http-routes.js';
import { ConnectionLimits, TRANSPORT_LIMITS } from '../transport/limits.js';
import { AgentServer } from '../transport/server.js';
import { ensureTlsMaterial } from '../transport/tls.js';
import { PageConnections } from './connection.js';
import { handleControl, pinRuleView } from './control-handlers.js';
import type { ControlContext } from './control-handlers.js';
import { AGENT_INFO_FILE, readRememberedPort, rememberPort, writeFileAtomic } from './files.js';
import type { AgentInfoFile } from './files.js';

// The running agent's lifecycle: TLS material, audit log, site grants, services, consent broker, the
// control channel for the CLI, and the HTTPS/WebSocket server, wired together. `start` writes
// `<stateDir>/agent.json` once everything listens; `stop` undoes it all. Page connections and their
// message loop are in connection.ts, the control channel's requests in control-handlers.ts.

export interface AgentOptions {
  config: KelidConfig;
  stateDir: string;
  logger?: Logger;
  /** Build the services (default: createAgentServices over the configured modules). */
  createServices?: (
    config: KelidConfig,
    options: { stateDir: string; logger: Logger; testHooks?: TestHooks },
  ) => Promise<RunningAgentServices>;
  /** Test hooks (crash points), given by `kelid serve` only with KELID_TEST_HOOKS=1. */
  testHooks?: TestHooks;
  /** Open the agent's pages (default: from config `consent.launcher`). */
  launcher?: Launcher;
  version?: string;
  /** The update manifest's signing key (default: the one pinned in the build, none in development). */
  updatePublicKeyPem?: string | null;
}

/** The agent: start it, it serves pages until it is stopped. */
export class Agent {
  readonly config: KelidConfig;
  readonly stateDir: string;
  readonly #log: Logger;
  readonly #options: AgentOptions;
  readonly #connections: PageConnections;
  readonly #consoleSecrets = new ConsoleSecrets();
  #services: RunningAgentServices | undefined;
  #server: AgentServer | undefined;
  #bridge: BridgeServer | undefined;
  #control: ControlChannel | undefined;
  #handler: ((request: ControlRequest) => Promise<unknown>) | undefined;
  #wroteInfo = false;
  #audit: AuditLog | undefined;
  #broker: ConsentBroker | undefined;
  #port = 0;
  #onTokensChanged: ((change: { added: Token[]; removed: string[] }) => void) | undefined;
  #version: string;
  #updateTimer: NodeJS.Timeout | undefined;

  constructor(options: AgentOptions) {
    this.#options = options;
    this.config = options.config;
    this.stateDir = path.resolve(options.stateDir);
    this.#log = options.logger ?? silentLogger;
    this.#version = options.version ?? packageVersion();
    this.#connections = new PageConnections(options.config, this.#log);
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    return `https://127.0.0.1:${this.#port}`;
  }

  /** Start everything; resolves to what was written to agent.json. */
  async start(): Promise<AgentInfoFile> {
    const config = this.config;
    ensurePrivateDirectory(this.stateDir);
    // The control socket is the one-agent-per-state-directory lock: taken first, before anything
    // else is touched; requests that arrive while the agent starts are answered "busy".
    const control = new ControlChannel(
      controlSocketPath(this.stateDir),
      (request) => {
        if (!this.#handler) throw new KelidError('ERR_BUSY', 'the agent is starting', { retriable: true });
        return this.#handler(request);
      },
      { logger: this.#log },
    );
    await control.start();
    this.#control = control;
    try {
      // The module hosts start (a process each, loading the vendor library) while the TLS material
      // is read or generated: start-up takes the longer of the two, not their sum.
      const makeServices = this.#options.createServices ?? createAgentServices;
      const [tlsResult, servicesResult] = await Promise.allSettled([
        ensureTlsMaterial(this.stateDir),
        makeServices(config, {
          stateDir: this.stateDir,
          logger: this.#log,
          ...(this.#options.testHooks ? { testHooks: this.#options.testHooks } : {}),
        }),
      ]);
      if (servicesResult.status === 'fulfilled') this.#services = servicesResult.value;
      if (tlsResult.status === 'rejected') throw tlsResult.reason;
      if (servicesResult.status === 'rejected') throw servicesResult.reason;
      const tls = tlsResult.value;
      const services = servicesResult.value;
      if (tls.generated) {
        this.#log.info('generated a new local CA and TLS certificate');
        // Browsers trusted the old CA only if `kelid install` put it in their stores: re-trust there.
        reinstallTrust(this.stateDir, currentPlatformEnv(), this.#log);
      }
      const hooks = this.#options.testHooks;
      this.#audit = new AuditLog(path.join(this.stateDir, AUDIT_LOG_FILE), hooks ? { hooks } : {});
      const grants = new SiteGrants(path.join(this.stateDir, SITE_GRANTS_FILE));
      return await this.#startServing(config, tls, services, grants);
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  async #startServing(
    config: KelidConfig,
    tls: { key: string; cert: string; caCertificatePem: string },
    services: RunningAgentServices,
    grants: SiteGrants,
  ): Promise<AgentInfoFile> {
    const launcher = this.#options.launcher ?? createLauncher(config.consent.launcher, { logger: this.#log });
    const lang = config.consent.language;
    const siteLimiter = new PromptLimiter({ perOriginPerMinute: config.consent.promptsPerMinute.site });
    // The RA tier's origins are the administrator's own: a denial there is an officer's "not this
    // one", not a page to keep away.
    const raLimiter = new PromptLimiter({
      perOriginPerMinute: config.consent.promptsPerMinute.ra,
      denyCooldownsMs: [],
    });
    const defaultPinRules: PinRulesView = {
      user: pinRuleView(config.pinPolicy.user),
      so: pinRuleView(config.pinPolicy.so),
    };
    const broker = new ConsentBroker({
      timeoutMs: config.consent.timeoutSeconds * 1000,
      // The console is the user's own window; an RA desk gets a larger budget than a site.
      limiterFor: (tier) => (tier === 'console' ? null : tier === 'ra' ? raLimiter : siteLimiter),
      launch: launcher,
      consentUrl: (secret) => `${this.url}/consent/?lang=${lang}#${secret}`,
      defaultPinRules,
      maxPending: config.limits.connections,
      logger: this.#log,
    });
    this.#broker = broker;

    const configuredSites = config.sites
      .map((o) => normalizeOrigin(o))
      .filter((o): o is string => o !== null);
    const env: ProtocolEnv = {
      services,
      consent: broker,
      version: this.#version,
      defaultPinRules,
      updateAvailable: () => {
        const last = readUpdateCheck(this.stateDir);
        return last?.status === 'available' ? { latest: last.latest, download: last.download } : null;
      },
      sites: {
        isApproved: (origin) => configuredSites.includes(origin) || grants.has(origin),
        approve: (origin) => {
          grants.grant(origin);
          this.#connections.retier(origin, 'unknown', 'site');
          this.#log.info({ origin }, 'site approved');
        },
      },
    };
    const dispatcher = new Dispatcher({
      env,
      methods: METHODS,
      ids: new OriginIds(loadOriginIdsSecret(this.stateDir).secret),
      audit: (record) => this.#appendAudit(record),
      logger: this.#log,
      maxInFlight: TRANSPORT_LIMITS.maxInFlightPerConnection,
    });

    const app = createHttpApp({
      allowedHosts,
      consoleOrigin: () => this.url,
      consent: broker,
      logger: this.#log,
    });
    const limits = new ConnectionLimits({
      perOrigin: config.limits.connectionsPerOrigin,
      total: config.limits.connections,
    });
    const handshakeConfig = (localPort: number): HandshakeConfig => ({
      port: localPort,
      raOrigins: config.raOrigins,
      sites: [...configuredSites, ...grants.list().map((g) => g.origin)],
      devOrigins: config.devOrigins,
      consoleOrigin: this.url,
    });
    const server = new AgentServer({
      port: this.#candidatePorts(),
      pagesOverWebSocket: config.wss,
      insecurePort: config.insecureWsPort,
      tls,
      app,
      maxPayload: config.maxMessageBytes,
      limits,
      handshakeConfig,
      consoleSecrets: this.#consoleSecrets,
      onConnection: (ws, info) => this.#connections.acceptWebSocket(ws, info, dispatcher),
      logger: this.#log,
    });
    this.#server = server;
    const ports = await server.listen().catch((e: unknown) => {
      throw listenError(e);
    });
    this.#port = ports.port;
    if (config.port === AGENT_PORT_RANGE[0]) rememberPort(this.stateDir, ports.port);
    // The extension's way in (kelid native-host): same limits, tiers and dispatcher as the WebSocket.
    const bridge = new BridgeServer({
      socketPath: bridgeSocketPath(this.stateDir),
      tierFor: (origin) => tierForOrigin(origin, handshakeConfig(ports.port)),
      maxPayload: config.maxMessageBytes,
      limits,
      onConnection: (connection, accepted) =>
        this.#connections.acceptBridge(connection, accepted, dispatcher),
      logger: this.#log,
    });
    this.#bridge = bridge;
    await bridge.listen();

    this.#onTokensChanged = (change) => {
      for (const c of this.#connections)
        if (c.tier !== 'unknown') dispatcher.notify(c, 'tokens.changed', change);
    };
    services.tokenEvents.on('changed', this.#onTokensChanged);

    const control: ControlContext = {
      broker,
      grants,
      configuredSites,
      connections: this.#connections,
      audit: (record) => this.#appendAudit(record),
      managerUrl: () => `${this.url}/manager/?lang=${lang}#${this.#consoleSecrets.issue()}`,
      logger: this.#log,
    };
    this.#handler = (request) => handleControl(request, control);

    const info: AgentInfoFile = {
      pid: process.pid,
      port: ports.port,
      url: this.url,
      caCertificatePem: tls.caCertificatePem,
      ...(ports.insecurePort !== null ? { insecureWsPort: ports.insecurePort } : {}),
    };
    writeFileAtomic(path.join(this.stateDir, AGENT_INFO_FILE), `${JSON.stringify(info, null, 2)}\n`);
    this.#wroteInfo = true;
    this.#log.info({ port: ports.port, insecureWsPort: ports.insecurePort }, 'Kelid agent listening');
    this.#scheduleUpdateChecks();
    return info;
  }

  /** Check the signed update manifest now and once a day; only tells (log, update.json), never installs. */
  #scheduleUpdateChecks(): void {
    const url = this.config.updates.url;
    const key =
      this.#options.updatePublicKeyPem === undefined
        ? UPDATE_PUBLIC_KEY_PEM
        : this.#options.updatePublicKeyPem;
    if (url === null || key === null) return;
    const check = (): void => {
      void checkForUpdate({ url, publicKeyPem: key, currentVersion: this.#version }).then((result) => {
        if (this.#updateTimer === undefined) return;
        recordUpdateCheck(this.stateDir, result);
        if (result.status === 'available')
          this.#log.info({ latest: result.latest, download: result.download }, 'a newer Kelid is available');
        else if (result.status === 'invalid' || result.status === 'unreachable')
          this.#log.warn({ reason: result.reason }, 'update check failed');
      });
    };
    this.#updateTimer = setInterval(check, 24 * 60 * 60 * 1000);
    this.#updateTimer.unref();
    check();
  }

  /**
   * The default port stands for the range 17443–17447 (one agent per user on a shared machine):
   * the port this state directory used last, then the range in order. Any other port is exact.
   */
  #candidatePorts(): number | readonly number[] {
    if (this.config.port !== AGENT_PORT_RANGE[0]) return this.config.port;
    const last = readRememberedPort(this.stateDir);
    return last === null ? AGENT_PORT_RANGE : [last, ...AGENT_PORT_RANGE.filter((p) => p !== last)];
  }

  #appendAudit(record: AuditRecord): Promise<unknown> {
    if (!this.#audit) throw new KelidError('ERR_INTERNAL', 'the audit log is not open');
    return this.#audit.append(record);
  }

  /** Stop serving, withdraw pending consents, stop the module hosts and remove agent.json. */
  async stop(): Promise<void> {
    if (this.#updateTimer !== undefined) clearInterval(this.#updateTimer);
    this.#updateTimer = undefined;
    if (this.#wroteInfo) fs.rmSync(path.join(this.stateDir, AGENT_INFO_FILE), { force: true });
    this.#wroteInfo = false;
    this.#handler = undefined;
    this.#broker?.cancelAll();
    await this.#control?.stop();
    this.#control = undefined;
    await this.#bridge?.close();
    this.#bridge = undefined;
    await this.#server?.close();
    this.#server = undefined;
    this.#connections.closeAll();
    if (this.#services && this.#onTokensChanged)
      this.#services.tokenEvents.off('changed', this.#onTokensChanged);
    await this.#services?.close();
    this.#services = undefined;
  }
}

// What a person starting the agent can act on, in one line (the CLI prints the message only).
function listenError(e: unknown): unknown {
  const { code, port } = (e ?? {}) as { code?: unknown; port?: unknown };
  if (code === 'EADDRINUSE') {
    return new KelidError(
      'ERR_BUSY',
      `port ${String(port)} on 127.0.0.1 is already in use (another Kelid agent, or another program): ` +
        'stop it, or choose another port with --port <n> or config "port" (0 picks a free one)',
      { cause: e, data: { port } },
    );
  }
  if (code === 'EACCES') {
    return new KelidError(
      'ERR_FORBIDDEN',
      `not allowed to listen on port ${String(port)}: choose a port above 1023 with --port <n> or config "port"`,
      { cause: e, data: { port } },
    );
  }
  return e;
}
