import { KelidError } from '../model/errors.js';

// PROTOCOL.md section 5 and config `pinPolicy` (section 8): a new PIN is checked here, in the trusted
// UI's backend, before it reaches the token. Lengths count UTF-8 bytes, as CK_TOKEN_INFO's
// ulMinPinLen/ulMaxPinLen do; for `digits` and `alnum` that is the number of characters.
// Nothing in this file ever puts a PIN, a part of it, or its length into a message or error data.

export interface PinRule {
  minLength: number;
  maxLength: number;
  /** `digits`: 0-9; `alnum`: ASCII letters and digits; `any`: any characters except control characters. */
  charset: 'digits' | 'alnum' | 'any';
  /** Refuse PINs whose characters are all the same (`1111`, `aAaA`). */
  rejectAllSame?: boolean;
  /** Refuse PINs that run up or down by one (`1234`, `9876`, `abcd`, `DCBA`); no wrap-around. */
  rejectSequential?: boolean;
}

export interface PinPolicy {
  user: PinRule;
  so: PinRule;
}

/** The documented default of config `pinPolicy`. */
export const DEFAULT_PIN_POLICY: PinPolicy = {
  user: { minLength: 4, maxLength: 16, charset: 'digits' },
  so: { minLength: 4, maxLength: 24, charset: 'alnum' },
};

export type PinRuleName = 'minLength' | 'maxLength' | 'charset' | 'rejectAllSame' | 'rejectSequential';

const CHARSETS: Record<PinRule['charset'], RegExp> = {
  digits: /^[0-9]*$/,
  alnum: /^[0-9A-Za-z]*$/,
  // No control characters (Cc) and no lone surrogates, which have no UTF-8 form.
  any: /^[^\p{Cc}\p{Cs}]*$/u,
};

const CHARSET_WORDS: Record<PinRule['charset'], string> = {
  digits: 'only digits',
  alnum: 'only letters (A-Z, a-z) and digits',
  any: 'no control characters',
};

// CK_UNAVAILABLE_INFORMATION and CK_EFFECTIVELY_INFINITE (0) both mean "no limit" for ulMaxPinLen.
const CK_UNAVAILABLE_INFORMATION = 0xffffffff;

/**
 * The rule to apply for a token: never looser than the token's own limits (the larger minimum and the
 * smaller maximum). A token maximum of 0 or CK_UNAVAILABLE_INFORMATION means the token sets no maximum.
 * Throws ERR_PIN_POLICY (data.rule `range`) when no length satisfies both: a configuration error.
 */
export function effectiveRule(rule: PinRule, tokenMin: number, tokenMax: number): PinRule {
  const tokenHasMax = Number.isFinite(tokenMax) && tokenMax > 0 && tokenMax < CK_UNAVAILABLE_INFORMATION;
  const tokenHasMin = Number.isFinite(tokenMin) && tokenMin > 0 && tokenMin < CK_UNAVAILABLE_INFORMATION;
  const minLength = Math.max(1, rule.minLength, tokenHasMin ? tokenMin : 0);
  const maxLength = tokenHasMax ? Math.min(rule.maxLength, tokenMax) : rule.maxLength;
  if (!Number.isSafeInteger(minLength) || !Number.isSafeInteger(maxLength) || minLength > maxLength) {
    throw new KelidError(
      'ERR_PIN_POLICY',
      `PIN policy (length ${rule.minLength}-${rule.maxLength}) and token (length ${tokenMin}-${tokenMax}) allow no common PIN length`,
      { data: { rule: 'range', policyMin: rule.minLength, policyMax: rule.maxLength, tokenMin, tokenMax } },
    );
  }
  return { ...rule, minLength, maxLength };
}

/**
 * Convert Persian (U+06F0–U+06F9) and Arabic-Indic (U+0660–U+0669) digits to ASCII digits. Persian
 * keyboards type those digits; the token must always receive the same bytes for the same PIN, so every
 * PIN typed into the trusted UI (old and new) goes through this before {@link checkPin} and the token.
 * Nothing else is changed (no Unicode normalization): a PIN's bytes are the user's.
 */
/** {@link normalizePin} for a login PIN that may be `null` (typed on a PIN pad reader, never seen). */
export function normalizePinEntry(pin: string | null): string | null {
  return pin === null ? null : normalizePin(pin);
}

export function normalizePin(pin: string): string {
  return pin.replace(/[\u06f0-\u06f9\u0660-\u0669]/g, (d) => {
    const code = d.charCodeAt(0);
    return String(code - (code >= 0x06f0 ? 0x06f0 : 0x0660));
  });
}

/**
 * Check a new PIN (already passed through {@link normalizePin}) against a rule. Throws ERR_PIN_POLICY
 * whose message names the broken rule and whose `data.rule` is the rule's name; neither ever contains
 * the PIN or its length.
 */
export function checkPin(pin: string, rule: PinRule): void {
  if (typeof pin !== 'string') throw new TypeError('PIN must be a string');
  const length = Buffer.byteLength(pin, 'utf8');
  if (length < rule.minLength) {
    broken('minLength', `PIN must be at least ${rule.minLength} characters long`, {
      minLength: rule.minLength,
    });
  }
  if (length > rule.maxLength) {
    broken('maxLength', `PIN must be at most ${rule.maxLength} characters long`, {
      maxLength: rule.maxLength,
    });
  }
  if (!CHARSETS[rule.charset].test(pin)) {
    broken('charset', `PIN must contain ${CHARSET_WORDS[rule.charset]}`, { charset: rule.charset });
  }
  const codes = Array.from(pin.toLowerCase(), (c) => c.codePointAt(0) ?? 0);
  if (rule.rejectAllSame && codes.length > 1 && codes.every((c) => c === codes[0])) {
    broken('rejectAllSame', 'PIN must not repeat one character only', {});
  }
  if (rule.rejectSequential && codes.length > 1 && isRun(pin.toLowerCase(), codes)) {
    broken('rejectSequential', 'PIN must not be a run of consecutive digits or letters', {});
  }
}

// A run of digits or of ASCII letters that steps by +1 throughout, or by -1 throughout.
function isRun(lower: string, codes: number[]): boolean {
  if (!/^(?:[0-9]+|[a-z]+)$/.test(lower)) return false;
  const step = codes[1] - codes[0];
  return (step === 1 || step === -1) && codes.every((c, i) => i === 0 || c - codes[i - 1] === step);
}

function broken(rule: PinRuleName, message: string, limits: Record<string, unknown>): never {
  throw new KelidError('ERR_PIN_POLICY', message, { data: { rule, ...limits } });
}
