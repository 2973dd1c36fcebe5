// Distinguished names: RFC 4514 text or {type, value} arrays → DER Name, and DER Name → RFC 4514 text.
// RFC 4514 writes the most significant RDN last, so `CN=x,O=y,C=IR` encodes as SEQUENCE { C, O, CN }.
import { AttributeTypeAndValue, AttributeValue, Name, RelativeDistinguishedName } from '@peculiar/asn1-x509';
import { KelidError } from '../model/errors.js';
import {
  TAG_IA5_STRING,
  TAG_OID,
  TAG_PRINTABLE_STRING,
  TAG_SEQUENCE,
  TAG_SET,
  TAG_UTF8_STRING,
  bytesOf,
  concatBytes,
  contentOf,
  decodeOid,
  encodeOid,
  encodeTlv,
  isDottedOid,
  readChildren,
  readSingle,
  readTlv,
  toHex,
} from './der.js';
import type { NameAttribute, SubjectInput } from '../model/csr.js';

export type { NameAttribute, SubjectInput };

type StringKind = 'utf8' | 'printable' | 'ia5';

interface AttributeSpec {
  oid: string;
  /** Accepted names; the first is used when formatting. */
  names: readonly string[];
  kind: StringKind;
  /** Upper bound in characters (RFC 5280 appendix A where it gives one; pragmatic elsewhere). */
  max: number;
}

const OID_COUNTRY = '2.5.4.6';

const SPECS: readonly AttributeSpec[] = [
  { oid: '2.5.4.3', names: ['CN', 'commonName'], kind: 'utf8', max: 64 },
  { oid: '2.5.4.4', names: ['surname', 'SN'], kind: 'utf8', max: 128 },
  { oid: '2.5.4.5', names: ['serialNumber'], kind: 'printable', max: 64 },
  { oid: OID_COUNTRY, names: ['C', 'countryName'], kind: 'printable', max: 2 },
  { oid: '2.5.4.7', names: ['L', 'localityName'], kind: 'utf8', max: 128 },
  { oid: '2.5.4.8', names: ['ST', 'stateOrProvinceName', 'S'], kind: 'utf8', max: 128 },
  { oid: '2.5.4.9', names: ['STREET', 'streetAddress'], kind: 'utf8', max: 128 },
  { oid: '2.5.4.10', names: ['O', 'organizationName'], kind: 'utf8', max: 64 },
  { oid: '2.5.4.11', names: ['OU', 'organizationalUnitName'], kind: 'utf8', max: 64 },
  { oid: '2.5.4.12', names: ['title', 'T'], kind: 'utf8', max: 64 },
  { oid: '2.5.4.17', names: ['postalCode'], kind: 'utf8', max: 40 },
  { oid: '2.5.4.42', names: ['givenName', 'GN', 'G'], kind: 'utf8', max: 128 },
  { oid: '2.5.4.65', names: ['pseudonym'], kind: 'utf8', max: 128 },
  { oid: '2.5.4.97', names: ['organizationIdentifier'], kind: 'utf8', max: 128 },
  { oid: '1.2.840.113549.1.9.1', names: ['emailAddress', 'E', 'email'], kind: 'ia5', max: 255 },
  { oid: '0.9.2342.19200300.100.1.25', names: ['DC', 'domainComponent'], kind: 'ia5', max: 63 },
  { oid: '0.9.2342.19200300.100.1.1', names: ['UID', 'userId'], kind: 'utf8', max: 256 },
];

const SPEC_BY_NAME: ReadonlyMap<string, AttributeSpec> = new Map(
  SPECS.flatMap((s) => s.names.map((n) => [n.toLowerCase(), s] as const)),
);
const SPEC_BY_OID: ReadonlyMap<string, AttributeSpec> = new Map(SPECS.map((s) => [s.oid, s]));

const MAX_OTHER_VALUE = 256;
const MAX_DN_TEXT = 4096;
const MAX_ATTRIBUTES = 64;
const MAX_NAME_DER = 8192;

/** An attribute parsed from RFC 4514 text: a string value, or the DER of a `#hex` value. */
export type DnAttribute = NameAttribute | { type: string; der: Uint8Array };

function invalid(message: string): KelidError {
  return new KelidError('ERR_INVALID_INPUT', message);
}

// Characters that may not appear in a value: controls, lone surrogates, BOM and the bidi embedding,
// override and isolate controls (they can make a name display as something else).
const FORBIDDEN_CHARS = /[\p{Cc}\p{Cs}\u202a-\u202e\u2066-\u2069\ufeff]/u;
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;
const IA5 = /^[\x20-\x7e]*$/;
const HEX_DIGIT = /^[0-9A-Fa-f]$/;

