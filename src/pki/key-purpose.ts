// The key-purpose rule (PROTOCOL.md section 4, `keyPurpose`): which certificates may sign documents and
// which may log in. One pure function used by the agent before every signature and by verifyAuthToken,
// so that a key the agent lets a page use as a raw-signature oracle is never a key the verifier
// accepts a login from. A leaf module: it reads the usage names of a described certificate only.
import { KelidError } from '../model/errors.js';
import type { CertificateUse, KeyPurpose } from '../model/types.js';

// Purposes (KeyPurpose, defined with the wire types):
// - `signing`: documents only (keyUsage nonRepudiation; or an extendedKeyUsage without clientAuth).
// - `authentication`: logins only (extendedKeyUsage clientAuth; or no extendedKeyUsage and
//   digitalSignature without nonRepudiation).
// - `dual-use`: both (nonRepudiation and clientAuth; or no keyUsage and no extendedKeyUsage at all,
//   which X.509 reads as "any use"); what the agent allows is config `keyPurpose.dualUse`.
// - `none`: neither: a keyUsage without digitalSignature and nonRepudiation (keyEncipherment only…).
export type { CertificateUse, KeyPurpose };

/** Config `keyPurpose.dualUse`: what dual-use certificates may do. */
export type DualUseMode = 'signing' | 'authentication' | 'cms-and-authentication';

export const DEFAULT_DUAL_USE: DualUseMode = 'signing';

/** The usage names of a certificate as describeCertificate and the wire Certificate give them. */
export interface CertificateUsages {
  /** keyUsage bit names; empty when the extension is absent. */
  keyUsage: readonly string[];
  /** extendedKeyUsage names (`clientAuth`, …) or dotted OIDs; empty when absent. */
  extendedKeyUsage: readonly string[];
}

const CLIENT_AUTH = new Set(['clientAuth', '1.3.6.1.5.5.7.3.2', 'anyExtendedKeyUsage', '2.5.29.37.0']);

/** The purpose of a certificate by the rule above. */
export function keyPurposeOf(c: CertificateUsages): KeyPurpose {
  const ku = new Set(c.keyUsage.map((u) => (u === 'contentCommitment' ? 'nonRepudiation' : u)));
  const noKu = ku.size === 0;
  const noEku = c.extendedKeyUsage.length === 0;
  const nonRepudiation = ku.has('nonRepudiation');
  // anyExtendedKeyUsage allows every purpose, clientAuth included: counting it keeps such a
  // certificate away from the raw-signature oracle when it is also a login key.
  const clientAuth = c.extendedKeyUsage.some((u) => CLIENT_AUTH.has(u));
  if (!noKu && !ku.has('digitalSignature') && !nonRepudiation) return 'none';
  const authentication = clientAuth || (noEku && !nonRepudiation);
  // An extendedKeyUsage without clientAuth keeps the key away from logins (RFC 5280 4.2.1.12).
  const signing = nonRepudiation || (!noEku && !clientAuth) || (noKu && noEku);
  if (authentication && signing) return 'dual-use';
  if (authentication) return 'authentication';
  if (signing) return 'signing';
  return 'none';
}

/** What the agent lets a certificate of `purpose` do under `dualUse`. */
export function allowedUses(purpose: KeyPurpose, dualUse: DualUseMode): CertificateUse[] {
  switch (purpose) {
    case 'signing':
      return ['raw', 'cms'];
    case 'authentication':
      return ['authentication'];
    case 'dual-use':
      // A CMS signature covers DER SignedAttributes that Kelid builds itself (a SET with contentType,
      // signingTime, messageDigest…), never 64 bytes chosen by a page, so it cannot be a login token.
      return dualUse === 'signing'
        ? ['raw', 'cms']
        : dualUse === 'authentication'
          ? ['authentication']
          : ['cms', 'authentication'];
    case 'none':
      return [];
  }
}

const NEEDS: Readonly<Record<CertificateUse, string>> = {
  raw: 'a signing certificate (keyUsage nonRepudiation)',
  cms: 'a signing certificate (keyUsage nonRepudiation)',
  authentication: 'an authentication certificate (extendedKeyUsage clientAuth)',
};

/** Throws ERR_KEY_PURPOSE unless a certificate with these usages may be used for `use`. */
export function assertCertificateUse(c: CertificateUsages, use: CertificateUse, dualUse: DualUseMode): void {
  const purpose = keyPurposeOf(c);
  if (allowedUses(purpose, dualUse).includes(use)) return;
  const what =
    purpose === 'none' ? 'is fit neither for signing nor for login' : `is a ${purpose} certificate`;
  const mode = purpose === 'dual-use' ? ` (keyPurpose.dualUse is "${dualUse}")` : '';
  throw new KelidError('ERR_KEY_PURPOSE', `this certificate ${what}${mode}; this call needs ${NEEDS[use]}`, {
    retriable: false,
    data: { keyPurpose: purpose, use },
  });
}
