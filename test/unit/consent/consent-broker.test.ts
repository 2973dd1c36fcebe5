import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConsentBroker } from '../../../src/consent/consent-broker.js';
import type { ConsentSpec, PinRulesView, Secrets } from '../../../src/consent/consent-broker.js';
import { PromptLimiter } from '../../../src/consent/rate-limit.js';
import { isKelidError } from '../../../src/model/errors.js';

const RULES: PinRulesView = {
  user: { minLength: 4, maxLength: 8, charset: 'digits' },
  so: { minLength: 6, maxLength: 12, charset: 'alnum' },
};

function setup(timeoutMs = 60_000) {
  const launched: string[] = [];
  const limiter = new PromptLimiter({ perOriginPerMinute: 3 });
  const broker = new ConsentBroker({
    timeoutMs,
    limiterFor: (tier) => (tier === 'console' ? null : limiter),
    launch: (url) => launched.push(url),
    consentUrl: (secret) => `https://127.0.0.1:1/consent/#${secret}`,
    defaultPinRules: RULES,
  });
  return { broker, launched, limiter };
}

function spec(over: Partial<ConsentSpec> = {}): ConsentSpec & { pending: Promise<string> } {
  let resolvePending!: (id: string) => void;
  const pending = new Promise<string>((r) => (resolvePending = r));
  return {
    connectionId: 'c1',
    origin: 'https://bank.example',
    tier: 'site',
    method: 'sign.raw',
    needs: ['userPin'],
    signal: new AbortController().signal,
    onPending: (id) => resolvePending(id),
    pending,
    ...over,
  };
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
}

