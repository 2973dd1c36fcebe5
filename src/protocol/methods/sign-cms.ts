import { createHash } from 'node:crypto';
import { DIGEST_NODE_NAME } from '../../pki/der.js';
import type { DigestAlgorithm } from '../../model/types.js';
import { base64 as toBase64, withSigningConsent } from '../consent-helpers.js';
import { defineMethod } from '../method.js';
import {
  InvalidParams,
  base64,
  certificateId,
  decodeDigest,
  digest,
  digestAlgorithm,
  object,
  summary,
} from '../schema.js';

interface Params {
  certificateId: string;
  content?: string;
  digest?: string;
  digestAlgorithm: DigestAlgorithm;
  detached?: boolean;
  includeChain?: boolean;
  timestamp?: boolean;
  summary: string;
}

/**
 * `sign.cms`: a CMS/CAdES signature over `content` (bytes) or a `digest` of them (then detached).
 * The consent UI shows the digest either way; the document itself never reaches a log or the UI.
 */
export const signCms = defineMethod<Params>({
  name: 'sign.cms',
  tiers: ['site', 'ra', 'console'],
  schema: object(
    {
      certificateId,
      // Bounded by the message size (maxMessageBytes) as well.
      content: base64(64 * 1024 * 1024),
      digest,
      digestAlgorithm,
      detached: { type: 'boolean' },
      includeChain: { type: 'boolean' },
      timestamp: { type: 'boolean' },
      summary,
    },
    ['certificateId', 'digestAlgorithm', 'summary'],
  ),
  consent: true,
  audit: 'always',
  async run(ctx, params) {
    if ((params.content === undefined) === (params.digest === undefined)) {
      throw new InvalidParams('params must have exactly one of content and digest');
    }
    if (params.digest !== undefined && params.detached === false) {
      throw new InvalidParams('a signature over a digest is always detached');
    }
    const content = params.content !== undefined ? Buffer.from(params.content, 'base64') : undefined;
    const value =
      params.digest !== undefined
        ? decodeDigest(params.digest, params.digestAlgorithm)
        : new Uint8Array(
            createHash(DIGEST_NODE_NAME[params.digestAlgorithm])
              .update(content as Buffer)
              .digest(),
          );
    const result = await withSigningConsent(
      ctx,
      params.certificateId,
      { use: 'cms' },
      [value],
      { summary: params.summary },
      (userPin) =>
        ctx.env.services.signing.signCms(params.certificateId, userPin, {
          ...(content !== undefined
            ? {
                content: new Uint8Array(content.buffer, content.byteOffset, content.byteLength),
                detached: params.detached ?? true,
              }
            : { digest: value }),
          digestAlgorithm: params.digestAlgorithm,
          includeChain: params.includeChain ?? true,
          timestamp: params.timestamp ?? false,
        }),
    );
    return { cms: toBase64(result.cms) };
  },
});
