// PKCS#10 certification requests (RFC 2986), signed through a DigestSigner: the request is hashed
// here and only the digest goes to the token.
import {
  createHash,
  createPublicKey,
  constants as cryptoConstants,
  verify as cryptoVerify,
} from 'node:crypto';
import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import { Attributes, CertificationRequestInfo } from '@peculiar/asn1-csr';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  Attribute,
  ExtendedKeyUsage,
  Extension,
  Extensions,
  GeneralName,
  GeneralNames,
  OtherName,
  SubjectPublicKeyInfo,
} from '@peculiar/asn1-x509';
import { KelidError, toKelidError } from '../model/errors.js';
import type { DigestAlgorithm, KeyAlgorithm, SignatureScheme } from '../model/types.js';
import type { DigestSigner } from './signer.js';
import {
  DIGEST_LENGTH,
  DIGEST_NODE_NAME,
  TAG_BIT_STRING,
  TAG_INTEGER,
  TAG_NULL,
  TAG_SEQUENCE,
  TAG_UTF8_STRING,
  concatBytes,
  digestAlgorithmIdentifier,
  ecdsaDerToRaw,
  ecdsaRawToDer,
  encodeOid,
  encodePem,
  encodeTlv,
  isDottedOid,
} from './der.js';
import { nameFromSubject } from './dn.js';
import { OID, extendedKeyUsageOid, keyUsageBit } from './oids.js';
import { parseSpki } from './spki.js';
import type { PublicKeyInfo } from './spki.js';
import type { CsrRequest, CsrSignatureAlgorithm, SubjectAltName, SubjectAltNameType } from '../model/csr.js';

export type { CsrRequest, CsrSignatureAlgorithm, SubjectAltName, SubjectAltNameType };

export interface CsrOptions extends CsrRequest {
  signer: DigestSigner;
}

export interface CsrResult {
  der: Uint8Array;
  pem: string;
  scheme: SignatureScheme;
  digestAlgorithm: DigestAlgorithm;
}

const MAX_SANS = 100;
const MAX_USAGES = 32;
const SCHEMES: readonly SignatureScheme[] = ['RSASSA-PKCS1-v1_5', 'RSA-PSS', 'ECDSA'];

function invalid(message: string): KelidError {
  return new KelidError('ERR_INVALID_INPUT', message);
}

const DNS_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;
const FORBIDDEN_CHARS = /[\p{Cc}\p{Cs}\u202a-\u202e\u2066-\u2069\ufeff]/u;

function checkDnsName(value: string, allowWildcard: boolean): string {
  let name = value;
  if (!/^[\x20-\x7e]*$/.test(name)) {
    name = domainToASCII(name);
    if (name === '') throw invalid('invalid internationalized DNS name');
  }
  const labels = name.split('.');
  const ok =
    name.length <= 253 &&
    labels.every((l, i) => DNS_LABEL.test(l) || (allowWildcard && i === 0 && l === '*' && labels.length > 2));
  if (!ok) throw invalid('invalid DNS name');
  return name;
}

function checkEmail(value: string): string {
  const at = value.lastIndexOf('@');
  if (!PRINTABLE_ASCII.test(value) || at < 1 || at > 64 || value.length > 254) {
    throw invalid('invalid email address (ASCII local@domain expected)');
  }
  checkDnsName(value.slice(at + 1), false);
  return value;
}

function checkUri(value: string): string {
  if (!PRINTABLE_ASCII.test(value) || value.length > 2048 || !/^[A-Za-z][A-Za-z0-9+.-]*:/.test(value)) {
    throw invalid('invalid URI (absolute ASCII URI expected)');
  }
  try {
    new URL(value);
  } catch (cause) {
    throw new KelidError('ERR_INVALID_INPUT', 'invalid URI', { cause });
  }
  return value;
}

