// The control channel's requests (from the CLI and the consent page): pending consents, approved
// sites, the manager's URL.

import type { AuditRecord } from '../audit/audit-log.js';
import type { ConsentBroker, PinRulesView } from '../consent/consent-broker.js';
import type { ControlRequest } from '../consent/control-channel.js';
import type { SiteGrants } from '../consent/site-grants.js';
import type { Logger } from '../log.js';
import { KelidError } from '../model/errors.js';
import { normalizeOrigin } from '../model/origin.js';
import type { PageConnections } from './connection.js';

/** What the control handlers act on. */
export interface ControlContext {
  broker: ConsentBroker;
  grants: SiteGrants;
  /** The config's `sites` (normalized): approved by the administrator, not revocable here. */
  configuredSites: readonly string[];
  connections: PageConnections;
  /** Append an audit line; resolves once it is durable. */
  audit(record: AuditRecord): Promise<unknown>;
  /** The manager page's URL with a fresh console secret. */
  managerUrl(): string;
  logger: Logger;
}

/** Answer one control-channel request. */
export async function handleControl(request: ControlRequest, ctx: ControlContext): Promise<unknown> {
  switch (request.op) {
    case 'list':
      return ctx.broker.list();
    case 'approve': {
      const result = ctx.broker.approve({ requestId: request.requestId }, request.secrets);
      if (result === null) throw notPending();
      if (!result.ok) {
        const { code, message, need } = result.error;
        throw new KelidError(code, message, need === undefined ? {} : { data: { need } });
      }
      return { ok: true };
    }
    case 'deny':
      if (!ctx.broker.deny({ requestId: request.requestId })) throw notPending();
      return { ok: true };
    case 'sites.list':
      return { approved: ctx.grants.list(), configured: ctx.configuredSites };
    case 'sites.revoke': {
      const origin = normalizeOrigin(request.origin);
      if (origin === null)
        throw new KelidError('ERR_INVALID_INPUT', 'not a valid origin (scheme://host[:port])');
      const revoked = ctx.grants.revoke(origin);
      const configured = ctx.configuredSites.includes(origin);
      if (revoked) {
        await ctx.audit({ origin, method: 'sites.revoke', tokenSerial: null, result: 'ok' });
        if (!configured) ctx.connections.retier(origin, 'site', 'unknown');
        ctx.logger.info({ origin }, 'site approval revoked');
      }
      return { revoked, configured };
    }
    case 'ui.url':
      return { url: ctx.managerUrl() };
  }
}

export function notPending(): KelidError {
  return new KelidError('ERR_INVALID_INPUT', 'no pending consent request has this id');
}

/** The part of a config PIN rule that prompts show. */
export function pinRuleView(rule: {
  minLength: number;
  maxLength: number;
  charset: string;
}): PinRulesView['user'] {
  return { minLength: rule.minLength, maxLength: rule.maxLength, charset: rule.charset };
}
