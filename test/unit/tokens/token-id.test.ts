import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { RawSlot } from '../../../src/pkcs11/host-protocol.js';
import { identityLevels, tokenIdOf, tokenRefOf } from '../../../src/tokens/token-id.js';

function slot(slotId: string, serial: string, label: string, slotDescription = label): RawSlot {
  return {
    slotId,
    slotDescription,
    slotManufacturer: 'M',
    slotFlags: 0,
    token: {
      label,
      manufacturerId: 'M',
      model: 'X',
      serialNumber: serial,
      flags: 0,
      minPinLen: 4,
      maxPinLen: 8,
    },
  };
}

/** The derivation before identity levels: ids that pages stored must not change. */
function legacyId(serial: string, slotDescription: string): string {
  const fields = ['mod', 'M', 'X', serial];
  if (serial === '') fields.push(slotDescription);
  return createHash('sha256').update(fields.join('\u0000'), 'utf8').digest('hex').slice(0, 32);
}

describe('tokenIdOf / identityLevels', () => {
  it('keeps the ids of tokens with unique serials, and of empty slots, as before', () => {
    const slots = [
      slot('01', 'a1', 'alpha'),
      slot('02', 'b2', 'beta'),
      slot('03', '', '', 'SoftHSM slot ID 0x3'),
    ];
    const levels = identityLevels(slots);
    expect(levels).toEqual(['serial', 'serial', 'serial']);
    slots.forEach((s, i) => {
      const id = tokenIdOf(
        {
          moduleId: 'mod',
          manufacturer: 'M',
          model: 'X',
          serialNumber: s.token.serialNumber,
          slotDescription: s.slotDescription,
          label: s.token.label,
        },
        levels[i],
      );
      expect(id).toBe(legacyId(s.token.serialNumber, s.slotDescription));
      expect(tokenRefOf(s, levels[i]!)).toEqual({ slotId: s.slotId, serial: s.token.serialNumber });
    });
  });

  it('adds the label and slot description when serials repeat, and the slot only when those repeat too', () => {
    const slots = [
      slot('01', '0000', 'alpha'),
      slot('02', '0000', 'twin'),
      slot('03', '0000', 'twin'),
      slot('04', '0000', ''),
      slot('05', 'unique', 'alpha'),
    ];
    expect(identityLevels(slots)).toEqual(['label', 'slot', 'slot', 'label', 'serial']);
    expect(tokenRefOf(slots[0]!, 'label')).toEqual({
      slotId: '01',
      serial: '0000',
      label: 'alpha',
      slotDescription: 'alpha',
    });
    expect(tokenRefOf(slots[1]!, 'slot').slotBound).toBe(true);
    const ids = slots.map((s, i) =>
      tokenIdOf(
        {
          moduleId: 'mod',
          manufacturer: 'M',
          model: 'X',
          serialNumber: s.token.serialNumber,
          slotDescription: s.slotDescription,
          label: s.token.label,
          slotId: s.slotId,
        },
        identityLevels(slots)[i],
      ),
    );
    expect(new Set(ids).size).toBe(slots.length);
  });
});
