import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PeerUserCheck, encodeEndpoint, findSocketUid, hasOwnEnd } from '../../../src/transport/peer-uid.js';

// Mapping a loopback peer to its OS user through /proc/net/tcp{,6}: the address forms (IPv4, IPv6,
// v4-mapped, both byte orders) on fixed tables, then the real kernel tables of a live connection.

const HEADER =
  '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';

function line(sl: number, local: string, remote: string, uid: number, inode: number, st = '01'): string {
  return `  ${sl}: ${local} ${remote} ${st} 00000000:00000000 00:00000000 00000000 ${uid} 0 ${inode} 1 0000000000000000 20 4 30 10 -1\n`;
}

const AGENT = { address: '127.0.0.1', port: 17443 }; // 0x4423
const PEER = { address: '127.0.0.1', port: 40000 }; // 0x9C40

describe('encodeEndpoint', () => {
  it('writes IPv4 as a little-endian word, plus its v4-mapped tcp6 form', () => {
    expect(encodeEndpoint(AGENT, 'LE')).toEqual(['0100007F:4423', '0000000000000000FFFF00000100007F:4423']);
  });

  it('writes big-endian words on big-endian machines', () => {
    expect(encodeEndpoint(AGENT, 'BE')).toEqual(['7F000001:4423', '00000000000000000000FFFF7F000001:4423']);
  });

  it('treats a v4-mapped address as the IPv4 address', () => {
    expect(encodeEndpoint({ address: '::ffff:127.0.0.1', port: 17443 }, 'LE')).toEqual(
      encodeEndpoint(AGENT, 'LE'),
    );
  });

  it('writes IPv6 word by word (::1 and a full address)', () => {
    expect(encodeEndpoint({ address: '::1', port: 1 }, 'LE')).toEqual([
      '00000000000000000000000001000000:0001',
    ]);
    expect(encodeEndpoint({ address: '2001:db8::a:b', port: 65535 }, 'LE')).toEqual([
      'B80D012000000000000000000B000A00:FFFF',
    ]);
    expect(encodeEndpoint({ address: '::ffff:7f00:1', port: 1 }, 'LE')).toEqual(
      encodeEndpoint({ address: '127.0.0.1', port: 1 }, 'LE').slice(1),
    );
  });

  it('returns nothing for what is not an address or a port', () => {
    expect(encodeEndpoint({ address: 'localhost', port: 1 }, 'LE')).toEqual([]);
    expect(encodeEndpoint({ address: 'fe80::1%eth0', port: 1 }, 'LE')).toEqual([]);
    expect(encodeEndpoint({ address: '127.0.0.1', port: 70000 }, 'LE')).toEqual([]);
  });
});

describe('findSocketUid', () => {
  const listen = line(0, '0100007F:4423', '00000000:0000', 1000, 111, '0A');
  const ours = line(1, '0100007F:4423', '0100007F:9C40', 1000, 222);
  const theirs = line(2, '0100007F:9C40', '0100007F:4423', 65534, 333);

  it("reads the uid of the peer's own socket, not of ours or the listener", () => {
    expect(findSocketUid(HEADER + listen + ours + theirs, PEER, AGENT, 'LE')).toBe(65534);
  });

  it('finds a peer that connected from an AF_INET6 socket (v4-mapped, in tcp6)', () => {
    const tcp6 =
      HEADER +
      line(0, '0000000000000000FFFF00000100007F:9C40', '0000000000000000FFFF00000100007F:4423', 1000, 9);
    expect(findSocketUid(tcp6, PEER, AGENT, 'LE')).toBe(1000);
    expect(findSocketUid(tcp6, { address: '::ffff:127.0.0.1', port: 40000 }, AGENT, 'LE')).toBe(1000);
  });

  it('finds an IPv6 peer', () => {
    const tcp6 =
      HEADER +
      line(0, '00000000000000000000000001000000:9C40', '00000000000000000000000001000000:4423', 42, 9);
    expect(findSocketUid(tcp6, { address: '::1', port: 40000 }, { address: '::1', port: 17443 }, 'LE')).toBe(
      42,
    );
  });

  it('ignores sockets no process holds (inode 0: TIME_WAIT shows uid 0)', () => {
    const timeWait = line(2, '0100007F:9C40', '0100007F:4423', 0, 0, '06');
    expect(findSocketUid(HEADER + ours + timeWait, PEER, AGENT, 'LE')).toBeNull();
  });

  it('returns null when nothing matches, or when two matches disagree', () => {
    expect(findSocketUid(HEADER + listen + ours, PEER, AGENT, 'LE')).toBeNull();
    const twin = line(3, '0100007F:9C40', '0100007F:4423', 1000, 444);
    expect(findSocketUid(HEADER + theirs + twin, PEER, AGENT, 'LE')).toBeNull();
    expect(findSocketUid('garbage\n\n', PEER, AGENT, 'LE')).toBeNull();
  });

  it('does not match a peer on another port, or the reversed pair', () => {
    expect(findSocketUid(HEADER + theirs, { address: '127.0.0.1', port: 40001 }, AGENT, 'LE')).toBeNull();
    expect(findSocketUid(HEADER + theirs, AGENT, PEER, 'LE')).toBeNull();
  });
});

