// PKCS#11 numbers and object templates. Templates are spelled out attribute by attribute: SoftHSM
// (and other modules) default usage attributes to true and CKA_SENSITIVE to false.

import type { AttrTemplateItem, AttrValue } from './host-protocol.js';
import { pkcs11js } from './pkcs11js.js';

const P = pkcs11js;

export const CKA = {
  CLASS: P.CKA_CLASS,
  TOKEN: P.CKA_TOKEN,
  PRIVATE: P.CKA_PRIVATE,
  LABEL: P.CKA_LABEL,
  VALUE: P.CKA_VALUE,
  CERTIFICATE_TYPE: P.CKA_CERTIFICATE_TYPE,
  ISSUER: P.CKA_ISSUER,
  SERIAL_NUMBER: P.CKA_SERIAL_NUMBER,
  TRUSTED: P.CKA_TRUSTED,
  CERTIFICATE_CATEGORY: P.CKA_CERTIFICATE_CATEGORY,
  KEY_TYPE: P.CKA_KEY_TYPE,
  SUBJECT: P.CKA_SUBJECT,
  ID: P.CKA_ID,
  SENSITIVE: P.CKA_SENSITIVE,
  ENCRYPT: P.CKA_ENCRYPT,
  DECRYPT: P.CKA_DECRYPT,
  WRAP: P.CKA_WRAP,
  UNWRAP: P.CKA_UNWRAP,
  SIGN: P.CKA_SIGN,
  SIGN_RECOVER: P.CKA_SIGN_RECOVER,
  VERIFY: P.CKA_VERIFY,
  VERIFY_RECOVER: P.CKA_VERIFY_RECOVER,
  DERIVE: P.CKA_DERIVE,
  MODULUS: P.CKA_MODULUS,
  MODULUS_BITS: P.CKA_MODULUS_BITS,
  PUBLIC_EXPONENT: P.CKA_PUBLIC_EXPONENT,
  EXTRACTABLE: P.CKA_EXTRACTABLE,
  LOCAL: P.CKA_LOCAL,
  NEVER_EXTRACTABLE: P.CKA_NEVER_EXTRACTABLE,
  ALWAYS_SENSITIVE: P.CKA_ALWAYS_SENSITIVE,
  MODIFIABLE: P.CKA_MODIFIABLE,
  EC_PARAMS: P.CKA_EC_PARAMS,
  EC_POINT: P.CKA_EC_POINT,
  ALWAYS_AUTHENTICATE: P.CKA_ALWAYS_AUTHENTICATE,
} as const;

export const CKO = {
  DATA: P.CKO_DATA,
  CERTIFICATE: P.CKO_CERTIFICATE,
  PUBLIC_KEY: P.CKO_PUBLIC_KEY,
  PRIVATE_KEY: P.CKO_PRIVATE_KEY,
} as const;

export const CKK = { RSA: P.CKK_RSA, EC: P.CKK_EC } as const;
export const CKC_X_509 = P.CKC_X_509;

/** CKA_CERTIFICATE_CATEGORY values. */
export const CERT_CATEGORY = { unspecified: 0, user: 1, authority: 2, other: 3 } as const;

export const CKM = {
  RSA_PKCS_KEY_PAIR_GEN: P.CKM_RSA_PKCS_KEY_PAIR_GEN,
  EC_KEY_PAIR_GEN: P.CKM_EC_KEY_PAIR_GEN,
  RSA_PKCS: P.CKM_RSA_PKCS,
  RSA_PKCS_PSS: P.CKM_RSA_PKCS_PSS,
  ECDSA: P.CKM_ECDSA,
  SHA256: P.CKM_SHA256,
  SHA384: P.CKM_SHA384,
  SHA512: P.CKM_SHA512,
  SHA256_RSA_PKCS: P.CKM_SHA256_RSA_PKCS,
  SHA384_RSA_PKCS: P.CKM_SHA384_RSA_PKCS,
  SHA512_RSA_PKCS: P.CKM_SHA512_RSA_PKCS,
} as const;

