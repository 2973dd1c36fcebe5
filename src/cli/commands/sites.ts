import * as path from 'node:path';
import { Command } from 'commander';
import { AUDIT_LOG_FILE, AuditLog } from '../../audit/audit-log.js';
import { AgentNotRunningError, sendControlRequest } from '../../consent/control-channel.js';
import { SITE_GRANTS_FILE, SiteGrants } from '../../consent/site-grants.js';
import type { SiteGrant } from '../../consent/site-grants.js';
import { KelidError } from '../../model/errors.js';
import { resolveStateDir } from '../../state-dir.js';
import { normalizeOrigin } from '../../model/origin.js';
import { printJson } from '../context.js';

interface SitesOptions {
  stateDir?: string;
  json?: boolean;
}

interface SitesList {
  approved: SiteGrant[];
  /** Origins of config `sites` (only known when the agent runs). */
  configured?: string[];
}

const STATE_DIR_HELP = 'state directory (default: $KELID_STATE_DIR or the per-user data dir)';

/**
 * `kelid sites list|revoke`: the sites the user approved (agent.requestAccess). Through the running
 * agent when there is one (a revocation then also drops the site's open connections to `unknown`),
 * else directly on `<stateDir>/sites.json`.
 */
export function sitesCommand(): Command {
  const sites = new Command('sites').description('list or revoke site approvals');
  sites
    .command('list')
    .description('approved sites')
    .option('--state-dir <dir>', STATE_DIR_HELP)
    .option('--json', 'print {approved:[{origin,grantedAt}], configured?:[origin]} as JSON')
    .action(async (opts: SitesOptions) => {
      const stateDir = resolveStateDir(opts.stateDir);
      let list: SitesList;
      try {
        list = (await sendControlRequest(stateDir, { op: 'sites.list' })) as SitesList;
      } catch (e) {
        if (!(e instanceof AgentNotRunningError)) throw e;
        list = { approved: new SiteGrants(path.join(stateDir, SITE_GRANTS_FILE)).list() };
      }
      if (opts.json) {
        printJson(list);
        return;
      }
      const lines: string[] = [];
      for (const g of list.approved) lines.push(`${g.origin}  approved ${g.grantedAt}`);
      for (const o of list.configured ?? []) lines.push(`${o}  (config "sites")`);
      process.stdout.write(lines.length > 0 ? `${lines.join('\n')}\n` : 'No approved sites.\n');
    });
  sites
    .command('revoke <origin>')
    .description('withdraw the approval of an origin (scheme://host[:port])')
    .option('--state-dir <dir>', STATE_DIR_HELP)
    .action(async (origin: string, opts: SitesOptions) => {
      const stateDir = resolveStateDir(opts.stateDir);
      const normalized = normalizeOrigin(origin);
      if (normalized === null)
        throw new KelidError('ERR_INVALID_INPUT', 'not a valid origin (scheme://host[:port])');
      let result: { revoked: boolean; configured?: boolean };
      try {
        result = (await sendControlRequest(stateDir, {
          op: 'sites.revoke',
          origin: normalized,
        })) as typeof result;
      } catch (e) {
        if (!(e instanceof AgentNotRunningError)) throw e;
        const revoked = new SiteGrants(path.join(stateDir, SITE_GRANTS_FILE)).revoke(normalized);
        if (revoked) {
          await new AuditLog(path.join(stateDir, AUDIT_LOG_FILE)).append({
            origin: normalized,
            method: 'sites.revoke',
            tokenSerial: null,
            result: 'ok',
          });
        }
        result = { revoked };
      }
      if (result.revoked) process.stdout.write(`revoked ${normalized}\n`);
      else process.stdout.write(`${normalized} was not approved\n`);
      if (result.configured) {
        process.stdout.write(
          `note: ${normalized} is listed in config "sites"; remove it there to stop its access\n`,
        );
      }
      if (!result.revoked) process.exitCode = 1;
    });
  return sites;
}
