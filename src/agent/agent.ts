import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { WebSocket } from 'ws';
import { AUDIT_LOG_FILE, AuditLog } from './audit/audit-log.js';
import type { AuditRecord } from './audit/audit-log.js';
import type { KelidConfig } from './config.js';
import { ConsentBroker } from './consent/consent-broker.js';
import type { PinRulesView } from './consent/consent-broker.js';
import { ConsoleSecrets } from './consent/console-secrets.js';
import { ControlChannel, controlSocketPath, ensurePrivateDirectory } from './consent/control-channel.js';
import type { ControlRequest } from './consent/control-channel.js';
import { createLauncher } from './consent/launcher.js';
import type { Launcher } from './consent/launcher.js';
import { PromptLimiter } from './consent/rate-limit.js';
import { SITE_GRANTS_FILE, SiteGrants } from './consent/site-grants.js';
import { KelidError } from './model/errors.js';
import { reinstallTrust } from './install/installer.js';
import {
  UPDATE_PUBLIC_KEY_PEM,
  checkForUpdate,
  readUpdateCheck,
  recordUpdateCheck,
} from './install/update-manifest.js';
import { silentLogger } from './log.js';
import type { Logger } from './log.js';
import { packageVersion } from './package-files.js';
import { AGENT_PORT_RANGE, currentPlatformEnv } from './platform-paths.js';
import type { ConnectionContext, PendingCall, ProtocolEnv } from './protocol/context.js';
import { Dispatcher, JSON_RPC, rateLimitedResponse } from './protocol/dispatcher.js';
import { METHODS } from './protocol/methods/index.js';
import { OriginIds, loadOriginIdsSecret } from './protocol/origin-ids.js';
import type { AgentServices, StatusApi } from './model/services.js';
import type { Tier, Token } from './model/types.js';
import { createAgentServices } from './services.js';
import type { RunningServices } from './services.js';
import { StatusService, createRevocationCheck } from './status/status-service.js';
import { BridgeServer, bridgeSocketPath } from './transport/bridge.js';
import type { BridgeConnection } from './transport/bridge.js';
import { normalizeOrigin } from './model/origin.js';
import { tierForOrigin } from './transport/handshake.js';
import type { HandshakeConfig } from './transport/handshake.js';
import { createHttpApp } from './transport/http-routes.js';
import {
  ConnectionLimits,
  RequestRateLimiter,
  TRANSPORT_LIMITS,
  UnknownByteBudget,
} from './transport/limits.js';
import { AgentServer, setMessageLimit, unknownMaxPayload } from './transport/server.js';
import type { AcceptedConnection } from './transport/server.js';
import { ensureTlsMaterial } from './transport/tls.js';

// The running agent: TLS material, audit log, site grants, services, consent broker, the control
// channel for the CLI, and the HTTPS/WebSocket server, wired together. `start` writes
// `<stateDir>/agent.json` once everything listens; `stop` undoes it all.

/** `<stateDir>/agent.json` (PROTOCOL.md section 8). */
export const AGENT_INFO_FILE = 'agent.json';

export interface AgentInfoFile {
  pid: number;
  port: number;
  url: string;
  caCertificatePem: string;
  insecureWsPort?: number;
}

export type RunningAgentServices = AgentServices & { close(): Promise<void> };

export interface AgentOptions {
  config: KelidConfig;
  stateDir: string;
  logger?: Logger;
  /** Build the services (default: createAgentServices over the configured modules). */
  createServices?: (
    config: KelidConfig,
    options: { stateDir: string; logger: Logger },
  ) => Promise<RunningAgentServices>;
  /** Open the agent's pages (default: from config `consent.launcher`). */
  launcher?: Launcher;
  version?: string;
  /** The update manifest's signing key (default: the one pinned in the build, none in development). */
  updatePublicKeyPem?: string | null;
}

