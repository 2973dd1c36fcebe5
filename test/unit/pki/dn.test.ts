import { AsnConvert } from '@peculiar/asn1-schema';
import { Name } from '@peculiar/asn1-x509';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeName, formatName, nameFromSubject, parseDn } from '../../../src/pki/dn.js';
import type { NameAttribute } from '../../../src/pki/dn.js';

const PERSIAN = 'CN=علی رضایی,O=کانون سردفتران,C=IR';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

/** Decode with asn1-x509 (not our reader): [[{oid, tag, text}]] in DER order. */
function decodeWithLibrary(der: Uint8Array): Array<Array<{ oid: string; kind: string; text: string }>> {
  const name = AsnConvert.parse(der, Name);
  return name.map((rdn) =>
    rdn.map((atv) => {
      const v = atv.value;
      const kind =
        v.utf8String !== undefined
          ? 'utf8'
          : v.printableString !== undefined
            ? 'printable'
            : v.ia5String !== undefined
              ? 'ia5'
              : 'other';
      return { oid: atv.type, kind, text: v.toString() };
    }),
  );
}

describe('dn', () => {
  describe('#parseDn', () => {
    it('splits RDNs and attributes in text order', () => {
      expect(parseDn(PERSIAN)).toEqual([
        [{ type: 'CN', value: 'علی رضایی' }],
        [{ type: 'O', value: 'کانون سردفتران' }],
        [{ type: 'C', value: 'IR' }],
      ]);
    });

    it('unescapes the RFC 4514 special characters', () => {
      expect(parseDn('CN=a\\,b\\+c\\"d\\\\e\\;f\\<g\\>h\\=i')).toEqual([
        [{ type: 'CN', value: 'a,b+c"d\\e;f<g>h=i' }],
      ]);
    });

    it('decodes \\XX escapes as UTF-8 octets, also mixed with text', () => {
      expect(parseDn('CN=\\D8\\B9\\D9\\84\\DB\\8C x\\20y')).toEqual([[{ type: 'CN', value: 'علی x y' }]]);
    });

    it('keeps escaped leading and trailing spaces and a leading escaped #', () => {
      expect(parseDn('CN=\\ a\\ ,O=\\#1')).toEqual([
        [{ type: 'CN', value: ' a ' }],
        [{ type: 'O', value: '#1' }],
      ]);
    });

    it('ignores unescaped spaces around types, values and separators', () => {
      expect(parseDn(' CN = a b , O = c + OU = d ')).toEqual([
        [{ type: 'CN', value: 'a b' }],
        [
          { type: 'O', value: 'c' },
          { type: 'OU', value: 'd' },
        ],
      ]);
    });

    it('reads multi-valued RDNs joined by +', () => {
      expect(parseDn('CN=a+UID=b,O=c')).toEqual([
        [
          { type: 'CN', value: 'a' },
          { type: 'UID', value: 'b' },
        ],
        [{ type: 'O', value: 'c' }],
      ]);
    });

    it('accepts dotted OIDs, with or without the OID. prefix, and unescaped = in values', () => {
      expect(parseDn('2.5.4.3=a=b,OID.2.5.4.10=c')).toEqual([
        [{ type: '2.5.4.3', value: 'a=b' }],
        [{ type: 'OID.2.5.4.10', value: 'c' }],
      ]);
    });

    it('reads #hex values as DER', () => {
      expect(parseDn('1.2.3.4=#0C0161 ,CN=x')).toEqual([
        [{ type: '1.2.3.4', der: Uint8Array.from([0x0c, 0x01, 0x61]) }],
        [{ type: 'CN', value: 'x' }],
      ]);
    });

    it('returns no RDNs for an empty string', () => {
      expect(parseDn('  ')).toEqual([]);
    });

    it.each([
      ['a missing =', 'CN'],
      ['an empty value', 'CN='],
      ['a trailing comma', 'CN=a,'],
      ['an empty RDN', 'CN=a,,O=b'],
      ['a trailing plus', 'CN=a+'],
      ['an unescaped quote', 'CN=a"b'],
      ['a quoted value', 'CN="a"'],
      ['an unescaped semicolon', 'CN=a;b'],
      ['an unescaped <', 'CN=a<b'],
      ['an invalid escape', 'CN=\\Zq'],
      ['a dangling backslash', 'CN=a\\'],
      ['escaped octets that are not UTF-8', 'CN=\\D8'],
      ['an odd-length hex value', 'CN=#0C0'],
      ['text after a hex value', 'CN=#0C0161x'],
      ['a bad type', 'C N=a'],
      ['a lone surrogate', 'CN=\ud800'],
      ['an overlong name', `CN=${'a'.repeat(5000)}`],
    ])('refuses %s', (_label, text) => {
      expect(codeOf(() => parseDn(text))).toBe('ERR_INVALID_INPUT');
    });
  });

  describe('#encodeName', () => {
    it('puts the last RDN of the text first in the DER SEQUENCE', () => {
      expect(decodeWithLibrary(encodeName(PERSIAN))).toEqual([
        [{ oid: '2.5.4.6', kind: 'printable', text: 'IR' }],
        [{ oid: '2.5.4.10', kind: 'utf8', text: 'کانون سردفتران' }],
        [{ oid: '2.5.4.3', kind: 'utf8', text: 'علی رضایی' }],
      ]);
    });

    it('encodes the same Name from an array in text order as from the text', () => {
      const array: NameAttribute[] = [
        { type: 'CN', value: 'علی رضایی' },
        { type: 'O', value: 'کانون سردفتران' },
        { type: 'C', value: 'IR' },
      ];
      expect(Buffer.from(encodeName(array))).toEqual(Buffer.from(encodeName(PERSIAN)));
    });

    it('uses PrintableString for serialNumber and IA5String for emailAddress and DC', () => {
      const rdns = decodeWithLibrary(
        encodeName('serialNumber=IDCIR-0012345678,emailAddress=a@b.ir,DC=example,DC=ir'),
      );
      expect(rdns.flat().map((a) => a.kind)).toEqual(['ia5', 'ia5', 'ia5', 'printable']);
    });

    it('sorts a multi-valued RDN by encoding, whatever the input order', () => {
      const a = encodeName([
        [
          { type: 'UID', value: 'u1' },
          { type: 'CN', value: 'x' },
        ],
      ]);
      const b = encodeName('CN=x+UID=u1');
      expect(Buffer.from(a)).toEqual(Buffer.from(b));
      const [rdn] = decodeWithLibrary(a);
      expect(rdn!.map((x) => x.oid)).toEqual(['2.5.4.3', '0.9.2342.19200300.100.1.1']);
    });

    it('upper-cases a lower-case country code', () => {
      expect(decodeWithLibrary(encodeName('c=ir'))[0]![0]!.text).toBe('IR');
    });

    it('accepts a 64-character Persian CN and Persian text with a zero-width non-joiner', () => {
      expect(() => encodeName([{ type: 'CN', value: 'ع'.repeat(64) }])).not.toThrow();
      expect(decodeWithLibrary(encodeName('CN=می\u200cشود'))[0]![0]!.text).toBe('می\u200cشود');
    });

    it('writes unknown OIDs as UTF8String and #hex values verbatim', () => {
      const der = encodeName('1.2.3.4=abc,1.2.3.5=#130161');
      expect(decodeWithLibrary(der)).toEqual([
        [{ oid: '1.2.3.5', kind: 'printable', text: 'a' }],
        [{ oid: '1.2.3.4', kind: 'utf8', text: 'abc' }],
      ]);
    });

    it('builds the same bytes through nameFromSubject and asn1-schema', () => {
      const subject = 'CN=a+UID=b,OU=IT,O=کانون,serialNumber=123,C=IR';
      expect(Buffer.from(AsnConvert.serialize(nameFromSubject(subject)))).toEqual(
        Buffer.from(encodeName(subject)),
      );
    });

    it.each<[string, Parameters<typeof encodeName>[0]]>([
      ['a three-letter country', 'C=IRN'],
      ['a non-letter country', 'C=1R'],
      ['a serialNumber outside PrintableString', 'serialNumber=a_b'],
      ['a non-ASCII emailAddress', 'emailAddress=علی@b.ir'],
      ['a CN longer than 64 characters', `CN=${'ع'.repeat(65)}`],
      ['a control character', [{ type: 'CN', value: 'a\nb' }]],
      ['a bidi override', [{ type: 'CN', value: 'a\u202eb' }]],
      ['an unknown short name', 'XX=a'],
      ['an invalid OID', '1.50.3=a'],
      ['a #hex value that is not one DER value', 'CN=#0C05'],
      ['a #hex value that is not a string', 'OU=#020101'],
      ['an empty array value', [{ type: 'CN', value: '' }]],
      ['an empty multi-valued RDN', [[]]],
      ['a non-string value', [{ type: 'CN', value: 1 } as unknown as NameAttribute]],
      ['a subject that is neither string nor array', 42 as unknown as string],
    ])('refuses %s', (_label, subject) => {
      expect(codeOf(() => encodeName(subject))).toBe('ERR_INVALID_INPUT');
    });
  });

  describe('#formatName', () => {
    it('prints the text a Name was parsed from, Persian unescaped', () => {
      expect(formatName(encodeName(PERSIAN))).toBe(PERSIAN);
    });

    it('escapes special characters, a leading # or space and a trailing space', () => {
      expect(
        formatName(
          encodeName([
            { type: 'CN', value: '#a,b+c"d\\e;f<g>h ' },
            { type: 'O', value: ' x' },
          ]),
        ),
      ).toBe('CN=\\#a\\,b\\+c\\"d\\\\e\\;f\\<g\\>h\\ ,O=\\ x');
    });

    it('writes attribute types it has no name for as OID=#hex', () => {
      expect(formatName(encodeName('1.2.3.4=abc'))).toBe('1.2.3.4=#0C03616263');
    });

    it('decodes BMPString, UniversalString and TeletexString values', () => {
      const bmp = Buffer.from('علی', 'utf16le').swap16().toString('hex');
      const universal = [...'رضا'].map((c) => c.codePointAt(0)!.toString(16).padStart(8, '0')).join('');
      const der = encodeName(`CN=#1e06${bmp},O=#1c0c${universal},OU=#1401e9`);
      expect(formatName(der)).toBe('CN=علی,O=رضا,OU=é');
    });

    it('hex-escapes control characters found in a Name', () => {
      expect(formatName(encodeName('CN=#0c03610a62'))).toBe('CN=a\\0Ab');
    });

    it('refuses bytes that are not a DER Name', () => {
      expect(codeOf(() => formatName(Uint8Array.from([0x30, 0x03, 0x31, 0x01])))).toBe('ERR_INVALID_INPUT');
      expect(codeOf(() => formatName(Uint8Array.from([0x31, 0x00])))).toBe('ERR_INVALID_INPUT');
    });

    it('round-trips any valid subject through text', () => {
      const specials = fc.constantFrom(
        ',',
        '+',
        '"',
        '\\',
        '<',
        '>',
        ';',
        '#',
        ' ',
        '=',
        'ع',
        'ی',
        '\u200c',
        'a',
        '1',
      );
      const value = fc.oneof(
        fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }),
        fc.array(specials, { minLength: 1, maxLength: 12 }).map((a) => a.join('')),
      );
      const attribute = fc.record({
        type: fc.constantFrom('CN', 'O', 'OU', 'L', 'ST', 'title', 'UID', 'givenName', 'surname', '1.2.3.4'),
        value,
      });
      const subject = fc.array(fc.oneof(attribute, fc.array(attribute, { minLength: 1, maxLength: 3 })), {
        minLength: 1,
        maxLength: 5,
      });
      fc.assert(
        fc.property(subject, (s) => {
          let der: Uint8Array;
          try {
            der = encodeName(s);
          } catch {
            fc.pre(false);
            return;
          }
          expect(Buffer.from(encodeName(formatName(der)))).toEqual(Buffer.from(der));
        }),
        { numRuns: 300 },
      );
    });
  });
});