function shortType(type: string): string {
  return type.length > 40 ? `${type.slice(0, 40)}…` : type;
}

function resolveType(rawType: string): { oid: string; spec: AttributeSpec | undefined } {
  let type = rawType.trim();
  if (/^oid\./i.test(type)) type = type.slice(4);
  if (/^[0-9]/.test(type)) {
    if (!isDottedOid(type)) throw invalid(`invalid attribute type OID "${shortType(type)}"`);
    return { oid: type, spec: SPEC_BY_OID.get(type) };
  }
  const spec = SPEC_BY_NAME.get(type.toLowerCase());
  if (!spec) throw invalid(`unknown attribute type "${shortType(type)}"`);
  return { oid: spec.oid, spec };
}

// Universal string types (UTF8, Numeric, Printable, Teletex, Videotex, IA5, Graphic, Visible,
// General, Universal, BMP). OpenSSL reads name values as such strings and refuses a Name holding
// anything else, so a CA could not even parse the request.
const STRING_TAGS: ReadonlySet<number> = new Set([
  0x0c, 0x12, 0x13, 0x14, 0x15, 0x16, 0x19, 0x1a, 0x1b, 0x1c, 0x1e,
]);

function checkHexValue(der: Uint8Array, label: string): void {
  let tlv;
  try {
    tlv = readTlv(der);
  } catch (cause) {
    throw new KelidError('ERR_INVALID_INPUT', `#hex value of ${label} is not a DER value`, { cause });
  }
  if (tlv.end !== der.length) throw invalid(`#hex value of ${label} has trailing bytes`);
  if (!STRING_TAGS.has(tlv.tag)) throw invalid(`#hex value of ${label} must be a string type`);
}

/** DER of one AttributeValue, validated for its attribute type. */
function encodeValue(attr: DnAttribute): { oid: string; value: Uint8Array } {
  const { oid, spec } = resolveType(attr.type);
  const label = spec?.names[0] ?? oid;
  if ('der' in attr) {
    checkHexValue(attr.der, label);
    return { oid, value: attr.der.slice() };
  }
  let value = attr.value;
  if (oid === OID_COUNTRY) {
    value = value.toUpperCase();
    if (!/^[A-Z]{2}$/.test(value)) throw invalid('C must be a two-letter ISO 3166 country code');
  }
  if (value.length === 0) throw invalid(`empty value for ${label}`);
  if (FORBIDDEN_CHARS.test(value))
    throw invalid(`${label} contains control or invisible formatting characters`);
  const max = spec?.max ?? MAX_OTHER_VALUE;
  if ([...value].length > max) throw invalid(`${label} is longer than ${max} characters`);
  const kind = spec?.kind ?? 'utf8';
  if (kind === 'printable' && !PRINTABLE.test(value)) {
    throw invalid(`${label} may only contain A-Z a-z 0-9 space and ' ( ) + , - . / : = ?`);
  }
  if (kind === 'ia5' && !IA5.test(value)) throw invalid(`${label} must be ASCII`);
  const tag = kind === 'printable' ? TAG_PRINTABLE_STRING : kind === 'ia5' ? TAG_IA5_STRING : TAG_UTF8_STRING;
  return { oid, value: encodeTlv(tag, Buffer.from(value, 'utf8')) };
}

/**
 * Parse RFC 4514 text into RDNs, in text order. Accepts the escapes `\,` `\+` `\"` `\\` `\;` `\<`
 * `\>` `\=` `\#` `\ ` and `\XX` (hex octets, decoded as UTF-8), multi-valued RDNs joined by `+`,
 * `#hex` (DER) values, dotted OIDs (optionally prefixed `OID.`) and spaces around separators.
 */
