import { KelidError } from '../../model/errors.js';
import { pinRulesFor, pinWarnings, secret, tokenView, withConsent } from '../consent-helpers.js';
import { defineMethod } from '../method.js';
import { label, object, tokenId } from '../schema.js';

/**
 * `tokens.init`: C_InitToken with a label, then the first user PIN. A blank token takes a new SO-PIN
 * (`newSoPin`); an initialized token is erased and re-initialized only with its current SO-PIN
 * (`soPin`, as C_InitToken requires). The new user PIN is checked against the PIN policy before the
 * call proceeds.
 */
export const tokensInit = defineMethod<{ tokenId: string; label: string }>({
  name: 'tokens.init',
  tiers: ['ra', 'console'],
  schema: object({ tokenId, label }, ['tokenId', 'label']),
  consent: true,
  async run(ctx, params) {
    const token = await ctx.env.services.getToken(params.tokenId);
    ctx.audit.tokenSerial = token.serialNumber;
    if (token.readOnly) throw new KelidError('ERR_FORBIDDEN', 'the token is write-protected');
    if (token.initialized && token.soPin.locked) {
      throw new KelidError('ERR_PIN_LOCKED', 'the SO-PIN is locked', {
        data: { role: 'so', pin: token.soPin },
      });
    }
    const needs = token.initialized
      ? (['soPin', 'newUserPin'] as const)
      : (['newSoPin', 'newUserPin'] as const);
    const initialized = await withConsent(
      ctx,
      {
        token: tokenView(token),
        summary: params.label,
        needs: [...needs],
        warnings: token.initialized ? pinWarnings(token.soPin) : [],
        pinRules: await pinRulesFor(ctx, token),
      },
      (secrets) =>
        ctx.env.services.provisioning.initToken(params.tokenId, {
          label: params.label,
          soPin: secret(secrets, token.initialized ? 'soPin' : 'newSoPin'),
          userPin: secret(secrets, 'newUserPin'),
        }),
    );
    ctx.audit.tokenSerial = initialized.serialNumber;
    return { token: initialized };
  },
});
