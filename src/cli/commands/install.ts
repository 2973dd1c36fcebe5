import { Command, Option } from 'commander';
import { install, uninstall } from '../../install/installer.js';
import type { AutostartKind } from '../../install/autostart.js';
import { currentPlatformEnv } from '../../platform-paths.js';
import { resolveStateDir } from '../../state-dir.js';

interface InstallCliOptions {
  stateDir?: string;
  config?: string;
  autostart?: AutostartKind | 'none';
  start: boolean;
  purge?: boolean;
}

const STATE_DIR_HELP = 'state directory (default: $KELID_STATE_DIR or the per-user data dir)';
const say = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

/** `kelid install`: start the agent at login and trust its CA, for this user (no root). */
export function installCommand(): Command {
  return new Command('install')
    .description("start the agent at login and trust its local CA in this user's browsers (no root needed)")
    .option('--state-dir <dir>', STATE_DIR_HELP)
    .option('-c, --config <file>', 'config file the agent is started with')
    .addOption(
      new Option('--autostart <kind>', 'how to start at login (default: what this system has)').choices([
        'systemd',
        'xdg-autostart',
        'launch-agent',
        'windows-run-key',
        'none',
      ]),
    )
    .option('--no-start', 'do not start the agent now (it starts at the next login)')
    .action(async (opts: InstallCliOptions) => {
      const state = await install({
        platform: currentPlatformEnv(),
        stateDir: resolveStateDir(opts.stateDir),
        ...(opts.config !== undefined ? { config: opts.config } : {}),
        ...(opts.autostart !== undefined ? { autostart: opts.autostart } : {}),
        start: opts.start,
        log: say,
      });
      say(`Kelid is installed for this user (runs: ${state.command.join(' ')}).`);
      say('Restart the browser to pick up the new CA. Undo with "kelid uninstall".');
    });
}

/** `kelid uninstall [--purge]`: undo `kelid install`; `--purge` also deletes the state directory. */
export function uninstallCommand(): Command {
  return new Command('uninstall')
    .description('undo "kelid install" (login item, CA trust); --purge also deletes the state directory')
    .option('--state-dir <dir>', STATE_DIR_HELP)
    .option('--purge', 'also delete the state directory (site approvals, audit log, CA, logs)')
    .option('--no-start', 'do not stop the running agent through the service manager')
    .action(async (opts: InstallCliOptions) => {
      const found = await uninstall({
        platform: currentPlatformEnv(),
        stateDir: resolveStateDir(opts.stateDir),
        purge: opts.purge === true,
        start: opts.start,
        log: say,
      });
      say(found ? 'Kelid is uninstalled for this user.' : 'Kelid was not installed for this user.');
    });
}