/** What a connection needs from its transport: a WebSocket, or a bridge connection of the extension. */
interface PageChannel {
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

class Connection implements ConnectionContext {
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

export class Agent {
  readonly config: KelidConfig;
  readonly stateDir: string;
  readonly #log: Logger;
  readonly #options: AgentOptions;
  readonly #connections = new Set<Connection>();
  readonly #consoleSecrets = new ConsoleSecrets();
  readonly #unknownBytes: UnknownByteBudget;
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
    // One budget for every unknown-tier connection; its burst is one second's worth.
    const perSecond = options.config.limits.unknownBytesPerSecond;
    this.#unknownBytes = new UnknownByteBudget({ perSecond, burst: perSecond });
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
      const makeServices = this.#options.createServices ?? createDefaultServices;
      const [tlsResult, servicesResult] = await Promise.allSettled([
        ensureTlsMaterial(this.stateDir),
        makeServices(config, { stateDir: this.stateDir, logger: this.#log }),
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
      this.#audit = new AuditLog(path.join(this.stateDir, AUDIT_LOG_FILE));
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
          for (const c of this.#connections) if (c.origin === origin && c.tier === 'unknown') c.tier = 'site';
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
      allowedHosts: (port) => [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`],
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
      onConnection: (ws, info) => this.#accept(ws, info, dispatcher),
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
      onConnection: (connection, accepted) => this.#acceptBridge(connection, accepted, dispatcher),
      logger: this.#log,
    });
    this.#bridge = bridge;
    await bridge.listen();

    this.#onTokensChanged = (change) => {
      for (const c of this.#connections)
        if (c.tier !== 'unknown') dispatcher.notify(c, 'tokens.changed', change);
    };
    services.tokenEvents.on('changed', this.#onTokensChanged);

    this.#handler = (request) => this.#handleControl(request, broker, grants, configuredSites, lang);

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

  #accept(ws: WebSocket, info: AcceptedConnection, dispatcher: Dispatcher): void {
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
  #acceptBridge(bridge: BridgeConnection, info: AcceptedConnection, dispatcher: Dispatcher): void {
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
    const conn = new Connection(channel, info.origin, info.tier, this.config.maxMessageBytes);
    this.#connections.add(conn);
    this.#log.info({ conn: conn.id, origin: info.origin, tier: info.tier, transport }, 'connection opened');
    const rate = new RequestRateLimiter({
      perSecond: this.config.limits.requestsPerSecond,
      burst: this.config.limits.requestBurst,
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

  async #handleControl(
    request: ControlRequest,
    broker: ConsentBroker,
    grants: SiteGrants,
    configuredSites: string[],
    lang: string,
  ): Promise<unknown> {
    switch (request.op) {
      case 'list':
        return broker.list();
      case 'approve': {
        const result = broker.approve({ requestId: request.requestId }, request.secrets);
        if (result === null) throw notPending();
        if (!result.ok) {
          const { code, message, need } = result.error;
          throw new KelidError(code, message, need === undefined ? {} : { data: { need } });
        }
        return { ok: true };
      }
      case 'deny':
        if (!broker.deny({ requestId: request.requestId })) throw notPending();
        return { ok: true };
      case 'sites.list':
        return { approved: grants.list(), configured: configuredSites };
      case 'sites.revoke': {
        const origin = normalizeOrigin(request.origin);
        if (origin === null)
          throw new KelidError('ERR_INVALID_INPUT', 'not a valid origin (scheme://host[:port])');
        const revoked = grants.revoke(origin);
        const configured = configuredSites.includes(origin);
        if (revoked) {
          this.#appendAudit({ origin, method: 'sites.revoke', tokenSerial: null, result: 'ok' });
          if (!configured)
            for (const c of this.#connections)
              if (c.origin === origin && c.tier === 'site') c.tier = 'unknown';
          this.#log.info({ origin }, 'site approval revoked');
        }
        return { revoked, configured };
      }
      case 'ui.url':
        return { url: `${this.url}/manager/?lang=${lang}#${this.#consoleSecrets.issue()}` };
    }
  }

  #appendAudit(record: AuditRecord): void {
    if (!this.#audit) throw new KelidError('ERR_INTERNAL', 'the audit log is not open');
    this.#audit.append(record);
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
    for (const c of this.#connections) c.close();
    this.#connections.clear();
    if (this.#services && this.#onTokensChanged)
      this.#services.tokenEvents.off('changed', this.#onTokensChanged);
    await this.#services?.close();
    this.#services = undefined;
  }
}

/**
 * The services of a real agent: createAgentServices over the configured modules, with the status
 * service (OCSP/CRL, cached in the state directory) behind `certificates.status` and the signing policy
 * of config `revocation`.
 */
export async function createDefaultServices(
  config: KelidConfig,
  options: { stateDir: string; logger: Logger },
): Promise<RunningAgentServices> {
  const checker = new StatusService({
    stateDir: options.stateDir,
    timeoutMs: config.revocation.timeoutSeconds * 1000,
    allowPrivateNetworks: config.revocation.allowPrivateNetworks,
    proxy: config.proxy,
    // Pages get "status unavailable" only; which URL failed how stays in the log.
    coarseErrors: true,
    logger: options.logger,
  });
  // The status API needs the signing service (certificates on tokens), which createAgentServices builds.
  const ref: { running?: RunningServices } = {};
  const api: StatusApi = {
    checkCertificateId: async (certificateId, hooks) => {
      if (!ref.running) throw new KelidError('ERR_INTERNAL', 'services are not started');
      const { der, issuers } = await ref.running.signingService.certificateWithIssuers(certificateId);
      hooks?.onCertificate?.(der);
      return checker.check(der, { issuers });
    },
    checkCertificate: (certificate, issuer) =>
      checker.check(certificate, { issuers: issuer ? [issuer] : [], callerSupplied: true }),
  };
  const running = await createAgentServices(config, {
    stateDir: options.stateDir,
    logger: options.logger,
    status: {
      api,
      revocationCheck: createRevocationCheck(
        checker,
        config.revocation.enforceOnSign,
        undefined,
        config.revocation.maxAgeSeconds === null ? undefined : config.revocation.maxAgeSeconds * 1000,
      ),
    },
  });
  ref.running = running;
  return running;
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

function notPending(): KelidError {
  return new KelidError('ERR_INVALID_INPUT', 'no pending consent request has this id');
}

function pinRuleView(rule: { minLength: number; maxLength: number; charset: string }): PinRulesView['user'] {
  return { minLength: rule.minLength, maxLength: rule.maxLength, charset: rule.charset };
}

function byteLength(data: Buffer | ArrayBuffer | Buffer[]): number {
  return Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength;
}

function writeFileAtomic(file: string, text: string): void {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
  fs.renameSync(tmp, file);
}

/** `<stateDir>/port`: the port of the range this user's agent got last time (kept across restarts). */
export const PORT_FILE = 'port';

function readRememberedPort(stateDir: string): number | null {
  try {
    const port = Number(fs.readFileSync(path.join(stateDir, PORT_FILE), 'utf8').trim());
    return AGENT_PORT_RANGE.includes(port) ? port : null;
  } catch {
    return null;
  }
}

function rememberPort(stateDir: string, port: number): void {
  if (readRememberedPort(stateDir) === port) return;
  writeFileAtomic(path.join(stateDir, PORT_FILE), `${port}\n`);
}
