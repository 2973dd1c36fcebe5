import { KelidError } from '../../model/errors.js';
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
  format: 'raw' | 'cms';
  digestAlgorithm: DigestAlgorithm;
  scheme?: SignatureScheme;
  items: Array<{ digest: string; summary: string }>;
}

/**
 * `sign.batch`: up to 10,000 digests under one consent and one PIN entry. `request.cancel` stops it
 * after the current item; the call then fails with ERR_USER_CANCELLED.
 */
export const signBatch = defineMethod<Params>({
  name: 'sign.batch',
  tiers: ['site', 'ra', 'console'],
  schema: object(
    {
      certificateId,
      format: { enum: ['raw', 'cms'] },
      digestAlgorithm,
      scheme: signatureScheme,
      items: {
        type: 'array',
        minItems: 1,
        maxItems: 10_000,
        items: object({ digest, summary }, ['digest', 'summary']),
      },
    },
    ['certificateId', 'format', 'digestAlgorithm', 'items'],
  ),
  consent: true,
  audit: 'always',
  async run(ctx, params) {
    const digests = params.items.map((item, i) =>
      decodeDigest(item.digest, params.digestAlgorithm, `items[${i}].digest`),
    );
    const result = await withSigningConsent(
      ctx,
      params.certificateId,
      { use: params.format === 'raw' ? 'raw' : 'cms', batch: true },
      digests,
      { summaries: params.items.map((i) => i.summary) },
      (userPin) => {
        // Between items, request.cancel may still stop the batch.
        ctx.setCancellable(true);
        return ctx.env.services.signing.signBatch(
          params.certificateId,
          userPin,
          {
            format: params.format,
            digestAlgorithm: params.digestAlgorithm,
            ...(params.scheme !== undefined ? { scheme: params.scheme } : {}),
            digests,
          },
          { signal: ctx.signal },
        );
      },
    );
    if (result.cancelled) {
      throw new KelidError('ERR_USER_CANCELLED', 'the batch was cancelled by the page', {
        data: { completed: result.results.length },
      });
    }
    return {
      results: result.results.map((r) =>
        'signature' in r ? { signature: base64(r.signature) } : { cms: base64(r.cms) },
      ),
    };
  },
});
