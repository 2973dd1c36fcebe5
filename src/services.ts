// The one composition root: every service of Kelid is built here, for the agent (`kelid serve`) and
// for every CLI command, so both get the same PKCS#11 deadlines, signing policy and status checking
// from the config.

import type { KelidConfig } from './config.js';
import type { RunningAgentServices, StatusApi } from './model/services.js';
import type { WriteHooks } from './model/test-hooks.js';
import { silentLogger } from './log.js';
import type { Logger } from './log.js';
import { discoverModules } from './pkcs11/module-discovery.js';
import { ModuleManager } from './pkcs11/module-manager.js';
import type { ModuleSpec } from './pkcs11/module-manager.js';
import { SigningService } from './signing/signing-service.js';
import { StatusService, createRevocationCheck } from './status/status-service.js';
import type { StatusServiceOptions } from './status/status-service.js';
import { ProvisioningService } from './tokens/provisioning-service.js';
import { TokenService } from './tokens/token-service.js';
import { TokenWatcher } from './tokens/token-watcher.js';

/** The modules to load for a config: configured ones, plus known and p11-kit ones when auto-detecting. */
export function moduleSpecs(config: KelidConfig): ModuleSpec[] {
  return discoverModules({ configured: config.modules, autoDetect: config.autoDetectModules }).map((c) => ({
    id: c.id,
    name: c.name,
    path: c.path,
    env: c.env,
    source: c.source,
    reinitializeToDetectTokens: c.reinitializeToDetectTokens,
    quirks: c.quirks,
  }));
}

/**
 * The status checker of a config (`revocation`, `proxy`): OCSP/CRL with its cache in `stateDir`.
 * `overrides` are for `kelid status` (its own deadline, no cache) and the agent (coarse errors).
 */
export function createStatusChecker(
  config: KelidConfig,
  options: { stateDir?: string; logger?: Logger } & Partial<StatusServiceOptions> = {},
): StatusService {
  return new StatusService({
    timeoutMs: config.revocation.timeoutSeconds * 1000,
    allowPrivateNetworks: config.revocation.allowPrivateNetworks,
    proxy: config.proxy,
    ...options,
  });
}

export interface ServiceOptions {
  /** State directory: the status cache lives in it. */
  stateDir: string;
  logger?: Logger;
  /** Hot-plug poll interval (ms). */
  pollIntervalMs?: number;
  /**
   * Watch for tokens coming and going (the agent). One-shot CLI commands leave it off: they list
   * tokens when they need them. Default true.
   */
  watchTokens?: boolean;
  /**
   * Errors of `certificates.status` without per-source details (URLs, reasons), which go to the log:
   * what the agent sends to pages. Default false (the CLI shows them).
   */
  coarseStatusErrors?: boolean;
  /** Test hooks around module host calls (crash points); only an entry point gives them. */
  testHooks?: WriteHooks;
}

/** Everything the composition root built; `close` stops the watcher and the module hosts. */
export interface RunningServices extends RunningAgentServices {
  config: KelidConfig;
  moduleManager: ModuleManager;
  tokens: TokenService;
  watcher: TokenWatcher;
  provisioningService: ProvisioningService;
  signingService: SigningService;
  statusChecker: StatusService;
}

/**
 * Build and start the services of a config: a module host per module with the PKCS#11 call and
 * login deadlines, the token service and hot-plug watcher, provisioning with the PIN policy, signing
 * with the TSA, key-purpose rule and the revocation check of `revocation.enforceOnSign`, and the
 * status service behind `certificates.status`.
 */
export async function createServices(config: KelidConfig, options: ServiceOptions): Promise<RunningServices> {
  const logger = options.logger ?? silentLogger;
  const moduleManager = new ModuleManager(moduleSpecs(config), {
    logger,
    callTimeoutMs: config.pkcs11.callTimeoutSeconds * 1000,
    ...(options.testHooks ? { hooks: options.testHooks } : {}),
  });
  await moduleManager.start();
  try {
    const tokens = new TokenService(moduleManager, {
      logger,
      loginTimeoutMs: config.pkcs11.loginTimeoutSeconds * 1000,
    });
    const watcher = new TokenWatcher(tokens, moduleManager, {
      logger,
      ...(options.pollIntervalMs !== undefined ? { intervalMs: options.pollIntervalMs } : {}),
    });
    if (options.watchTokens !== false) await watcher.start();
    const statusChecker = createStatusChecker(config, {
      stateDir: options.stateDir,
      logger,
      coarseErrors: options.coarseStatusErrors ?? false,
    });
    const signingService = new SigningService(tokens, {
      tsaUrl: config.tsaUrl,
      proxy: config.proxy,
      dualUse: config.keyPurpose.dualUse,
      revocationCheck: createRevocationCheck(
        statusChecker,
        config.revocation.enforceOnSign,
        undefined,
        config.revocation.maxAgeSeconds === null ? undefined : config.revocation.maxAgeSeconds * 1000,
      ),
    });
    const provisioningService = new ProvisioningService(tokens, config.pinPolicy, config.keyPurpose.dualUse);
    const status: StatusApi = {
      checkCertificateId: async (certificateId, hooks) => {
        const { der, issuers } = await signingService.certificateWithIssuers(certificateId);
        hooks?.onCertificate?.(der);
        return statusChecker.check(der, { issuers });
      },
      checkCertificate: (certificate, issuer) =>
        statusChecker.check(certificate, { issuers: issuer ? [issuer] : [], callerSupplied: true }),
    };
    return {
      config,
      moduleManager,
      tokens,
      watcher,
      provisioningService,
      signingService,
      statusChecker,
      listTokens: () => tokens.listTokens(),
      getToken: (tokenId) => tokens.getToken(tokenId),
      tokenEvents: watcher,
      modules: () => moduleManager.status(),
      provisioning: provisioningService,
      signing: signingService,
      status,
      close: async () => {
        watcher.stop();
        await moduleManager.stop();
      },
    };
  } catch (e) {
    await moduleManager.stop();
    throw e;
  }
}

/**
 * The services of a running agent (`kelid serve`): as {@link createServices}, with the hot-plug
 * watcher on and `certificates.status` errors without per-source details (pages get those).
 */
export function createAgentServices(config: KelidConfig, options: ServiceOptions): Promise<RunningServices> {
  return createServices(config, { watchTokens: true, coarseStatusErrors: true, ...options });
}
