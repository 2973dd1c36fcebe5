import {
  pinRulesFor,
  pinWarnings,
  requireUsablePin,
  secret,
  tokenView,
  withConsent,
} from '../consent-helpers.js';
import { defineMethod } from '../method.js';
import { object, tokenId } from '../schema.js';

/** `pin.change`: the user (or SO) types the current PIN and a new one, checked against the policy. */
export const pinChange = defineMethod<{ tokenId: string; role: 'user' | 'so' }>({
  name: 'pin.change',
  tiers: ['ra', 'console'],
  schema: object({ tokenId, role: { enum: ['user', 'so'] } }, ['tokenId', 'role']),
  consent: true,
  async run(ctx, params) {
    const token = await ctx.env.services.getToken(params.tokenId);
    ctx.audit.tokenSerial = token.serialNumber;
    requireUsablePin(token, params.role);
    const [oldNeed, newNeed] =
      params.role === 'user' ? (['oldUserPin', 'newUserPin'] as const) : (['oldSoPin', 'newSoPin'] as const);
    await withConsent(
      ctx,
      {
        token: tokenView(token),
        needs: [oldNeed, newNeed],
        warnings: pinWarnings(params.role === 'user' ? token.userPin : token.soPin),
        pinRules: await pinRulesFor(ctx, token),
      },
      (secrets) =>
        ctx.env.services.provisioning.changePin(
          params.tokenId,
          params.role,
          secret(secrets, oldNeed),
          secret(secrets, newNeed),
        ),
    );
    return {};
  },
});
