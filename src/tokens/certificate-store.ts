import { createHash } from 'node:crypto';
import { KelidError, isKelidError } from '../model/errors.js';
import { CKA, CKO, certificateTemplate, decodeUlong, decodeUtf8 } from '../pkcs11/templates.js';
import { describeCertificate, publicKeysEqual } from '../pki/certificate.js';
import type { CertificateDescription } from '../pki/certificate.js';
import { bytesEqual, toHex } from '../pki/der.js';
import { keyIdFromSpki } from '../pki/key-id.js';
import { DEFAULT_DUAL_USE, allowedUses, keyPurposeOf } from '../pki/key-purpose.js';
import type { DualUseMode } from '../pki/key-purpose.js';
import type { Certificate, CertificateCategory } from '../model/types.js';
import { listPrivateKeys, listPublicKeys } from './key-store.js';
import type { TokenSession } from './token-service.js';

const CERT_ATTRS = [CKA.ID, CKA.LABEL, CKA.VALUE, CKA.CERTIFICATE_CATEGORY];

export interface CertificateObject {
  handle: string;
  /** hex CKA_ID */
  id: string;
  label: string;
  der: Uint8Array;
  categoryValue: number;
  description: CertificateDescription;
}

/** Opaque, stable id of a certificate on a token. */
export function certificateIdOf(tokenId: string, fingerprintSha256: string): string {
  return createHash('sha256').update(`${tokenId}\u0000${fingerprintSha256}`).digest('hex').slice(0, 32);
}

/** Every X.509 certificate object on the token (public objects; unparseable ones are skipped). */
export async function listCertificateObjects(session: TokenSession): Promise<CertificateObject[]> {
  const found = await session.call('findObjects', {
    template: [{ type: CKA.CLASS, value: CKO.CERTIFICATE }],
    attributes: CERT_ATTRS,
  });
  const out: CertificateObject[] = [];
  for (const o of found) {
    const der = o.values[CKA.VALUE];
    if (!der || der.length === 0) continue;
    let description: CertificateDescription;
    try {
      description = describeCertificate(der);
    } catch {
      continue;
    }
    out.push({
      handle: o.handle,
      id: toHex(o.values[CKA.ID] ?? new Uint8Array()),
      label: decodeUtf8(o.values[CKA.LABEL]),
      der,
      categoryValue: decodeUlong(o.values[CKA.CERTIFICATE_CATEGORY]) ?? 0,
      description,
    });
  }
  return out;
}

/** The wire Certificate objects of a token. `hasPrivateKey`: a key of the same id or public key is on the token. */
export async function listCertificates(
  session: TokenSession,
  dualUse: DualUseMode = DEFAULT_DUAL_USE,
  /** The token's certificate objects, when the caller has just read them. */
  objects?: CertificateObject[],
): Promise<Certificate[]> {
  const certs = objects ?? (await listCertificateObjects(session));
  const publics = await listPublicKeys(session);
  // Private keys are private objects: visible only when logged in; public keys stand in for them.
  const privates = await listPrivateKeys(session).catch(() => []);
  return certs.map((c) => {
    const paired =
      privates.some((k) => k.keyId !== '' && k.keyId === c.id) ||
      publics.some((k) => k.keyId === c.id || publicKeysEqual(k.spki, c.description.spki));
    const wire = toWireCertificate(session.token.tokenId, c, paired, dualUse);
    // The signing service allows a use only when every certificate of the key allows it: say so here.
    for (const other of certs) {
      if (other === c || !sameKey(other.description.spki, c.description.spki)) continue;
      const theirs = allowedUses(keyPurposeOf(other.description), dualUse);
      wire.allowedUses = wire.allowedUses.filter((u) => theirs.includes(u));
    }
    return wire;
  });
}

function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  try {
    return publicKeysEqual(a, b);
  } catch {
    return false;
  }
}

function categoryOf(c: CertificateObject, paired: boolean): CertificateCategory {
  switch (c.categoryValue) {
    case 1:
      return 'user';
    case 2:
      return 'authority';
    case 3:
      return 'other';
    default:
      return paired ? 'user' : c.description.isCa ? 'authority' : 'other';
  }
}

export function toWireCertificate(
  tokenId: string,
  c: CertificateObject,
  paired: boolean,
  dualUse: DualUseMode = DEFAULT_DUAL_USE,
): Certificate {
  const d = c.description;
  const keyPurpose = keyPurposeOf(d);
  return {
    certificateId: certificateIdOf(tokenId, d.fingerprintSha256),
    tokenId,
    keyId: c.id || (d.keyId ?? ''),
    label: c.label,
    subject: d.subject,
    issuer: d.issuer,
    serialNumber: d.serialNumber,
    notBefore: d.notBefore,
    notAfter: d.notAfter,
    keyUsage: d.keyUsage,
    extendedKeyUsage: d.extendedKeyUsage,
    fingerprintSha256: d.fingerprintSha256,
    certificate: Buffer.from(c.der).toString('base64'),
    hasPrivateKey: paired,
    category: categoryOf(c, paired),
    keyPurpose,
    allowedUses: allowedUses(keyPurpose, dualUse),
  };
}

