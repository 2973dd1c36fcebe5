import { normalizeOrigin } from '../model/origin.js';
import type { Tier } from '../model/types.js';

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

/** The Host values accepted for a listener on `port`: `127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT`. */
export function allowedHosts(port: number): string[] {
  return [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`];
}
