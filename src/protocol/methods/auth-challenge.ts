import { createHash } from 'node:crypto';
import { KelidError } from '../../model/errors.js';
import type { Certificate } from '../../model/types.js';
import { withSigningConsent } from '../consent-helpers.js';
import type { CallContext } from '../context.js';
import { defineMethod } from '../method.js';
import { base64, certificateId, decodeBase64, object } from '../schema.js';

/**
 * `auth.challenge`: a login token whose signature covers SHA-256(origin) ‖ SHA-256(nonce), so it is
 * bound to the origin that asked. Only certificates fit for authentication (src/pki/key-purpose.ts)
 * log in; without `certificateId`, the first valid one with a private key is used.
 */
export const authChallenge = defineMethod<{ nonce: string; certificateId?: string }>({
  name: 'auth.challenge',
  tiers: ['site', 'ra', 'console'],
  schema: object({ nonce: base64(64, 32), certificateId }, ['nonce']),
  consent: true,
  audit: 'always',
  async run(ctx, params) {
    const nonce = decodeBase64(params.nonce, 'nonce', 32, 64);
    const chosen = params.certificateId ?? (await defaultCertificate(ctx)).certificateId;
    const origin = ctx.connection.origin;
    const signed = Buffer.concat([sha256(Buffer.from(origin, 'utf8')), sha256(nonce)]);
    const token = await withSigningConsent(
      ctx,
      chosen,
      { use: 'authentication' },
      [sha256(signed)],
      {},
      (userPin) => ctx.env.services.signing.authChallenge(chosen, userPin, { origin, nonce }),
    );
    return { token };
  },
});

function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

async function defaultCertificate(ctx: CallContext): Promise<Certificate> {
  const now = new Date().toISOString();
  const candidates = (
    await ctx.env.services.signing.listCertificates({
      filter: { hasPrivateKey: true, validAt: now, use: 'authentication' },
    })
  ).filter((c) => c.category === 'user');
  const chosen = candidates[0];
  if (!chosen)
    throw new KelidError('ERR_CERTIFICATE_NOT_FOUND', 'no certificate on the tokens can be used to log in');
  return chosen;
}