export function parseDn(text: string): DnAttribute[][] {
  if (typeof text !== 'string') throw invalid('distinguished name must be a string');
  if (text.length > MAX_DN_TEXT) throw invalid(`distinguished name is longer than ${MAX_DN_TEXT} characters`);
  if (/\p{Cs}/u.test(text)) throw invalid('distinguished name is not well-formed Unicode');
  const rdns: DnAttribute[][] = [];
  if (text.trim() === '') return rdns;
  const len = text.length;
  let rdn: DnAttribute[] = [];
  let count = 0;
  let i = 0;
  for (;;) {
    const eq = text.indexOf('=', i);
    if (eq < 0) throw invalid(`missing "=" after position ${i}`);
    const type = text.slice(i, eq).trim();
    if (!/^(?:[A-Za-z][A-Za-z0-9-]*|(?:[Oo][Ii][Dd]\.)?[0-9][0-9.]*)$/.test(type)) {
      throw invalid(`invalid attribute type at position ${i}`);
    }
    i = eq + 1;
    while (text[i] === ' ') i++;

    let attr: DnAttribute;
    if (text[i] === '#') {
      let j = i + 1;
      while (j < len && HEX_DIGIT.test(text[j]!)) j++;
      const hex = text.slice(i + 1, j);
      while (text[j] === ' ') j++;
      if (hex.length === 0 || hex.length % 2 !== 0 || (j < len && text[j] !== ',' && text[j] !== '+')) {
        throw invalid(`invalid #hex value for ${shortType(type)}`);
      }
      attr = { type, der: new Uint8Array(Buffer.from(hex, 'hex')) };
      i = j;
    } else {
      const chunks: Uint8Array[] = [];
      let literal = '';
      let pendingSpaces = 0;
      const flush = (): void => {
        if (literal) chunks.push(Buffer.from(literal, 'utf8'));
        literal = '';
      };
      while (i < len) {
        const c = text[i]!;
        if (c === ',' || c === '+') break;
        if (c === ' ') {
          pendingSpaces++;
          i++;
          continue;
        }
        literal += ' '.repeat(pendingSpaces);
        pendingSpaces = 0;
        if (c === '\\') {
          const n = text[i + 1];
          if (n === undefined) throw invalid('"\\" at the end of the name');
          const n2 = text[i + 2];
          if (HEX_DIGIT.test(n) && n2 !== undefined && HEX_DIGIT.test(n2)) {
            flush();
            chunks.push(Uint8Array.of(parseInt(n + n2, 16)));
            i += 3;
          } else if ('"+,;<>\\ #='.includes(n)) {
            literal += n;
            i += 2;
          } else {
            throw invalid(`invalid escape at position ${i}`);
          }
          continue;
        }
        if ('";<>\0'.includes(c)) throw invalid(`character ${JSON.stringify(c)} must be escaped`);
        literal += c;
        i++;
      }
      flush();
      let value: string;
      try {
        value = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(concatBytes(...chunks));
      } catch (cause) {
        throw new KelidError('ERR_INVALID_INPUT', 'escaped octets are not valid UTF-8', { cause });
      }
      if (value === '') throw invalid(`empty value for ${shortType(type)}`);
      attr = { type, value };
    }

    rdn.push(attr);
    if (++count > MAX_ATTRIBUTES) throw invalid(`more than ${MAX_ATTRIBUTES} attributes`);
    if (i >= len) {
      rdns.push(rdn);
      return rdns;
    }
    if (text[i] === ',') {
      rdns.push(rdn);
      rdn = [];
    }
    i++;
    if (text.slice(i).trim() === '') throw invalid('separator at the end of the name');
  }
}

function isArray(x: unknown): x is readonly unknown[] {
  return Array.isArray(x);
}

function checkAttributeShape(x: unknown): NameAttribute {
  if (typeof x !== 'object' || x === null) throw invalid('subject attributes must be {type, value} objects');
  const { type, value } = x as Record<string, unknown>;
  if (typeof type !== 'string' || typeof value !== 'string') {
    throw invalid('subject attributes must have string type and value');
  }
  return { type, value };
}

function subjectRdns(subject: SubjectInput): DnAttribute[][] {
  if (typeof subject === 'string') return parseDn(subject);
  if (!isArray(subject)) throw invalid('subject must be an RFC 4514 string or an array of {type, value}');
  if (subject.length > MAX_ATTRIBUTES) throw invalid(`more than ${MAX_ATTRIBUTES} attributes`);
  return subject.map((entry) => {
    const attrs = isArray(entry) ? entry : [entry];
    if (attrs.length === 0) throw invalid('empty RDN in subject');
    return attrs.map(checkAttributeShape);
  });
}

// X.690 11.6: SET OF components in ascending order of their encodings, shorter ones padded with zeros.
function compareSetElements(a: Uint8Array, b: Uint8Array): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

interface EncodedAttribute {
  oid: string;
  value: Uint8Array;
  der: Uint8Array;
}

/** RDNs in DER order (most significant first), each sorted as DER requires. */
function encodedRdns(subject: SubjectInput): EncodedAttribute[][] {
  const rdns = subjectRdns(subject).map((rdn) =>
    rdn
      .map((attr) => {
        const { oid, value } = encodeValue(attr);
        return { oid, value, der: encodeTlv(TAG_SEQUENCE, encodeOid(oid), value) };
      })
      .sort((a, b) => compareSetElements(a.der, b.der)),
  );
  const total = rdns.flat().reduce((n, a) => n + a.der.length, 0);
  if (total > MAX_NAME_DER) throw invalid('distinguished name is too large');
  return rdns.reverse();
}

