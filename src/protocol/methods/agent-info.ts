import { defineMethod } from '../method.js';
import { object } from '../schema.js';

/**
 * `agent.info`: who is answering, and which tier this connection has. The exact agent version only
 * goes to the known tiers: any page may call this as `unknown`, and a version tells it which known
 * holes to try.
 */
export const agentInfo = defineMethod<Record<string, never>>({
  name: 'agent.info',
  tiers: ['unknown', 'site', 'ra', 'console'],
  schema: object({}),
  audit: 'never',
  async run(ctx) {
    const { tier, origin } = ctx.connection;
    const info: Record<string, unknown> = {
      name: 'kelid',
      ...(tier !== 'unknown' ? { version: ctx.env.version } : {}),
      protocol: 1,
      origin,
      tier,
    };
    // The user's own token manager shows a newer version (PROTOCOL.md section 3); pages never see it.
    if (tier === 'console') {
      const update = ctx.env.updateAvailable?.();
      if (update) info.update = update;
    }
    if (tier === 'ra' || tier === 'console') {
      info.modules = ctx.env.services.modules().map((m) => ({
        id: m.id,
        name: m.name,
        path: m.path,
        source: m.source,
        state: m.state,
        ...(m.reason !== undefined ? { reason: m.reason } : {}),
        ...(m.info !== undefined ? { info: m.info } : {}),
      }));
    }
    return info;
  },
});
