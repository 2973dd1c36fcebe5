// config `revocation.enforceOnSign` (PROTOCOL.md section 8), applied before every signature:
// - block-revoked (default): revoked → ERR_CERTIFICATE_REVOKED; unknown or unavailable are allowed and
//   reported as a warning for the consent UI;
// - require-good: anything but a verified `good` is refused;
// - off: no status check.
// An expired or not yet valid certificate is refused under every policy, before any network access.
import { KelidError, isKelidError } from '../model/errors.js';
import { describeCertificate } from '../pki/certificate.js';
import type { Status } from '../model/types.js';
import type { SigningWarning, StatusChecker } from '../model/services.js';

export type EnforceOnSign = 'block-revoked' | 'require-good' | 'off';

export interface SigningStatusCheck {
  status?: Status;
  warning?: SigningWarning;
}

/** Throws ERR_CERTIFICATE_EXPIRED unless `now` is within the certificate's validity period. */
export function assertCertificateValidAt(certificate: Uint8Array, now: Date): void {
  const d = describeCertificate(certificate);
  const t = now.getTime();
  if (t < Date.parse(d.notBefore)) {
    throw new KelidError('ERR_CERTIFICATE_EXPIRED', 'the certificate is not valid yet', {
      data: { notBefore: d.notBefore },
    });
  }
  if (t > Date.parse(d.notAfter)) {
    throw new KelidError('ERR_CERTIFICATE_EXPIRED', 'the certificate has expired', {
      data: { notAfter: d.notAfter },
    });
  }
}

/**
 * Apply the signing policy to `certificate` (DER) at `now`. Resolves with the status (and a warning
 * when signing may go ahead without a `good` answer); throws ERR_CERTIFICATE_EXPIRED,
 * ERR_CERTIFICATE_REVOKED, or (require-good) ERR_STATUS_UNAVAILABLE.
 */
export async function checkBeforeSigning(
  service: StatusChecker,
  certificate: Uint8Array,
  issuers: readonly Uint8Array[] | undefined,
  policy: EnforceOnSign,
  now: Date = new Date(),
  maxAgeMs?: number,
): Promise<SigningStatusCheck> {
  assertCertificateValidAt(certificate, now);
  if (policy === 'off') return {};
  let status: Status;
  try {
    status = await service.check(certificate, {
      ...(issuers ? { issuers } : {}),
      ...(maxAgeMs !== undefined ? { maxAgeMs } : {}),
    });
  } catch (e) {
    if (isKelidError(e, 'ERR_STATUS_UNAVAILABLE') && policy === 'block-revoked') {
      return { warning: 'status-unavailable' };
    }
    throw e;
  }
  if (status.status === 'revoked') {
    throw new KelidError('ERR_CERTIFICATE_REVOKED', 'the certificate has been revoked', {
      data: {
        source: status.source,
        ...(status.revokedAt !== undefined ? { revokedAt: status.revokedAt } : {}),
        ...(status.reason !== undefined ? { reason: status.reason } : {}),
      },
    });
  }
  if (status.status === 'unknown') {
    if (policy === 'require-good') {
      // Retrying will not change what the responder knows.
      throw new KelidError('ERR_STATUS_UNAVAILABLE', 'the responder does not know this certificate', {
        retriable: false,
        data: { status: 'unknown', source: status.source },
      });
    }
    return { status, warning: 'status-unknown' };
  }
  return { status };
}

/**
 * `checkBeforeSigning` bound to a service and a policy: the shape the signing service takes.
 * `maxAgeMs` (config `revocation.maxAgeSeconds`): a status fetched longer ago is fetched again.
 */
export function createRevocationCheck(
  service: StatusChecker,
  policy: EnforceOnSign,
  now: () => Date = () => new Date(),
  maxAgeMs?: number,
): (certificate: Uint8Array, issuers: Uint8Array[]) => Promise<SigningStatusCheck> {
  return (certificate, issuers) => checkBeforeSigning(service, certificate, issuers, policy, now(), maxAgeMs);
}
