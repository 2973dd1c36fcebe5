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
  let uid: number | null = null;
  for (const line of socketLines(table, peer, ours, endianness)) {
    if (line.inode === 0) continue;
    if (uid !== null && uid !== line.uid) return null;
    uid = line.uid;
  }
  return uid;
}

/**
 * Whether the table lists this process's own end of a connection: the line `local` → `remote` with
 * our socket's inode, or with inode 0 in state ESTABLISHED or CLOSE_WAIT (a connection still in the
 * accept queue when the table was read gets its inode only from accept()). TIME_WAIT lines (06), the
 * remains of an earlier connection on the same ports, do not count.
 */
export function hasOwnEnd(
  table: string,
  local: Endpoint,
  remote: Endpoint,
  inode: number,
  endianness: Endianness = osEndianness(),
): boolean {
  return socketLines(table, local, remote, endianness).some(
    (l) => l.inode === inode || (l.inode === 0 && (l.state === '01' || l.state === '08')),
  );
}

interface SocketLine {
  uid: number;
  inode: number;
  /** The TCP state, two hex digits (01 ESTABLISHED, 06 TIME_WAIT, 08 CLOSE_WAIT, …). */
  state: string;
}

/** The lines of the table whose ends are `local` and `remote`. */
function socketLines(table: string, local: Endpoint, remote: Endpoint, endianness: Endianness): SocketLine[] {
  const out: SocketLine[] = [];
  const remotes = encodeEndpoint(remote, endianness);
  // A substring search, not a parse of every line: the table lists every socket of the machine.
  for (const l of encodeEndpoint(local, endianness)) {
    for (const r of remotes) {
      const needle = ` ${l} ${r} `;
      for (let i = table.indexOf(needle); i !== -1; i = table.indexOf(needle, i + needle.length)) {
        const start = table.lastIndexOf('\n', i) + 1;
        const end = table.indexOf('\n', i);
        // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …
        const f = table
          .slice(start, end === -1 ? undefined : end)
          .trim()
          .split(/\s+/);
        if (f.length < 10 || !/^\d+:$/.test(f[0]) || f[1] !== l || f[2] !== r) continue;
        if (!/^\d+$/.test(f[7]) || !/^\d+$/.test(f[9])) continue;
        out.push({ uid: Number(f[7]), inode: Number(f[9]), state: f[3] });
      }
    }
  }
  return out;
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

/** What the check needs of an accepted socket. */
export interface AcceptedSocket {
  remoteAddress?: string;
  remotePort?: number;
  localAddress?: string;
  localPort?: number;
}

export interface PeerUserCheckOptions {
  platform?: NodeJS.Platform;
  /** The agent's uid (default: the effective uid). */
  uid?: number;
  read?: ProcNetReader;
  /** The inode of the accepted socket (default: fstat of its file descriptor). */
  inodeOf?: (socket: AcceptedSocket) => number | null;
}

const readProcNet: ProcNetReader = (file) => {
  try {
    return fs.readFileSync(`/proc/net/${file}`, 'latin1');
  } catch {
    return null;
  }
};

const socketInode = (socket: AcceptedSocket): number | null => {
  const fd = (socket as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return null;
  try {
    return fs.fstatSync(fd).ino;
  } catch {
    return null;
  }
};

/**
 * Whether the peer of an accepted loopback socket runs as the agent's own OS user. Linux only: other
 * platforms are let through (docs/agent.md says what they get). Synchronous on purpose: it runs in the
 * server's `connection` event, before TLS or HTTP read a byte from the socket.
 *
 * The tables list every socket of the machine, so reading them costs in proportion, and a burst of
 * connections (Node accepts one per turn of the event loop) would read them once per connection. The
 * last read is kept for a second, and used for a socket only when it also lists that very connection
 * from our side (hasOwnEnd): by its inode, or as a connection still in the accept queue at the read,
 * which (accepts being in order) is this one unless an earlier connection on the same ports was
 * accepted since, and that earlier one has then used the kept table's answer for these ports: a kept
 * table answers for one pair of ports once. Otherwise the tables are read again; and once more when
 * the peer is not found, since a table read in several pieces can miss a line while other sockets
 * come and go.
 */
export class PeerUserCheck {
  readonly #linux: boolean;
  readonly #uid: number;
  readonly #read: ProcNetReader;
  readonly #inodeOf: (socket: AcceptedSocket) => number | null;
  #tables: { tcp: string | null; tcp6?: string | null } | null = null;
  #readAt = 0;
  /** The connections (ports) the kept tables have answered for. */
  #answered = new Set<string>();

  constructor(options: PeerUserCheckOptions = {}) {
    this.#linux = (options.platform ?? process.platform) === 'linux';
    // The socket's uid is its creator's fsuid, which follows the effective uid.
    this.#uid = options.uid ?? process.geteuid?.() ?? -1;
    this.#read = options.read ?? readProcNet;
    this.#inodeOf = options.inodeOf ?? socketInode;
  }

  check(socket: AcceptedSocket): PeerVerdict {
    if (!this.#linux) return { ok: true };
    const { remoteAddress, remotePort, localAddress, localPort } = socket;
    if (
      remoteAddress === undefined ||
      remotePort === undefined ||
      localAddress === undefined ||
      localPort === undefined
    ) {
      // Already reset: its ports are unknown, so they cannot be marked as answered in the kept table.
      this.#tables = null;
      return { ok: false, uid: null };
    }
    const peer = { address: remoteAddress, port: remotePort };
    const ours = { address: localAddress, port: localPort };
    const key = `${remoteAddress} ${remotePort} ${localAddress} ${localPort}`;
    let uid: number | null = null;
    const inode = this.#inodeOf(socket);
    const now = performance.now();
    const kept = now - this.#readAt <= 1000 ? this.#tables : null;
    if (
      kept !== null &&
      kept.tcp !== null &&
      inode !== null &&
      !this.#answered.has(key) &&
      hasOwnEnd(kept.tcp, ours, peer, inode)
    ) {
      uid = this.#lookup(kept, peer, ours);
    }
    for (let attempt = 0; uid === null && attempt < 2; attempt++) {
      this.#tables = { tcp: this.#read('tcp') };
      this.#readAt = now;
      this.#answered = new Set();
      uid = this.#lookup(this.#tables, peer, ours);
    }
    this.#answered.add(key);
    return uid !== null && uid === this.#uid ? { ok: true } : { ok: false, uid };
  }

  #lookup(
    tables: { tcp: string | null; tcp6?: string | null },
    peer: Endpoint,
    ours: Endpoint,
  ): number | null {
    const v4 = tables.tcp === null ? null : findSocketUid(tables.tcp, peer, ours);
    if (v4 !== null) return v4;
    // A peer on an AF_INET6 socket (v4-mapped) is in tcp6, read after tcp: still after the connection.
    if (tables.tcp6 === undefined) tables.tcp6 = this.#read('tcp6');
    return tables.tcp6 === null ? null : findSocketUid(tables.tcp6, peer, ours);
  }
}
