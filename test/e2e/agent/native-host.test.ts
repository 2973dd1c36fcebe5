import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM_EXTENSION_ID, FIREFOX_EXTENSION_ID } from '../../../src/transport/extension-ids.js';
import { FRAME_CONTROL, FRAME_TEXT, FrameReader, encodeFrame } from '../../../src/transport/bridge.js';
import { AgentProcess, REPO } from '../../helpers/agent-process.js';
import { OTHER_UID } from '../../helpers/other-user.js';

// `kelid native-host` as the browser runs it (stdin/stdout native messaging), and the agent's bridge
// socket as a hostile local program or a broken host would use it: garbage on stdin, unknown callers,
// origins the bridge must refuse, the unknown tier's frame limit, another OS user.

const BIN = path.join(REPO, 'bin', 'kelid.js');
const CHROMIUM_CALLER = `chrome-extension://${CHROMIUM_EXTENSION_ID}/`;
const SITE = 'https://bank.example';
const RA = 'https://ra.example';

function nativeMessage(value: unknown): Buffer {
  const body = Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));
  const header = Buffer.alloc(4);
  header.writeUInt32LE(body.length);
  return Buffer.concat([header, body]);
}

function parseNativeOutput(out: Buffer): Array<Record<string, unknown>> {
  const messages: Array<Record<string, unknown>> = [];
  let i = 0;
  while (i + 4 <= out.length) {
    const n = out.readUInt32LE(i);
    expect(n).toBeLessThanOrEqual(1024 * 1024);
    messages.push(JSON.parse(out.subarray(i + 4, i + 4 + n).toString('utf8')) as Record<string, unknown>);
    i += 4 + n;
  }
  expect(i).toBe(out.length);
  return messages;
}

/** Run the host with `args`, write `input` (then keep stdin open until `until` is seen, or end). */
function runHost(
  stateDir: string,
  args: string[],
  input: Buffer[],
  until?: (messages: Array<Record<string, unknown>>) => boolean,
): Promise<{ code: number | null; messages: Array<Record<string, unknown>>; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, 'native-host', '--state-dir', stateDir, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = Buffer.alloc(0);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      out = Buffer.concat([out, d]);
      if (until && until(parseNativeOutput(out))) child.stdin.end();
    });
    child.stdin.on('error', () => undefined);
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, messages: parseNativeOutput(out), stderr });
    });
    for (const b of input) child.stdin.write(b);
    if (!until) child.stdin.end();
  });
}

/** A raw client of the bridge socket, as a local program (or a broken native host) would be. */
class BridgeClient {
  readonly frames: Array<{ type: number; text: string }> = [];
  readonly closed: Promise<void>;
  private constructor(readonly socket: net.Socket) {
    const reader = new FrameReader(
      () => 64 * 1024 * 1024,
      (type, payload) => this.frames.push({ type, text: payload.toString('utf8') }),
      () => socket.destroy(),
    );
    socket.on('data', (d: Buffer) => reader.push(d));
    this.closed = new Promise((r) => socket.once('close', () => r()));
  }
  static open(socketPath: string): Promise<BridgeClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(socketPath);
      s.once('connect', () => resolve(new BridgeClient(s)));
      s.once('error', reject);
    });
  }
  hello(origin: string): void {
    this.socket.write(
      encodeFrame(
        FRAME_CONTROL,
        JSON.stringify({ t: 'hello', origin, browser: 'chromium', extensionId: 'x' }),
      ),
    );
  }
  send(text: string): void {
    this.socket.write(encodeFrame(FRAME_TEXT, text));
  }
  control(): Array<Record<string, unknown>> {
    return this.frames
      .filter((f) => f.type === FRAME_CONTROL)
      .map((f) => JSON.parse(f.text) as Record<string, unknown>);
  }
  async next(count: number): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (this.frames.length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }
}

const info = (id: number): string => JSON.stringify({ jsonrpc: '2.0', id, method: 'agent.info', params: {} });

