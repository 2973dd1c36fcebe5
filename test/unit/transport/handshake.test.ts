import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normalizeOrigin } from '../../../src/model/origin.js';
import { checkHandshake } from '../../../src/transport/handshake.js';
import {
  HANDSHAKE_TEST_PORT,
  handshakeCases,
  handshakeConfig,
  makeHandshakeCases,
  rawUpgradeRequest,
} from '../../helpers/handshake-cases.js';
import type { HandshakeCase } from '../../helpers/handshake-cases.js';

const config = handshakeConfig(HANDSHAKE_TEST_PORT);
const label = (c: HandshakeCase) => `${c.name} → ${c.expect}`;

describe('checkHandshake', () => {
  it('has a matrix of at least 45 refused cases and a tier for every accepted case', () => {
    expect(handshakeCases.filter((c) => c.expect === 403).length).toBeGreaterThanOrEqual(45);
    for (const tier of ['ra', 'site', 'unknown', 'console'] as const) {
      expect(handshakeCases.some((c) => c.expect === tier)).toBe(true);
    }
    expect(new Set(handshakeCases.map((c) => c.name)).size).toBe(handshakeCases.length);
  });

  describe.each(handshakeCases.map((c) => [label(c), c] as const))('%s', (_name, c) => {
    it('decides as the matrix says', () => {
      const result = checkHandshake({ host: c.host, origin: c.origin }, config);
      if (c.expect === 403) {
        expect(result).toMatchObject({ ok: false, status: 403 });
        expect(result.ok === false && result.reason.length).toBeGreaterThan(0);
      } else {
        expect(result).toEqual({ ok: true, origin: normalizeOrigin(c.origin as string), tier: c.expect });
      }
    });

    if (c.expect !== 403) {
      it('reports the origin exactly as the WHATWG URL parser serializes it', () => {
        const result = checkHandshake({ host: c.host, origin: c.origin }, config);
        expect(result.ok && result.origin).toBe(new URL(c.origin as string).origin);
      });
    }
  });

  it('accepts headers given as one-element arrays (req.headersDistinct)', () => {
    const result = checkHandshake(
      { host: [`127.0.0.1:${HANDSHAKE_TEST_PORT}`], origin: ['https://bank.example'] },
      config,
    );
    expect(result).toEqual({ ok: true, origin: 'https://bank.example', tier: 'site' });
  });

  it('refuses an empty header array as a missing header', () => {
    expect(checkHandshake({ host: [], origin: 'https://ra.example' }, config)).toMatchObject({ status: 403 });
    expect(checkHandshake({ host: `localhost:${HANDSHAKE_TEST_PORT}`, origin: [] }, config)).toMatchObject({
      status: 403,
    });
  });

  it('matches config entries written in non-canonical case or with a default port', () => {
    const loose = { ...config, raOrigins: ['HTTPS://RA.EXAMPLE:443'], sites: ['https://Bank.Example'] };
    const host = `127.0.0.1:${HANDSHAKE_TEST_PORT}`;
    expect(checkHandshake({ host, origin: 'https://ra.example' }, loose)).toMatchObject({ tier: 'ra' });
    expect(checkHandshake({ host, origin: 'https://bank.example' }, loose)).toMatchObject({ tier: 'site' });
  });

  it('never matches a malformed config entry', () => {
    const broken = { ...config, raOrigins: ['https://ra.example/'], sites: [] };
    const result = checkHandshake(
      { host: `127.0.0.1:${HANDSHAKE_TEST_PORT}`, origin: 'https://ra.example' },
      broken,
    );
    expect(result).toMatchObject({ ok: true, tier: 'unknown' });
  });

  it('ranks console above ra above site when an origin is listed twice', () => {
    const host = `127.0.0.1:${HANDSHAKE_TEST_PORT}`;
    const both = {
      ...config,
      raOrigins: ['https://x.example', config.consoleOrigin],
      sites: ['https://x.example'],
    };
    expect(checkHandshake({ host, origin: 'https://x.example' }, both)).toMatchObject({ tier: 'ra' });
    expect(checkHandshake({ host, origin: config.consoleOrigin }, both)).toMatchObject({ tier: 'console' });
  });

  it('never gives a listed tier to an origin that does not normalize to the listed one', () => {
    const host = `127.0.0.1:${HANDSHAKE_TEST_PORT}`;
    const piece = fc.constantFrom(
      'ra',
      '.',
      'example',
      'evil',
      '-',
      ':',
      '443',
      '8443',
      '/',
      '@',
      'https://',
      'http://',
      'A',
      'x',
      '',
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 8 }), fc.array(piece, { maxLength: 8 }), (before, after) => {
        const origin = `${before.join('')}https://ra.example${after.join('')}`;
        const result = checkHandshake({ host, origin }, config);
        if (result.ok && result.tier === 'ra') {
          expect(['https://ra.example', 'https://ra2.example:8443', 'http://localhost:5174']).toContain(
            result.origin,
          );
          expect(new URL(origin).origin).toBe(result.origin);
        }
      }),
    );
  });
});

