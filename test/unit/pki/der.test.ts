import { constants, createHash, generateKeyPairSync, publicDecrypt, sign, verify } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Time } from '@peculiar/asn1-x509';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  TAG_NULL,
  TAG_OCTET_STRING,
  TAG_SEQUENCE,
  decodeOid,
  ecdsaDerToRaw,
  ecdsaRawToDer,
  encodeDigestInfo,
  encodeOid,
  encodePem,
  encodeTime,
  encodeUnsignedInteger,
  readSingle,
  readTlv,
} from '../../../src/pki/der.js';
import type { DigestAlgorithm } from '../../../src/model/types.js';

const HASHES: Array<[DigestAlgorithm, string]> = [
  ['SHA-256', 'sha256'],
  ['SHA-384', 'sha384'],
  ['SHA-512', 'sha512'],
];

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('der', () => {
  describe('#encodeDigestInfo', () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

    it.each(HASHES)(
      'matches the DigestInfo inside a node:crypto %s PKCS#1 v1.5 signature',
      (alg, nodeName) => {
        const data = Buffer.from('kelid digest info');
        const signature = sign(nodeName, data, privateKey);
        // Public-key "decryption" strips the type-1 padding and leaves exactly node's DigestInfo.
        const recovered = publicDecrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, signature);
        const digest = createHash(nodeName).update(data).digest();
        expect(Buffer.from(encodeDigestInfo(digest, alg))).toEqual(recovered);
      },
    );

    it('refuses a digest whose length does not match the algorithm', () => {
      expect(codeOf(() => encodeDigestInfo(new Uint8Array(32), 'SHA-384'))).toBe('ERR_INVALID_INPUT');
    });
  });

  describe('#ecdsaRawToDer', () => {
    it.each([
      ['P-256', 'sha256'],
      ['P-384', 'sha384'],
      ['P-521', 'sha512'],
    ])('turns a node:crypto %s r||s signature into DER that node verifies', (namedCurve, hash) => {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve });
      const data = Buffer.from(`data for ${namedCurve}`);
      for (let i = 0; i < 8; i++) {
        const raw = sign(hash, data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
        const der = ecdsaRawToDer(raw);
        expect(verify(hash, data, publicKey, der)).toBe(true);
      }
    });

    it('encodes minimal positive INTEGERs for every r and s', () => {
      fc.assert(
        fc.property(
          fc.uint8Array({ minLength: 32, maxLength: 32 }),
          fc.uint8Array({ minLength: 32, maxLength: 32 }),
          (r, s) => {
            const der = ecdsaRawToDer(Uint8Array.from([...r, ...s]));
            const seq = readTlv(der);
            expect(seq.end).toBe(der.length);
            expect(Buffer.from(ecdsaDerToRaw(der, 32))).toEqual(Buffer.from([...r, ...s]));
          },
        ),
      );
    });

    it('refuses an odd-length input', () => {
      expect(codeOf(() => ecdsaRawToDer(new Uint8Array(63)))).toBe('ERR_INVALID_INPUT');
    });
  });

  describe('#ecdsaDerToRaw', () => {
    it('turns a node:crypto DER signature into r||s that node verifies as ieee-p1363', () => {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
      const data = Buffer.from('p1363');
      for (let i = 0; i < 8; i++) {
        const der = sign('sha384', data, privateKey);
        const raw = ecdsaDerToRaw(der, 48);
        expect(raw.length).toBe(96);
        expect(verify('sha384', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, raw)).toBe(true);
      }
    });

    it.each([
      ['trailing bytes', '3006020101020101' + '00'],
      ['three integers', '3009020101020101020101'],
      ['a negative integer', '30060201ff020101'],
      ['a non-minimal integer', '3007020200010201' + '01'],
      ['a value longer than the curve order', '3008020301000002' + '0101'],
      ['an indefinite length', '3080020101020101' + '0000'],
      ['a truncated sequence', '3006020101'],
    ])('refuses %s', (_label, hex) => {
      expect(codeOf(() => ecdsaDerToRaw(Buffer.from(hex, 'hex'), 2))).toBe('ERR_INVALID_INPUT');
    });
  });

  describe('#encodeOid', () => {
    it.each([
      '1.2.840.113549.1.1.11',
      '2.5.4.3',
      '1.3.6.1.4.1.311.20.2.3',
      '2.999.1',
      '2.999.1234567',
      '0.9.2342.19200300.100.1.25',
      '2.16.840.1.101.3.4.2.1',
      '1.2.840.113549.1.1.10',
      '1.2.840.113549.1.9.16.2.47',
    ])('encodes %s as asn1-schema does and decodes it back', (oid) => {
      const theirs = new Uint8Array(AsnConvert.serialize(new AlgorithmIdentifier({ algorithm: oid })));
      // AlgorithmIdentifier ::= SEQUENCE { OID } — our OID TLV is the whole content.
      expect(Buffer.from(theirs.subarray(2))).toEqual(Buffer.from(encodeOid(oid)));
      expect(decodeOid(encodeOid(oid).subarray(2))).toBe(oid);
    });

    it.each(['1', '3.1', '1.40', '1.2.03', 'a.b', ''])('refuses %j', (oid) => {
      expect(codeOf(() => encodeOid(oid))).toBe('ERR_INVALID_INPUT');
    });
  });

  describe('#encodeUnsignedInteger', () => {
    it('encodes every magnitude as a minimal, non-negative INTEGER of the same value', () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }), (bytes) => {
          const der = encodeUnsignedInteger(bytes);
          const tlv = readTlv(der);
          expect(tlv.tag).toBe(2);
          expect(tlv.end).toBe(der.length);
          const content = der.subarray(tlv.contentStart, tlv.end);
          expect(content[0]! & 0x80).toBe(0);
          expect(content.length === 1 || !(content[0] === 0 && (content[1]! & 0x80) === 0)).toBe(true);
          const value = BigInt(`0x${Buffer.from(bytes).toString('hex')}`);
          expect(BigInt(`0x${Buffer.from(content).toString('hex')}`)).toBe(value);
        }),
      );
    });
  });

  describe('#readTlv', () => {
    it('reads long-form lengths', () => {
      const body = new Uint8Array(300).fill(7);
      const der = Buffer.concat([Buffer.from([0x04, 0x82, 0x01, 0x2c]), body]);
      expect(readTlv(der)).toEqual({ tag: 4, start: 0, contentStart: 4, end: 304 });
    });

    it.each([
      ['a length beyond the buffer', '0405abcd'],
      ['a five-octet length', '04850000000001' + '00'],
      ['an empty buffer', ''],
    ])('refuses %s', (_label, hex) => {
      expect(codeOf(() => readTlv(Buffer.from(hex, 'hex')))).toBe('ERR_INVALID_INPUT');
    });
  });

  describe('#readSingle', () => {
    it.each([
      ['an indefinite length', Uint8Array.of(0x30, 0x80, 0, 0), TAG_SEQUENCE],
      ['a truncated value', Uint8Array.of(0x04, 0x05, 1, 2), TAG_OCTET_STRING],
      ['trailing bytes', Uint8Array.of(0x05, 0x00, 0x00), TAG_NULL],
    ])('refuses %s', (_label, der, tag) => {
      expect(codeOf(() => readSingle(der, tag, 'value'))).toBe('ERR_INVALID_INPUT');
    });
  });

  describe('#encodeTime', () => {
    it('writes UTCTime before 2050 and GeneralizedTime from 2050, readable by @peculiar/asn1-x509', () => {
      for (const date of [new Date('2026-03-21T12:34:56Z'), new Date('2050-01-01T00:00:00Z')]) {
        const der = encodeTime(date);
        expect(der[0]).toBe(date.getUTCFullYear() < 2050 ? 0x17 : 0x18);
        expect(AsnConvert.parse(der, Time).getTime().getTime()).toBe(date.getTime());
      }
    });
  });

  describe('#encodePem', () => {
    it('writes 64-character lines that node:crypto can read back', () => {
      const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const der = publicKey.export({ type: 'spki', format: 'der' });
      const pem = encodePem('PUBLIC KEY', der);
      expect(pem).toBe(publicKey.export({ type: 'spki', format: 'pem' }));
    });
  });
});
