import { Command } from 'commander';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig } from '../../config.js';
import {
  NATIVE_HOST_BROWSERS,
  installNativeHostManifests,
  uninstallNativeHostManifests,
} from '../../install/native-host-manifests.js';
import type { NativeHostBrowser } from '../../install/native-host-manifests.js';
import { isPackagedProgram, packagePath } from '../../package-files.js';
import { resolveStateDir } from '../../state-dir.js';
import { runNativeHost, spawnAgent } from '../../transport/native-host.js';

/** bin/kelid.js for node to run, or undefined in the packaged program (it is its own entry). */
function kelidBin(): string | undefined {
  return isPackagedProgram() ? undefined : packagePath('bin', 'kelid.js');
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * `kelid native-host`: started by the browser (never by hand) for Kelid's extension; speaks native
 * messaging on stdin/stdout and relays to the agent, starting it when none runs.
 */
export function nativeHostCommand(): Command {
  return new Command('native-host')
    .description('native messaging host for the Kelid browser extension (started by the browser)')
    .option('-c, --config <file>', 'config file of an agent this host starts')
    .option('--state-dir <dir>', 'state directory of the agent')
    .option('--extension-id <id>', 'also serve this extension ID (a store build)', collect, [])
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[caller...]', 'what the browser passes (the calling extension)')
    .action(async (caller: string[], opts: { config?: string; stateDir?: string; extensionId: string[] }) => {
      const stateDir = resolveStateDir(
        opts.stateDir ?? (opts.config ? loadConfig(opts.config).stateDir : undefined),
      );
      const code = await runNativeHost({
        stateDir,
        callerArgs: caller,
        extraExtensionIds: opts.extensionId,
        startAgent: () => spawnAgent(kelidBin(), stateDir, opts.config),
        input: process.stdin,
        output: process.stdout,
      });
      // Flush what is written, then leave (stdin may still be open).
      process.stdout.write('', () => process.exit(code));
    });
}

/** `kelid extension install|uninstall`: the per-user native messaging host manifests. */
export function extensionCommand(): Command {
  const cmd = new Command('extension').description('the browser extension transport (native messaging host)');
  const options = (c: Command): Command =>
    c
      .option('-c, --config <file>', 'config file of an agent the host starts')
      .option('--state-dir <dir>', 'state directory of the agent')
      .option('--extension-id <id>', 'also allow this extension ID (store build)', collect, [])
      .option('--browser <name>', `only this browser (${NATIVE_HOST_BROWSERS.join(', ')})`, collect, []);
  const planOptions = (opts: {
    config?: string;
    stateDir?: string;
    extensionId: string[];
    browser: string[];
  }) => {
    const unknown = opts.browser.filter((b) => !NATIVE_HOST_BROWSERS.includes(b as NativeHostBrowser));
    if (unknown.length > 0) throw new Error(`unknown browser: ${unknown.join(', ')}`);
    return {
      platform: process.platform,
      home: os.homedir(),
      ...(process.env.LOCALAPPDATA ? { localAppData: process.env.LOCALAPPDATA } : {}),
      stateDir: resolveStateDir(
        opts.stateDir ?? (opts.config ? loadConfig(opts.config).stateDir : undefined),
      ),
      // The packaged program is its own entry; from a checkout, node runs bin/kelid.js.
      nodePath: process.execPath,
      ...(kelidBin() !== undefined ? { kelidBin: kelidBin() } : {}),
      ...(opts.config ? { configPath: path.resolve(opts.config) } : {}),
      extensionIds: opts.extensionId,
      ...(opts.browser.length > 0 ? { browsers: opts.browser as NativeHostBrowser[] } : {}),
    };
  };
  cmd.addCommand(
    options(new Command('install'))
      .description('write the native messaging host manifests for this user')
      .action((opts: { config?: string; stateDir?: string; extensionId: string[]; browser: string[] }) => {
        const plan = installNativeHostManifests(planOptions(opts));
        for (const m of plan.manifests) process.stdout.write(`${m.browser}: ${m.path}\n`);
      }),
  );
  cmd.addCommand(
    options(new Command('uninstall'))
      .description('remove the native messaging host manifests of this user')
      .action((opts: { config?: string; stateDir?: string; extensionId: string[]; browser: string[] }) => {
        const plan = uninstallNativeHostManifests(planOptions(opts));
        for (const m of plan.manifests) process.stdout.write(`removed ${m.path}\n`);
      }),
  );
  return cmd;
}
