import {
  pinRulesFor,
  pinWarnings,
  requireUsablePin,
  secret,
  tokenView,
  withConsent,
} from '../consent-helpers.js';
import type { ConsentWarning } from '../../consent/consent-broker.js';
import { defineMethod } from '../method.js';
import { object, tokenId } from '../schema.js';

/** `pin.unblock`: the SO-PIN and a new user PIN; clears the user PIN's lock and retry counter. */
export const pinUnblock = defineMethod<{ tokenId: string }>({
  name: 'pin.unblock',
  tiers: ['ra', 'console'],
  schema: object({ tokenId }, ['tokenId']),
  consent: true,
  async run(ctx, params) {
    const token = await ctx.env.services.getToken(params.tokenId);
    ctx.audit.tokenSerial = token.serialNumber;
    requireUsablePin(token, 'so');
    // The SO-PIN's own retry state first; "pin-locked" tells the UI the user PIN is the one locked.
    const warnings: ConsentWarning[] = pinWarnings(token.soPin);
    if (token.userPin.locked) warnings.push('pin-locked');
    await withConsent(
      ctx,
      {
        token: tokenView(token),
        needs: ['soPin', 'newUserPin'],
        warnings,
        pinRules: await pinRulesFor(ctx, token),
      },
      (secrets) =>
        ctx.env.services.provisioning.unblockPin(
          params.tokenId,
          secret(secrets, 'soPin'),
          secret(secrets, 'newUserPin'),
        ),
    );
    return {};
  },
});