/** IPv4 → 4 octets, IPv6 (including an embedded IPv4 tail) → 16 octets. */
export function ipAddressBytes(value: string): Uint8Array {
  const version = isIP(value);
  if (version === 0 || value.includes('%')) throw invalid('invalid IP address');
  if (version === 4) return Uint8Array.from(value.split('.').map(Number));
  let text = value;
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [left, right] = text.split('::') as [string, string | undefined];
  const head = left ? left.split(':') : [];
  const tail = right ? right.split(':') : [];
  const groups =
    right === undefined
      ? head
      : [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  });
  return out;
}

function generalName(san: unknown): GeneralName {
  if (typeof san !== 'object' || san === null) throw invalid('subjectAltNames entries must be {type, value}');
  const { type, value } = san as Record<string, unknown>;
  if (typeof value !== 'string' || value.length === 0)
    throw invalid('subjectAltNames value must be a non-empty string');
  switch (type) {
    case 'email':
      return new GeneralName({ rfc822Name: checkEmail(value) });
    case 'dns':
      return new GeneralName({ dNSName: checkDnsName(value, true) });
    case 'uri':
      return new GeneralName({ uniformResourceIdentifier: checkUri(value) });
    case 'ip': {
      const bytes = ipAddressBytes(value);
      // The library's converter takes text; give it a form it parses unambiguously.
      const text =
        bytes.length === 4
          ? bytes.join('.')
          : Array.from({ length: 8 }, (_, i) => ((bytes[2 * i]! << 8) | bytes[2 * i + 1]!).toString(16)).join(
              ':',
            );
      return new GeneralName({ iPAddress: text });
    }
    case 'upn': {
      if (value.length > 1024 || FORBIDDEN_CHARS.test(value)) throw invalid('invalid UPN');
      const utf8 = encodeTlv(TAG_UTF8_STRING, Buffer.from(value, 'utf8'));
      return new GeneralName({ otherName: new OtherName({ typeId: OID.upn, value: utf8.slice().buffer }) });
    }
    default:
      throw invalid('subjectAltNames type must be one of email, dns, uri, ip, upn');
  }
}

function stringList(list: unknown, what: string): string[] {
  if (list === undefined) return [];
  if (!Array.isArray(list) || list.length > MAX_USAGES || list.some((x) => typeof x !== 'string')) {
    throw invalid(`${what} must be an array of at most ${MAX_USAGES} strings`);
  }
  return list as string[];
}

/** DER BIT STRING for keyUsage: named-bit-list rules, trailing zero bits removed. */
function keyUsageBitString(names: readonly string[]): Uint8Array {
  const bits = names.map((n) => {
    const bit = keyUsageBit(n);
    if (bit === undefined) throw invalid(`unknown keyUsage "${n.slice(0, 40)}"`);
    return bit;
  });
  const highest = Math.max(...bits);
  const octets = new Uint8Array((highest >> 3) + 1);
  for (const b of bits) octets[b >> 3]! |= 0x80 >> (b & 7);
  return encodeTlv(TAG_BIT_STRING, Uint8Array.of(7 - (highest & 7)), octets);
}

function extension(extnID: string, critical: boolean, value: ArrayBuffer | Uint8Array): Extension {
  return new Extension({ extnID, critical, extnValue: new OctetString(value) });
}

/** Validate everything but the key and build the name and extensions. */
function prepare(request: CsrRequest): {
  subject: ReturnType<typeof nameFromSubject>;
  extensions: Extension[];
} {
  if (typeof request !== 'object' || request === null) throw invalid('CSR request must be an object');
  const subject = nameFromSubject(request.subject);
  if (subject.length === 0) throw invalid('subject must not be empty');
  const extensions: Extension[] = [];

  const sans = request.subjectAltNames ?? [];
  if (!Array.isArray(sans) || sans.length > MAX_SANS) {
    throw invalid(`subjectAltNames must be an array of at most ${MAX_SANS} entries`);
  }
  if (sans.length > 0) {
    extensions.push(
      extension(OID.subjectAltName, false, AsnConvert.serialize(new GeneralNames(sans.map(generalName)))),
    );
  }

  const keyUsage = stringList(request.keyUsage, 'keyUsage');
  if (keyUsage.length > 0) extensions.push(extension(OID.keyUsage, true, keyUsageBitString(keyUsage)));

  const eku = stringList(request.extendedKeyUsage, 'extendedKeyUsage').map((n) => {
    const oid = extendedKeyUsageOid(n) ?? (isDottedOid(n) ? n : undefined);
    if (oid === undefined) throw invalid(`unknown extendedKeyUsage "${n.slice(0, 40)}"`);
    return oid;
  });
  if (eku.length > 0) {
    extensions.push(
      extension(OID.extendedKeyUsage, false, AsnConvert.serialize(new ExtendedKeyUsage([...new Set(eku)]))),
    );
  }
  return { subject, extensions };
}

