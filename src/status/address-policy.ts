// Which network destinations a status fetch may connect to. A page can put any URL in a certificate it
// hands to certificates.status; without this, the agent becomes the page's way into loopback services,
// the LAN and cloud metadata endpoints (169.254.169.254). The check runs inside the connect path (a
// `lookup` for node:http), on the very addresses the socket connects to, so a DNS answer that changes
// between a check and the connection (rebinding) cannot slip past it.
import * as dns from 'node:dns';
import { isIP } from 'node:net';
import type { LookupFunction } from 'node:net';

/**
 * `public`: globally routable. `private`: loopback, RFC 1918, link-local, CGNAT, unique-local,
 * documentation, benchmarking and the tunnels that reach them. `reserved`: unspecified, multicast,
 * broadcast, class E: nothing a CRL or OCSP responder ever lives at, so never allowed.
 */
export type AddressClass = 'public' | 'private' | 'reserved';

export interface DestinationPolicy {
  /** Also connect to `private` addresses (config `revocation.allowPrivateNetworks`, token certificates). */
  allowPrivateNetworks: boolean;
}

/** Thrown (through the socket) when every address of a destination is refused by the policy. */
export class DestinationRefused extends Error {
  constructor(readonly host: string) {
    super(`no allowed address for ${host}`);
    this.name = 'DestinationRefused';
  }
}

type Range = readonly [prefix: readonly number[], bits: number, cls: AddressClass];

const V4_RANGES: readonly Range[] = [
  [[0], 8, 'reserved'],
  [[10], 8, 'private'],
  [[100, 64], 10, 'private'],
  [[127], 8, 'private'],
  [[169, 254], 16, 'private'],
  [[172, 16], 12, 'private'],
  [[192, 0, 0], 24, 'private'],
  [[192, 0, 2], 24, 'private'],
  [[192, 88, 99], 24, 'private'],
  [[192, 168], 16, 'private'],
  [[198, 18], 15, 'private'],
  [[198, 51, 100], 24, 'private'],
  [[203, 0, 113], 24, 'private'],
  [[224], 4, 'reserved'],
  [[240], 4, 'reserved'],
];

// IPv6 ranges whose class does not come from an embedded IPv4 address (those are handled first).
const V6_RANGES: readonly Range[] = [
  [[0x00, 0x64, 0xff, 0x9b, 0x00, 0x01], 48, 'private'],
  [[0x01, 0x00, 0, 0, 0, 0, 0, 0], 64, 'reserved'],
  [[0x20, 0x01, 0x00, 0x00], 32, 'private'],
  [[0x20, 0x01, 0x0d, 0xb8], 32, 'private'],
  [[0xfc], 7, 'private'],
  [[0xfe, 0x80], 10, 'private'],
  [[0xfe, 0xc0], 10, 'private'],
  [[0xff], 8, 'reserved'],
];

function inRange(bytes: Uint8Array, prefix: readonly number[], bits: number): boolean {
  for (let i = 0; i < bits; i += 8) {
    const take = Math.min(8, bits - i);
    const mask = (0xff << (8 - take)) & 0xff;
    if (((bytes[i / 8] ?? 0) & mask) !== ((prefix[i / 8] ?? 0) & mask)) return false;
  }
  return true;
}

function classOf(bytes: Uint8Array, ranges: readonly Range[]): AddressClass {
  for (const [prefix, bits, cls] of ranges) if (inRange(bytes, prefix, bits)) return cls;
  return 'public';
}

function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return undefined;
  return new Uint8Array(parts.map(Number));
}

function parseIpv6(text: string): Uint8Array | undefined {
  let s = text.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const out = new Uint8Array(16);
  // A trailing dotted quad (::ffff:127.0.0.1) becomes two groups.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (quad) {
    const v4 = parseIpv4(quad[1]!);
    if (!v4) return undefined;
    s = `${s.slice(0, quad.index)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string): string[] => (h === '' ? [] : h.split(':'));
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const all = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
  for (let i = 0; i < 8; i++) {
    const g = all[i]!;
    if (!/^[0-9a-f]{1,4}$/i.test(g)) return undefined;
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  }
  return out;
}

/** The class of an IPv4 or IPv6 address (text); `reserved` for anything that is not an address. */
export function classifyAddress(address: string): AddressClass {
  const v4 = parseIpv4(address);
  if (v4) return classOf(v4, V4_RANGES);
  const v6 = parseIpv6(address);
  if (!v6) return 'reserved';
  const zeros = (n: number): boolean => v6.subarray(0, n).every((b) => b === 0);
  if (zeros(16)) return 'reserved';
  if (zeros(15) && v6[15] === 1) return 'private';
  // Forms that carry an IPv4 address, which is what the packets reach: IPv4-mapped (::ffff:0:0/96),
  // IPv4-compatible (::/96), NAT64 well-known prefix (64:ff9b::/96), 6to4 (2002::/16).
  if (zeros(10) && v6[10] === 0xff && v6[11] === 0xff) return classOf(v6.subarray(12), V4_RANGES);
  if (zeros(12)) return classOf(v6.subarray(12), V4_RANGES);
  if (inRange(v6, [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0], 96)) {
    return classOf(v6.subarray(12), V4_RANGES);
  }
  if (v6[0] === 0x20 && v6[1] === 0x02) return classOf(v6.subarray(2, 6), V4_RANGES);
  return classOf(v6, V6_RANGES);
}

/** Whether `policy` lets a request connect to `address`. */
export function isAllowedAddress(address: string, policy: DestinationPolicy): boolean {
  const cls = classifyAddress(address);
  return cls === 'public' || (cls === 'private' && policy.allowPrivateNetworks);
}

/**
 * Throws DestinationRefused when `hostname` (a URL's hostname) is an IP literal the policy refuses. Node
 * connects to literals without calling `lookup`, so they are checked here, before the request.
 */
export function assertLiteralAllowed(hostname: string, policy: DestinationPolicy): void {
  const bare = hostname.replace(/^\[|\]$/g, '');
  if (isIP(bare) !== 0 && !isAllowedAddress(bare, policy)) throw new DestinationRefused(hostname);
}

/**
 * A `lookup` for node:http / node:net that resolves with dns.lookup and hands the socket only the
 * addresses the policy allows; when none is left, the connection fails with DestinationRefused.
 */
export function guardedLookup(policy: DestinationPolicy): LookupFunction {
  return (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return void callback(err, '', 0);
      const allowed = addresses.filter((a) => isAllowedAddress(a.address, policy));
      if (allowed.length === 0) return void callback(new DestinationRefused(hostname), '', 0);
      if (options.all) return void callback(null, allowed);
      const first = allowed[0]!;
      callback(null, first.address, first.family);
    });
  };
}
