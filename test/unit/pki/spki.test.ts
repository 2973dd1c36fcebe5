import { ECDH, createHash, createPublicKey, generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeTlv } from '../../../src/pki/der.js';
import { keyIdFromEcPoint, keyIdFromRsaModulus, keyIdFromSpki } from '../../../src/pki/key-id.js';
import {
  curveFromEcParams,
  ecParamsForCurve,
  ecSpki,
  parseSpki,
  rsaSpki,
  unwrapEcPoint,
  wrapEcPoint,
} from '../../../src/pki/spki.js';
import type { NamedCurve } from '../../../src/pki/spki.js';

const b64u = (s: string | undefined): Buffer => Buffer.from(s!, 'base64url');

function spkiOf(key: KeyObject): Uint8Array {
  return new Uint8Array(key.export({ type: 'spki', format: 'der' }));
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 65537 }).publicKey;
const ecKeys = Object.fromEntries(
  (['P-256', 'P-384', 'P-521'] as const).map((c) => [
    c,
    generateKeyPairSync('ec', { namedCurve: c }).publicKey,
  ]),
) as Record<NamedCurve, KeyObject>;

/** 04‖X‖Y from node's JWK export. */
function jwkPoint(key: KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' });
  return Buffer.concat([Buffer.of(4), b64u(jwk.x), b64u(jwk.y)]);
}

describe('spki', () => {
  describe('#parseSpki', () => {
    it('reads the RSA modulus and exponent node exports as JWK', () => {
      const info = parseSpki(spkiOf(rsa));
      const jwk = rsa.export({ format: 'jwk' });
      expect(info.keyType).toBe('RSA');
      if (info.keyType !== 'RSA') return;
      expect(Buffer.from(info.modulus)).toEqual(b64u(jwk.n));
      expect(Buffer.from(info.publicExponent)).toEqual(b64u(jwk.e));
      expect(info.modulusLength).toBe(rsa.asymmetricKeyDetails!.modulusLength);
    });

    it.each(['P-256', 'P-384', 'P-521'] as const)(
      'reads the %s curve and point node exports as JWK',
      (curve) => {
        const info = parseSpki(spkiOf(ecKeys[curve]));
        expect(info.keyType).toBe('EC');
        if (info.keyType !== 'EC') return;
        expect(info.namedCurve).toBe(curve);
        expect(Buffer.from(info.point)).toEqual(jwkPoint(ecKeys[curve]));
        expect(curveFromEcParams(info.ecParams)).toBe(curve);
      },
    );

    it('decompresses a compressed point', () => {
      const point = jwkPoint(ecKeys['P-256']);
      const compressed = ECDH.convertKey(point, 'prime256v1', undefined, undefined, 'compressed') as Buffer;
      const spki = ecSpkiRaw(ecParamsForCurve('P-256'), compressed);
      const info = parseSpki(spki);
      expect(info.keyType === 'EC' && Buffer.from(info.point)).toEqual(point);
    });

    it('refuses a point that is not on the curve', () => {
      const point = jwkPoint(ecKeys['P-256']);
      point[64]! ^= 1;
      expect(codeOf(() => parseSpki(ecSpkiRaw(ecParamsForCurve('P-256'), point)))).toBe('ERR_INVALID_INPUT');
    });

    it('refuses Ed25519 keys as unsupported and garbage as invalid', () => {
      const ed = generateKeyPairSync('ed25519').publicKey;
      expect(codeOf(() => parseSpki(spkiOf(ed)))).toBe('ERR_MECHANISM_UNSUPPORTED');
      expect(codeOf(() => parseSpki(Uint8Array.of(0x30, 0x00)))).toBe('ERR_INVALID_INPUT');
      expect(codeOf(() => parseSpki(Buffer.concat([spkiOf(rsa), Buffer.of(0)])))).toBe('ERR_INVALID_INPUT');
    });
  });

  describe('#rsaSpki', () => {
    it('builds the SPKI node exports from CKA_MODULUS and CKA_PUBLIC_EXPONENT', () => {
      const jwk = rsa.export({ format: 'jwk' });
      expect(Buffer.from(rsaSpki(b64u(jwk.n), b64u(jwk.e)))).toEqual(Buffer.from(spkiOf(rsa)));
    });

    it('ignores leading zero octets', () => {
      const jwk = rsa.export({ format: 'jwk' });
      const built = rsaSpki(
        Buffer.concat([Buffer.of(0, 0), b64u(jwk.n)]),
        Buffer.concat([Buffer.of(0), b64u(jwk.e)]),
      );
      expect(Buffer.from(built)).toEqual(Buffer.from(spkiOf(rsa)));
    });

    it('refuses a zero modulus', () => {
      expect(codeOf(() => rsaSpki(new Uint8Array(4), Uint8Array.of(3)))).toBe('ERR_INVALID_INPUT');
    });
  });

  describe('#ecSpki', () => {
    it.each(['P-256', 'P-384', 'P-521'] as const)(
      'builds the %s SPKI node exports from a raw or DER-wrapped CKA_EC_POINT',
      (curve) => {
        const point = jwkPoint(ecKeys[curve]);
        const expected = Buffer.from(spkiOf(ecKeys[curve]));
        expect(Buffer.from(ecSpki(curve, point))).toEqual(expected);
        expect(Buffer.from(ecSpki(ecParamsForCurve(curve), wrapEcPoint(point)))).toEqual(expected);
        // node parses it back to the same key.
        const key = createPublicKey({ key: Buffer.from(ecSpki(curve, point)), format: 'der', type: 'spki' });
        expect(key.export({ format: 'jwk' })).toEqual(ecKeys[curve].export({ format: 'jwk' }));
      },
    );

    it('refuses a point of another curve', () => {
      expect(codeOf(() => ecSpki('P-384', jwkPoint(ecKeys['P-256'])))).toBe('ERR_INVALID_INPUT');
    });
  });

  describe('#unwrapEcPoint', () => {
    it('returns the raw point from either CKA_EC_POINT form', () => {
      const point = jwkPoint(ecKeys['P-521']);
      expect(Buffer.from(unwrapEcPoint(wrapEcPoint(point), 'P-521'))).toEqual(point);
      expect(Buffer.from(unwrapEcPoint(point, 'P-521'))).toEqual(point);
    });
  });
});

