import { describeCertificate, parseCertificateInput } from '../../pki/certificate.js';
import { isKelidError } from '../../model/errors.js';
import {
  certificateView,
  pinRulesFor,
  pinWarnings,
  requireUsablePin,
  tokenView,
  userPinConsent,
  userPinOf,
  withConsent,
} from '../consent-helpers.js';
import { defineMethod } from '../method.js';
import { InvalidParams, certificateText, label, object, tokenId } from '../schema.js';

interface Params {
  tokenId: string;
  certificate: string;
  chain?: string[];
  label?: string;
}

/** `certificates.import`: write an issued certificate next to its key (and the CA chain). */
export const certificatesImport = defineMethod<Params>({
  name: 'certificates.import',
  tiers: ['ra', 'console'],
  schema: object(
    {
      tokenId,
      certificate: certificateText,
      chain: { type: 'array', maxItems: 8, items: certificateText },
      label,
    },
    ['tokenId', 'certificate'],
  ),
  consent: true,
  async run(ctx, params) {
    let description: ReturnType<typeof describeCertificate>;
    try {
      description = describeCertificate(parseCertificateInput(params.certificate));
    } catch (e) {
      if (isKelidError(e)) throw new InvalidParams('params.certificate is not a readable X.509 certificate');
      throw e;
    }
    const token = await ctx.env.services.getToken(params.tokenId);
    ctx.audit.tokenSerial = token.serialNumber;
    ctx.audit.certificateSha256 = description.fingerprintSha256;
    requireUsablePin(token, 'user');
    const certificate = await withConsent(
      ctx,
      {
        token: tokenView(token),
        certificate: certificateView(description),
        ...(params.label !== undefined ? { summary: params.label } : {}),
        ...userPinConsent(token),
        warnings: pinWarnings(token.userPin),
        pinRules: await pinRulesFor(ctx, token),
      },
      (secrets) =>
        ctx.env.services.provisioning.importCertificate(params.tokenId, userPinOf(secrets, token), {
          certificate: params.certificate,
          ...(params.chain !== undefined ? { chain: params.chain } : {}),
          ...(params.label !== undefined ? { label: params.label } : {}),
        }),
    );
    ctx.audit.keyId = certificate.keyId;
    return { certificate };
  },
});
