import type { CertificateFilter } from '../../model/types.js';
import { defineMethod } from '../method.js';
import { isoTime, object, tokenId, usageList } from '../schema.js';

/** `certificates.list`: certificates on the tokens (or one token), optionally filtered. */
export const certificatesList = defineMethod<{ tokenId?: string; filter?: CertificateFilter }>({
  name: 'certificates.list',
  tiers: ['site', 'ra', 'console'],
  schema: object({
    tokenId,
    filter: object({
      keyUsage: usageList,
      extendedKeyUsage: usageList,
      issuer: { type: 'string', minLength: 1, maxLength: 512 },
      validAt: isoTime,
      hasPrivateKey: { type: 'boolean' },
      use: { enum: ['raw', 'cms', 'authentication'] },
    }),
  }),
  async run(ctx, params) {
    const certificates = await ctx.env.services.signing.listCertificates({
      ...(params.tokenId !== undefined ? { tokenId: params.tokenId } : {}),
      ...(params.filter !== undefined ? { filter: params.filter } : {}),
    });
    return { certificates };
  },
});