export const CKG_MGF1 = {
  'SHA-256': P.CKG_MGF1_SHA256,
  'SHA-384': P.CKG_MGF1_SHA384,
  'SHA-512': P.CKG_MGF1_SHA512,
} as const;
export const CKM_HASH = {
  'SHA-256': P.CKM_SHA256,
  'SHA-384': P.CKM_SHA384,
  'SHA-512': P.CKM_SHA512,
} as const;
export const CK_PARAMS_RSA_PSS = P.CK_PARAMS_RSA_PSS;

/** CK_TOKEN_INFO flags. */
export const CKF = {
  RNG: 0x1,
  WRITE_PROTECTED: 0x2,
  LOGIN_REQUIRED: 0x4,
  USER_PIN_INITIALIZED: 0x8,
  PROTECTED_AUTHENTICATION_PATH: 0x100,
  TOKEN_INITIALIZED: 0x400,
  USER_PIN_COUNT_LOW: 0x10000,
  USER_PIN_FINAL_TRY: 0x20000,
  USER_PIN_LOCKED: 0x40000,
  USER_PIN_TO_BE_CHANGED: 0x80000,
  SO_PIN_COUNT_LOW: 0x100000,
  SO_PIN_FINAL_TRY: 0x200000,
  SO_PIN_LOCKED: 0x400000,
  SO_PIN_TO_BE_CHANGED: 0x800000,
} as const;

/** CKF_HW etc. of CK_MECHANISM_INFO. */
export const CKF_MECH = { SIGN: 0x800, GENERATE_KEY_PAIR: 0x10000 } as const;