type KeyDescription = { keyType: 'RSA' } | { keyType: 'EC'; namedCurve: string };

function describeKey(key: KeyAlgorithm | PublicKeyInfo): KeyDescription {
  if ('keyType' in key)
    return key.keyType === 'RSA' ? { keyType: 'RSA' } : { keyType: 'EC', namedCurve: key.namedCurve };
  return key.name === 'RSA' ? { keyType: 'RSA' } : { keyType: 'EC', namedCurve: key.namedCurve };
}

/**
 * The scheme and digest for a key: defaults are RSASSA-PKCS1-v1_5 with SHA-256 for RSA, and ECDSA
 * with SHA-256 (P-256), SHA-384 (P-384) or SHA-512 (P-521) for EC.
 */
export function resolveCsrSignatureAlgorithm(
  key: KeyAlgorithm | PublicKeyInfo,
  requested?: CsrSignatureAlgorithm,
): Required<CsrSignatureAlgorithm> {
  if (requested !== undefined && (typeof requested !== 'object' || requested === null)) {
    throw invalid('signatureAlgorithm must be {scheme?, digestAlgorithm?}');
  }
  const k = describeKey(key);
  const scheme = requested?.scheme ?? (k.keyType === 'RSA' ? 'RSASSA-PKCS1-v1_5' : 'ECDSA');
  if (!SCHEMES.includes(scheme)) throw invalid('unsupported signature scheme');
  if ((k.keyType === 'EC') !== (scheme === 'ECDSA'))
    throw invalid(`scheme ${scheme} cannot be used with an ${k.keyType} key`);
  const curveDefault: DigestAlgorithm =
    k.keyType === 'EC' && k.namedCurve === 'P-384'
      ? 'SHA-384'
      : k.keyType === 'EC' && k.namedCurve === 'P-521'
        ? 'SHA-512'
        : 'SHA-256';
  const digestAlgorithm = requested?.digestAlgorithm ?? curveDefault;
  if (!Object.hasOwn(DIGEST_LENGTH, digestAlgorithm)) throw invalid('unsupported digest algorithm');
  return { scheme, digestAlgorithm };
}

/**
 * Check a request without a key (and its signature algorithm when the key algorithm is known), so a
 * caller can refuse bad input before asking for consent or generating a key.
 */
export function validateCsrRequest(request: CsrRequest, key?: KeyAlgorithm): void {
  prepare(request);
  if (key) resolveCsrSignatureAlgorithm(key, request.signatureAlgorithm);
}

const RSA_PKCS1_OIDS: Readonly<Record<DigestAlgorithm, string>> = {
  'SHA-256': OID.sha256WithRSAEncryption,
  'SHA-384': OID.sha384WithRSAEncryption,
  'SHA-512': OID.sha512WithRSAEncryption,
};
const ECDSA_OIDS: Readonly<Record<DigestAlgorithm, string>> = {
  'SHA-256': OID.ecdsaWithSHA256,
  'SHA-384': OID.ecdsaWithSHA384,
  'SHA-512': OID.ecdsaWithSHA512,
};