describe('key-id', () => {
  describe('#keyIdFromSpki', () => {
    it('is the SHA-1 of the RSA modulus node exports', () => {
      const n = b64u(rsa.export({ format: 'jwk' }).n);
      const expected = createHash('sha1').update(n).digest('hex');
      expect(keyIdFromSpki(spkiOf(rsa))).toBe(expected);
      expect(keyIdFromRsaModulus(Buffer.concat([Buffer.of(0), n]))).toBe(expected);
    });

    it.each(['P-256', 'P-384', 'P-521'] as const)(
      'is the SHA-1 of the raw %s point, not of CKA_EC_POINT',
      (curve) => {
        const point = jwkPoint(ecKeys[curve]);
        const expected = createHash('sha1').update(point).digest('hex');
        expect(keyIdFromSpki(spkiOf(ecKeys[curve]))).toBe(expected);
        expect(keyIdFromEcPoint(point)).toBe(expected);
        expect(expected).not.toBe(createHash('sha1').update(wrapEcPoint(point)).digest('hex'));
      },
    );

    it('gives the same keyId for a compressed-point SPKI', () => {
      const point = jwkPoint(ecKeys['P-384']);
      const compressed = ECDH.convertKey(point, 'secp384r1', undefined, undefined, 'compressed') as Buffer;
      expect(keyIdFromSpki(ecSpkiRaw(ecParamsForCurve('P-384'), compressed))).toBe(
        keyIdFromSpki(spkiOf(ecKeys['P-384'])),
      );
    });
  });

  describe('#keyIdFromEcPoint', () => {
    it('refuses a DER-wrapped or compressed point', () => {
      const point = jwkPoint(ecKeys['P-256']);
      expect(codeOf(() => keyIdFromEcPoint(wrapEcPoint(point)))).toBe('ERR_INVALID_INPUT');
      expect(codeOf(() => keyIdFromEcPoint(point.subarray(0, 33)))).toBe('ERR_INVALID_INPUT');
    });
  });
});

/** An EC SPKI with the point bytes exactly as given (ecSpki would normalize them). */
function ecSpkiRaw(ecParams: Uint8Array, point: Uint8Array): Uint8Array {
  const alg = encodeTlv(0x30, Uint8Array.of(0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01), ecParams);
  return encodeTlv(0x30, alg, encodeTlv(0x03, Uint8Array.of(0), point));
}