/** DER-encoded namedCurve OIDs for CKA_EC_PARAMS. */
export const EC_PARAMS: Readonly<Record<'P-256' | 'P-384', Uint8Array>> = {
  'P-256': Uint8Array.from([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
  'P-384': Uint8Array.from([0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]),
};

/** Per-module template overrides from native-config quirks: attribute name (without CKA_) → value. */
export interface TemplateQuirks {
  private?: Record<string, AttrValue>;
  public?: Record<string, AttrValue>;
}

export interface KeyPairTemplateOptions {
  label: string;
  /** Temporary CKA_ID until the real one (SHA-1 of the modulus / EC point) is known. */
  id: Uint8Array;
  alwaysAuthenticate: boolean;
  quirks?: TemplateQuirks;
}

function applyQuirks(
  base: AttrTemplateItem[],
  overrides: Record<string, AttrValue> | undefined,
): AttrTemplateItem[] {
  if (!overrides) return base;
  const out = [...base];
  for (const [name, value] of Object.entries(overrides)) {
    const type = (CKA as Record<string, number>)[name];
    if (type === undefined) continue;
    const i = out.findIndex((a) => a.type === type);
    if (i >= 0) out[i] = { type, value };
    else out.push({ type, value });
  }
  return out;
}

/** Private key: token, private, sensitive, not extractable, sign only. Public key: verify only. */
export function signingKeyPairTemplates(
  algorithm: { name: 'RSA'; modulusLength: number } | { name: 'EC'; namedCurve: 'P-256' | 'P-384' },
  o: KeyPairTemplateOptions,
): { mechanism: number; publicTemplate: AttrTemplateItem[]; privateTemplate: AttrTemplateItem[] } {
  const common = (cls: number): AttrTemplateItem[] => [
    { type: CKA.CLASS, value: cls },
    { type: CKA.KEY_TYPE, value: algorithm.name === 'RSA' ? CKK.RSA : CKK.EC },
    { type: CKA.TOKEN, value: true },
    { type: CKA.LABEL, value: o.label },
    { type: CKA.ID, value: o.id },
  ];
  const publicTemplate: AttrTemplateItem[] = [
    ...common(CKO.PUBLIC_KEY),
    { type: CKA.PRIVATE, value: false },
    { type: CKA.VERIFY, value: true },
    { type: CKA.ENCRYPT, value: false },
    { type: CKA.WRAP, value: false },
    { type: CKA.VERIFY_RECOVER, value: false },
    { type: CKA.DERIVE, value: false },
  ];
  const privateTemplate: AttrTemplateItem[] = [
    ...common(CKO.PRIVATE_KEY),
    { type: CKA.PRIVATE, value: true },
    { type: CKA.SENSITIVE, value: true },
    { type: CKA.EXTRACTABLE, value: false },
    { type: CKA.SIGN, value: true },
    { type: CKA.SIGN_RECOVER, value: false },
    { type: CKA.DECRYPT, value: false },
    { type: CKA.UNWRAP, value: false },
    { type: CKA.DERIVE, value: false },
  ];
  if (o.alwaysAuthenticate) privateTemplate.push({ type: CKA.ALWAYS_AUTHENTICATE, value: true });
  if (algorithm.name === 'RSA') {
    publicTemplate.push(
      { type: CKA.MODULUS_BITS, value: algorithm.modulusLength },
      { type: CKA.PUBLIC_EXPONENT, value: Uint8Array.from([1, 0, 1]) },
    );
  } else {
    publicTemplate.push({ type: CKA.EC_PARAMS, value: EC_PARAMS[algorithm.namedCurve] });
  }
  return {
    mechanism: algorithm.name === 'RSA' ? CKM.RSA_PKCS_KEY_PAIR_GEN : CKM.EC_KEY_PAIR_GEN,
    publicTemplate: applyQuirks(publicTemplate, o.quirks?.public),
    privateTemplate: applyQuirks(privateTemplate, o.quirks?.private),
  };
}

export interface CertificateTemplateOptions {
  der: Uint8Array;
  id: Uint8Array;
  label: string;
  subject: Uint8Array;
  issuer: Uint8Array;
  serialNumber: Uint8Array;
  category: keyof typeof CERT_CATEGORY;
}

/** X.509 certificate object; CKA_TRUSTED is left alone (only the SO may set it). */
export function certificateTemplate(o: CertificateTemplateOptions): AttrTemplateItem[] {
  return [
    { type: CKA.CLASS, value: CKO.CERTIFICATE },
    { type: CKA.CERTIFICATE_TYPE, value: CKC_X_509 },
    { type: CKA.TOKEN, value: true },
    { type: CKA.PRIVATE, value: false },
    { type: CKA.MODIFIABLE, value: true },
    { type: CKA.LABEL, value: o.label },
    { type: CKA.ID, value: o.id },
    { type: CKA.SUBJECT, value: o.subject },
    { type: CKA.ISSUER, value: o.issuer },
    { type: CKA.SERIAL_NUMBER, value: o.serialNumber },
    { type: CKA.VALUE, value: o.der },
    { type: CKA.CERTIFICATE_CATEGORY, value: CERT_CATEGORY[o.category] },
  ];
}

/** CK_BBOOL from a raw attribute value. */
export function decodeBool(v: Uint8Array | null | undefined): boolean | undefined {
  if (!v || v.length === 0) return undefined;
  return v[0] !== 0;
}

/** CK_ULONG (native byte order and size: 8 bytes on LP64, 4 on Windows) from a raw attribute value. */
export function decodeUlong(v: Uint8Array | null | undefined): number | undefined {
  if (!v || v.length === 0) return undefined;
  const b = Buffer.from(v.buffer, v.byteOffset, v.length);
  if (b.length >= 8) return Number(b.readBigUInt64LE(0));
  if (b.length >= 4) return b.readUInt32LE(0);
  return b[0];
}

export function decodeUtf8(v: Uint8Array | null | undefined): string {
  if (!v) return '';
  return Buffer.from(v).toString('utf8');
}
