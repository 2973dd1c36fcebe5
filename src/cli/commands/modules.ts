import { Command } from 'commander';
import type { ModuleStatus } from '../../pkcs11/module-manager.js';
import { openTokenContext, printJson, withCommonOptions } from '../context.js';
import type { CommonOptions } from '../context.js';

export function formatModules(modules: ModuleStatus[]): string {
  if (modules.length === 0) {
    return 'No PKCS#11 modules found. Add one to the config file: {"modules":[{"id":"…","path":"/path/to/module.so"}]}\n';
  }
  return modules
    .map((m) => {
      const head = `${m.id}  ${m.state.toUpperCase()}  (${m.source})`;
      const lines = [head, `  path:    ${m.path}`];
      if (m.info)
        lines.push(
          `  library: ${m.info.libraryDescription} ${m.info.libraryVersion} (${m.info.manufacturer})`,
        );
      if (m.reason) lines.push(`  reason:  ${m.reason}`);
      return lines.join('\n');
    })
    .join('\n\n')
    .concat('\n');
}

export function modulesCommand(): Command {
  return withCommonOptions(
    new Command('modules').description(
      'list PKCS#11 modules found on this machine: loaded, or failed and why',
    ),
  )
    .option('--json', 'machine-readable output')
    .action(async (opts: CommonOptions) => {
      const ctx = await openTokenContext(opts);
      try {
        const status = ctx.modules.status();
        if (opts.json) printJson(status);
        else process.stdout.write(formatModules(status));
      } finally {
        await ctx.close();
      }
    });
}
