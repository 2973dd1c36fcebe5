import * as path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { Agent } from '../../agent/agent.js';
import { loadConfig } from '../../config.js';
import { ensurePrivateDirectory } from '../../consent/control-channel.js';
import { LOG_DIR, LOG_FILE } from '../../log-file.js';
import { createLogger } from '../../log.js';
import type { TestHooks } from '../../model/test-hooks.js';
import { resolveStateDir } from '../../state-dir.js';

interface ServeOptions {
  config?: string;
  stateDir?: string;
  port?: number;
  verbose?: boolean;
  logFile?: string;
  logLevel?: string;
}

/** The test hooks (crash points), loaded only with KELID_TEST_HOOKS=1: a normal start never loads them. */
async function testHooks(): Promise<{ testHooks?: TestHooks }> {
  if (process.env.KELID_TEST_HOOKS !== '1') return {};
  const { createTestHooks } = await import('../../testing/crash-points.js');
  return { testHooks: createTestHooks('agent') };
}

function parsePort(value: string): number {
  if (!/^[0-9]{1,5}$/.test(value) || Number(value) > 65535)
    throw new InvalidArgumentError('a port number (0-65535)');
  return Number(value);
}

/**
 * `kelid serve --config <file> [--state-dir <dir>] [--port <n>]`: run the agent until SIGINT/SIGTERM.
 * The state directory is the flag, else config `stateDir`, else $KELID_STATE_DIR, else the per-user
 * data directory.
 */
export function serveCommand(): Command {
  return new Command('serve')
    .description('run the Kelid agent (HTTPS/WebSocket API on 127.0.0.1, consent UI, control channel)')
    .option('-c, --config <file>', 'config file (JSON, PROTOCOL.md section 8)')
    .option(
      '--state-dir <dir>',
      'state directory (default: config stateDir, $KELID_STATE_DIR or the per-user data dir)',
    )
    .option('--port <n>', 'HTTPS/WSS port (0 = any free port); overrides config port', parsePort)
    .option(
      '--log-file <file>',
      'write the log to this file only (default: <state dir>/logs/kelid.log, rotated at 1 MiB, 5 files kept, and stderr too when it is a terminal or with --verbose)',
    )
    .addOption(
      new Option('--log-level <level>', 'log level').choices([
        'fatal',
        'error',
        'warn',
        'info',
        'debug',
        'trace',
      ]),
    )
    .option('-v, --verbose', 'debug logging, also to stderr')
    .action(async (opts: ServeOptions) => {
      const config = loadConfig(opts.config);
      if (opts.port !== undefined) config.port = opts.port;
      const stateDir = resolveStateDir(opts.stateDir ?? config.stateDir);
      // Checked before the log file is opened in it: never write into another user's directory.
      ensurePrivateDirectory(stateDir);
      const level = opts.logLevel ?? (opts.verbose ? 'debug' : undefined);
      const logger = createLogger({
        ...(level !== undefined ? { level } : {}),
        ...(opts.logFile
          ? { destination: opts.logFile }
          : {
              rotatingFile: path.join(stateDir, LOG_DIR, LOG_FILE),
              stderr: process.stderr.isTTY === true || opts.verbose === true,
            }),
      });
      const agent = new Agent({ config, stateDir, logger, ...(await testHooks()) });
      const info = await agent.start();
      process.stdout.write(`Kelid agent listening on ${info.url} (state directory ${stateDir})\n`);
      if (info.insecureWsPort !== undefined) {
        process.stdout.write(
          `Plain development listener on ws://127.0.0.1:${info.insecureWsPort}/v1 (do not use in production)\n`,
        );
      }
      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = (signal: NodeJS.Signals): void => {
          if (stopping) return;
          stopping = true;
          logger.info({ signal }, 'stopping');
          agent.stop().then(
            () => resolve(),
            (e: unknown) => {
              logger.error({ err: e instanceof Error ? e.message : String(e) }, 'stop failed');
              resolve();
            },
          );
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      // Anything still holding the event loop (a stuck module host) must not keep a stopped agent alive.
      setTimeout(() => process.exit(0), 3000).unref();
    });
}
