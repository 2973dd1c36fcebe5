import { describe, expect, it } from 'vitest';
import { PromptLimiter } from '../../../src/consent/rate-limit.js';
import { KelidError } from '../../../src/model/errors.js';

function refusal(limiter: PromptLimiter, origin: string): KelidError | undefined {
  try {
    limiter.check(origin);
    return undefined;
  } catch (e) {
    if (e instanceof KelidError) return e;
    throw e;
  }
}

function fakeClock(start = 1_000_000) {
  const clock = { t: start, now: () => clock.t };
  return clock;
}

const A = 'https://bank.example';
const B = 'https://notary.example';

describe('PromptLimiter', () => {
  describe('#check', () => {
    it('allows five prompts a minute per origin by default, then refuses with ERR_RATE_LIMITED', () => {
      const clock = fakeClock();
      const limiter = new PromptLimiter({ now: clock.now });
      for (let i = 0; i < 5; i++) {
        expect(refusal(limiter, A)).toBeUndefined();
        limiter.recordPrompt(A);
        clock.t += 1000;
      }
      const e = refusal(limiter, A);
      expect(e?.code).toBe('ERR_RATE_LIMITED');
      expect(e?.retriable).toBe(true);
      // The first prompt (at t0) leaves the window at t0 + 60 s; now is t0 + 5 s.
      expect(e?.data).toEqual({ retryAfterMs: 55_000 });
    });

    it('slides the window: the oldest prompt stops counting exactly 60 s after it', () => {
      const clock = fakeClock();
      const limiter = new PromptLimiter({ perOriginPerMinute: 2, now: clock.now });
      const t0 = clock.t;
      limiter.recordPrompt(A);
      clock.t = t0 + 30_000;
      limiter.recordPrompt(A);
      clock.t = t0 + 59_999;
      expect(refusal(limiter, A)?.code).toBe('ERR_RATE_LIMITED');
      clock.t = t0 + 60_000;
      expect(refusal(limiter, A)).toBeUndefined();
      limiter.recordPrompt(A);
      expect(refusal(limiter, A)?.code).toBe('ERR_RATE_LIMITED');
      clock.t = t0 + 90_000;
      expect(refusal(limiter, A)).toBeUndefined();
    });

    it('counts each origin separately', () => {
      const clock = fakeClock();
      const limiter = new PromptLimiter({ perOriginPerMinute: 1, now: clock.now });
      limiter.recordPrompt(A);
      expect(refusal(limiter, A)?.code).toBe('ERR_RATE_LIMITED');
      expect(refusal(limiter, B)).toBeUndefined();
    });

    it('refuses an origin with ERR_ORIGIN_DENIED for one minute after a first denial', () => {
      const clock = fakeClock();
      const limiter = new PromptLimiter({ now: clock.now });
      const t0 = clock.t;
      limiter.recordPrompt(A);
      limiter.recordDenial(A);
      clock.t = t0 + 60_000 - 1;
      const e = refusal(limiter, A);
      expect(e?.code).toBe('ERR_ORIGIN_DENIED');
      expect(e?.data).toEqual({ retryAfterMs: 1 });
      expect(refusal(limiter, B)).toBeUndefined();
      clock.t = t0 + 60_000;
      expect(refusal(limiter, A)).toBeUndefined();
    });

    it('escalates to ten minutes after a second denial within the hour, and forgets after an hour', () => {
      const clock = fakeClock();
      const limiter = new PromptLimiter({ now: clock.now });
      limiter.recordDenial(A);
      clock.t += 5 * 60_000;
      limiter.recordDenial(A);
      expect(refusal(limiter, A)?.data).toEqual({ retryAfterMs: 10 * 60_000 });
      clock.t += 10 * 60_000;
      expect(refusal(limiter, A)).toBeUndefined();
      // A third within the hour: ten minutes again.
      limiter.recordDenial(A);
      expect(refusal(limiter, A)?.data).toEqual({ retryAfterMs: 10 * 60_000 });
      // Two hours later the slate is clean: one minute.
      clock.t += 2 * 60 * 60_000;
      limiter.recordDenial(A);
      expect(refusal(limiter, A)?.data).toEqual({ retryAfterMs: 60_000 });
    });

    it('gives no cooldown at all with denyCooldownsMs [] (the RA tier), the rate limit still applies', () => {
      const clock = fakeClock();
      const limiter = new PromptLimiter({ perOriginPerMinute: 2, denyCooldownsMs: [], now: clock.now });
      for (let i = 0; i < 2; i++) {
        expect(refusal(limiter, A)).toBeUndefined();
        limiter.recordPrompt(A);
        limiter.recordDenial(A);
      }
      expect(refusal(limiter, A)?.code).toBe('ERR_RATE_LIMITED');
    });

    it('does not count prompts the user approved', () => {
      const clock = fakeClock();
      const limiter = new PromptLimiter({ perOriginPerMinute: 5, now: clock.now });
      for (let i = 0; i < 8; i++) {
        expect(refusal(limiter, A)).toBeUndefined();
        const approved = limiter.recordPrompt(A);
        approved();
        approved(); // twice is once
        clock.t += 1000;
      }
      // Unanswered (withdrawn, timed out, denied) prompts still do.
      for (let i = 0; i < 5; i++) limiter.recordPrompt(A);
      expect(refusal(limiter, A)?.code).toBe('ERR_RATE_LIMITED');
    });

    it('reports the denial rather than the rate when both apply', () => {
      const clock = fakeClock();
      const limiter = new PromptLimiter({ perOriginPerMinute: 1, now: clock.now });
      limiter.recordPrompt(A);
      limiter.recordDenial(A);
      expect(refusal(limiter, A)?.code).toBe('ERR_ORIGIN_DENIED');
    });

    it('restarts the cooldown at each denial', () => {
      const clock = fakeClock();
      const limiter = new PromptLimiter({ denyCooldownsMs: [1000], now: clock.now });
      limiter.recordDenial(A);
      clock.t += 900;
      limiter.recordDenial(A);
      clock.t += 900;
      expect(refusal(limiter, A)?.code).toBe('ERR_ORIGIN_DENIED');
      clock.t += 100;
      expect(refusal(limiter, A)).toBeUndefined();
    });

    it('keeps denials and live windows when it forgets idle origins', () => {
      const clock = fakeClock();
      const limiter = new PromptLimiter({ perOriginPerMinute: 1, now: clock.now });
      limiter.recordDenial(A);
      limiter.recordDenial(A); // ten minutes
      for (let i = 0; i < 1100; i++) limiter.recordPrompt(`https://old${i}.example`);
      clock.t += 61_000; // the old prompts leave the window; the denial stays
      limiter.recordPrompt(B);
      for (let i = 0; i < 1100; i++) limiter.recordPrompt(`https://new${i}.example`);
      expect(refusal(limiter, A)?.code).toBe('ERR_ORIGIN_DENIED');
      expect(refusal(limiter, B)?.code).toBe('ERR_RATE_LIMITED');
      expect(refusal(limiter, 'https://new0.example')?.code).toBe('ERR_RATE_LIMITED');
      expect(refusal(limiter, 'https://old0.example')).toBeUndefined();
    });

    it('works with the default monotonic clock', () => {
      const limiter = new PromptLimiter({ perOriginPerMinute: 1 });
      expect(refusal(limiter, A)).toBeUndefined();
      limiter.recordPrompt(A);
      expect(refusal(limiter, A)?.code).toBe('ERR_RATE_LIMITED');
      limiter.recordDenial(B);
      expect(refusal(limiter, B)?.code).toBe('ERR_ORIGIN_DENIED');
    });
  });

  describe('#constructor', () => {
    it.each([
      [{ perOriginPerMinute: 0 }],
      [{ perOriginPerMinute: 1.5 }],
      [{ denyCooldownsMs: [-1] }],
      [{ denyCooldownsMs: [60_000, Number.NaN] }],
    ])('refuses the options %j', (options) => {
      expect(() => new PromptLimiter(options)).toThrow(TypeError);
    });
  });
});
