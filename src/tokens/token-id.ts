import { createHash } from 'node:crypto';
import type { RawSlot, TokenRef } from '../pkcs11/host-protocol.js';

/**
 * How much of a token's description its id is made of:
 * - `serial`: module, manufacturer, model and serial — a serial unique within its module (SoftHSM);
 * - `label`: also the slot description and the token label — for serials that are empty (not
 *   initialized) or repeated within the module (tpm2-pkcs11 reports `0000000000000000` for every
 *   token; some vendor tokens repeat or blank theirs);
 * - `slot`: also the slot id — only when even those repeat (two tokens with one label on such a
 *   module); stable only as long as the module keeps its slot ids.
 */
export type IdentityLevel = 'serial' | 'label' | 'slot';

/**
 * Stable, opaque token id: derived from module, manufacturer, model and serial — never the slot id,
 * which changes between processes — unless the serial does not tell tokens apart (see
 * {@link IdentityLevel}). Ids of tokens whose serial is unique are the same as before levels existed.
 * Tokens without a serial (not initialized yet) also need the slot description to tell empty slots
 * apart; their id changes once they are initialized, as the protocol says.
 */
export function tokenIdOf(
  parts: {
    moduleId: string;
    manufacturer: string;
    model: string;
    serialNumber: string;
    slotDescription: string;
    label?: string;
    slotId?: string;
  },
  level: IdentityLevel = 'serial',
): string {
  const fields = [parts.moduleId, parts.manufacturer, parts.model, parts.serialNumber];
  if (parts.serialNumber === '' || level !== 'serial') fields.push(parts.slotDescription);
  // Appended only at the higher levels, so that ids of the `serial` level (and of SoftHSM's empty
  // slots) are unchanged.
  if (level !== 'serial') fields.push('\u0001label', parts.label ?? '');
  if (level === 'slot') fields.push(parts.slotId ?? '');
  return createHash('sha256').update(fields.join('\u0000'), 'utf8').digest('hex').slice(0, 32);
}

const serialKey = (s: RawSlot): string =>
  [s.token.manufacturerId, s.token.model, s.token.serialNumber].join('\u0000');
const labelKey = (s: RawSlot): string => [serialKey(s), s.slotDescription, s.token.label].join('\u0000');

function counts(slots: RawSlot[], key: (s: RawSlot) => string): Map<string, number> {
  const m = new Map<string, number>();
  for (const s of slots) m.set(key(s), (m.get(key(s)) ?? 0) + 1);
  return m;
}

/**
 * The identity level of every slot of one module's listing: the lowest level that tells the slot's
 * token apart from the module's other tokens. Empty serials keep the `serial` level (their id already
 * includes the slot description) unless that repeats too.
 */
export function identityLevels(slots: RawSlot[]): IdentityLevel[] {
  const bySerial = counts(slots, serialKey);
  const byLabel = counts(slots, labelKey);
  return slots.map((s) => {
    if (s.token.serialNumber === '') {
      const emptyKey = (x: RawSlot) => [serialKey(x), x.slotDescription].join('\u0000');
      if (slots.filter((x) => emptyKey(x) === emptyKey(s)).length === 1) return 'serial';
    } else if (bySerial.get(serialKey(s)) === 1) {
      return 'serial';
    }
    return byLabel.get(labelKey(s)) === 1 ? 'label' : 'slot';
  });
}

/**
 * What the module host needs to find this token again, and only it: the serial, plus the label and
 * slot description at the `label` level, plus the slot itself at the `slot` level.
 */
export function tokenRefOf(slot: RawSlot, level: IdentityLevel): TokenRef {
  const ref: TokenRef = { slotId: slot.slotId, serial: slot.token.serialNumber };
  if (level !== 'serial') {
    ref.label = slot.token.label;
    ref.slotDescription = slot.slotDescription;
  }
  if (level === 'slot') ref.slotBound = true;
  return ref;
}
