// Object identifiers and the usage names of PROTOCOL.md (csr.create input, Certificate output).

/** keyUsage bit names in bit order (RFC 5280 section 4.2.1.3). */
export const KEY_USAGE_NAMES = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
] as const;

export type KeyUsageName = (typeof KEY_USAGE_NAMES)[number];

/** Accepted spellings → bit number. `contentCommitment` is the X.509 (2008) name of bit 1. */
const KEY_USAGE_ALIASES: ReadonlyMap<string, number> = new Map([
  ...KEY_USAGE_NAMES.map((n, i) => [n.toLowerCase(), i] as const),
  ['contentcommitment', 1],
]);

export function keyUsageBit(name: string): number | undefined {
  return KEY_USAGE_ALIASES.get(name.toLowerCase());
}

/** extendedKeyUsage names → OID. */
export const EXTENDED_KEY_USAGE_OIDS = {
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  codeSigning: '1.3.6.1.5.5.7.3.3',
  emailProtection: '1.3.6.1.5.5.7.3.4',
  timeStamping: '1.3.6.1.5.5.7.3.8',
  ocspSigning: '1.3.6.1.5.5.7.3.9',
  documentSigning: '1.3.6.1.5.5.7.3.36',
  smartcardLogon: '1.3.6.1.4.1.311.20.2.2',
  anyExtendedKeyUsage: '2.5.29.37.0',
} as const;

export type ExtendedKeyUsageName = keyof typeof EXTENDED_KEY_USAGE_OIDS;

const EKU_BY_LOWER_NAME: ReadonlyMap<string, string> = new Map(
  Object.entries(EXTENDED_KEY_USAGE_OIDS).map(([n, oid]) => [n.toLowerCase(), oid]),
);
const EKU_NAME_BY_OID: ReadonlyMap<string, string> = new Map(
  Object.entries(EXTENDED_KEY_USAGE_OIDS).map(([n, oid]) => [oid, n]),
);

/** OID for an extendedKeyUsage name (case-insensitive), or undefined. */
export function extendedKeyUsageOid(name: string): string | undefined {
  return EKU_BY_LOWER_NAME.get(name.toLowerCase());
}

/** Name for an extendedKeyUsage OID; the dotted OID itself when it has no name. */
export function extendedKeyUsageName(oid: string): string {
  return EKU_NAME_BY_OID.get(oid) ?? oid;
}

export const OID = {
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
  rsaEncryption: '1.2.840.113549.1.1.1',
  rsassaPss: '1.2.840.113549.1.1.10',
  mgf1: '1.2.840.113549.1.1.8',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  sha384WithRSAEncryption: '1.2.840.113549.1.1.12',
  sha512WithRSAEncryption: '1.2.840.113549.1.1.13',
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  ecdsaWithSHA384: '1.2.840.10045.4.3.3',
  ecdsaWithSHA512: '1.2.840.10045.4.3.4',
  extensionRequest: '1.2.840.113549.1.9.14',
  upn: '1.3.6.1.4.1.311.20.2.3',
  keyUsage: '2.5.29.15',
  extendedKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  crlDistributionPoints: '2.5.29.31',
  authorityInfoAccess: '1.3.6.1.5.5.7.1.1',
  ocsp: '1.3.6.1.5.5.7.48.1',
  caIssuers: '1.3.6.1.5.5.7.48.2',
} as const;
