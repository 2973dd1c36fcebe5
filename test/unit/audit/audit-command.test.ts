import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AUDIT_LOG_FILE, AuditLog } from '../../../src/audit/audit-log.js';

const COMMAND = fileURLToPath(new URL('../../../src/cli/commands/audit.ts', import.meta.url));
const RUNNER = `import { auditCommand } from ${JSON.stringify(COMMAND)};
await auditCommand().parseAsync(process.argv.slice(1), { from: 'user' });`;

// Runs the command in its own process, so exit status and output are the real ones.
function kelidAudit(args: string[], env: Record<string, string> = {}) {
  const base = { ...process.env };
  delete base.KELID_STATE_DIR;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', RUNNER, ...args], {
    env: { ...base, ...env },
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-audit-cli-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

async function writeLog(n: number): Promise<string> {
  const file = path.join(dir, AUDIT_LOG_FILE);
  const log = new AuditLog(file);
  for (let i = 0; i < n; i++)
    await log.append({
      origin: 'https://ra.example',
      method: 'keys.generate',
      tokenSerial: 'S1',
      result: 'ok',
    });
  return file;
}

describe('auditCommand', () => {
  describe('verify', () => {
    it('prints OK with the entry count and exits 0 for an intact log', async () => {
      await writeLog(3);
      const r = kelidAudit(['verify', '--state-dir', dir]);
      expect(r).toMatchObject({ status: 0, stdout: 'audit log OK (3 entries)\n' });
    });

    it('reports a torn last line repaired at start next to the OK', async () => {
      const file = await writeLog(2);
      fs.appendFileSync(file, '{"seq":3,"time":"20');
      new AuditLog(file);
      const r = kelidAudit(['verify', '--state-dir', dir]);
      expect(r).toMatchObject({
        status: 0,
        stdout: `audit log OK (3 entries)\nline 3 records a torn last line repaired at start; its bytes are in ${file}.torn-3\n`,
      });
    });

    it('prints the first broken line and exits 1', async () => {
      const file = await writeLog(3);
      const ls = fs.readFileSync(file, 'utf8').split('\n');
      ls[0] = ls[0].replace('keys.generate', 'keys.generatf');
      fs.writeFileSync(file, ls.join('\n'));
      const r = kelidAudit(['verify', '--state-dir', dir]);
      expect(r.status).toBe(1);
      expect(r.stdout).toMatch(/^audit log broken at line 2: prev does not match the SHA-256 of line 1/);
    });

    it('prints the result as JSON with --json', async () => {
      const file = await writeLog(2);
      fs.appendFileSync(file, '{"seq":3');
      const r = kelidAudit(['verify', '--state-dir', dir, '--json']);
      expect(r.status).toBe(1);
      expect(JSON.parse(r.stdout)).toEqual({ file, ok: false, line: 3, reason: 'not valid JSON' });
    });

    it('finds the state directory through KELID_STATE_DIR', async () => {
      await writeLog(1);
      const r = kelidAudit(['verify', '--json'], { KELID_STATE_DIR: dir });
      expect(r.status).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ file: path.join(dir, AUDIT_LOG_FILE), ok: true, lines: 1 });
    });

    it('reports a missing log and exits 1', () => {
      const r = kelidAudit(['verify', '--state-dir', dir]);
      expect(r).toMatchObject({
        status: 1,
        stdout: `audit log missing: ${path.join(dir, AUDIT_LOG_FILE)}\n`,
      });
    });
  });
});
