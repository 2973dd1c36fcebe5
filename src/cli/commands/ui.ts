import { Command } from 'commander';
import { loadConfig } from '../../config.js';
import { sendControlRequest } from '../../consent/control-channel.js';
import { createLauncher } from '../../consent/launcher.js';
import { resolveStateDir } from '../../state-dir.js';

interface UiOptions {
  stateDir?: string;
  config?: string;
  print?: boolean;
}

/**
 * `kelid ui [--print]`: ask the running agent for a one-time token manager URL
 * (`https://127.0.0.1:PORT/manager/?lang=fa#<secret>`) and open it with the consent launcher.
 */
export function uiCommand(): Command {
  return new Command('ui')
    .description('open the token manager (console) of the running agent')
    .option(
      '--state-dir <dir>',
      'state directory of the running agent (default: $KELID_STATE_DIR or the per-user data dir)',
    )
    .option(
      '-c, --config <file>',
      'config file whose consent.launcher opens the page (default: the system browser)',
    )
    .option('--print', 'print the one-time URL instead of opening it')
    .action(async (opts: UiOptions) => {
      const { url } = (await sendControlRequest(resolveStateDir(opts.stateDir), { op: 'ui.url' })) as {
        url: string;
      };
      if (opts.print) {
        process.stdout.write(`${url}\n`);
        return;
      }
      const launcher = loadConfig(opts.config).consent.launcher;
      createLauncher(launcher === 'none' ? 'browser' : launcher)(url);
      process.stdout.write('Opened the Kelid token manager in the browser (the link works once).\n');
    });
}
