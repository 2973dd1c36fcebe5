// The handshake matrix of PROTOCOL.md section 2, shared by the unit tests of transport/handshake.ts and
// the end-to-end tests against a running agent. Build both the config and the cases from the same port.
import type { Tier } from '../../src/model/types.js';
import type { HandshakeConfig } from '../../src/transport/handshake.js';

export interface HandshakeCase {
  name: string;
  /** Host header value; an array means the header is sent once per element; absent means not sent. */
  host?: string | string[];
  /** Origin header value, same conventions as `host`. */
  origin?: string | string[];
  /** What `checkHandshake` must decide: 403, or the tier the connection gets. */
  expect: 403 | Tier;
  /**
   * Outcome over a real HTTP/1.1 connection when Node's parser changes the value before the upgrade
   * handler sees it: surrounding whitespace is trimmed (RFC 9110 OWS), and control characters are
   * refused with 400 before any handler runs. Absent means "same as `expect`".
   */
  overHttp?: 400 | 403 | Tier;
}

/** The config fixture the cases assume (the keys of the agent's config file, plus the port). */
export function handshakeConfig(port: number): HandshakeConfig {
  return {
    port,
    raOrigins: ['https://ra.example', 'https://ra2.example:8443', 'http://localhost:5174'],
    sites: ['https://bank.example'],
    devOrigins: ['http://localhost:5173', 'http://localhost:5174'],
    consoleOrigin: `https://127.0.0.1:${port}`,
  };
}

