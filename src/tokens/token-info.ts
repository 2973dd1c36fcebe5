import type { RawSlot } from '../pkcs11/host-protocol.js';
import { CKF } from '../pkcs11/templates.js';
import type { PinState, Token } from '../model/types.js';
import { tokenIdOf } from './token-id.js';
import type { IdentityLevel } from './token-id.js';

// CK_EFFECTIVELY_INFINITE / CK_UNAVAILABLE_INFORMATION as pkcs11js reports them.
const UNAVAILABLE = new Set([0xffffffff, Number.MAX_SAFE_INTEGER]);

function pinState(flags: number, low: number, final: number, locked: number, change: number): PinState {
  return {
    countLow: (flags & low) !== 0,
    finalTry: (flags & final) !== 0,
    locked: (flags & locked) !== 0,
    toBeChanged: (flags & change) !== 0,
  };
}

export function userPinState(flags: number): PinState {
  return pinState(
    flags,
    CKF.USER_PIN_COUNT_LOW,
    CKF.USER_PIN_FINAL_TRY,
    CKF.USER_PIN_LOCKED,
    CKF.USER_PIN_TO_BE_CHANGED,
  );
}

export function soPinState(flags: number): PinState {
  // An uninitialized token reports SO_PIN_LOCKED|SO_PIN_TO_BE_CHANGED (SoftHSM): that is not a lock.
  if ((flags & CKF.TOKEN_INITIALIZED) === 0)
    return { countLow: false, finalTry: false, locked: false, toBeChanged: false };
  return pinState(
    flags,
    CKF.SO_PIN_COUNT_LOW,
    CKF.SO_PIN_FINAL_TRY,
    CKF.SO_PIN_LOCKED,
    CKF.SO_PIN_TO_BE_CHANGED,
  );
}

/**
 * The Token object of PROTOCOL.md section 4, from what the module host read; `level` comes from
 * {@link identityLevels} over the module's whole listing.
 */
export function toToken(moduleId: string, slot: RawSlot, level: IdentityLevel = 'serial'): Token {
  const t = slot.token;
  const initialized = (t.flags & CKF.TOKEN_INITIALIZED) !== 0;
  const userPinInitialized = (t.flags & CKF.USER_PIN_INITIALIZED) !== 0;
  return {
    tokenId: tokenIdOf(
      {
        moduleId,
        manufacturer: t.manufacturerId,
        model: t.model,
        serialNumber: t.serialNumber,
        slotDescription: slot.slotDescription,
        label: t.label,
        slotId: slot.slotId,
      },
      level,
    ),
    moduleId,
    label: t.label,
    manufacturer: t.manufacturerId,
    model: t.model,
    serialNumber: t.serialNumber,
    slotDescription: slot.slotDescription,
    initialized,
    userPinInitialized,
    readOnly: (t.flags & CKF.WRITE_PROTECTED) !== 0,
    protectedAuthenticationPath: (t.flags & CKF.PROTECTED_AUTHENTICATION_PATH) !== 0,
    pinLength: {
      min: UNAVAILABLE.has(t.minPinLen) ? 0 : t.minPinLen,
      max: UNAVAILABLE.has(t.maxPinLen) ? 0 : t.maxPinLen,
    },
    userPin:
      initialized && userPinInitialized
        ? userPinState(t.flags)
        : { countLow: false, finalTry: false, locked: false, toBeChanged: false },
    soPin: soPinState(t.flags),
  };
}
