import { Command } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AUDIT_LOG_FILE, verifyAuditLog } from '../../audit/audit-log.js';
import type { AuditVerifyResult } from '../../audit/audit-log.js';
import { resolveStateDir } from '../../state-dir.js';

interface VerifyOptions {
  stateDir?: string;
  json?: boolean;
}

/** `kelid audit verify [--state-dir <dir>] [--json]`: exit status 0 when the chain is intact, else 1. */
export function auditCommand(): Command {
  const audit = new Command('audit').description('inspect the audit log');
  audit
    .command('verify')
    .description(`check the hash chain of <stateDir>/${AUDIT_LOG_FILE} and report the first broken line`)
    .option(
      '--state-dir <dir>',
      'state directory (default: $KELID_STATE_DIR, else the per-user data directory)',
    )
    .option('--json', 'print the result as one JSON object')
    .action((options: VerifyOptions) => {
      const file = path.join(resolveStateDir(options.stateDir), AUDIT_LOG_FILE);
      const result: AuditVerifyResult = fs.existsSync(file)
        ? verifyAuditLog(file)
        : { ok: false, line: 0, reason: 'no audit log file (nothing recorded yet, or the file was removed)' };
      if (options.json) {
        process.stdout.write(`${JSON.stringify({ file, ...result })}\n`);
      } else if (result.ok) {
        process.stdout.write(`audit log OK (${result.lines} entries)\n`);
        for (const r of result.repairs ?? [])
          process.stdout.write(
            `line ${r.line} records a torn last line repaired at start; its bytes are in ${r.tornFile}\n`,
          );
      } else if (result.line === 0) {
        process.stdout.write(`audit log missing: ${file}\n`);
      } else {
        process.stdout.write(`audit log broken at line ${result.line}: ${result.reason}\n`);
      }
      if (!result.ok) process.exitCode = 1;
    });
  return audit;
}
