import { Command } from 'commander';
import { loadConfig } from '../../config.js';
import { writeBundle } from '../../install/bundle.js';
import { formatDoctor, runDoctor } from '../../install/doctor.js';
import { currentPlatformEnv } from '../../platform-paths.js';
import { resolveStateDir } from '../../state-dir.js';
import { printJson } from '../context.js';

interface DoctorCliOptions {
  config?: string;
  stateDir?: string;
  json?: boolean;
  bundle?: string;
}

/** `kelid doctor [--json] [--bundle <file>]`: the help desk's first questions, answered. */
export function doctorCommand(): Command {
  return new Command('doctor')
    .description(
      'check the agent, its port, CA trust, modules, tokens, pcscd, TSA and clock; --bundle for the help desk',
    )
    .option('-c, --config <file>', 'config file the agent runs with')
    .option(
      '--state-dir <dir>',
      'state directory (default: config stateDir, $KELID_STATE_DIR or the per-user data dir)',
    )
    .option('--json', 'machine-readable output')
    .option(
      '--bundle <file>',
      'also write a redacted .tar.gz (config, versions, last log lines, this report)',
    )
    .action(async (opts: DoctorCliOptions, cmd: Command) => {
      // The version the program was built with, as `kelid --version` prints it.
      const version = cmd.parent?.version() ?? '0.0.0';
      const config = loadConfig(opts.config);
      const stateDir = resolveStateDir(opts.stateDir ?? config.stateDir);
      const report = await runDoctor({
        config,
        stateDir,
        platform: currentPlatformEnv(),
        version,
      });
      if (opts.json) printJson(report);
      else process.stdout.write(formatDoctor(report));
      if (opts.bundle) {
        writeBundle(opts.bundle, report, config, stateDir);
        if (!opts.json) process.stdout.write(`wrote ${opts.bundle}\n`);
      }
      if (report.checks.some((c) => c.status === 'fail')) process.exitCode = 1;
    });
}