/** AlgorithmIdentifier DER for a signature (RFC 4055 RSASSA-PSS-params with MGF1 and salt = hash length). */
export function signatureAlgorithmIdentifier(
  scheme: SignatureScheme,
  digestAlgorithm: DigestAlgorithm,
): Uint8Array {
  switch (scheme) {
    case 'RSASSA-PKCS1-v1_5':
      return encodeTlv(TAG_SEQUENCE, encodeOid(RSA_PKCS1_OIDS[digestAlgorithm]), Uint8Array.of(TAG_NULL, 0));
    case 'ECDSA':
      return encodeTlv(TAG_SEQUENCE, encodeOid(ECDSA_OIDS[digestAlgorithm]));
    case 'RSA-PSS': {
      const hash = digestAlgorithmIdentifier(digestAlgorithm);
      const params = encodeTlv(
        TAG_SEQUENCE,
        encodeTlv(0xa0, hash),
        encodeTlv(0xa1, encodeTlv(TAG_SEQUENCE, encodeOid(OID.mgf1), hash)),
        encodeTlv(0xa2, encodeTlv(TAG_INTEGER, Uint8Array.of(DIGEST_LENGTH[digestAlgorithm]))),
      );
      return encodeTlv(TAG_SEQUENCE, encodeOid(OID.rsassaPss), params);
    }
  }
}

/** Build a PKCS#10 request for the signer's key, hash it here and have the signer sign the digest. */
export async function createCsr(options: CsrOptions): Promise<CsrResult> {
  const { signer } = options;
  const { subject, extensions } = prepare(options);
  const key = parseSpki(signer.publicKey);
  if (key.keyType !== signer.keyType) throw new TypeError('signer.keyType does not match signer.publicKey');
  const { scheme, digestAlgorithm } = resolveCsrSignatureAlgorithm(key, options.signatureAlgorithm);

  const attributes = new Attributes();
  if (extensions.length > 0) {
    attributes.push(
      new Attribute({
        type: OID.extensionRequest,
        values: [AsnConvert.serialize(new Extensions(extensions))],
      }),
    );
  }
  const info = new CertificationRequestInfo({
    version: 0,
    subject,
    subjectPKInfo: AsnConvert.parse(signer.publicKey, SubjectPublicKeyInfo),
    attributes,
  });
  const infoDer = new Uint8Array(AsnConvert.serialize(info));
  const digest = new Uint8Array(createHash(DIGEST_NODE_NAME[digestAlgorithm]).update(infoDer).digest());

  let signature: Uint8Array;
  try {
    signature = signer.signMessage
      ? await signer.signMessage(infoDer, digestAlgorithm, scheme)
      : await signer.signDigest(digest, digestAlgorithm, scheme);
  } catch (e) {
    throw toKelidError(e, 'signing the certification request failed');
  }
  if (scheme === 'ECDSA' && key.keyType === 'EC') {
    try {
      // Re-encode so that a token's non-minimal INTEGERs cannot leak into the request.
      signature = ecdsaRawToDer(ecdsaDerToRaw(signature, key.size));
    } catch (cause) {
      throw new KelidError('ERR_INTERNAL', 'signer returned a malformed ECDSA signature', { cause });
    }
  }
  // A wrong key or a broken token must not produce a request the CA would reject later.
  const publicKey = createPublicKey({ key: Buffer.from(signer.publicKey), format: 'der', type: 'spki' });
  const ok = cryptoVerify(
    DIGEST_NODE_NAME[digestAlgorithm],
    infoDer,
    scheme === 'RSA-PSS'
      ? {
          key: publicKey,
          padding: cryptoConstants.RSA_PKCS1_PSS_PADDING,
          saltLength: DIGEST_LENGTH[digestAlgorithm],
        }
      : publicKey,
    signature,
  );
  if (!ok) throw new KelidError('ERR_INTERNAL', 'the signature on the certification request does not verify');

  const der = encodeTlv(
    TAG_SEQUENCE,
    infoDer,
    signatureAlgorithmIdentifier(scheme, digestAlgorithm),
    encodeTlv(TAG_BIT_STRING, concatBytes(Uint8Array.of(0), signature)),
  );
  return { der, pem: encodePem('CERTIFICATE REQUEST', der), scheme, digestAlgorithm };
}
