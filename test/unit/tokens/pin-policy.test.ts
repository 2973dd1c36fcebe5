import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PIN_POLICY, checkPin, effectiveRule, normalizePin } from '../../../src/tokens/pin-policy.js';
import type { PinRule, PinRuleName } from '../../../src/tokens/pin-policy.js';
import { KelidError } from '../../../src/model/errors.js';

function refusal(pin: string, rule: PinRule): KelidError {
  try {
    checkPin(pin, rule);
  } catch (e) {
    if (e instanceof KelidError) return e;
    throw e;
  }
  throw new Error('checkPin accepted the PIN');
}

function refusedFor(pin: string, rule: PinRule): PinRuleName {
  const e = refusal(pin, rule);
  expect(e.code).toBe('ERR_PIN_POLICY');
  return e.data.rule as PinRuleName;
}

const digits: PinRule = { minLength: 4, maxLength: 8, charset: 'digits' };

describe('DEFAULT_PIN_POLICY', () => {
  it('is the default of PROTOCOL.md section 8', () => {
    expect(DEFAULT_PIN_POLICY).toEqual({
      user: { minLength: 4, maxLength: 16, charset: 'digits' },
      so: { minLength: 4, maxLength: 24, charset: 'alnum' },
    });
  });
});

describe('effectiveRule', () => {
  it('takes the larger minimum and the smaller maximum', () => {
    expect(effectiveRule(DEFAULT_PIN_POLICY.user, 6, 12)).toEqual({
      minLength: 6,
      maxLength: 12,
      charset: 'digits',
    });
    expect(effectiveRule(DEFAULT_PIN_POLICY.user, 1, 255)).toEqual(DEFAULT_PIN_POLICY.user);
  });

  it('keeps the other settings of the rule', () => {
    const rule: PinRule = { ...digits, rejectAllSame: true, rejectSequential: true };
    expect(effectiveRule(rule, 5, 6)).toEqual({ ...rule, minLength: 5, maxLength: 6 });
  });

  it.each([
    ['0 (CK_EFFECTIVELY_INFINITE)', 0],
    ['CK_UNAVAILABLE_INFORMATION', 0xffffffff],
  ])('treats a token maximum of %s as no maximum', (_name, tokenMax) => {
    expect(effectiveRule(DEFAULT_PIN_POLICY.so, 4, tokenMax).maxLength).toBe(24);
  });

  it('ignores a token minimum of CK_UNAVAILABLE_INFORMATION', () => {
    expect(effectiveRule(DEFAULT_PIN_POLICY.so, 0xffffffff, 32).minLength).toBe(4);
  });

  it('never allows an empty PIN', () => {
    expect(effectiveRule({ minLength: 0, maxLength: 8, charset: 'any' }, 0, 8).minLength).toBe(1);
  });

  it('is never looser than either the rule or the token', () => {
    fc.assert(
      fc.property(fc.nat(40), fc.nat(40), fc.nat(40), fc.nat(40), (rMin, rMax, tMin, tMax) => {
        const rule: PinRule = { minLength: rMin, maxLength: rMax, charset: 'digits' };
        let result: PinRule;
        try {
          result = effectiveRule(rule, tMin, tMax);
        } catch (e) {
          expect((e as KelidError).code).toBe('ERR_PIN_POLICY');
          return;
        }
        expect(result.minLength).toBeGreaterThanOrEqual(Math.max(rMin, tMin, 1));
        expect(result.maxLength).toBeLessThanOrEqual(rMax);
        if (tMax > 0) expect(result.maxLength).toBeLessThanOrEqual(tMax);
        expect(result.minLength).toBeLessThanOrEqual(result.maxLength);
      }),
    );
  });

  it('refuses a rule and token that share no length (a configuration error)', () => {
    const e = (() => {
      try {
        effectiveRule(DEFAULT_PIN_POLICY.user, 20, 32);
      } catch (error) {
        return error as KelidError;
      }
      throw new Error('no error');
    })();
    expect(e.code).toBe('ERR_PIN_POLICY');
    expect(e.data).toEqual({ rule: 'range', policyMin: 4, policyMax: 16, tokenMin: 20, tokenMax: 32 });
  });
});

