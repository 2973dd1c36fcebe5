import type { Command } from 'commander';
import { loadConfig } from '../config.js';
import type { KelidConfig } from '../config.js';
import { KelidError, isKelidError } from '../model/errors.js';
import { createLogger, silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import { ModuleManager } from '../pkcs11/module-manager.js';
import { moduleSpecs } from '../services.js';
import { TokenService } from '../tokens/token-service.js';

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
  modules: ModuleManager;
  tokens: TokenService;
  logger: Logger;
  close(): Promise<void>;
}

/** Load the config, start a host per module and return the token service (CLI commands). */
export async function openTokenContext(options: CommonOptions): Promise<TokenContext> {
  const config = loadConfig(options.config);
  const logger = options.verbose ? createLogger({ level: 'debug' }) : silentLogger;
  const modules = new ModuleManager(moduleSpecs(config), { logger });
  await modules.start();
  const tokens = new TokenService(modules, { logger });
  return { config, modules, tokens, logger, close: () => modules.stop() };
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
