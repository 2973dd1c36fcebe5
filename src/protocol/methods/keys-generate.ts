import type { CsrRequest } from '../../pki/csr.js';
import type { KeyAlgorithm } from '../../model/types.js';
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
import { csrFields, keyAlgorithm, label, object, tokenId } from '../schema.js';

interface Params {
  tokenId: string;
  algorithm: KeyAlgorithm;
  label?: string;
  alwaysAuthenticate?: boolean;
  csr?: CsrRequest;
}

/** `keys.generate`: a key pair on the token (and with `csr`, its PKCS#10 request) under one login. */
export const keysGenerate = defineMethod<Params>({
  name: 'keys.generate',
  tiers: ['ra', 'console'],
  schema: object(
    {
      tokenId,
      algorithm: keyAlgorithm,
      label,
      alwaysAuthenticate: { type: 'boolean' },
      csr: object(csrFields, ['subject']),
    },
    ['tokenId', 'algorithm'],
  ),
  consent: true,
  async run(ctx, params) {
    const token = await ctx.env.services.getToken(params.tokenId);
    ctx.audit.tokenSerial = token.serialNumber;
    requireUsablePin(token, 'user');
    const result = await withConsent(
      ctx,
      {
        token: tokenView(token),
        ...(params.label !== undefined ? { summary: params.label } : {}),
        ...(params.csr !== undefined ? { csr: csrView(params.csr) } : {}),
        ...userPinConsent(token),
        warnings: pinWarnings(token.userPin),
        pinRules: await pinRulesFor(ctx, token),
      },
      (secrets) =>
        ctx.env.services.provisioning.generateKey(params.tokenId, userPinOf(secrets, token), {
          algorithm: params.algorithm,
          ...(params.label !== undefined ? { label: params.label } : {}),
          ...(params.alwaysAuthenticate !== undefined
            ? { alwaysAuthenticate: params.alwaysAuthenticate }
            : {}),
          ...(params.csr !== undefined ? { csr: params.csr } : {}),
        }),
    );
    ctx.audit.keyId = result.key.keyId;
    return result.csr === undefined ? { key: result.key } : { key: result.key, csr: result.csr };
  },
});
