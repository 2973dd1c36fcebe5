import { isIPv6 } from 'node:net';
import { domainToASCII } from 'node:url';

// Web origins as the agent compares them: the one strict parser every layer uses (handshake tiers,
// site grants, per-origin ids, the CLI's `sites` command).

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
