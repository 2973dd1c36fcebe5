// Certificates as CAs publish them at caIssuers URLs and as people keep them in files: one DER
// certificate, PEM (one or more CERTIFICATE blocks), or a PKCS#7 "certs-only" SignedData (DER or PEM).
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate } from '@peculiar/asn1-x509';
import {
  TAG_INTEGER,
  TAG_OID,
  TAG_SEQUENCE,
  decodeOid,
  contentOf,
  readChildren,
  readSingle,
} from '../pki/der.js';
import type { Tlv } from '../pki/der.js';

const ID_SIGNED_DATA = '1.2.840.113549.1.7.2';
const MAX_CERTIFICATES = 32;
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([A-Za-z0-9+/=\s]*)-----END \1-----/g;

function isCertificate(der: Uint8Array): boolean {
  try {
    readSingle(der, TAG_SEQUENCE, 'Certificate');
    AsnConvert.parse(der, Certificate);
    return true;
  } catch {
    return false;
  }
}

// ContentInfo { contentType, [0] EXPLICIT SignedData { version, digestAlgorithms, encapContentInfo,
// [0] IMPLICIT certificates, ... } }: the exact bytes of each certificate.
function pkcs7Certificates(der: Uint8Array): Uint8Array[] {
  try {
    const info = readSingle(der, TAG_SEQUENCE, 'ContentInfo');
    const [type, explicit] = readChildren(der, info);
    if (type?.tag !== TAG_OID || decodeOid(contentOf(der, type)) !== ID_SIGNED_DATA) return [];
    if (explicit?.tag !== 0xa0) return [];
    const signedData = readChildren(der, explicit)[0];
    if (signedData?.tag !== TAG_SEQUENCE) return [];
    const fields = readChildren(der, signedData);
    if (fields[0]?.tag !== TAG_INTEGER) return [];
    const certs = fields.find((f: Tlv) => f.tag === 0xa0);
    if (!certs) return [];
    return readChildren(der, certs)
      .filter((c) => c.tag === TAG_SEQUENCE)
      .map((c) => der.slice(c.start, c.end))
      .filter(isCertificate);
  } catch {
    return [];
  }
}

function fromDer(der: Uint8Array): Uint8Array[] {
  if (isCertificate(der)) return [der.slice()];
  return pkcs7Certificates(der);
}

/** Every certificate in `bytes` (DER, PEM or PKCS#7), in order; an empty list when there is none. */
export function parseCertificateBundle(bytes: Uint8Array): Uint8Array[] {
  let out: Uint8Array[];
  if (bytes[0] === TAG_SEQUENCE) {
    out = fromDer(bytes);
  } else {
    out = [];
    const text = Buffer.from(bytes).toString('latin1');
    for (const [, label, body] of text.matchAll(PEM_BLOCK)) {
      if (label !== 'CERTIFICATE' && label !== 'X509 CERTIFICATE' && label !== 'PKCS7') continue;
      out.push(...fromDer(new Uint8Array(Buffer.from(body!.replace(/\s/g, ''), 'base64'))));
      if (out.length >= MAX_CERTIFICATES) break;
    }
  }
  return out.slice(0, MAX_CERTIFICATES);
}
