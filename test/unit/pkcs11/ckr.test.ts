import { describe, expect, it } from 'vitest';
import { CKR, CKR_MAPPINGS, ckrName, hasCkr, mapPkcs11Error, readCkr } from '../../../src/pkcs11/ckr.js';
import { KelidError } from '../../../src/model/errors.js';

/** The shape pkcs11js throws from most functions. */
function pkcs11Error(name: string): Error {
  const e = new Error(name) as Error & { code: number };
  e.name = 'Pkcs11Error';
  e.code = CKR[name]!;
  return e;
}

/** The shape C_SetAttributeValue / C_CreateObject / C_CopyObject throw. */
function plainError(name: string): Error {
  return new Error(`${name}:${CKR[name]}`);
}

describe('ckr', () => {
  describe('#mapPkcs11Error', () => {
    for (const [name, mapping] of Object.entries(CKR_MAPPINGS)) {
      it(`maps ${name} to ${mapping.code} in both pkcs11js error forms`, () => {
        for (const e of [pkcs11Error(name), plainError(name)]) {
          const k = mapPkcs11Error(e, 'C_Test');
          expect(k).toBeInstanceOf(KelidError);
          expect(k.code).toBe(mapping.code);
          expect(k.data.ckr).toBe(name);
          expect(k.message).toBe(mapping.message);
        }
      });
    }

    it('maps an unnamed CK_RV to ERR_INTERNAL and keeps the name for the log', () => {
      const k = mapPkcs11Error(pkcs11Error('CKR_BUFFER_TOO_SMALL'), 'C_Sign');
      expect(k.code).toBe('ERR_INTERNAL');
      expect(k.data.ckr).toBe('CKR_BUFFER_TOO_SMALL');
    });

    it('maps a non-PKCS#11 error (e.g. dlopen failure) to ERR_MODULE_FAILED', () => {
      expect(mapPkcs11Error(new Error('cannot open shared object'), 'load').code).toBe('ERR_MODULE_FAILED');
    });

    it('passes a KelidError through unchanged', () => {
      const e = new KelidError('ERR_BUSY', 'busy');
      expect(mapPkcs11Error(e, 'x')).toBe(e);
    });

    it('marks device-level failures retriable and PIN policy failures not', () => {
      expect(mapPkcs11Error(pkcs11Error('CKR_DEVICE_ERROR'), 'x').retriable).toBe(true);
      expect(mapPkcs11Error(pkcs11Error('CKR_TOKEN_NOT_PRESENT'), 'x').retriable).toBe(true);
      expect(mapPkcs11Error(pkcs11Error('CKR_PIN_LEN_RANGE'), 'x').retriable).toBe(false);
      expect(mapPkcs11Error(pkcs11Error('CKR_KEY_FUNCTION_NOT_PERMITTED'), 'x').retriable).toBe(false);
    });
  });

  describe('#readCkr', () => {
    it('reads the value of a plain "CKR_NAME:N" error', () => {
      expect(readCkr(new Error('CKR_ATTRIBUTE_READ_ONLY:16'))).toEqual({
        name: 'CKR_ATTRIBUTE_READ_ONLY',
        value: 16,
      });
    });
    it('reads a Pkcs11Error by its code', () => {
      expect(readCkr(pkcs11Error('CKR_PIN_INCORRECT'))).toEqual({ name: 'CKR_PIN_INCORRECT', value: 0xa0 });
    });
    it('returns undefined for errors that carry no CK_RV', () => {
      expect(readCkr(new Error('boom'))).toBeUndefined();
      expect(readCkr('CKR_PIN_INCORRECT:160')).toBeUndefined();
    });
  });

  describe('#hasCkr', () => {
    it('recognises raw and mapped errors', () => {
      expect(hasCkr(plainError('CKR_SESSION_EXISTS'), 'CKR_SESSION_EXISTS')).toBe(true);
      expect(hasCkr(mapPkcs11Error(plainError('CKR_SESSION_EXISTS'), 'x'), 'CKR_SESSION_EXISTS')).toBe(true);
      expect(hasCkr(plainError('CKR_SESSION_EXISTS'), 'CKR_PIN_LOCKED')).toBe(false);
    });
  });

  it('names every value it knows and formats unknown ones', () => {
    expect(ckrName(0xa4)).toBe('CKR_PIN_LOCKED');
    expect(ckrName(0x12345)).toBe('CKR_0x12345');
  });
});
