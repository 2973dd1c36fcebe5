import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../src/config.js';
import { ConnectionLimits, RequestRateLimiter, UnknownByteBudget } from '../../../src/transport/limits.js';

// The bounds of one connection (request rate) and of all of them (slots), on a fake clock.

function limiter(
  options: { perSecond: number; burst: number; strikes: number },
  start = 0,
): {
  rate: RequestRateLimiter;
  advance: (ms: number) => void;
} {
  let now = start;
  const rate = new RequestRateLimiter(options, () => now);
  return { rate, advance: (ms) => (now += ms) };
}

describe('RequestRateLimiter', () => {
  it('allows a burst of `burst` calls at once, then refuses with retryAfterMs', () => {
    const { rate } = limiter({ perSecond: 100, burst: 200, strikes: 1000 });
    for (let i = 0; i < 200; i++) expect(rate.take()).toEqual({ ok: true });
    expect(rate.take()).toEqual({ ok: false, retryAfterMs: 10, close: false });
  });

  it('refills at perSecond: a page calling at the allowed rate is never refused', () => {
    const { rate, advance } = limiter({ perSecond: 100, burst: 200, strikes: 1000 });
    for (let i = 0; i < 200; i++) rate.take();
    let refused = 0;
    // 10 s at exactly 100 calls/s after an emptied bucket.
    for (let i = 0; i < 1000; i++) {
      advance(10);
      if (!rate.take().ok) refused += 1;
    }
    expect(refused).toBe(0);
    advance(2000);
    for (let i = 0; i < 200; i++) expect(rate.take().ok).toBe(true);
    expect(rate.take().ok).toBe(false);
  });

  it('asks for closing only once refusals overflow `strikes`, and forgives them at the refill rate', () => {
    const { rate } = limiter({ perSecond: 100, burst: 10, strikes: 50 });
    for (let i = 0; i < 10; i++) rate.take();
    for (let i = 0; i < 50; i++) expect(rate.take()).toMatchObject({ ok: false, close: false });
    expect(rate.take()).toMatchObject({ ok: false, close: true });

    const second = limiter({ perSecond: 100, burst: 10, strikes: 50 });
    for (let i = 0; i < 10; i++) second.rate.take();
    for (let i = 0; i < 50; i++) second.rate.take();
    // One second later the strikes have drained and the bucket is full again.
    second.advance(1000);
    for (let i = 0; i < 10; i++) expect(second.rate.take().ok).toBe(true);
    expect(second.rate.take()).toMatchObject({ ok: false, close: false });
  });
});

describe('ConnectionLimits', () => {
  it('holds a slot per connection, per origin and in all, and frees it once', () => {
    const limits = new ConnectionLimits({ perOrigin: 2, total: 3 });
    const a1 = limits.acquire('https://a.example', 'site');
    const a2 = limits.acquire('https://a.example', 'site');
    expect(limits.acquire('https://a.example', 'site')).toBeNull();
    const b1 = limits.acquire('https://b.example', 'ra');
    expect(limits.acquire('https://c.example', 'site')).toBeNull();
    a1?.();
    a1?.();
    expect(limits.open).toBe(2);
    expect(limits.countFor('https://a.example')).toBe(1);
    expect(limits.acquire('https://c.example', 'site')).not.toBeNull();
    expect(a2).not.toBeNull();
    expect(b1).not.toBeNull();
  });

  it('gives unknown origins together at most half of the total, leaving the rest to known tiers', () => {
    const limits = new ConnectionLimits({ perOrigin: 8, total: 8 });
    const unknown = [1, 2, 3, 4].map((i) => limits.acquire(`https://n${i}.evil.example`, 'unknown'));
    expect(unknown.every((r) => r !== null)).toBe(true);
    expect(limits.acquire('https://n5.evil.example', 'unknown')).toBeNull();
    for (let i = 0; i < 4; i++) expect(limits.acquire('https://bank.example', 'site')).not.toBeNull();
    expect(limits.acquire('https://ra.example', 'ra')).toBeNull();
    unknown[0]?.();
    expect(limits.acquire('https://n5.evil.example', 'unknown')).not.toBeNull();
  });
});

describe('config limits', () => {
  it('defaults the request rate to 100/s with a burst of 200, and validates the knobs', () => {
    expect(resolveConfig({}).limits).toEqual({
      connectionsPerOrigin: 8,
      connections: 64,
      requestsPerSecond: 100,
      requestBurst: 200,
      unknownBytesPerSecond: 262_144,
    });
    expect(resolveConfig({ limits: { requestsPerSecond: 5 } }).limits).toMatchObject({
      requestsPerSecond: 5,
      requestBurst: 200,
    });
    expect(() => resolveConfig({ limits: { requestBurst: 0 } })).toThrow(/requestBurst/);
    // Below one unknown-tier frame (8 KiB) a page could never send agent.requestAccess.
    expect(() => resolveConfig({ limits: { unknownBytesPerSecond: 8191 } })).toThrow(/unknownBytesPerSecond/);
  });
});

describe('UnknownByteBudget', () => {
  function budget(perSecond: number): { b: UnknownByteBudget; advance: (ms: number) => void } {
    let now = 0;
    const b = new UnknownByteBudget({ perSecond, burst: perSecond }, () => now);
    return { b, advance: (ms) => (now += ms) };
  }

  it('lets a burst through without waiting, then asks the sender to wait for the debt to be paid', () => {
    const { b } = budget(1000);
    expect(b.take(600)).toBe(0);
    expect(b.take(400)).toBe(0);
    expect(b.take(500)).toBe(500);
    // Shared: the next sender pays for the earlier debt as well.
    expect(b.take(500)).toBe(1000);
  });

  it('refills at perSecond, up to the burst only', () => {
    const { b, advance } = budget(1000);
    b.take(1000);
    advance(250);
    expect(b.take(250)).toBe(0);
    expect(b.take(1)).toBe(1);
    advance(60_000);
    expect(b.take(1000)).toBe(0);
    expect(b.take(100)).toBe(100);
  });

  it('holds all senders together to perSecond on average', () => {
    const { b, advance } = budget(8192);
    let sent = 0;
    let clock = 0;
    // Four senders of 8 KiB frames, each sending again as soon as it is allowed to.
    const readyAt = [0, 0, 0, 0];
    while (clock < 10_000) {
      const i = readyAt.indexOf(Math.min(...readyAt));
      advance(readyAt[i] - clock);
      clock = readyAt[i];
      readyAt[i] = clock + b.take(8192);
      sent += 8192;
    }
    expect(sent / 8192).toBeLessThanOrEqual(10 + 1 + 4);
  });
});
