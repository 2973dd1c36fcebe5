import { defineMethod } from '../method.js';
import { object } from '../schema.js';

/** `tokens.list`: every token on every loaded module. */
export const tokensList = defineMethod<Record<string, never>>({
  name: 'tokens.list',
  tiers: ['site', 'ra', 'console'],
  schema: object({}),
  async run(ctx) {
    return { tokens: await ctx.env.services.listTokens() };
  },
});
