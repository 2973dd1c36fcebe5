import { isIPv6 } from 'node:net';
import { domainToASCII } from 'node:url';
import type { Tier } from '../protocol/types.js';

// PROTOCOL.md section 2: the Host and Origin checks made in the HTTP `upgrade` handler, before the
// upgrade. Pure functions: no I/O, no clock, so the whole matrix is testable without a server.

export interface HandshakeConfig {
  port: number;
  /** Origins of the `ra` tier (config `raOrigins`). */
  raOrigins: string[];
  /** Origins of the `site` tier: config `sites` plus the user's approvals. */
  sites: string[];
  /** Non-https origins allowed to connect (config `devOrigins`); they get a tier like any other origin. */
  devOrigins: string[];
  /** The agent's own origin, `https://127.0.0.1:PORT`. */
  consoleOrigin: string;
}

export type HandshakeResult =
  { ok: true; origin: string; tier: Tier } | { ok: false; status: 403; reason: string };

export interface HandshakeHeaders {
  host?: string | string[];
  origin?: string | string[];
}

/**
 * Decide whether an upgrade request may proceed, and with which tier.
 *
 * Pass `req.headersDistinct.host` and `req.headersDistinct.origin`: Node's `req.headers.host` keeps only
 * the first of several Host headers, so a duplicated Host is only visible in `headersDistinct`. Any
 * header given more than once is refused.
 *
 * Host must be exactly `127.0.0.1:PORT`, `localhost:PORT` or `[::1]:PORT`, byte for byte: browsers
 * always send a lower-case Host, so `LOCALHOST:PORT` (or a trailing dot, another loopback address, a
 * numeric form of 127.0.0.1) only comes from a non-browser client or a rebinding trick and is refused.
 *
 * Tier `console` is returned for the agent's own origin only as a claim: the server must still require
 * the one-time secret before treating the connection as the console, and refuse it otherwise.
 */
export function checkHandshake(headers: HandshakeHeaders, config: HandshakeConfig): HandshakeResult {
  const host = single(headers.host);
  if (host === undefined) return refuse('Host header missing or repeated');
  if (!allowedHosts(config.port).includes(host)) return refuse('Host not allowed');

  return tierForOrigin(single(headers.origin), config);
}

/**
 * The tier of an origin, by the rules of the WebSocket handshake (https only unless listed in
 * `devOrigins`; console, then `raOrigins`, then `sites`, else `unknown`). Shared by the WebSocket
 * upgrade and the extension bridge, so both transports give one origin the same tier.
 */
export function tierForOrigin(
  rawOrigin: string | undefined,
  config: Omit<HandshakeConfig, 'port'>,
): HandshakeResult {
  if (rawOrigin === undefined) return refuse('Origin header missing or repeated');
  if (rawOrigin === 'null') return refuse('opaque Origin "null" not allowed');
  const origin = normalizeOrigin(rawOrigin);
  if (origin === null) return refuse('Origin malformed');

  const listed = (list: readonly string[]): boolean => list.some((o) => normalizeOrigin(o) === origin);
  if (!origin.startsWith('https://') && !listed(config.devOrigins)) {
    return refuse('Origin scheme must be https');
  }

  let tier: Tier = 'unknown';
  if (normalizeOrigin(config.consoleOrigin) === origin) tier = 'console';
  else if (listed(config.raOrigins)) tier = 'ra';
  else if (listed(config.sites)) tier = 'site';
  return { ok: true, origin, tier };
}

function refuse(reason: string): HandshakeResult {
  return { ok: false, status: 403, reason };
}

function single(value: string | string[] | undefined): string | undefined {
  if (Array.isArray(value)) return value.length === 1 ? value[0] : undefined;
  return value;
}

function allowedHosts(port: number): string[] {
  return [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`];
}

// Everything a browser can put in a serialized http(s) origin, and nothing else: no whitespace,
// control characters, `%`, `\`, `@`, `/`, `?`, `#`, or non-ASCII. Hosts are checked label by label below.
const ORIGIN_SHAPE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]+))?$/;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const DEFAULT_PORT: Readonly<Record<string, string>> = { https: '443', http: '80' };

/**
 * Strictly parse an origin (`scheme://host[:port]`) and return its lower-case serialization, or `null`.
 *
 * Accepted: schemes `https` and `http`; DNS names made of letter/digit/hyphen labels (punycode `xn--`
 * labels are kept as they are, if they decode; a trailing dot is kept, so `https://ra.example.` is a different origin
 * from `https://ra.example`); canonical dotted-quad IPv4; bracketed IPv6 (re-serialized in WHATWG
 * canonical form). Port 1–65535 without leading zeros; 443 (https) and 80 (http) are dropped.
 *
 * Refused: anything after the authority (even a lone `/`), query, fragment, userinfo, whitespace,
 * control or non-ASCII characters, percent-encoding, backslashes, empty host or labels, underscores,
 * IPv6 zone ids, and hosts a browser would have rewritten (a host ending in a number that is not a
 * canonical dotted quad, such as `127.1`, `2130706433` or `0x7f.0.0.1`): a browser never sends those.
 */
export function normalizeOrigin(s: string): string | null {
  if (typeof s !== 'string' || s.length > 300) return null;
  const m = ORIGIN_SHAPE.exec(s);
  if (m === null) return null;
  const scheme = m[1].toLowerCase();
  const defaultPort = DEFAULT_PORT[scheme];
  if (defaultPort === undefined) return null;
  const host = normalizeHost(m[2].toLowerCase());
  if (host === null) return null;
  const port: string | undefined = m[3];
  if (port !== undefined && !/^[1-9][0-9]{0,4}$/.test(port)) return null;
  if (port !== undefined && Number(port) > 65535) return null;
  return port === undefined || port === defaultPort ? `${scheme}://${host}` : `${scheme}://${host}:${port}`;
}

function normalizeHost(host: string): string | null {
  if (host.startsWith('[')) {
    const inner = host.slice(1, -1);
    if (!host.endsWith(']') || !isIPv6(inner)) return null;
    // WHATWG serialization (compressed, lower-case), as browsers send it.
    return new URL(`https://${host}`).hostname;
  }
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name.length === 0 || name.length > 253) return null;
  const labels = name.split('.');
  if (!labels.every((l) => LABEL.test(l))) return null;
  // A browser only sends punycode that decodes (WHATWG's IDNA step): refuse broken `xn--` labels.
  if (labels.some((l) => l.startsWith('xn--')) && domainToASCII(name) !== name) return null;
  // WHATWG parses a host whose last label is numeric as IPv4 and re-serializes it, so only the
  // canonical dotted quad can arrive from a browser.
  const last = labels[labels.length - 1];
  if (/^(?:[0-9]+|0x[0-9a-f]*)$/.test(last)) {
    const canonical =
      labels.length === 4 && labels.every((l) => /^(?:0|[1-9][0-9]{0,2})$/.test(l) && Number(l) <= 255);
    if (!canonical || host !== name) return null;
  }
  return host;
}
