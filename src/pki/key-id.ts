// CKA_ID convention shared with NSS and OpenSC ("mozilla" id style): SHA-1 of the RSA modulus or of
// the raw uncompressed EC point (not of the DER-wrapped CKA_EC_POINT).
import { createHash } from 'node:crypto';
import { KelidError } from '../model/errors.js';
import { stripLeadingZeros } from './der.js';
import { parseSpki } from './spki.js';

function sha1Hex(bytes: Uint8Array): string {
  return createHash('sha1').update(bytes).digest('hex');
}

/** Hex SHA-1 of an RSA modulus given as unsigned big-endian bytes (leading zero octets are ignored). */
export function keyIdFromRsaModulus(modulus: Uint8Array): string {
  const m = stripLeadingZeros(modulus);
  if (m.length === 0 || m[0] === 0) throw new KelidError('ERR_INVALID_INPUT', 'RSA modulus must be positive');
  return sha1Hex(m);
}

// Coordinate sizes of the curves in use (P-192 … P-521, brainpool). A DER-wrapped CKA_EC_POINT has a
// length that matches none of them, so it cannot be hashed by mistake.
const COORDINATE_SIZES: ReadonlySet<number> = new Set([24, 28, 32, 40, 48, 64, 66]);

/** Hex SHA-1 of a raw uncompressed EC point (04‖X‖Y). */
export function keyIdFromEcPoint(point: Uint8Array): string {
  if (point[0] !== 0x04 || !COORDINATE_SIZES.has((point.length - 1) / 2)) {
    throw new KelidError('ERR_INVALID_INPUT', 'expected a raw uncompressed EC point, not CKA_EC_POINT');
  }
  return sha1Hex(point);
}

/** The keyId (hex CKA_ID) of a SubjectPublicKeyInfo. */
export function keyIdFromSpki(spki: Uint8Array): string {
  const key = parseSpki(spki);
  return key.keyType === 'RSA' ? keyIdFromRsaModulus(key.modulus) : keyIdFromEcPoint(key.point);
}
