import {
  pinRulesFor,
  pinWarnings,
  requireUsablePin,
  tokenView,
  userPinConsent,
  userPinOf,
  withConsent,
} from '../consent-helpers.js';
import { defineMethod } from '../method.js';
import { keyId, object, tokenId } from '../schema.js';

/** `objects.delete`: remove a key's certificate, its key pair, or both. */
export const objectsDelete = defineMethod<{
  tokenId: string;
  keyId: string;
  scope: 'certificate' | 'keypair' | 'all';
}>({
  name: 'objects.delete',
  tiers: ['ra', 'console'],
  schema: object({ tokenId, keyId, scope: { enum: ['certificate', 'keypair', 'all'] } }, [
    'tokenId',
    'keyId',
    'scope',
  ]),
  consent: true,
  async run(ctx, params) {
    const token = await ctx.env.services.getToken(params.tokenId);
    ctx.audit.tokenSerial = token.serialNumber;
    ctx.audit.keyId = params.keyId;
    requireUsablePin(token, 'user');
    const deleted = await withConsent(
      ctx,
      {
        token: tokenView(token),
        summary: `${params.scope}: ${params.keyId}`,
        ...userPinConsent(token),
        warnings: pinWarnings(token.userPin),
        pinRules: await pinRulesFor(ctx, token),
      },
      (secrets) =>
        ctx.env.services.provisioning.deleteObjects(
          params.tokenId,
          userPinOf(secrets, token),
          params.keyId,
          params.scope,
        ),
    );
    return { deleted };
  },
});
