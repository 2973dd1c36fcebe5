import { withConsent } from '../consent-helpers.js';
import { defineMethod } from '../method.js';
import { object, plainText } from '../schema.js';

/**
 * `agent.requestAccess`: the user approves this origin for the `site` tier. The approval is stored
 * (SiteGrants) and takes effect at once: this connection and the origin's other open connections
 * become `site`, and so do its later connections, until `kelid sites revoke`.
 */
export const agentRequestAccess = defineMethod<{ reason?: string }>({
  name: 'agent.requestAccess',
  tiers: ['unknown', 'site'],
  schema: object({ reason: plainText(500) }),
  consent: true,
  // Audited once the user was asked (approved, denied, timed out or withdrawn).
  audit: 'always',
  async run(ctx, params) {
    const { origin } = ctx.connection;
    if (ctx.connection.tier === 'site') return { tier: 'site' };
    if (ctx.env.sites.isApproved(origin)) {
      // Approved meanwhile on another connection of this origin.
      ctx.connection.tier = 'site';
      return { tier: 'site' };
    }
    await withConsent(
      ctx,
      { needs: [], digests: [], ...(params.reason !== undefined ? { summary: params.reason } : {}) },
      async () => {
        ctx.env.sites.approve(origin);
      },
    );
    return { tier: 'site' };
  },
});
