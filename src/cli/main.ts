import { Command, CommanderError } from 'commander';
import { auditCommand } from './commands/audit.js';
import { caCommand } from './commands/ca.js';
import { installCommand, uninstallCommand } from './commands/install.js';
import { doctorCommand } from './commands/doctor.js';
import { consentCommand } from './commands/consent.js';
import { modulesCommand } from './commands/modules.js';
import { extensionCommand, nativeHostCommand } from './commands/native-host.js';
import {
  certsCommand,
  csrCommand,
  deleteCommand,
  importCommand,
  initCommand,
  keygenCommand,
  keysCommand,
  pinCommand,
} from './commands/provisioning.js';
import { serveCommand } from './commands/serve.js';
import { signCommand } from './commands/sign.js';
import { statusCommand } from './commands/status.js';
import { sitesCommand } from './commands/sites.js';
import { tokensCommand } from './commands/tokens.js';
import { uiCommand } from './commands/ui.js';
import { packageVersion } from '../package-files.js';
import { reportError } from './context.js';

/** Build the `kelid` command tree (the composition root of the CLI). */
export function buildProgram(): Command {
  const program = new Command('kelid')
    .description('Kelid — PKCS#11 tokens for web pages: provisioning, signatures and status checks')
    .version(packageVersion())
    .showHelpAfterError()
    .exitOverride();
  const commands = [
    tokensCommand(),
    modulesCommand(),
    initCommand(),
    pinCommand(),
    keygenCommand(),
    csrCommand(),
    importCommand(),
    keysCommand(),
    certsCommand(),
    deleteCommand(),
    signCommand(),
    statusCommand(),
    auditCommand(),
    serveCommand(),
    consentCommand(),
    sitesCommand(),
    caCommand(),
    uiCommand(),
    installCommand(),
    uninstallCommand(),
    doctorCommand(),
    nativeHostCommand(),
    extensionCommand(),
  ];
  for (const cmd of commands) {
    cmd.exitOverride();
    for (const sub of cmd.commands) sub.exitOverride();
    program.addCommand(cmd);
  }
  return program;
}

/** Run the CLI; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // help and version exit with 0; usage errors (unknown flags or commands) with 2
      return e.exitCode === 0 ? 0 : 2;
    }
    return reportError(e);
  }
}
