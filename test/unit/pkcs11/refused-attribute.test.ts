import { describe, expect, it } from 'vitest';
import { refusedAttribute } from '../../../src/pkcs11/host-client.js';

describe('refusedAttribute', () => {
  it('reads the attribute tpm2-pkcs11 names when it refuses a template, and nothing else of the output', () => {
    expect(
      refusedAttribute([
        'WARNING: Cannot prepare version query',
        'ERROR: User specified and TPM specified attr mismatch: 0x10a',
        'ERROR: Failed to add missing rsa attrs',
      ]),
    ).toBe('CKA_VERIFY');
    expect(refusedAttribute(['ERROR: attr mismatch: 0x104'])).toBe('CKA_ENCRYPT');
    // an attribute Kelid has no name for is reported by number
    expect(refusedAttribute(['attribute 0x80001234 invalid'])).toBe('0x80001234');
    expect(
      refusedAttribute(['ERROR: Esys_RSA_Decrypt: tpm:handle(1):inconsistent attributes']),
    ).toBeUndefined();
    expect(refusedAttribute([])).toBeUndefined();
  });
});