describe('normalizePin', () => {
  it('turns Persian and Arabic-Indic digits, as ICU writes them, into ASCII digits', () => {
    for (const locale of ['fa-IR', 'ar-EG']) {
      const format = new Intl.NumberFormat(locale, { useGrouping: false });
      for (const n of [0, 1234567890, 9876, 4056]) {
        const localized = format.format(n);
        expect(localized).not.toBe(String(n));
        expect(normalizePin(localized)).toBe(String(n));
      }
    }
  });

  it('handles the examples ۱۲۳۴ and ٤٥٦ and mixed input', () => {
    expect(normalizePin('۱۲۳۴')).toBe('1234');
    expect(normalizePin('٤٥٦')).toBe('456');
    expect(normalizePin('۱2٣x')).toBe('123x');
  });

  it('leaves every other character untouched', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (s) => {
        const kept = s.replace(/[\u06f0-\u06f9\u0660-\u0669]/g, '');
        expect(normalizePin(kept)).toBe(kept);
      }),
    );
    expect(normalizePin('سلام-Ab9')).toBe('سلام-Ab9');
  });
});

describe('checkPin', () => {
  it('accepts a PIN that meets the rule', () => {
    expect(() => checkPin('4711', digits)).not.toThrow();
    expect(() => checkPin('47114711', digits)).not.toThrow();
    expect(() => checkPin('Adm1nPin', DEFAULT_PIN_POLICY.so)).not.toThrow();
  });

  it('refuses a PIN shorter than minLength', () => {
    expect(refusedFor('471', digits)).toBe('minLength');
    expect(refusal('471', digits).data).toEqual({ rule: 'minLength', minLength: 4 });
  });

  it('refuses a PIN longer than maxLength', () => {
    expect(refusedFor('471147114', digits)).toBe('maxLength');
    expect(refusal('471147114', digits).data).toEqual({ rule: 'maxLength', maxLength: 8 });
  });

  it('counts length in UTF-8 bytes, as the token does', () => {
    const any: PinRule = { minLength: 4, maxLength: 8, charset: 'any' };
    expect(() => checkPin('سلام', any)).not.toThrow(); // 4 letters, 8 bytes
    expect(() => checkPin('یا', any)).not.toThrow(); // 2 letters, 4 bytes
    expect(refusedFor('سلامت', any)).toBe('maxLength'); // 5 letters, 10 bytes
    expect(refusedFor('abc', any)).toBe('minLength');
  });

  it.each([
    ['letters', 'a123'],
    ['un-normalized Persian digits', '۱۲۳۴'],
    ['a space', '12 34'],
    ['a sign', '-1234'],
  ])('refuses %s under charset digits', (_name, pin) => {
    expect(refusedFor(pin, digits)).toBe('charset');
  });

  it.each([
    ['a non-ASCII letter', 'Admïn1'],
    ['a Persian letter', 'Adminس'],
    ['punctuation', 'Admin!1'],
    ['a space', 'Admin 1'],
  ])('refuses %s under charset alnum', (_name, pin) => {
    expect(refusedFor(pin, DEFAULT_PIN_POLICY.so)).toBe('charset');
  });

  it.each([
    ['a newline', 'abc\ndef'],
    ['NUL', 'abc\0def'],
    ['DEL', 'abc\u007fdef'],
    ['a lone surrogate', 'abc\ud800def'],
  ])('refuses %s under charset any', (_name, pin) => {
    expect(refusedFor(pin, { minLength: 4, maxLength: 64, charset: 'any' })).toBe('charset');
  });

  it('accepts letters, spaces and symbols under charset any', () => {
    expect(() => checkPin('رمز عبور! 12', { minLength: 4, maxLength: 64, charset: 'any' })).not.toThrow();
  });

  describe('with rejectAllSame', () => {
    const rule: PinRule = { minLength: 4, maxLength: 16, charset: 'alnum', rejectAllSame: true };
    it('refuses one repeated digit or letter, in any case', () => {
      for (const pin of ['1111', '000000', 'aaaa', 'aAaA'])
        expect(refusedFor(pin, rule)).toBe('rejectAllSame');
    });
    it('accepts a PIN with one differing character at either end', () => {
      for (const pin of ['1112', '2111', 'aaab']) expect(() => checkPin(pin, rule)).not.toThrow();
    });
    it('is off unless configured', () => {
      expect(() => checkPin('1111', digits)).not.toThrow();
    });
  });

  describe('with rejectSequential', () => {
    const rule: PinRule = { minLength: 4, maxLength: 16, charset: 'alnum', rejectSequential: true };
    it('refuses ascending and descending runs of digits or letters, in any case', () => {
      for (const pin of ['1234', '0123456789', '9876', '3210', 'abcd', 'DCBA', 'wxyz', 'AbCd']) {
        expect(refusedFor(pin, rule)).toBe('rejectSequential');
      }
    });
    it('accepts broken runs, wrap-around, mixed digits and letters, and steps of two', () => {
      for (const pin of ['1235', '1324', '7890', '1212', 'ab12', '9abc', 'abce', '2468']) {
        expect(() => checkPin(pin, rule)).not.toThrow();
      }
    });
    it('is off unless configured', () => {
      expect(() => checkPin('1234', digits)).not.toThrow();
    });
  });

  it('reports the first broken rule in a fixed order: length, charset, repetition, run', () => {
    const strict: PinRule = {
      minLength: 6,
      maxLength: 8,
      charset: 'digits',
      rejectAllSame: true,
      rejectSequential: true,
    };
    expect(refusedFor('ab', strict)).toBe('minLength');
    expect(refusedFor('abcdef', strict)).toBe('charset');
    expect(refusedFor('111111', strict)).toBe('rejectAllSame');
    expect(refusedFor('345678', strict)).toBe('rejectSequential');
  });

  it('never puts the PIN into the message, and only the rule into the error data', () => {
    const ruleArb = fc.record({
      minLength: fc.integer({ min: 4, max: 12 }),
      maxLength: fc.integer({ min: 4, max: 12 }),
      charset: fc.constantFrom('digits' as const, 'alnum' as const, 'any' as const),
      rejectAllSame: fc.boolean(),
      rejectSequential: fc.boolean(),
    });
    const pinArb = fc.oneof(
      fc.stringMatching(/^[0-9]{5,20}$/),
      fc.constantFrom('12345', '98765', '11111', 'abcde', '۱۲۳۴۵'),
      fc.string({ minLength: 6, maxLength: 20 }),
    );
    let refusals = 0;
    fc.assert(
      fc.property(pinArb, ruleArb, (pin, rule) => {
        try {
          checkPin(pin, rule);
        } catch (e) {
          refusals += 1;
          const error = e as KelidError;
          expect(error.code).toBe('ERR_PIN_POLICY');
          const exposed = `${error.message} ${JSON.stringify(error.toJSON())} ${String(error.cause)}`;
          expect(exposed).not.toContain(pin);
          // The data is determined by the rule alone: its name and the rule's own limit.
          const name = error.data.rule as PinRuleName;
          const limit =
            name === 'minLength' || name === 'maxLength' || name === 'charset' ? { [name]: rule[name] } : {};
          expect(error.data).toEqual({ rule: name, ...limit });
        }
      }),
      { numRuns: 2000 },
    );
    expect(refusals).toBeGreaterThan(100);
  });

  it('refuses a non-string PIN with a TypeError', () => {
    expect(() => checkPin(1234 as unknown as string, digits)).toThrow(TypeError);
  });
});
