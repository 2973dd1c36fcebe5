import { createHash } from 'node:crypto';
import { KelidError } from '../../model/errors.js';
import { parseCertificateInput } from '../../pki/certificate.js';
import { defineMethod } from '../method.js';
import { InvalidParams, certificateId, certificateText, object } from '../schema.js';

type Params = { certificateId: string } | { certificate: string; issuer?: string };

/**
 * `certificates.status`: OCSP first, CRL second, for a certificate on a token (`certificateId`) or one
 * the caller gives (`certificate`, `issuer?`). The second form makes the agent contact the URLs in a
 * certificate the page chose, so it is kept to the `ra` tier and the console: a site may ask only about
 * certificates on the tokens (ERR_FORBIDDEN otherwise). Such a certificate's URLs reach public addresses
 * only (config `revocation.allowPrivateNetworks`), and failures come back without details.
 */
export const certificatesStatus = defineMethod<Params>({
  name: 'certificates.status',
  tiers: ['site', 'ra', 'console'],
  schema: {
    oneOf: [
      object({ certificateId }, ['certificateId']),
      object({ certificate: certificateText, issuer: certificateText }, ['certificate']),
    ],
  },
  async run(ctx, params) {
    // The audit line names the certificate actually checked, whichever way it was given.
    const audit = (der: Uint8Array): void => {
      ctx.audit.certificateSha256 = createHash('sha256').update(der).digest('hex');
    };
    if ('certificateId' in params) {
      return ctx.env.services.status.checkCertificateId(params.certificateId, { onCertificate: audit });
    }
    if (ctx.connection.tier === 'site') {
      throw new KelidError(
        'ERR_FORBIDDEN',
        'a site may check only certificates on the tokens (certificateId)',
      );
    }
    const parse = (text: string, what: string): Uint8Array => {
      try {
        return parseCertificateInput(text);
      } catch {
        throw new InvalidParams(`params.${what} is not a readable X.509 certificate`);
      }
    };
    const certificate = parse(params.certificate, 'certificate');
    const issuer = params.issuer === undefined ? undefined : parse(params.issuer, 'issuer');
    audit(certificate);
    return ctx.env.services.status.checkCertificate(certificate, issuer);
  },
});
