import { defineMethod } from '../method.js';
import { object, tokenId } from '../schema.js';

/** `keys.list`: the key pairs on a token (public objects; no login). */
export const keysList = defineMethod<{ tokenId: string }>({
  name: 'keys.list',
  tiers: ['ra', 'console'],
  schema: object({ tokenId }, ['tokenId']),
  async run(ctx, params) {
    const token = await ctx.env.services.getToken(params.tokenId);
    ctx.audit.tokenSerial = token.serialNumber;
    return { keys: await ctx.env.services.provisioning.listKeys(params.tokenId) };
  },
});
