import { hashDigests } from '../../audit/audit-log.js';
import type { DigestAlgorithm, SignatureScheme } from '../types.js';
import {
  base64,
  certificateView,
  hex,
  pinRulesFor,
  pinWarnings,
  requireUsablePin,
  secret,
  statusWarnings,
  tokenView,
  withConsent,
} from '../consent-helpers.js';
import { defineMethod } from '../method.js';
import {
  certificateId,
  decodeDigest,
  digest,
  digestAlgorithm,
  object,
  signatureScheme,
  summary,
} from '../schema.js';

interface Params {
  certificateId: string;
  digest: string;
  digestAlgorithm: DigestAlgorithm;
  scheme?: SignatureScheme;
  summary: string;
}

/** `sign.raw`: a bare signature over a digest the page computed, after the user's consent and PIN. */
export const signRaw = defineMethod<Params>({
  name: 'sign.raw',
  tiers: ['site', 'ra', 'console'],
  schema: object({ certificateId, digest, digestAlgorithm, scheme: signatureScheme, summary }, [
    'certificateId',
    'digest',
    'digestAlgorithm',
    'summary',
  ]),
  consent: true,
  audit: 'always',
  async run(ctx, params) {
    const value = decodeDigest(params.digest, params.digestAlgorithm);
    const pre = await ctx.env.services.signing.preflight(params.certificateId);
    ctx.audit.tokenSerial = pre.token.serialNumber;
    ctx.audit.keyId = pre.certificate.keyId;
    ctx.audit.certificateSha256 = pre.certificate.fingerprintSha256;
    ctx.audit.digestsSha256 = hashDigests([value]);
    requireUsablePin(pre.token, 'user');
    const result = await withConsent(
      ctx,
      {
        token: tokenView(pre.token),
        certificate: certificateView(pre.certificate),
        summary: params.summary,
        digests: [hex(value)],
        needs: ['userPin'],
        warnings: [...pinWarnings(pre.token.userPin), ...statusWarnings(pre.warning)],
        pinRules: await pinRulesFor(ctx, pre.token.tokenId),
      },
      (secrets) =>
        ctx.env.services.signing.signRaw(params.certificateId, secret(secrets, 'userPin'), {
          digest: value,
          digestAlgorithm: params.digestAlgorithm,
          ...(params.scheme !== undefined ? { scheme: params.scheme } : {}),
        }),
    );
    return { signature: base64(result.signature), signatureAlgorithm: result.signatureAlgorithm };
  },
});
