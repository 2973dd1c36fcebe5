import * as fs from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { endianness as osEndianness } from 'node:os';

// Loopback TCP is open to every OS account, and Origin is only a header: the agent serves only its
// own OS user. On Linux the peer's socket is the line of /proc/net/tcp (or tcp6) whose local address
// is the peer's address:port and whose remote address is ours; its `uid` column says who created it.
// Parsing is pure (the table text is passed in) so every address form is unit-tested.

/** One end of a TCP connection, as `net.Socket` reports it. */
export interface Endpoint {
  address: string;
  port: number;
}

export type Endianness = 'LE' | 'BE';

/**
 * The uid owning the socket whose local end is `peer` and remote end is `ours`, read from the text of
 * /proc/net/tcp or /proc/net/tcp6; null when no line (or more than one uid) matches, or when the only
 * matches are sockets no process holds any more (inode 0: TIME_WAIT, orphaned FIN_WAIT), whose uid
 * column is 0 and means nothing.
 */
export function findSocketUid(
  table: string,
  peer: Endpoint,
  ours: Endpoint,
  endianness: Endianness = osEndianness(),
): number | null {
  const wantLocal = new Set(encodeEndpoint(peer, endianness));
  const wantRemote = new Set(encodeEndpoint(ours, endianness));
  if (wantLocal.size === 0 || wantRemote.size === 0) return null;
  let uid: number | null = null;
  for (const line of table.split('\n')) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !/^\d+:$/.test(f[0])) continue;
    if (!wantLocal.has(f[1].toUpperCase()) || !wantRemote.has(f[2].toUpperCase())) continue;
    if (!/^\d+$/.test(f[7]) || !/^\d+$/.test(f[9]) || f[9] === '0') continue;
    const found = Number(f[7]);
    if (uid !== null && uid !== found) return null;
    uid = found;
  }
  return uid;
}

/**
 * The forms `addr:port` takes in /proc/net/tcp{,6}: the kernel prints each 32-bit word of the address
 * with %08X in host byte order (so 127.0.0.1 is `0100007F` on little-endian machines) and the port in
 * plain hex. An IPv4 address also appears in tcp6, v4-mapped, when the peer used an AF_INET6 socket.
 */
export function encodeEndpoint(endpoint: Endpoint, endianness: Endianness = osEndianness()): string[] {
  const { port } = endpoint;
  if (!Number.isInteger(port) || port < 0 || port > 65535) return [];
  const p = port.toString(16).toUpperCase().padStart(4, '0');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(endpoint.address);
  const address = mapped ? mapped[1] : endpoint.address;
  if (isIPv4(address)) {
    const v4 = address.split('.').map(Number);
    const v6 = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4];
    return [`${words(v4, endianness)}:${p}`, `${words(v6, endianness)}:${p}`];
  }
  const bytes = ipv6Bytes(address);
  return bytes === null ? [] : [`${words(bytes, endianness)}:${p}`];
}

function words(bytes: number[], endianness: Endianness): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 4) {
    const w = bytes.slice(i, i + 4);
    if (endianness === 'LE') w.reverse();
    out += w.map((b) => b.toString(16).toUpperCase().padStart(2, '0')).join('');
  }
  return out;
}

/** The 16 bytes of an IPv6 address (`::` and a dotted-quad tail allowed); null if it is not one. */
function ipv6Bytes(address: string): number[] | null {
  if (!isIPv6(address) || address.includes('%')) return null;
  let text = address;
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail) {
    const [a, b, c, d] = tail[1].split('.').map(Number);
    text = `${text.slice(0, -tail[1].length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const left = groups(head);
  const right = rest === undefined ? [] : groups(rest);
  const fill = rest === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0');
  const all = [...left, ...fill, ...right];
  if (all.length !== 8) return null;
  return all.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
}

export type PeerVerdict = { ok: true } | { ok: false; uid: number | null };

/** Where the socket tables are read from (a parameter for tests). */
export type ProcNetReader = (file: 'tcp' | 'tcp6') => string | null;

const readProcNet: ProcNetReader = (file) => {
  try {
    return fs.readFileSync(`/proc/net/${file}`, 'latin1');
  } catch {
    return null;
  }
};

/**
 * Whether the peer of an accepted loopback socket runs as the agent's own OS user. Linux only: other
 * platforms are let through (docs/agent.md says what they get). Synchronous on purpose: it runs in the
 * server's `connection` event, before TLS or HTTP read a byte from the socket.
 */
export function checkPeerUser(
  socket: { remoteAddress?: string; remotePort?: number; localAddress?: string; localPort?: number },
  options: { platform?: NodeJS.Platform; uid?: number; read?: ProcNetReader } = {},
): PeerVerdict {
  if ((options.platform ?? process.platform) !== 'linux') return { ok: true };
  // The socket's uid is its creator's fsuid, which follows the effective uid.
  const ownUid = options.uid ?? process.geteuid?.() ?? -1;
  const { remoteAddress, remotePort, localAddress, localPort } = socket;
  if (remoteAddress === undefined || remotePort === undefined) return { ok: false, uid: null };
  if (localAddress === undefined || localPort === undefined) return { ok: false, uid: null };
  const peer = { address: remoteAddress, port: remotePort };
  const ours = { address: localAddress, port: localPort };
  const read = options.read ?? readProcNet;
  let uid: number | null = null;
  for (const file of ['tcp', 'tcp6'] as const) {
    const table = read(file);
    if (table === null) continue;
    uid = findSocketUid(table, peer, ours);
    if (uid !== null) break;
  }
  return uid !== null && uid === ownUid ? { ok: true } : { ok: false, uid };
}
