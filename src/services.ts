import type { KelidConfig } from './config.js';
import { silentLogger } from './log.js';
import type { Logger } from './log.js';
import { discoverModules } from './pkcs11/module-discovery.js';
import { ModuleManager } from './pkcs11/module-manager.js';
import type { ModuleSpec } from './pkcs11/module-manager.js';
import type { AgentServices, StatusApi } from './model/services.js';
import { SigningService } from './signing/signing-service.js';
import type { RevocationCheck } from './signing/signing-service.js';
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

export interface ServiceOptions {
  stateDir: string;
  logger?: Logger;
  /** Hot-plug poll interval (ms). */
  pollIntervalMs?: number;
  /** Status checking and the signing policy (wired by the agent when the status service is present). */
  status?: { api: StatusApi; revocationCheck: RevocationCheck };
}

export interface RunningServices extends AgentServices {
  tokens: TokenService;
  moduleManager: ModuleManager;
  watcher: TokenWatcher;
  signingService: SigningService;
  close(): Promise<void>;
}

/** The composition of the services below the protocol layer: module hosts, tokens, provisioning, signing. */
export async function createAgentServices(
  config: KelidConfig,
  options: ServiceOptions,
): Promise<RunningServices> {
  const logger = options.logger ?? silentLogger;
  const moduleManager = new ModuleManager(moduleSpecs(config), {
    logger,
    callTimeoutMs: config.pkcs11.callTimeoutSeconds * 1000,
  });
  await moduleManager.start();
  const tokens = new TokenService(moduleManager, {
    logger,
    loginTimeoutMs: config.pkcs11.loginTimeoutSeconds * 1000,
  });
  const watcher = new TokenWatcher(tokens, moduleManager, {
    logger,
    ...(options.pollIntervalMs !== undefined ? { intervalMs: options.pollIntervalMs } : {}),
  });
  await watcher.start();
  const provisioning = new ProvisioningService(tokens, config.pinPolicy, config.keyPurpose.dualUse);
  const signingService = new SigningService(tokens, {
    tsaUrl: config.tsaUrl,
    proxy: config.proxy,
    dualUse: config.keyPurpose.dualUse,
    ...(options.status ? { revocationCheck: options.status.revocationCheck } : {}),
  });
  const status: StatusApi = options.status?.api ?? {
    checkCertificateId: async () => {
      throw new TypeError('status service not wired');
    },
    checkCertificate: async () => {
      throw new TypeError('status service not wired');
    },
  };
  return {
    tokens,
    moduleManager,
    watcher,
    signingService,
    listTokens: () => tokens.listTokens(),
    getToken: (tokenId) => tokens.getToken(tokenId),
    tokenEvents: watcher,
    modules: () => moduleManager.status(),
    provisioning,
    signing: signingService,
    status,
    close: async () => {
      watcher.stop();
      await moduleManager.stop();
    },
  };
}
