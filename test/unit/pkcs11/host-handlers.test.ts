import { describe, expect, it } from 'vitest';
import { isKelidError } from '../../../src/model/errors.js';
import { hostHandler } from '../../../src/pkcs11/host-handlers.js';
import type { HostHandlers } from '../../../src/pkcs11/host-handlers.js';
import type { HostMethod } from '../../../src/pkcs11/host-protocol.js';

// The module host's dispatch table: checked against HostMethods when it compiles (each expected
// error below fails `npm run typecheck` if the type stops catching that gap), and looked up by own
// property only when a request names a method.

const calls: string[] = [];
/** A complete table whose handlers record their name; built without listing the methods. */
const full = new Proxy(
  {},
  {
    get: (_t, name) => (name === 'then' ? undefined : () => calls.push(String(name))),
  },
) as unknown as HostHandlers;

describe('HostHandlers (compile-time)', () => {
  it('refuses a table without a handler for a method, or with a wrongly typed one', () => {
    const lacking: Omit<HostHandlers, 'sign'> = full;
    // @ts-expect-error a table without the sign handler is not a complete table
    const missing: HostHandlers = lacking;
    const signByName = (p: { sessionId: string }) => ({ signature: new Uint8Array(p.sessionId.length) });
    // @ts-expect-error the sign handler takes a session number, not a string
    const wrongParams: HostHandlers = { ...full, sign: signByName };
    // @ts-expect-error the sign handler must give a Uint8Array signature
    const wrongResult: HostHandlers = { ...full, sign: () => ({ signature: 'AAAA' }) };
    // @ts-expect-error no handler for a method that HostMethods does not have
    const extra: HostHandlers = { ...full, formatToken: () => ({}) };
    expect([missing, wrongParams, wrongResult, extra].every((t) => typeof t === 'object')).toBe(true);
  });
});

describe('hostHandler', () => {
  const table: HostHandlers = {
    ...Object.fromEntries(
      (['moduleInfo', 'listSlots', 'sign'] as const).map((m) => [m, () => calls.push(m)]),
    ),
  } as unknown as HostHandlers;

  it('finds a handler the table holds', () => {
    calls.length = 0;
    hostHandler(table, 'listSlots')({});
    expect(calls).toEqual(['listSlots']);
  });

  it.each(['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'missing', ''])(
    'refuses %j, which is no own handler of the table',
    (name) => {
      let err: unknown;
      try {
        hostHandler(table, name);
      } catch (e) {
        err = e;
      }
      expect(isKelidError(err, 'ERR_INTERNAL')).toBe(true);
    },
  );

  it('refuses a method name that is not a string', () => {
    for (const name of [undefined, null, 7, { toString: () => 'sign' }] as unknown[]) {
      expect(() => hostHandler(table, name as HostMethod)).toThrow(/unknown host method/);
    }
  });
});