describe('hasOwnEnd', () => {
  it('finds our end of the connection by its inode', () => {
    const table = HEADER + line(0, '0100007F:4423', '0100007F:9C40', 0, 222);
    expect(hasOwnEnd(table, AGENT, PEER, 222, 'LE')).toBe(true);
    expect(hasOwnEnd(table, AGENT, PEER, 223, 'LE')).toBe(false);
    expect(hasOwnEnd(table, PEER, AGENT, 222, 'LE')).toBe(false);
  });

  it('counts a connection still in the accept queue (inode 0, established), not a TIME_WAIT one', () => {
    const queued = HEADER + line(0, '0100007F:4423', '0100007F:9C40', 0, 0, '01');
    expect(hasOwnEnd(queued, AGENT, PEER, 222, 'LE')).toBe(true);
    const closing = HEADER + line(0, '0100007F:4423', '0100007F:9C40', 0, 0, '08');
    expect(hasOwnEnd(closing, AGENT, PEER, 222, 'LE')).toBe(true);
    const timeWait = HEADER + line(0, '0100007F:4423', '0100007F:9C40', 0, 0, '06');
    expect(hasOwnEnd(timeWait, AGENT, PEER, 222, 'LE')).toBe(false);
  });
});

describe('PeerUserCheck', () => {
  const socket = {
    remoteAddress: '127.0.0.1',
    remotePort: 40000,
    localAddress: '127.0.0.1',
    localPort: 17443,
  };
  const ourLine = line(0, '0100007F:4423', '0100007F:9C40', 65534, 222);
  const table = HEADER + ourLine + line(1, '0100007F:9C40', '0100007F:4423', 65534, 7);
  const read = (file: 'tcp' | 'tcp6'): string | null => (file === 'tcp' ? table : HEADER);
  const check = (uid: number, options: Partial<ConstructorParameters<typeof PeerUserCheck>[0]> = {}) =>
    new PeerUserCheck({ platform: 'linux', uid, read, inodeOf: () => 222, ...options });

  it('refuses another uid and says which', () => {
    expect(check(1000).check(socket)).toEqual({ ok: false, uid: 65534 });
  });

  it('accepts its own uid', () => {
    expect(check(65534).check(socket)).toEqual({ ok: true });
  });

  it('refuses when the uid cannot be determined (no line, no /proc, no address)', () => {
    expect(check(65534).check({ ...socket, remotePort: 1 })).toEqual({ ok: false, uid: null });
    expect(check(65534, { read: () => null }).check(socket)).toEqual({ ok: false, uid: null });
    expect(check(65534).check({})).toEqual({ ok: false, uid: null });
  });

  it('does not check on other platforms', () => {
    expect(check(1000, { platform: 'darwin' }).check(socket)).toEqual({ ok: true });
    expect(check(1000, { platform: 'win32' }).check(socket)).toEqual({ ok: true });
  });

  it('reads the tables once for a burst of connections made before the read', () => {
    const second = { ...socket, remotePort: 40001 }; // 0x9C41
    const both =
      table +
      line(2, '0100007F:4423', '0100007F:9C41', 65534, 333) +
      line(3, '0100007F:9C41', '0100007F:4423', 1000, 8);
    const reads: string[] = [];
    const c = new PeerUserCheck({
      platform: 'linux',
      uid: 65534,
      read: (f) => (reads.push(f), f === 'tcp' ? both : HEADER),
      inodeOf: (s) => (s.remotePort === 40000 ? 222 : 333),
    });
    expect(c.check(socket)).toEqual({ ok: true });
    expect(c.check(second)).toEqual({ ok: false, uid: 1000 });
    expect(reads).toEqual(['tcp']);
  });

  it('reads again when the kept table does not list this very socket (a later connection on the same ports)', () => {
    // The kept table says uid 65534 held the peer's port; the socket now accepted on the same ports
    // (inode 999) is not in it: the answer must come from a new read, where uid 1000 holds that port.
    const later =
      HEADER +
      line(0, '0100007F:4423', '0100007F:9C40', 65534, 999) +
      line(1, '0100007F:9C40', '0100007F:4423', 1000, 9);
    let current = table;
    let inode = 222;
    let reads = 0;
    const c = new PeerUserCheck({
      platform: 'linux',
      uid: 65534,
      read: (f) => (f === 'tcp' ? (reads++, current) : HEADER),
      inodeOf: () => inode,
    });
    expect(c.check(socket)).toEqual({ ok: true });
    current = later;
    inode = 999;
    expect(c.check(socket)).toEqual({ ok: false, uid: 1000 });
    expect(reads).toBe(2);
  });

  it('lets a kept table answer once for a pair of ports (a second connection on them reads again)', () => {
    let reads = 0;
    const c = new PeerUserCheck({
      platform: 'linux',
      uid: 65534,
      read: (f) => (f === 'tcp' ? (reads++, table) : HEADER),
      inodeOf: () => 222,
    });
    expect(c.check(socket)).toEqual({ ok: true });
    expect(c.check(socket)).toEqual({ ok: true });
    expect(reads).toBe(2);
  });

  it('forgets the kept table after a connection it cannot name (reset before the check)', () => {
    let reads = 0;
    const second = { ...socket, remotePort: 40001 };
    const both =
      table +
      line(2, '0100007F:4423', '0100007F:9C41', 65534, 0) +
      line(3, '0100007F:9C41', '0100007F:4423', 65534, 8);
    const c = new PeerUserCheck({
      platform: 'linux',
      uid: 65534,
      read: (f) => (f === 'tcp' ? (reads++, both) : HEADER),
      inodeOf: () => 222,
    });
    expect(c.check(socket)).toEqual({ ok: true });
    expect(c.check({ localAddress: '127.0.0.1', localPort: 17443 })).toEqual({ ok: false, uid: null });
    expect(c.check(second)).toEqual({ ok: true });
    expect(reads).toBe(2);
  });

  it('reads once more when the peer is missing (a table read in pieces can skip a line)', () => {
    const reads: number[] = [];
    const c = new PeerUserCheck({
      platform: 'linux',
      uid: 65534,
      read: (f) => {
        if (f === 'tcp6') return HEADER;
        reads.push(reads.length);
        return reads.length === 1 ? HEADER + ourLine : table;
      },
      inodeOf: () => 222,
    });
    expect(c.check(socket)).toEqual({ ok: true });
    expect(reads.length).toBe(2);
  });

  describe.runIf(process.platform === 'linux')('with the real /proc tables', () => {
    let server: net.Server;
    const accepted: net.Socket[] = [];
    beforeAll(async () => {
      server = net.createServer((s) => accepted.push(s));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    });
    afterAll(async () => {
      for (const s of accepted) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    });

    async function acceptOne(family: 4 | 6): Promise<{ client: net.Socket; socket: net.Socket }> {
      const port = (server.address() as net.AddressInfo).port;
      const host = family === 4 ? '127.0.0.1' : '::ffff:127.0.0.1';
      const before = accepted.length;
      const client = net.connect({ host, port, family });
      await new Promise<void>((r) => client.once('connect', r));
      while (accepted.length === before) await new Promise((r) => setTimeout(r, 5));
      return { client, socket: accepted[accepted.length - 1] };
    }

    it.each([4, 6] as const)('finds this process as the peer of an IPv%s loopback client', async (family) => {
      const { client, socket } = await acceptOne(family);
      const uid = process.geteuid?.() ?? -1;
      expect(new PeerUserCheck().check(socket)).toEqual({ ok: true });
      expect(new PeerUserCheck({ uid: uid + 1 }).check(socket)).toEqual({ ok: false, uid });
      // The inode read from the socket's descriptor is the one the table lists.
      const cached = new PeerUserCheck();
      cached.check(socket);
      expect(cached.check(socket)).toEqual({ ok: true });
      client.destroy();
    });
  });
});
