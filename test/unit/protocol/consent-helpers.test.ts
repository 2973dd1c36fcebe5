import { describe, expect, it } from 'vitest';
import { csrView, displayText } from '../../../src/protocol/consent-helpers.js';
import { isKelidError } from '../../../src/model/errors.js';

describe('consent-helpers', () => {
  describe('displayText', () => {
    it('shows controls and bidi formatting characters as visible escapes', () => {
      expect(displayText('a\u202eb\u2066c\u0007d\ne', 100)).toBe('a<U+202E>b<U+2066>c<U+0007>d<U+000A>e');
      // ZWNJ and the LRM/RLM marks are ordinary in Persian text.
      expect(displayText('مه\u200cسا\u200f', 100)).toBe('مه\u200cسا\u200f');
    });

    it('cuts over-long text with a visible ellipsis, by code point', () => {
      expect(displayText('😀'.repeat(10), 4)).toBe('😀😀😀…');
      expect(displayText('abcd', 4)).toBe('abcd');
    });
  });

  describe('csrView', () => {
    it('shows the string and the array form of the subject the same way, with the alternative names', () => {
      const fromArray = csrView({
        subject: [
          { type: 'O', value: 'بانک' },
          { type: 'CN', value: 'علی' },
        ],
        subjectAltNames: [{ type: 'dns', value: 'ali.example.ir' }],
      });
      expect(fromArray).toEqual({ subject: 'O=بانک,CN=علی', subjectAltNames: ['dns:ali.example.ir'] });
      expect(csrView({ subject: 'O=بانک,CN=علی' }).subject).toBe(fromArray.subject);
    });

    it('refuses a subject or name with a bidi override before anyone is asked', () => {
      for (const request of [
        { subject: 'CN=a\u202eb' },
        { subject: [{ type: 'CN', value: 'a\u2067b' }] },
        { subject: 'CN=a', subjectAltNames: [{ type: 'email' as const, value: 'a\u202e@b.example' }] },
      ]) {
        let error: unknown;
        try {
          csrView(request);
        } catch (e) {
          error = e;
        }
        expect(isKelidError(error, 'ERR_INVALID_INPUT')).toBe(true);
      }
    });
  });
});
