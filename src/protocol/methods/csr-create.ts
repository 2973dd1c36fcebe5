import type { CsrRequest } from '../../pki/csr.js';
import {
  csrView,
  pinRulesFor,
  pinWarnings,
  requireUsablePin,
  tokenView,
  userPinConsent,
  userPinOf,
  withConsent,
} from '../consent-helpers.js';
import { defineMethod } from '../method.js';
import { csrFields, keyId, object, tokenId } from '../schema.js';

type Params = CsrRequest & { tokenId: string; keyId: string };

/** `csr.create`: a PKCS#10 request signed on the token by an existing key. */
export const csrCreate = defineMethod<Params>({
  name: 'csr.create',
  tiers: ['ra', 'console'],
  schema: object({ tokenId, keyId, ...csrFields }, ['tokenId', 'keyId', 'subject']),
  consent: true,
  async run(ctx, params) {
    const token = await ctx.env.services.getToken(params.tokenId);
    ctx.audit.tokenSerial = token.serialNumber;
    ctx.audit.keyId = params.keyId;
    requireUsablePin(token, 'user');
    const { tokenId: id, keyId: key, ...request } = params;
    const csr = await withConsent(
      ctx,
      {
        token: tokenView(token),
        csr: csrView(request),
        ...userPinConsent(token),
        warnings: pinWarnings(token.userPin),
        pinRules: await pinRulesFor(ctx, token),
      },
      (secrets) => ctx.env.services.provisioning.createCsr(id, userPinOf(secrets, token), key, request),
    );
    return { csr };
  },
});
