// Certification path validation for relying parties (verifyAuthToken): RFC 5280 section 6, the parts
// a login certificate needs. Every certificate of the path, trust anchor included, is valid at `now`;
// every link's signature verifies with the issuer's key; every CA has basicConstraints cA, keyCertSign
// when it has a keyUsage, and its pathLenConstraint and nameConstraints (directoryName, dNSName,
// rfc822Name; any other critical constraint type is refused) hold below it; below the anchor, no
// certificate has a critical extension not understood here. Certificate policies are not processed. Trust anchors are the caller's certificates, matched byte for byte.
import { X509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { BasicConstraints, Certificate, NameConstraints, SubjectAlternativeName } from '@peculiar/asn1-x509';
import type { GeneralName, GeneralSubtrees, Name } from '@peculiar/asn1-x509';
import { describeCertificate, type CertificateDescription } from './certificate.js';
import { bytesEqual } from './der.js';
import { OID } from './oids.js';

const MAX_PATH_LENGTH = 8;
const NAME_CONSTRAINTS = '2.5.29.30';
// RFC 5280 6.1.3/6.1.5: a certificate with a critical extension the verifier does not recognize is
// refused (a CA restricts a certificate that way). These are read above, or are the policy
// extensions, recognized and not processed (see the top of this file).
const UNDERSTOOD_CRITICAL: ReadonlySet<string> = new Set([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extendedKeyUsage,
  OID.subjectAltName,
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
  NAME_CONSTRAINTS,
  '2.5.29.32', // certificatePolicies
  '2.5.29.33', // policyMappings
  '2.5.29.36', // policyConstraints
  '2.5.29.54', // inhibitAnyPolicy
]);
const EMAIL_ADDRESS = '1.2.840.113549.1.9.1';

interface PathCertificate {
  der: Uint8Array;
  x509: X509Certificate;
  d: CertificateDescription;
  asn: Certificate;
}

export type PathResult = { ok: true; path: Uint8Array[] } | { ok: false; detail: string };

function load(der: Uint8Array): PathCertificate {
  return {
    der,
    x509: new X509Certificate(der),
    d: describeCertificate(der),
    asn: AsnConvert.parse(der, Certificate),
  };
}

function extension(c: PathCertificate, oid: string): { critical: boolean; value: ArrayBuffer } | undefined {
  const e = c.asn.tbsCertificate.extensions?.find((x) => x.extnID === oid);
  return e ? { critical: e.critical, value: e.extnValue.buffer } : undefined;
}

function validAt(c: PathCertificate, now: Date): boolean {
  const t = now.getTime();
  return Date.parse(c.d.notBefore) <= t && t <= Date.parse(c.d.notAfter);
}

function selfIssued(c: PathCertificate): boolean {
  return bytesEqual(c.d.subjectDer, c.d.issuerDer);
}

/**
 * A path from `leafDer` up to one of `anchors` through `intermediates` (DER) that passes every check
 * above at `now`; otherwise the reason the last candidate path failed. The leaf's own purpose is the
 * caller's business (key-purpose.ts).
 */
export function validateCertificatePath(
  leafDer: Uint8Array,
  anchors: readonly Uint8Array[],
  intermediates: readonly Uint8Array[],
  now: Date,
): PathResult {
  const leaf = load(leafDer);
  const pool = [...anchors, ...intermediates].map(load);
  const isAnchor = (c: PathCertificate): boolean => anchors.some((a) => bytesEqual(a, c.der));
  let lastFailure = 'no path to a trusted root';

  // Depth-first over the issuers whose name matches and whose key verifies the link's signature.
  const search = (chain: PathCertificate[]): PathCertificate[] | undefined => {
    const current = chain[chain.length - 1]!;
    if (isAnchor(current)) {
      const failure = checkPath([...chain].reverse(), now);
      if (failure === undefined) return chain;
      lastFailure = failure;
      return undefined;
    }
    if (chain.length >= MAX_PATH_LENGTH) return undefined;
    for (const issuer of pool) {
      if (chain.some((c) => bytesEqual(c.der, issuer.der))) continue;
      if (!bytesEqual(issuer.d.subjectDer, current.d.issuerDer)) continue;
      let signed = false;
      try {
        signed = current.x509.verify(issuer.x509.publicKey);
      } catch {
        signed = false;
      }
      if (!signed) continue;
      const found = search([...chain, issuer]);
      if (found) return found;
    }
    return undefined;
  };
  const found = search([leaf]);
  return found ? { ok: true, path: found.map((c) => c.der) } : { ok: false, detail: lastFailure };
}

/** `path` runs from the trust anchor (first) to the leaf (last). Undefined when it is valid. */
function checkPath(path: PathCertificate[], now: Date): string | undefined {
  for (const c of path) if (!validAt(c, now)) return `${c.d.subject} is not valid at this time`;
  // The trust anchor is the caller's choice (its extensions are not processed); every other one, the
  // leaf included, must have no critical extension this verifier does not understand.
  for (const c of path.slice(1)) {
    const unknown = c.asn.tbsCertificate.extensions?.find(
      (x) => x.critical && !UNDERSTOOD_CRITICAL.has(x.extnID),
    );
    if (unknown)
      return `${c.d.subject} has a critical extension this verifier does not understand (${unknown.extnID})`;
  }
  for (let i = 0; i < path.length - 1; i++) {
    const ca = path[i]!;
    if (!ca.d.isCa) return `${ca.d.subject} is not a CA (basicConstraints cA)`;
    if (ca.d.keyUsage.length > 0 && !ca.d.keyUsage.includes('keyCertSign'))
      return `${ca.d.subject} may not sign certificates (keyUsage keyCertSign)`;
    const bc = extension(ca, OID.basicConstraints);
    const pathLen = bc ? AsnConvert.parse(bc.value, BasicConstraints).pathLenConstraint : undefined;
    if (pathLen !== undefined) {
      // Non-self-issued intermediates below this CA, the leaf excluded.
      const below = path.slice(i + 1, -1).filter((c) => !selfIssued(c)).length;
      if (below > pathLen) return `${ca.d.subject} allows ${pathLen} CA(s) below it (pathLenConstraint)`;
    }
    const nc = extension(ca, NAME_CONSTRAINTS);
    if (nc) {
      const constraints = AsnConvert.parse(nc.value, NameConstraints);
      for (let j = i + 1; j < path.length; j++) {
        const subject = path[j]!;
        if (j < path.length - 1 && selfIssued(subject)) continue;
        const failure = checkNameConstraints(constraints, nc.critical, subject);
        if (failure)
          return `${subject.d.subject} violates the name constraints of ${ca.d.subject}: ${failure}`;
      }
    }
  }
  return undefined;
}

type NameType = 'directoryName' | 'dNSName' | 'rfc822Name';

interface CertificateNames {
  directoryName: Name[];
  dNSName: string[];
  rfc822Name: string[];
}

function namesOf(c: PathCertificate): CertificateNames {
  const subject = c.asn.tbsCertificate.subject;
  const out: CertificateNames = {
    directoryName: subject.length > 0 ? [subject] : [],
    dNSName: [],
    rfc822Name: [],
  };
  // RFC 5280 4.2.1.10: emailAddress attributes of the subject are constrained as rfc822Names.
  for (const rdn of subject)
    for (const atv of rdn) if (atv.type === EMAIL_ADDRESS) out.rfc822Name.push(atv.value.toString());
  const san = extension(c, OID.subjectAltName);
  if (san) {
    for (const n of AsnConvert.parse(san.value, SubjectAlternativeName)) {
      if (n.dNSName !== undefined) out.dNSName.push(n.dNSName);
      if (n.rfc822Name !== undefined) out.rfc822Name.push(n.rfc822Name);
      if (n.directoryName !== undefined) out.directoryName.push(n.directoryName);
    }
  }
  return out;
}

function typeOf(n: GeneralName): NameType | 'other' {
  if (n.directoryName !== undefined) return 'directoryName';
  if (n.dNSName !== undefined) return 'dNSName';
  if (n.rfc822Name !== undefined) return 'rfc822Name';
  return 'other';
}

function normalizeValue(v: string): string {
  return v.trim().replace(/\s+/g, ' ').toLowerCase();
}

function rdnEqual(a: Name[number], b: Name[number]): boolean {
  if (a.length !== b.length) return false;
  return a.every((x) =>
    b.some(
      (y) => x.type === y.type && normalizeValue(x.value.toString()) === normalizeValue(y.value.toString()),
    ),
  );
}

function withinDirectory(name: Name, base: Name): boolean {
  return base.length <= name.length && base.every((rdn, i) => rdnEqual(rdn, name[i]!));
}

function withinDns(name: string, base: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, '');
  const b = base.toLowerCase().replace(/\.$/, '');
  if (b === '') return true;
  if (b.startsWith('.')) return n.endsWith(b);
  return n === b || n.endsWith(`.${b}`);
}