describe('ConsentBroker', () => {
  describe('#request', () => {
    it('hands the approved secrets to run and nothing else, and forgets the request', async () => {
      const { broker, launched } = setup();
      const s = spec();
      const seen: Secrets[] = [];
      const result = broker.request(s, async (secrets) => {
        seen.push(secrets);
        return 'signed';
      });
      const requestId = await s.pending;
      expect(broker.list().map((v) => v.requestId)).toEqual([requestId]);
      expect(launched).toHaveLength(1);
      expect(broker.approve({ requestId }, { userPin: '1234' })).toEqual({ ok: true });
      expect(await result).toBe('signed');
      expect(seen).toEqual([{ userPin: '1234' }]);
      expect(broker.list()).toEqual([]);
      expect(broker.approve({ requestId }, { userPin: '1234' })).toBeNull();
    });

    it('marks a PIN pad request, refuses a userPin for it and approves it without secrets', async () => {
      const { broker } = setup();
      const s = spec({ needs: [], pinpad: true });
      const seen: Secrets[] = [];
      const result = broker.request(s, async (secrets) => {
        seen.push(secrets);
        return 'signed';
      });
      const requestId = await s.pending;
      expect(broker.get({ requestId })).toMatchObject({ needs: [], pinpad: true });
      expect(broker.approve({ requestId }, { userPin: '1234' })).toMatchObject({
        ok: false,
        error: { code: 'ERR_INVALID_INPUT' },
      });
      expect(broker.approve({ requestId }, {})).toEqual({ ok: true });
      expect(await result).toBe('signed');
      expect(seen).toEqual([{}]);
    });

    it('leaves pinpad out of a request for a token without a PIN pad', async () => {
      const { broker } = setup();
      const s = spec();
      const result = broker.request(s, async () => 'ok');
      const requestId = await s.pending;
      expect(broker.get({ requestId })).not.toHaveProperty('pinpad');
      broker.approve({ requestId }, { userPin: '1234' });
      await result;
    });

    it('finds a request by the secret in its page URL, never by its request id as a secret', async () => {
      const { broker, launched } = setup();
      const s = spec();
      const result = broker.request(s, async () => 'ok');
      const requestId = await s.pending;
      const secret = new URL(launched[0]).hash.slice(1);
      expect(broker.get({ secret })?.requestId).toBe(requestId);
      expect(broker.get({ secret: requestId })).toBeUndefined();
      expect(broker.approve({ secret }, { userPin: '5555' })).toEqual({ ok: true });
      await result;
    });

    it('keeps the request pending when a new PIN breaks the rules, naming the need but not the PIN', async () => {
      const { broker } = setup();
      const s = spec({ method: 'pin.change', needs: ['oldUserPin', 'newUserPin'], pinRules: RULES });
      const result = broker.request(s, async (secrets) => secrets.newUserPin);
      const requestId = await s.pending;
      const refused = broker.approve({ requestId }, { oldUserPin: '1111', newUserPin: '12a4' });
      expect(refused).toMatchObject({ ok: false, error: { code: 'ERR_PIN_POLICY', need: 'newUserPin' } });
      expect(JSON.stringify(refused)).not.toContain('12a4');
      expect(broker.approve({ requestId }, { oldUserPin: '1111' })).toMatchObject({
        ok: false,
        error: { code: 'ERR_INVALID_INPUT', need: 'newUserPin' },
      });
      expect(
        broker.approve({ requestId }, { oldUserPin: '1111', newUserPin: '2468', extra: 'x' }),
      ).toMatchObject({ ok: false });
      expect(broker.approve({ requestId }, 'not an object')).toMatchObject({ ok: false });
      expect(broker.list()).toHaveLength(1);
      // Persian digits count as digits.
      expect(broker.approve({ requestId }, { oldUserPin: '1111', newUserPin: '۲۴۶۸' })).toEqual({ ok: true });
      expect(await result).toBe('۲۴۶۸');
    });

    it('fails with ERR_USER_CANCELLED on denial and makes the origin cool down', async () => {
      const { broker } = setup();
      const s = spec();
      const result = broker.request(s, async () => 'never');
      expect(broker.deny({ requestId: await s.pending })).toBe(true);
      expect(isKelidError(await failure(result), 'ERR_USER_CANCELLED')).toBe(true);
      const again = await failure(broker.request(spec({ connectionId: 'c2' }), async () => 'never'));
      expect(isKelidError(again, 'ERR_ORIGIN_DENIED')).toBe(true);
      expect(broker.list()).toEqual([]);
    });

    it('does not count approved prompts towards the limit (a sixth document within the minute)', async () => {
      const { broker } = setup();
      for (let i = 0; i < 6; i++) {
        const s = spec({ connectionId: `c${i}` });
        const p = broker.request(s, async () => i);
        broker.approve({ requestId: await s.pending }, { userPin: '1234' });
        expect(await p).toBe(i);
      }
    });

    it('withdraws the request when the page aborts', async () => {
      const { broker } = setup();
      const controller = new AbortController();
      const s = spec({ signal: controller.signal });
      const result = broker.request(s, async () => 'never');
      await s.pending;
      controller.abort();
      expect(isKelidError(await failure(result), 'ERR_USER_CANCELLED')).toBe(true);
      expect(broker.list()).toEqual([]);
    });

    it('allows one pending request per connection (ERR_BUSY)', async () => {
      const { broker } = setup();
      const s = spec();
      const first = broker.request(s, async () => 'first');
      const requestId = await s.pending;
      expect(isKelidError(await failure(broker.request(spec(), async () => 'second')), 'ERR_BUSY')).toBe(
        true,
      );
      broker.approve({ requestId }, { userPin: '1234' });
      expect(await first).toBe('first');
    });

    it('applies the prompt limit per origin, but not to the console', async () => {
      const { broker } = setup();
      for (let i = 0; i < 3; i++) {
        const controller = new AbortController();
        const s = spec({ connectionId: `c${i}`, signal: controller.signal });
        const p = broker.request(s, async () => i);
        await s.pending;
        controller.abort();
        await failure(p);
      }
      expect(
        isKelidError(
          await failure(broker.request(spec({ connectionId: 'x' }), async () => 0)),
          'ERR_RATE_LIMITED',
        ),
      ).toBe(true);
      const s = spec({ connectionId: 'console', tier: 'console', origin: 'https://127.0.0.1:1' });
      const p = broker.request(s, async () => 'console');
      broker.approve({ requestId: await s.pending }, { userPin: '1234' });
      expect(await p).toBe('console');
    });

    describe('one consent at a time (issue 13, section 4)', () => {
      const access = (i: number, over: Partial<ConsentSpec> = {}) =>
        spec({
          connectionId: `u${i}`,
          origin: `https://s${i}.flood.example`,
          tier: 'unknown',
          method: 'agent.requestAccess',
          needs: [],
          ...over,
        });

      it('keeps at most 3 unknown-tier requests pending across origins; the rest are refused at once', async () => {
        const { broker, launched } = setup();
        const results: Array<Promise<unknown>> = [];
        const specs = Array.from({ length: 6 }, (_, i) => access(i));
        for (const s of specs) results.push(broker.request(s, async () => 'ok').catch((e: unknown) => e));
        expect(broker.size).toBe(3);
        for (const e of await Promise.all(results.slice(3))) {
          expect(isKelidError(e, 'ERR_RATE_LIMITED')).toBe(true);
        }
        expect(launched).toHaveLength(1);
        // A site's request is not held back by the unknown tier's budget.
        const site = spec({ connectionId: 'site' });
        const signed = broker.request(site, async () => 'signed');
        expect(broker.size).toBe(4);
        const siteId = await site.pending;
        broker.approve({ requestId: siteId }, { userPin: '1234' });
        expect(await signed).toBe('signed');
        broker.cancelAll();
      });

      it('opens the next page only when the shown request is decided, withdrawn or timed out; known tiers first', async () => {
        const { broker, launched } = setup();
        const controller = new AbortController();
        const a = access(1);
        const b = access(2, { signal: controller.signal });
        const c = access(3);
        const pa = broker.request(a, async () => 'a');
        const pb = broker.request(b, async () => 'b').catch((e: unknown) => e);
        const pc = broker.request(c, async () => 'c');
        const [ida] = await Promise.all([a.pending, b.pending, c.pending]);
        const site = spec({ connectionId: 'site' });
        const ps = broker.request(site, async () => 'site');
        const siteId = await site.pending;
        expect(launched).toHaveLength(1);
        expect(broker.openPage(new URL(launched[0]).hash.slice(1))).toMatchObject({
          request: { requestId: ida },
        });
        broker.approve({ requestId: ida }, {});
        expect(await pa).toBe('a');
        // The site goes before the unknown tier's queue.
        expect(launched).toHaveLength(2);
        expect(broker.openPage(new URL(launched[1]).hash.slice(1))).toMatchObject({
          request: { requestId: siteId },
        });
        controller.abort(); // b is withdrawn while queued: nothing opens for it
        expect(isKelidError(await pb, 'ERR_USER_CANCELLED')).toBe(true);
        expect(launched).toHaveLength(2);
        broker.deny({ requestId: siteId });
        await ps.catch(() => undefined);
        expect(launched).toHaveLength(3);
        expect(broker.openPage(new URL(launched[2]).hash.slice(1))).toMatchObject({
          request: { origin: 'https://s3.flood.example' },
        });
        broker.approve({ requestId: await c.pending }, {});
        expect(await pc).toBe('c');
      });

      it('opens at most 10 pages a minute for unknown requests withdrawn unseen; decided ones do not count', async () => {
        vi.useFakeTimers({
          toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'],
        });
        try {
          const { broker, launched } = setup(10 * 60_000);
          // Requests whose page was opened, seen and decided are not waste.
          for (let i = 0; i < 15; i++) {
            const s = access(100 + i);
            const p = broker.request(s, async () => 'ok');
            await s.pending;
            broker.openPage(new URL(launched[launched.length - 1]).hash.slice(1));
            broker.approve({ requestId: await s.pending }, {});
            await p;
          }
          expect(launched).toHaveLength(15);
          for (let i = 0; i < 20; i++) {
            const controller = new AbortController();
            const s = access(i, { signal: controller.signal });
            const p = broker.request(s, async () => 'never').catch((e: unknown) => e);
            await s.pending;
            controller.abort();
            await p;
          }
          expect(launched).toHaveLength(25);
          // A request of a known tier is still shown at once.
          const site = spec({ connectionId: 'site' });
          const signed = broker.request(site, async () => 'signed');
          broker.approve({ requestId: await site.pending }, { userPin: '1234' });
          expect(await signed).toBe('signed');
          expect(launched).toHaveLength(26);
          // A pending unknown request waits for the minute to pass, then its page opens.
          const late = access(99);
          const pl = broker.request(late, async () => 'late');
          await late.pending;
          expect(launched).toHaveLength(26);
          vi.advanceTimersByTime(60_001);
          expect(launched).toHaveLength(27);
          broker.approve({ requestId: await late.pending }, {});
          expect(await pl).toBe('late');
        } finally {
          vi.useRealTimers();
        }
      });

      it('counts pages withdrawn after they were seen: waiting for the page to load before withdrawing makes no stream of tabs', async () => {
        // The flood of section 4, one step further: each request is withdrawn only once its page has
        // loaded (traded its launch secret), so it was "seen", but nobody decided it.
        vi.useFakeTimers({
          toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'],
        });
        try {
          const { broker, launched } = setup(10 * 60_000);
          for (let i = 0; i < 20; i++) {
            const controller = new AbortController();
            const s = access(200 + i, { signal: controller.signal });
            const before = launched.length;
            const p = broker.request(s, async () => 'never').catch((e: unknown) => e);
            await s.pending;
            if (launched.length > before) broker.openPage(new URL(launched[before]).hash.slice(1));
            controller.abort();
            expect(isKelidError(await p, 'ERR_USER_CANCELLED')).toBe(true);
          }
          expect(launched).toHaveLength(10);
        } finally {
          vi.useRealTimers();
        }
      });

      it('calls onSeen only for requests the user saw: opened by the page, listed, or decided', async () => {
        const { broker, launched } = setup();
        const seen: string[] = [];
        const controller = new AbortController();
        const a = access(1, { onSeen: () => seen.push('a') });
        const b = access(2, { onSeen: () => seen.push('b'), signal: controller.signal });
        const pa = broker.request(a, async () => 'a');
        const pb = broker.request(b, async () => 'b').catch((e: unknown) => e);
        await Promise.all([a.pending, b.pending]);
        expect(seen).toEqual([]);
        broker.openPage(new URL(launched[0]).hash.slice(1));
        expect(seen).toEqual(['a']);
        controller.abort();
        await pb;
        expect(seen).toEqual(['a']);
        broker.approve({ requestId: await a.pending }, {});
        await pa;
        expect(seen).toEqual(['a']);
        const c = access(3, { onSeen: () => seen.push('c') });
        const pc = broker.request(c, async () => 'c').catch((e: unknown) => e);
        await c.pending;
        broker.list();
        expect(seen).toEqual(['a', 'c']);
        broker.cancelAll();
        await pc;
      });
    });

    describe('#openPage (issue 13, section 6)', () => {
      it('trades the launch secret once for a page secret; the launch secret is then useless', async () => {
        const { broker, launched } = setup();
        const s = spec();
        const result = broker.request(s, async () => 'ok');
        const requestId = await s.pending;
        const launch = new URL(launched[0]).hash.slice(1);
        const opened = broker.openPage(launch);
        if (opened === null || opened === 'spent') throw new Error('expected a page');
        expect(opened.request.requestId).toBe(requestId);
        expect(opened.secret).not.toBe(launch);
        expect(broker.openPage(launch)).toBe('spent');
        expect(broker.get({ secret: launch })).toBeUndefined();
        expect(broker.approve({ secret: launch }, { userPin: '1234' })).toBeNull();
        expect(broker.deny({ secret: launch })).toBe(false);
        expect(broker.get({ secret: opened.secret })?.requestId).toBe(requestId);
        expect(broker.approve({ secret: opened.secret }, { userPin: '1234' })).toEqual({ ok: true });
        expect(await result).toBe('ok');
        expect(broker.openPage(launch)).toBeNull();
        expect(broker.get({ secret: opened.secret })).toBeUndefined();
      });
    });

    describe('with a short timeout', () => {
      beforeEach(() => vi.useFakeTimers());
      afterEach(() => vi.useRealTimers());

      it('fails with ERR_CONSENT_TIMEOUT and forgets the request', async () => {
        const { broker } = setup(2000);
        const s = spec();
        const result = broker.request(s, async () => 'never');
        const requestId = await s.pending;
        vi.advanceTimersByTime(2001);
        expect(isKelidError(await failure(result), 'ERR_CONSENT_TIMEOUT')).toBe(true);
        expect(broker.approve({ requestId }, { userPin: '1234' })).toBeNull();
      });
    });
  });
});