export function makeHandshakeCases(port: number): HandshakeCase[] {
  const host = `127.0.0.1:${port}`;
  const ra = 'https://ra.example';
  type Outcome = HandshakeCase['overHttp'];
  const badHost = (name: string, h: string | string[] | undefined, overHttp?: Outcome): HandshakeCase => ({
    name: `Host ${name}`,
    host: h,
    origin: ra,
    expect: 403,
    ...(overHttp === undefined ? {} : { overHttp }),
  });
  const badOrigin = (name: string, o: string | string[] | undefined, overHttp?: Outcome): HandshakeCase => ({
    name: `Origin ${name}`,
    host,
    origin: o,
    expect: 403,
    ...(overHttp === undefined ? {} : { overHttp }),
  });
  const origin = (name: string, o: string, expect: HandshakeCase['expect']): HandshakeCase => ({
    name: `Origin ${name}`,
    host,
    origin: o,
    expect,
  });

  const cases: HandshakeCase[] = [
    // Accepted, with the right tier.
    origin('listed ra origin', ra, 'ra'),
    origin('listed ra origin in upper case (compared lower-cased)', 'HTTPS://RA.Example', 'ra'),
    origin('listed ra origin with explicit default port', 'https://ra.example:443', 'ra'),
    origin('listed ra origin with its non-default port', 'https://ra2.example:8443', 'ra'),
    origin('listed site', 'https://bank.example', 'site'),
    origin('dev origin over http', 'http://localhost:5173', 'unknown'),
    origin('dev origin that is also an ra origin', 'http://localhost:5174', 'ra'),
    origin(
      "agent's own origin (console; the server still requires the secret)",
      `https://127.0.0.1:${port}`,
      'console',
    ),
    origin('unlisted https origin', 'https://other.example', 'unknown'),
    origin('punycode host', 'https://xn--mgbai9azgqp6j.example', 'unknown'),
    origin('IPv6 literal', 'https://[2001:db8::1]:8443', 'unknown'),
    origin('host of 253 characters', `https://${`${'a'.repeat(63)}.`.repeat(3)}${'a'.repeat(61)}`, 'unknown'),
    { name: 'Host localhost:PORT', host: `localhost:${port}`, origin: ra, expect: 'ra' },
    { name: 'Host [::1]:PORT', host: `[::1]:${port}`, origin: ra, expect: 'ra' },

    // Well-formed look-alikes: never the tier they imitate.
    origin('ra origin on another port', 'https://ra.example:8443', 'unknown'),
    origin('ra origin on port 444', 'https://ra.example:444', 'unknown'),
    origin('ra origin with a trailing dot', 'https://ra.example.', 'unknown'),
    origin('ra origin as a prefix of another name', 'https://ra.example.evil.com', 'unknown'),
    origin('ra origin as a suffix of another name', 'https://evilra.example', 'unknown'),
    origin('ra origin with an extra label', 'https://a.ra.example', 'unknown'),
    origin('ra origin missing a character', 'https://ra.exampl', 'unknown'),
    origin('ra2 origin on the default port', 'https://ra2.example', 'unknown'),
    origin('site as a prefix', 'https://bank.example.evil.com', 'unknown'),
    origin('console origin on another port', `https://127.0.0.1:${port + 1}`, 'unknown'),
    origin('console look-alike localhost', `https://localhost:${port}`, 'unknown'),
    origin('console look-alike [::1]', `https://[::1]:${port}`, 'unknown'),
    origin('dev origin over https', 'https://localhost:5173', 'unknown'),

    // Host refused.
    badHost('missing', undefined),
    badHost('empty', ''),
    badHost('without port', '127.0.0.1'),
    badHost('with another port', `127.0.0.1:${port + 1}`),
    badHost('with a leading-zero port', `127.0.0.1:0${port}`),
    badHost('127.0.0.2', `127.0.0.2:${port}`),
    badHost('127.1', `127.1:${port}`),
    badHost('0.0.0.0', `0.0.0.0:${port}`),
    badHost('hex 0x7f000001', `0x7f000001:${port}`),
    badHost('decimal 2130706433', `2130706433:${port}`),
    badHost('octal 0177.0.0.1', `0177.0.0.1:${port}`),
    badHost('127.0.0.1 with trailing dot', `127.0.0.1.:${port}`),
    badHost('localhost with trailing dot', `localhost.:${port}`),
    badHost('LOCALHOST in upper case', `LOCALHOST:${port}`),
    badHost('Localhost in mixed case', `Localhost:${port}`),
    badHost('IPv4-mapped IPv6', `[::ffff:127.0.0.1]:${port}`),
    badHost('uncompressed IPv6 loopback', `[0:0:0:0:0:0:0:1]:${port}`),
    badHost('IPv6 loopback without brackets', `::1:${port}`),
    badHost('[::1] without port', '[::1]'),
    badHost('rebinding name', `evil.example:${port}`),
    badHost('rebinding name 127.0.0.1.nip.io', `127.0.0.1.nip.io:${port}`),
    badHost('localhost as a prefix', `localhost.evil.example:${port}`),
    badHost('subdomain of localhost', `evil.localhost:${port}`),
    badHost('with userinfo', `user@127.0.0.1:${port}`),
    badHost('with a path', `127.0.0.1:${port}/`),
    badHost('with surrounding space', ` ${host} `, 'ra'),
    badHost('sent twice (same value)', [host, host]),
    badHost('sent twice (second a rebinding name)', [host, `evil.example:${port}`]),

    // Origin refused.
    badOrigin('missing', undefined),
    badOrigin('empty', ''),
    badOrigin('null', 'null'),
    badOrigin('NULL', 'NULL'),
    badOrigin('http not in devOrigins', 'http://ra.example'),
    badOrigin('http console look-alike', `http://127.0.0.1:${port}`),
    badOrigin('http dev look-alike on another host', 'http://127.0.0.1:5173'),
    badOrigin('http dev look-alike on another port', 'http://localhost:5175'),
    badOrigin('http localhost without port', 'http://localhost'),
    badOrigin('dev origin with path /', 'http://localhost:5173/'),
    badOrigin('with path /', `${ra}/`),
    badOrigin('with path /x', `${ra}/x`),
    badOrigin('with empty query', `${ra}?`),
    badOrigin('with query', `${ra}?x=1`),
    badOrigin('with empty fragment', `${ra}#`),
    badOrigin('with fragment', `${ra}#x`),
    badOrigin('with userinfo', 'https://user@ra.example'),
    badOrigin('with user and password', 'https://user:pass@ra.example'),
    badOrigin('listed origin as userinfo of another host', 'https://ra.example@evil.com'),
    badOrigin('listed origin and port as userinfo', 'https://ra.example:443@evil.com'),
    badOrigin('with leading space', ` ${ra}`, 'ra'),
    badOrigin('with trailing space', `${ra} `, 'ra'),
    badOrigin('with a space inside', 'https://ra. example'),
    badOrigin('with a tab inside', 'https://ra.\texample'),
    badOrigin('with a control character', 'https://ra.exa\u0001mple', 400),
    badOrigin('with a raw Persian host', 'https://ایران.example'),
    badOrigin('with a raw non-ASCII letter', 'https://ra.exämple'),
    badOrigin('with a fullwidth dot', 'https://ra\uff0eexample'),
    badOrigin('with percent-encoding in host', 'https://ra%2eexample'),
    badOrigin('with backslashes', 'https:\\\\ra.example'),
    badOrigin('with a trailing backslash', `${ra}\\`),
    badOrigin('with one slash', 'https:/ra.example'),
    badOrigin('without slashes', 'https:ra.example'),
    badOrigin('without scheme', '//ra.example'),
    badOrigin('bare host', 'ra.example'),
    badOrigin('wss scheme', 'wss://ra.example'),
    badOrigin('file scheme', 'file://'),
    badOrigin('extension scheme', 'chrome-extension://abcdefghijklmnop'),
    badOrigin('empty host', 'https://'),
    badOrigin('empty host with port', 'https://:443'),
    badOrigin('empty port', `${ra}:`),
    badOrigin('port 0', `${ra}:0`),
    badOrigin('port 65536', `${ra}:65536`),
    badOrigin('leading-zero port', `${ra}:0443`),
    badOrigin('signed port', `${ra}:+443`),
    badOrigin('empty label', 'https://ra..example'),
    badOrigin('leading dot', 'https://.ra.example'),
    badOrigin('label starting with a hyphen', 'https://-ra.example'),
    badOrigin('underscore in host', 'https://ra_x.example'),
    badOrigin('label of 64 characters', `https://${'a'.repeat(64)}.example`),
    badOrigin('host of 254 characters', `https://${`${'a'.repeat(63)}.`.repeat(3)}${'a'.repeat(62)}`),
    badOrigin('non-canonical IPv4 127.1', 'https://127.1'),
    badOrigin('decimal IPv4', 'https://2130706433'),
    badOrigin('hex IPv4 part', 'https://0x7f.0.0.1'),
    badOrigin('IPv4 with trailing dot', 'https://127.0.0.1.'),
    badOrigin('unbalanced IPv6 bracket', 'https://[::1'),
    badOrigin('IPv6 with zone id', 'https://[fe80::1%25eth0]'),
    badOrigin('IPv6 with junk after the bracket', 'https://[::1]x'),
    badOrigin('punycode label that does not decode', 'https://xn--p1ai80.example'),
    badOrigin('invalid IPv6', 'https://[1:2:3:4:5:6:7:8:9]'),
    badOrigin('sent twice (same value)', [ra, ra]),
    badOrigin('two origins joined by a comma', `${ra}, https://evil.example`),
  ];
  return cases;
}

/** Port used by unit tests; end-to-end tests call {@link makeHandshakeCases} with the agent's port. */
export const HANDSHAKE_TEST_PORT = 17443;

export const handshakeCases: HandshakeCase[] = makeHandshakeCases(HANDSHAKE_TEST_PORT);

/**
 * The raw bytes of a WebSocket upgrade request for one case (duplicates sent as repeated header lines),
 * for writing to a plain or TLS socket: HTTP client libraries fix up Host and refuse duplicates.
 */
export function rawUpgradeRequest(c: HandshakeCase, path = '/v1'): Buffer {
  const lines = [`GET ${path} HTTP/1.1`];
  for (const [name, value] of [
    ['Host', c.host],
    ['Origin', c.origin],
  ] as const) {
    for (const v of value === undefined ? [] : Array.isArray(value) ? value : [value])
      lines.push(`${name}: ${v}`);
  }
  lines.push(
    'Connection: Upgrade',
    'Upgrade: websocket',
    'Sec-WebSocket-Version: 13',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    '',
    '',
  );
  return Buffer.from(lines.join('\r\n'), 'utf8');
}