function commonName(subject: string): string {
  const m = /(?:^|,)CN=((?:\\.|[^,])*)/.exec(subject);
  return (m?.[1] ?? subject).replace(/\\(.)/g, '$1').slice(0, 64);
}

export interface ImportResult {
  certificate: Certificate;
  created: number;
}

/**
 * Write an issued certificate next to its key (caller holds the user login on a R/W session):
 * the key whose public key equals the certificate's decides CKA_ID and label; the keys get
 * CKA_SUBJECT; chain certificates are stored once as "authority". Idempotent; on any failure
 * everything this call created is destroyed again.
 */
export async function importCertificate(
  session: TokenSession,
  input: { der: Uint8Array; chain: Uint8Array[]; label?: string },
  dualUse: DualUseMode = DEFAULT_DUAL_USE,
): Promise<ImportResult> {
  const leaf = describeCertificate(input.der);
  const chain = input.chain.map((der) => ({ der, d: describeCertificate(der) }));
  const publics = await listPublicKeys(session);
  const privates = await listPrivateKeys(session);
  const leafKeyId = keyIdFromSpki(leaf.spki);
  const pub = publics.find((k) => publicKeysEqual(k.spki, leaf.spki));
  const priv = privates.find((k) => k.keyId === (pub?.keyId ?? leafKeyId));
  if (!pub && !priv) {
    throw new KelidError('ERR_CERTIFICATE_MISMATCH', 'no key on the token matches this certificate');
  }
  const keyId = pub?.keyId ?? priv!.keyId;
  const label = input.label ?? pub?.label ?? priv?.label ?? commonName(leaf.subject);
  const existing = await listCertificateObjects(session);
  const created: string[] = [];
  try {
    // The user certificate is written last: once it is on the token, so are its chain and the keys'
    // CKA_SUBJECT. A crash before that leaves the key pending (and maybe some of the chain, which the
    // retry does not write twice); the retry finds what is there and completes it.
    for (const ca of chain) {
      if (bytesEqual(ca.der, input.der)) continue;
      if (existing.some((c) => bytesEqual(c.der, ca.der))) continue;
      const { handle } = await session.call('createObject', {
        template: certificateTemplate({
          der: ca.der,
          id: Buffer.from(ca.d.subjectKeyIdentifier ?? keyIdFromSpki(ca.d.spki), 'hex'),
          label: commonName(ca.d.subject),
          subject: ca.d.subjectDer,
          issuer: ca.d.issuerDer,
          serialNumber: ca.d.serialDer,
          category: 'authority',
        }),
      });
      created.push(handle);
      existing.push({ handle, id: '', label: '', der: ca.der, categoryValue: 2, description: ca.d });
    }
    for (const k of [pub, priv]) {
      if (k)
        await session.call('setAttributes', {
          handle: k.handle,
          template: [{ type: CKA.SUBJECT, value: leaf.subjectDer }],
        });
    }
    let leafObj = existing.find((c) => bytesEqual(c.der, input.der));
    if (!leafObj) {
      const { handle } = await session.call('createObject', {
        template: certificateTemplate({
          der: input.der,
          id: Buffer.from(keyId, 'hex'),
          label,
          subject: leaf.subjectDer,
          issuer: leaf.issuerDer,
          serialNumber: leaf.serialDer,
          category: 'user',
        }),
      });
      created.push(handle);
      leafObj = { handle, id: keyId, label, der: input.der, categoryValue: 1, description: leaf };
    }
    return {
      certificate: toWireCertificate(session.token.tokenId, leafObj, true, dualUse),
      created: created.length,
    };
  } catch (e) {
    for (const handle of created.reverse())
      await session.call('destroyObject', { handle }).catch(() => undefined);
    throw isKelidError(e)
      ? e
      : new KelidError('ERR_INTERNAL', 'the certificate could not be written', { cause: e });
  }
}

export type DeleteScope = 'certificate' | 'keypair' | 'all';

/** Delete the user certificate(s), the key pair, or both of a keyId (caller holds the user login). */
export async function deleteObjects(
  session: TokenSession,
  keyId: string,
  scope: DeleteScope,
): Promise<number> {
  const handles: string[] = [];
  if (scope === 'certificate' || scope === 'all') {
    const certs = (await listCertificateObjects(session)).filter(
      (c) => c.id === keyId && c.categoryValue !== 2,
    );
    if (certs.length === 0 && scope === 'certificate') {
      throw new KelidError('ERR_CERTIFICATE_NOT_FOUND', 'no certificate with this keyId on the token', {
        data: { keyId },
      });
    }
    handles.push(...certs.map((c) => c.handle));
  }
  if (scope === 'keypair' || scope === 'all') {
    const keys = [
      ...(await listPrivateKeys(session)).filter((k) => k.keyId === keyId),
      ...(await listPublicKeys(session)).filter((k) => k.keyId === keyId),
    ];
    if (keys.length === 0 && scope === 'keypair') {
      throw new KelidError('ERR_KEY_NOT_FOUND', 'no key with this keyId on the token', { data: { keyId } });
    }
    handles.push(...keys.map((k) => k.handle));
  }
  if (handles.length === 0)
    throw new KelidError('ERR_KEY_NOT_FOUND', 'nothing with this keyId on the token', { data: { keyId } });
  for (const handle of handles) await session.call('destroyObject', { handle });
  return handles.length;
}
