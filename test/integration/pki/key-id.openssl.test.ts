import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyIdFromEcPoint, keyIdFromRsaModulus, keyIdFromSpki } from '../../../src/pki/key-id.js';
import { ecSpki, parseSpki, rsaSpki } from '../../../src/pki/spki.js';
import { makeTempDir, openssl, opensslText } from './openssl.js';
import type { TempDir } from './openssl.js';

const sha1 = (bytes: Uint8Array): string => createHash('sha1').update(bytes).digest('hex');

let tmp: TempDir;
beforeAll(() => {
  tmp = makeTempDir('kelid-keyid-');
});
afterAll(() => tmp.remove());

/** Generate a key with openssl; return the path of its public key (PEM) and its SPKI DER. */
function opensslKey(name: string, genArgs: string[]): { pub: string; spki: Uint8Array } {
  const key = tmp.path(`${name}.key`);
  opensslText(['genpkey', ...genArgs, '-out', key]);
  const pub = tmp.path(`${name}.pub`);
  opensslText(['pkey', '-in', key, '-pubout', '-out', pub]);
  const spki = new Uint8Array(openssl(['pkey', '-pubin', '-in', pub, '-outform', 'DER']).stdout);
  return { pub, spki };
}

/** The `pub:` bytes of `openssl ec -pubin -text`. */
function opensslEcPoint(pub: string, extra: string[] = []): Uint8Array {
  const text = opensslText(['ec', '-pubin', '-in', pub, '-noout', '-text', ...extra]);
  const hex = /pub:\n((?:\s+[0-9a-f:]+\n)+)/.exec(text)![1]!.replace(/[\s:]/g, '');
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

describe('key-id', () => {
  describe('#keyIdFromSpki (checked against openssl)', () => {
    it.each([2048])('is the SHA-1 of the modulus openssl prints for RSA %i', (bits) => {
      const { pub, spki } = opensslKey(`rsa${bits}`, [
        '-algorithm',
        'RSA',
        '-pkeyopt',
        `rsa_keygen_bits:${bits}`,
      ]);
      const modulusHex = /^Modulus=([0-9A-F]+)$/m.exec(
        opensslText(['rsa', '-pubin', '-in', pub, '-noout', '-modulus']),
      )![1]!;
      const modulus = new Uint8Array(Buffer.from(modulusHex, 'hex'));
      expect(keyIdFromSpki(spki)).toBe(sha1(modulus));
      expect(keyIdFromRsaModulus(modulus)).toBe(sha1(modulus));

      const exponent = /^Exponent: (\d+)/m.exec(
        opensslText(['rsa', '-pubin', '-in', pub, '-noout', '-text']),
      )![1]!;
      const e = BigInt(exponent).toString(16);
      const exponentBytes = Buffer.from(e.length % 2 ? `0${e}` : e, 'hex');
      expect(Buffer.from(rsaSpki(modulus, exponentBytes))).toEqual(Buffer.from(spki));
    });

    it.each([
      ['P-256', 'P-256'],
      ['P-384', 'P-384'],
    ] as const)('is the SHA-1 of the raw point openssl prints for EC %s', (curve, opensslCurve) => {
      const { pub, spki } = opensslKey(`ec-${curve}`, [
        '-algorithm',
        'EC',
        '-pkeyopt',
        `ec_paramgen_curve:${opensslCurve}`,
      ]);
      const point = opensslEcPoint(pub);
      expect(point[0]).toBe(0x04);
      expect(keyIdFromSpki(spki)).toBe(sha1(point));
      expect(keyIdFromEcPoint(point)).toBe(sha1(point));
      expect(Buffer.from(ecSpki(curve, point))).toEqual(Buffer.from(spki));
      const info = parseSpki(spki);
      expect(info.keyType === 'EC' && Buffer.from(info.point)).toEqual(Buffer.from(point));
    });

    it('gives the same keyId for the compressed SPKI openssl writes', () => {
      const { pub, spki } = opensslKey('ec-compressed', [
        '-algorithm',
        'EC',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
      ]);
      const compressed = new Uint8Array(
        openssl(['ec', '-pubin', '-in', pub, '-pubout', '-conv_form', 'compressed', '-outform', 'DER'])
          .stdout,
      );
      expect(compressed.length).toBeLessThan(spki.length);
      expect(keyIdFromSpki(compressed)).toBe(keyIdFromSpki(spki));
      expect(keyIdFromSpki(compressed)).toBe(sha1(opensslEcPoint(pub)));
    });
  });
});
