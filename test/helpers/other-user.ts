// Runs a client as another OS account (uid/gid 65534, `nobody`) through util-linux `setpriv`, the way
// a hostile local user would reach the agent: a script of node built-ins only (https/tls and a
// hand-written WebSocket upgrade), in a world-readable temporary directory since 65534 cannot read the
// repository. The tests run as root; the same script run without setpriv is the same-user control.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const OTHER_UID = 65534;

/** What the client saw: the TCP/TLS connection refused, an HTTP status, or an upgrade and a reply. */
export interface ProbeResult {
  result: 'refused' | 'http' | 'upgraded' | 'timeout';
  error?: string;
  status?: number;
  body?: string;
  /** The first text frame after the upgrade (the reply to the call sent). */
  reply?: string;
}

export interface Probe {
  /** `wss` or `ws` (the plain development port), or an HTTP(S) GET of a path. */
  mode: 'wss' | 'ws' | 'https-get';
  port: number;
  origin?: string;
  path?: string;
  /** JSON-RPC method called once upgraded. */
  method?: string;
  /** Connect from an AF_INET6 socket to the v4-mapped address (the peer then sits in /proc/net/tcp6). */
  v4Mapped?: boolean;
}

const CLIENT = String.raw`
import * as crypto from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';

const probe = JSON.parse(process.argv[2]);
const done = (r) => { process.stdout.write(JSON.stringify(r) + '\n'); process.exit(0); };
setTimeout(() => done({ result: 'timeout' }), 10000);

const host = '127.0.0.1:' + probe.port;
const secure = probe.mode !== 'ws';
const to = probe.v4Mapped ? { host: '::ffff:127.0.0.1', family: 6 } : { host: '127.0.0.1' };
const socket = secure
  ? tls.connect({ ...to, port: probe.port, servername: 'localhost', rejectUnauthorized: false })
  : net.connect({ ...to, port: probe.port });
let head = '';
let rest = Buffer.alloc(0);
let upgraded = false;
socket.on('error', (e) => done({ result: 'refused', error: e.code || e.message }));
socket.on('close', () => done(head === '' ? { result: 'refused', error: 'closed' } : httpResult()));
socket.once(secure ? 'secureConnect' : 'connect', () => {
  if (probe.mode === 'https-get') {
    socket.write('GET ' + probe.path + ' HTTP/1.1\r\nHost: ' + host + '\r\nConnection: close\r\n\r\n');
    return;
  }
  socket.write(
    'GET /v1 HTTP/1.1\r\nHost: ' + host + '\r\nOrigin: ' + probe.origin +
      '\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ' +
      crypto.randomBytes(16).toString('base64') + '\r\n\r\n',
  );
});
function httpResult() {
  const end = head.indexOf('\r\n\r\n');
  return {
    result: 'http',
    status: Number((/^HTTP\/1\.1 (\d{3})/.exec(head) || [])[1] || 0),
    body: end === -1 ? '' : head.slice(end + 4),
  };
}
function frame(text) {
  const payload = Buffer.from(text);
  const mask = crypto.randomBytes(4);
  const len = payload.length < 126 ? Buffer.from([0x81, 0x80 | payload.length]) : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 255]);
  return Buffer.concat([len, mask, Buffer.from(payload.map((b, i) => b ^ mask[i % 4]))]);
}
socket.on('data', (chunk) => {
  if (!upgraded) {
    head += chunk.toString('latin1');
    const end = head.indexOf('\r\n\r\n');
    if (end === -1 || probe.mode === 'https-get') return;
    if (!/^HTTP\/1\.1 101/.test(head)) return done(httpResult());
    upgraded = true;
    rest = Buffer.from(head.slice(end + 4), 'latin1');
    socket.write(frame(JSON.stringify({ jsonrpc: '2.0', id: 1, method: probe.method, params: {} })));
  } else {
    rest = Buffer.concat([rest, chunk]);
  }
  if (rest.length < 2) return;
  let len = rest[1] & 127;
  let off = 2;
  if (len === 126) { if (rest.length < 4) return; len = rest.readUInt16BE(2); off = 4; }
  else if (len === 127) { if (rest.length < 10) return; len = Number(rest.readBigUInt64BE(2)); off = 10; }
  if (rest.length < off + len) return;
  done({ result: 'upgraded', status: 101, reply: rest.subarray(off, off + len).toString('utf8') });
});
`;

/** A world-readable directory holding the client script (remove it with `cleanup`). */
export class OtherUserClient {
  readonly dir: string;
  readonly script: string;

  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-other-user-'));
    fs.chmodSync(this.dir, 0o755);
    this.script = path.join(this.dir, 'client.mjs');
    fs.writeFileSync(this.script, CLIENT, { mode: 0o644 });
  }

  /** Whether this machine can run the other-user tests: root, setpriv, node executable by 65534. */
  static available(): boolean {
    if (process.platform !== 'linux' || process.geteuid?.() !== 0) return false;
    const r = spawnSync('setpriv', [...setprivArgs(), process.execPath, '-e', 'process.exit(0)']);
    return r.status === 0;
  }

  /** Run the probe as uid 65534 (`asOther`) or as this process's own user. */
  run(probe: Probe, asOther: boolean): Promise<ProbeResult> {
    const node = [process.execPath, this.script, JSON.stringify(probe)];
    const [cmd, ...args] = asOther ? ['setpriv', ...setprivArgs(), ...node] : node;
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, args, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
      child.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')));
      child.once('error', reject);
      child.once('close', () => {
        try {
          resolve(JSON.parse(out) as ProbeResult);
        } catch {
          reject(new Error(`client printed no result: ${out} ${err}`));
        }
      });
    });
  }

  /** Run a short node script (ESM, built-ins only) as uid 65534; resolves to its stdout. */
  runScript(source: string): string {
    const file = path.join(this.dir, `script-${Date.now()}.mjs`);
    fs.writeFileSync(file, source, { mode: 0o644 });
    const r = spawnSync('setpriv', [...setprivArgs(), process.execPath, file], {
      cwd: this.dir,
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`script failed: ${r.stderr}`);
    return r.stdout;
  }

  cleanup(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function setprivArgs(): string[] {
  return [`--reuid=${OTHER_UID}`, `--regid=${OTHER_UID}`, '--clear-groups'];
}