function withinEmail(name: string, base: string): boolean {
  const n = name.toLowerCase();
  const b = base.toLowerCase();
  const at = n.lastIndexOf('@');
  if (at < 0) return false;
  if (b.includes('@')) return n === b;
  const host = n.slice(at + 1);
  return b.startsWith('.') ? host.endsWith(b) : host === b;
}

function within(type: NameType, name: Name | string, base: GeneralName): boolean {
  switch (type) {
    case 'directoryName':
      return withinDirectory(name as Name, base.directoryName!);
    case 'dNSName':
      return withinDns(name as string, base.dNSName!);
    case 'rfc822Name':
      return withinEmail(name as string, base.rfc822Name!);
  }
}

function checkNameConstraints(
  nc: NameConstraints,
  critical: boolean,
  c: PathCertificate,
): string | undefined {
  const subtrees = (s: GeneralSubtrees | undefined) => [...(s ?? [])];
  const permitted = subtrees(nc.permittedSubtrees);
  const excluded = subtrees(nc.excludedSubtrees);
  for (const st of [...permitted, ...excluded]) {
    if (st.minimum !== 0 || st.maximum !== undefined) return 'minimum/maximum in a name constraint';
    if (typeOf(st.base) === 'other' && critical)
      return 'a name constraint of a type this verifier does not check';
  }
  const names = namesOf(c);
  for (const type of ['directoryName', 'dNSName', 'rfc822Name'] as const) {
    const allowed = permitted.filter((st) => typeOf(st.base) === type);
    const denied = excluded.filter((st) => typeOf(st.base) === type);
    // A value outside DirectoryString and IA5String (a NumericString…) reads as hex here, and would
    // slip past an excluded subtree that names the same text: such names are not compared at all.
    if (
      type === 'directoryName' &&
      allowed.length + denied.length > 0 &&
      names.directoryName.some((n) => n.some((rdn) => rdn.some((atv) => atv.value.anyValue !== undefined)))
    )
      return 'a directoryName with a value type this verifier does not compare';
    for (const name of names[type]) {
      if (allowed.length > 0 && !allowed.some((st) => within(type, name, st.base)))
        return `a ${type} outside the permitted subtrees`;
      if (denied.some((st) => within(type, name, st.base))) return `a ${type} in the excluded subtrees`;
    }
  }
  return undefined;
}