describe('normalizeOrigin', () => {
  it.each([
    ['HTTPS://RA.EXAMPLE', 'https://ra.example'],
    ['https://ra.example:443', 'https://ra.example'],
    ['http://localhost:80', 'http://localhost'],
    ['http://localhost:443', 'http://localhost:443'],
    ['https://ra.example:80', 'https://ra.example:80'],
    ['https://ra.example:65535', 'https://ra.example:65535'],
    ['https://ra.example.', 'https://ra.example.'],
    ['https://127.0.0.1:17443', 'https://127.0.0.1:17443'],
    ['https://[0:0:0:0:0:0:0:1]', 'https://[::1]'],
    ['https://[2001:DB8::1]:8443', 'https://[2001:db8::1]:8443'],
    ['https://[::ffff:127.0.0.1]', 'https://[::ffff:7f00:1]'],
    ['https://xn--mgbai9azgqp6j.example', 'https://xn--mgbai9azgqp6j.example'],
  ])('normalizes %s to %s', (input, expected) => {
    expect(normalizeOrigin(input)).toBe(expected);
    expect(new URL(input).origin).toBe(expected);
  });

  it('is idempotent on everything it accepts', () => {
    for (const c of handshakeCases) {
      if (typeof c.origin !== 'string') continue;
      const once = normalizeOrigin(c.origin);
      if (once !== null) expect(normalizeOrigin(once)).toBe(once);
    }
  });

  it('agrees with the WHATWG URL parser on every string it accepts', () => {
    const piece = fc.constantFrom(
      'https://',
      'http://',
      'HTTPS://',
      'ra',
      'RA',
      '.',
      'example',
      'xn--p1ai',
      '-',
      '0',
      '1',
      '127',
      '255',
      ':',
      '443',
      '80',
      '8443',
      '[',
      ']',
      '::1',
      'db8',
    );
    fc.assert(
      fc.property(fc.array(piece, { minLength: 1, maxLength: 10 }), (parts) => {
        const s = parts.join('');
        const normalized = normalizeOrigin(s);
        if (normalized !== null) expect(new URL(s).origin).toBe(normalized);
      }),
      { numRuns: 5000 },
    );
  });

  it('refuses every string containing a character outside the origin alphabet', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 20 }),
        fc.constantFrom(' ', '\t', '\n', '\0', '/', '\\', '?', '#', '@', '%', '\u00e4', '\u06f1', '\ufeff'),
        fc.string({ maxLength: 20 }),
        (a, bad, b) => {
          expect(normalizeOrigin(`https://${a}${bad}${b}`)).toBeNull();
        },
      ),
    );
  });

  it('refuses non-string input', () => {
    expect(normalizeOrigin(undefined as unknown as string)).toBeNull();
    expect(normalizeOrigin(42 as unknown as string)).toBeNull();
  });
});

// The same matrix through Node's real HTTP parser: proves that `req.headersDistinct` exposes the
// duplicated headers and that each case's `overHttp` note is true.
describe('checkHandshake over Node HTTP', () => {
  let server: http.Server;
  let port: number;

  beforeAll(async () => {
    server = http.createServer((_req, res) => res.writeHead(404).end());
    server.on('upgrade', (req, socket) => {
      const result = checkHandshake(
        { host: req.headersDistinct.host, origin: req.headersDistinct.origin },
        handshakeConfig(port),
      );
      socket.end(
        result.ok
          ? `HTTP/1.1 101 Switching Protocols\r\nX-Tier: ${result.tier}\r\nConnection: close\r\n\r\n`
          : 'HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n',
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  function send(c: HandshakeCase): Promise<403 | 400 | string> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => socket.write(rawUpgradeRequest(c)));
      let reply = '';
      socket.setEncoding('latin1');
      socket.on('data', (d: string) => (reply += d));
      socket.on('error', reject);
      socket.on('close', () => {
        const status = /^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1];
        if (status === '101') resolve(/X-Tier: (\w+)/.exec(reply)?.[1] ?? 'no tier');
        else if (status === '403' || status === '400') resolve(Number(status) as 403 | 400);
        else reject(new Error(`unexpected reply: ${reply.slice(0, 40)}`));
      });
    });
  }

  it('gives every case its expected outcome', async () => {
    const cases = makeHandshakeCases(port);
    const outcomes = await Promise.all(cases.map((c) => send(c)));
    const wrong = cases
      .map((c, i) => ({ name: c.name, want: c.overHttp ?? c.expect, got: outcomes[i] }))
      .filter((o) => o.want !== o.got);
    expect(wrong).toEqual([]);
  });
});
