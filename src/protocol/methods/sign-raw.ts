import type { DigestAlgorithm, SignatureScheme } from '../../model/types.js';
import { base64, withSigningConsent } from '../consent-helpers.js';
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
    const result = await withSigningConsent(
      ctx,
      params.certificateId,
      { use: 'raw' },
      [value],
      { summary: params.summary },
      (userPin) =>
        ctx.env.services.signing.signRaw(params.certificateId, userPin, {
          digest: value,
          digestAlgorithm: params.digestAlgorithm,
          ...(params.scheme !== undefined ? { scheme: params.scheme } : {}),
        }),
    );
    return { signature: base64(result.signature), signatureAlgorithm: result.signatureAlgorithm };
  },
});
