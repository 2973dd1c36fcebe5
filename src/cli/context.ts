import type { Command } from 'commander';
import { loadConfig } from '../config.js';
import type { KelidConfig } from '../config.js';
import { KelidError, isKelidError } from '../model/errors.js';
import { createLogger, silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import type { ModuleManager } from '../pkcs11/module-manager.js';
import { createServices } from '../services.js';
import type { RunningServices } from '../services.js';
import { resolveStateDir } from '../state-dir.js';
import type { TokenService } from '../tokens/token-service.js';

export interface CommonOptions {
  config?: string;
  stateDir?: string;
  json?: boolean;
  verbose?: boolean;
}

/** Options every command that touches tokens accepts. */
export function withCommonOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'config file (JSON, PROTOCOL.md section 8)')
    .option('--state-dir <dir>', 'state directory (default: $KELID_STATE_DIR or the per-user data dir)')
    .option('-v, --verbose', 'log module activity to stderr');
}

export interface TokenContext {
  config: KelidConfig;
  /** Everything the composition root built (src/services.ts), as `kelid serve` gets it. */
  services: RunningServices;
  modules: ModuleManager;
  tokens: TokenService;
  logger: Logger;
  close(): Promise<void>;
}

/**
 * Load the config and build the services through the one composition root (a host per module with
 * the config's PKCS#11 deadlines, the signing policy, status checking), for a CLI command. The state
 * directory holds the status cache the agent shares: the flag, else config `stateDir`, else the
 * default. `adjust` changes the config for this command only (`kelid sign --tsa`).
 */
export async function openTokenContext(
  options: CommonOptions,
  adjust?: (config: KelidConfig) => KelidConfig,
): Promise<TokenContext> {
  const loaded = loadConfig(options.config);
  const config = adjust ? adjust(loaded) : loaded;
  const logger = options.verbose ? createLogger({ level: 'debug' }) : silentLogger;
  const services = await createServices(config, {
    stateDir: resolveStateDir(options.stateDir ?? config.stateDir),
    logger,
    watchTokens: false,
  });
  return {
    config,
    services,
    modules: services.moduleManager,
    tokens: services.tokens,
    logger,
    close: () => services.close(),
  };
}

/** Print an error for a person (code + message; never a stack) and return the exit code. */
export function reportError(e: unknown): number {
  if (isKelidError(e)) {
    process.stderr.write(`kelid: ${e.message} (${e.code})\n`);
    return 1;
  }
  process.stderr.write(`kelid: ${e instanceof Error ? e.message : String(e)}\n`);
  return 1;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export { KelidError };