/** DER Name for a subject. */
export function encodeName(subject: SubjectInput): Uint8Array {
  return encodeTlv(
    TAG_SEQUENCE,
    ...encodedRdns(subject).map((rdn) => encodeTlv(TAG_SET, ...rdn.map((a) => a.der))),
  );
}

/** The same Name as {@link encodeName}, as an @peculiar/asn1-x509 object (values kept as raw DER). */
export function nameFromSubject(subject: SubjectInput): Name {
  return new Name(
    encodedRdns(subject).map(
      (rdn) =>
        new RelativeDistinguishedName(
          rdn.map(
            (a) =>
              new AttributeTypeAndValue({
                type: a.oid,
                value: new AttributeValue({ anyValue: a.value.slice().buffer }),
              }),
          ),
        ),
    ),
  );
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Text of a string-typed AttributeValue, or undefined when it is not a (valid) string. */
function decodeString(tag: number, content: Uint8Array): string | undefined {
  switch (tag) {
    case 0x0c: // UTF8String
      try {
        return UTF8.decode(content);
      } catch {
        return undefined;
      }
    case 0x12: // NumericString
    case 0x13: // PrintableString
    case 0x16: // IA5String
    case 0x1a: // VisibleString
      return content.every((b) => b < 0x80) ? Buffer.from(content).toString('latin1') : undefined;
    case 0x14: // TeletexString: read as Latin-1, as OpenSSL does
      return Buffer.from(content).toString('latin1');
    case 0x1e: {
      // BMPString (UCS-2 big-endian)
      if (content.length % 2 !== 0) return undefined;
      const swapped = Buffer.from(content);
      swapped.swap16();
      const s = swapped.toString('utf16le');
      return /\p{Cs}/u.test(s) ? undefined : s;
    }
    case 0x1c: {
      // UniversalString (UCS-4 big-endian)
      if (content.length % 4 !== 0) return undefined;
      const cps: number[] = [];
      for (let i = 0; i < content.length; i += 4) {
        const cp =
          ((content[i]! << 24) | (content[i + 1]! << 16) | (content[i + 2]! << 8) | content[i + 3]!) >>> 0;
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return undefined;
        cps.push(cp);
      }
      return String.fromCodePoint(...cps);
    }
    default:
      return undefined;
  }
}

const DISPLAY_ESCAPE = /[\p{Cc}\u202a-\u202e\u2066-\u2069\ufeff]/u;

/** RFC 4514 section 2.4 escaping; non-ASCII text stays as is, control and bidi characters become \XX. */
function escapeValue(value: string): string {
  const chars = [...value];
  return chars
    .map((ch, i) => {
      if ('"+,;<>\\'.includes(ch)) return `\\${ch}`;
      if ((i === 0 && (ch === '#' || ch === ' ')) || (i === chars.length - 1 && ch === ' ')) return `\\${ch}`;
      if (DISPLAY_ESCAPE.test(ch)) {
        return [...Buffer.from(ch, 'utf8')]
          .map((b) => `\\${b.toString(16).toUpperCase().padStart(2, '0')}`)
          .join('');
      }
      return ch;
    })
    .join('');
}

/**
 * RFC 4514 text of a DER Name, most significant RDN last, with UTF-8 text unescaped (for display).
 * Like OpenSSL's `-nameopt RFC2253`, the whole sequence is reversed, including the attributes of a
 * multi-valued RDN. Attribute types without a short name here are written as dotted OIDs with `#hex`
 * DER values.
 */
export function formatName(der: Uint8Array): string {
  const seq = readSingle(der, TAG_SEQUENCE, 'Name');
  const rdns = readChildren(der, seq).map((set) => {
    if (set.tag !== TAG_SET) throw invalid('malformed Name: RDN is not a SET');
    const atvs = readChildren(der, set);
    if (atvs.length === 0) throw invalid('malformed Name: empty RDN');
    return atvs
      .map((atv) => {
        if (atv.tag !== TAG_SEQUENCE) throw invalid('malformed Name: attribute is not a SEQUENCE');
        const [typeTlv, valueTlv, ...rest] = readChildren(der, atv);
        if (!typeTlv || typeTlv.tag !== TAG_OID || !valueTlv || rest.length > 0) {
          throw invalid('malformed Name: bad AttributeTypeAndValue');
        }
        const oid = decodeOid(contentOf(der, typeTlv));
        const spec = SPEC_BY_OID.get(oid);
        const text = spec ? decodeString(valueTlv.tag, contentOf(der, valueTlv)) : undefined;
        const type = spec?.names[0] ?? oid;
        return text === undefined
          ? `${type}=#${toHex(bytesOf(der, valueTlv)).toUpperCase()}`
          : `${type}=${escapeValue(text)}`;
      })
      .reverse()
      .join('+');
  });
  return rdns.reverse().join(',');
}
