import { describe, expect, it } from 'vitest';
import { formatTokens } from '../../../src/cli/commands/tokens.js';
import type { Token } from '../../../src/model/types.js';

const unlocked = { countLow: false, finalTry: false, locked: false, toBeChanged: false };
const token: Token = {
  tokenId: '0'.repeat(32),
  moduleId: 'tpm2',
  label: 'tpm-token',
  manufacturer: 'IBM',
  model: 'SW   TPM',
  serialNumber: '0000000000000000',
  slotDescription: 'tpm-token',
  initialized: true,
  userPinInitialized: true,
  readOnly: false,
  protectedAuthenticationPath: false,
  pinLength: { min: 0, max: 128 },
  userPin: unlocked,
  soPin: unlocked,
};

describe('formatTokens', () => {
  it('says a device-wide lockout cannot be unblocked with the SO-PIN', () => {
    const locked = { ...unlocked, locked: true };
    const text = formatTokens([{ ...token, lockout: 'device-wide', userPin: locked, soPin: locked }]);
    expect(text).toContain('user PIN LOCKED');
    expect(text).toContain('locked device-wide: the SO-PIN cannot unblock it');
    expect(formatTokens([{ ...token, userPin: locked }])).not.toContain('device-wide');
    expect(formatTokens([{ ...token, lockout: 'device-wide' }])).not.toContain('LOCKED');
  });
});
