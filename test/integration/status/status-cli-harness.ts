// Runs `kelid status` as its own process (the main CLI entry registers the same Command).
import { statusCommand } from '../../../src/cli/commands/status.js';

const command = statusCommand();
command.exitOverride();
command.parseAsync(process.argv.slice(2), { from: 'user' }).catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