describe('kelid native-host and the bridge socket', () => {
  let agent: AgentProcess;
  let socketPath: string;

  beforeAll(async () => {
    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-bridge-',
      // The smallest byte budget the config takes: 8 KiB/s for all unknown connections together.
      config: {
        raOrigins: [RA],
        devOrigins: ['http://localhost:8080'],
        limits: { unknownBytesPerSecond: 8192 },
      },
    });
    socketPath = path.join(agent.stateDir, 'bridge.sock');
  });

  afterAll(async () => {
    await agent?.stop();
    agent?.cleanup();
  });

  it('relays a page of the Chromium extension: welcome with the tier, then answers', async () => {
    const r = await runHost(
      agent.stateDir,
      [CHROMIUM_CALLER],
      [nativeMessage({ t: 'hello', origin: RA }), nativeMessage({ t: 'rpc', text: info(1) })],
      (m) => m.some((x) => x.t === 'rpc'),
    );
    expect(r.messages[0]).toEqual({ t: 'welcome', tier: 'ra' });
    const answer = JSON.parse(r.messages[1].text as string) as { result: { origin: string; tier: string } };
    expect(answer.result).toMatchObject({ origin: RA, tier: 'ra' });
  });

  it('serves the Firefox extension (argv: manifest path, extension id)', async () => {
    const r = await runHost(
      agent.stateDir,
      ['/home/u/.mozilla/native-messaging-hosts/org.kelid.agent.json', FIREFOX_EXTENSION_ID],
      [nativeMessage({ t: 'hello', origin: SITE }), nativeMessage({ t: 'rpc', text: info(1) })],
      (m) => m.some((x) => x.t === 'rpc'),
    );
    expect(r.messages[0]).toEqual({ t: 'welcome', tier: 'unknown' });
  });

  it('refuses to run for another extension, or for no caller at all', async () => {
    for (const args of [
      ['chrome-extension://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/'],
      [`chrome-extension://${CHROMIUM_EXTENSION_ID}.evil/`],
      ['/tmp/manifest.json', 'evil@example.org'],
      [],
    ]) {
      const r = await runHost(agent.stateDir, args, [nativeMessage({ t: 'hello', origin: RA })]);
      expect(r.code).toBe(1);
      expect(r.messages).toEqual([
        { t: 'close', code: 1008, reason: 'this native host serves only the Kelid extension' },
      ]);
    }
  });

  it('answers malformed native messages with errors and keeps serving', async () => {
    const r = await runHost(
      agent.stateDir,
      [CHROMIUM_CALLER],
      [
        nativeMessage('{not json'),
        nativeMessage('42'),
        nativeMessage({ t: 'rpc', text: info(9) }), // before the hello
        nativeMessage({ t: 'launch-missiles' }),
        nativeMessage(''),
        nativeMessage({ t: 'hello', origin: SITE }),
        nativeMessage({ t: 'hello', origin: RA }), // a second hello cannot change the origin
        nativeMessage({ t: 'rpc', text: info(1) }),
      ],
      (m) => m.some((x) => x.t === 'rpc'),
    );
    const errors = r.messages.filter((m) => m.t === 'error');
    expect(errors).toHaveLength(6);
    for (const e of errors) expect(e.code).toBe('ERR_INVALID_INPUT');
    const answer = JSON.parse(r.messages.find((m) => m.t === 'rpc')!.text as string) as {
      id: number;
      result: { origin: string; tier: string };
    };
    expect(answer).toMatchObject({ id: 1, result: { origin: SITE, tier: 'unknown' } });
    expect(r.stderr).toBe('');
  });

  it('ends the session with an error naming the limit on an oversized native message, without crashing', async () => {
    const header = Buffer.alloc(4);
    header.writeUInt32LE(0xfffffff0);
    const r = await runHost(agent.stateDir, [CHROMIUM_CALLER], [header, randomBytes(1000)]);
    expect(r.code).toBe(1);
    expect(r.messages[0]).toMatchObject({ t: 'error', code: 'ERR_INVALID_INPUT' });
    expect(r.messages[0].message).toContain("over the host's limit of 67108864 bytes");
    expect(r.messages[1]).toMatchObject({ t: 'close', code: 1009 });
    expect(r.stderr).toBe('');
  });

  it('survives random bytes on stdin: every output is a valid native message, no stack trace', async () => {
    for (let i = 0; i < 3; i++) {
      const garbage = randomBytes(4096);
      // Keep the length headers small so the host reads many messages out of the garbage.
      for (let j = 0; j + 4 < garbage.length; j += 97) garbage.writeUInt32LE(garbage[j] % 90, j);
      const r = await runHost(agent.stateDir, [CHROMIUM_CALLER], [garbage]);
      expect([0, 1]).toContain(r.code);
      expect(r.stderr).toBe('');
    }
  });

  it('keeps the bridge socket to its user: 0600 in the 0700 state directory', () => {
    expect(fs.statSync(socketPath).mode & 0o777).toBe(0o600);
    expect(fs.statSync(agent.stateDir).mode & 0o777).toBe(0o700);
  });

  it.runIf(process.getuid?.() === 0 && spawnSync('setpriv', ['--version']).status === 0)(
    'refuses another OS user on the bridge socket, even with the state directory opened to 0755',
    () => {
      fs.chmodSync(agent.stateDir, 0o755);
      try {
        const r = spawnSync(
          'setpriv',
          [
            `--reuid=${OTHER_UID}`,
            `--regid=${OTHER_UID}`,
            '--clear-groups',
            process.execPath,
            '-e',
            `require('net').connect(${JSON.stringify(socketPath)}).on('connect', () => { console.log('connected'); process.exit(0); }).on('error', (e) => { console.log(e.code); process.exit(0); });`,
          ],
          { encoding: 'utf8' },
        );
        expect(r.stdout.trim()).toBe('EACCES');
      } finally {
        fs.chmodSync(agent.stateDir, 0o700);
      }
    },
  );

  it("refuses the agent's own origin (no console tier through the bridge), opaque and non-https origins", async () => {
    for (const origin of [
      agent.info.url,
      'null',
      'http://evil.example',
      'https://bank.example/path',
      'chrome-extension://x',
    ]) {
      const c = await BridgeClient.open(socketPath);
      c.hello(origin);
      await c.closed;
      expect(c.control()[0]).toMatchObject({ t: 'close', code: 1008 });
    }
  });

  it('refuses a bridge client that sends a message before the hello, or a hello over 4 KiB', async () => {
    const a = await BridgeClient.open(socketPath);
    a.send(info(1));
    await a.closed;
    expect(a.control()[0]).toMatchObject({ t: 'close', code: 1008 });
    const b = await BridgeClient.open(socketPath);
    b.socket.write(
      encodeFrame(FRAME_CONTROL, JSON.stringify({ t: 'hello', origin: SITE, pad: 'x'.repeat(5000) })),
    );
    await b.closed;
    expect(b.control()[0]).toMatchObject({ t: 'close', code: 1008 });
    expect(b.control()[0].reason).toContain('the limit is 4096');
  });

  it('holds an unknown-tier page to 8 KiB messages on the bridge, as on the WebSocket', async () => {
    const c = await BridgeClient.open(socketPath);
    c.hello(SITE);
    await c.next(1);
    expect(c.control()[0]).toEqual({ t: 'welcome', tier: 'unknown' });
    // Just under the limit: an answer (an error for the padding, but read and answered).
    c.send(
      JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'agent.info', params: { pad: 'x'.repeat(7000) } }),
    );
    await c.next(2);
    expect(c.frames[1].type).toBe(FRAME_TEXT);
    c.send(
      JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'agent.info', params: { pad: 'x'.repeat(9000) } }),
    );
    await c.closed;
    const close = c.control().at(-1)!;
    expect(close).toMatchObject({ t: 'close', code: 1009 });
    expect(close.reason).toContain('the limit is 8192');
  });

  it('gives an RA origin the configured message size on the bridge', async () => {
    const c = await BridgeClient.open(socketPath);
    c.hello(RA);
    await c.next(1);
    expect(c.control()[0]).toEqual({ t: 'welcome', tier: 'ra' });
    c.send(
      JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'agent.info', params: { pad: 'x'.repeat(100_000) } }),
    );
    await c.next(2);
    expect(c.frames[1].type).toBe(FRAME_TEXT);
    c.socket.destroy();
  });

  it('holds unknown bridge connections to the shared byte budget while an RA page is served at once', async () => {
    const flooders = await Promise.all(['a', 'b', 'c', 'd'].map(() => BridgeClient.open(socketPath)));
    flooders.forEach((c, i) => c.hello(`https://${'abcd'[i]}.flood.example`));
    await Promise.all(flooders.map((c) => c.next(1)));
    // 4 × 10 frames of 7 KiB: 280 KiB, 35 seconds of an 8 KiB/s budget.
    for (const c of flooders)
      for (let i = 0; i < 10; i++)
        c.send(
          JSON.stringify({ jsonrpc: '2.0', id: i, method: 'agent.info', params: { pad: 'x'.repeat(7000) } }),
        );
    const ra = await BridgeClient.open(socketPath);
    ra.hello(RA);
    await ra.next(1);
    ra.send(info(1));
    await ra.next(2);
    expect(JSON.parse(ra.frames[1].text)).toMatchObject({ id: 1, result: { tier: 'ra' } });
    const answered = flooders.reduce((n, c) => n + c.frames.filter((f) => f.type === FRAME_TEXT).length, 0);
    // The RA page was answered while most of the unknown frames still wait to be read.
    expect(answered).toBeLessThan(20);
    for (const c of [...flooders, ra]) c.socket.destroy();
  });
});
