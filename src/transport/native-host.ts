import { spawn } from 'node:child_process';
import * as net from 'node:net';
import { CHROMIUM_EXTENSION_ID, FIREFOX_EXTENSION_ID } from './extension-ids.js';
import { FRAME_CONTROL, FRAME_TEXT, FrameReader, bridgeSocketPath, encodeFrame } from './bridge.js';
import { MAX_TO_BROWSER_BYTES, NativeMessageReader, encodeNativeMessage } from './native-messaging.js';
import type { NativeInput } from './native-messaging.js';

// `kelid native-host`: started by the browser for one extension port (one page connection). It reads
// the extension's messages on stdin, relays them to the agent's bridge socket (starting the agent when
// none runs), and writes the agent's answers to stdout.
//
// Extension → host: {t:'hello', origin} once (the origin the browser reported for the page), then
//   {t:'rpc', text} per JSON-RPC message.
// Host → extension: {t:'welcome', tier}; {t:'rpc', text}; an answer over the browser's 1 MB limit as
//   {t:'part', text}… then {t:'rpc', text} (the extension joins them); {t:'error', code, message} for
//   a native message the host refuses; {t:'close', code, reason} before the host exits.

/** Characters of one `part`: JSON-escaped (at most 6 bytes a character) it stays under 1 MB. */
export const PART_CHARS = 128 * 1024;
const AGENT_START_WAIT_MS = 20_000;

export interface NativeHostOptions {
  stateDir: string;
  /** The arguments the browser passed (process.argv.slice(2) minus our own flags). */
  callerArgs: string[];
  /** More extension IDs to accept (a store build). */
  extraExtensionIds?: string[];
  /** Starts the agent when its bridge socket does not answer. */
  startAgent: () => void;
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
}

/**
 * The caller the browser names on the command line: Chromium passes the extension's origin
 * (`chrome-extension://ID/`), Firefox the app manifest's path and then the extension's ID. Returns
 * null for anyone else: the host serves only Kelid's extension.
 */
export function identifyCaller(
  args: string[],
  extraIds: string[] = [],
): { browser: 'chromium' | 'firefox'; extensionId: string } | null {
  const chromiumIds = new Set([CHROMIUM_EXTENSION_ID, ...extraIds]);
  for (const arg of args) {
    const m = /^chrome-extension:\/\/([a-p]{32})\/$/.exec(arg);
    if (m && chromiumIds.has(m[1])) return { browser: 'chromium', extensionId: m[1] };
  }
  const geckoIds = new Set([FIREFOX_EXTENSION_ID, ...extraIds]);
  // Firefox: argv = [manifest path, extension id].
  if (args.length >= 2 && geckoIds.has(args[1])) return { browser: 'firefox', extensionId: args[1] };
  return null;
}

/** Run the host until the browser or the agent hangs up; resolves to the exit code. */
export async function runNativeHost(options: NativeHostOptions): Promise<number> {
  const out = options.output;
  const write = (value: unknown): void => {
    let frame: Buffer;
    try {
      frame = encodeNativeMessage(value);
    } catch (e) {
      // Over the browser's 1 MB limit (answers are split before this): say so instead of crashing.
      frame = encodeNativeMessage({ t: 'error', code: 'ERR_INTERNAL', message: (e as Error).message });
    }
    out.write(frame);
  };
  const caller = identifyCaller(options.callerArgs, options.extraExtensionIds);
  if (caller === null) {
    write({ t: 'close', code: 1008, reason: 'this native host serves only the Kelid extension' });
    return 1;
  }
  const socketPath = bridgeSocketPath(options.stateDir);
  let agent: net.Socket | undefined;
  let helloSeen = false;
  const queue: Buffer[] = [];
  let finish: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (finish = resolve));

  const sendText = (text: string): void => {
    // Each message to the browser stays under its 1 MB limit: long answers go in parts.
    if (Buffer.byteLength(text) + 64 <= MAX_TO_BROWSER_BYTES) return write({ t: 'rpc', text });
    let i = 0;
    for (; text.length - i > PART_CHARS; i += PART_CHARS)
      write({ t: 'part', text: text.slice(i, i + PART_CHARS) });
    write({ t: 'rpc', text: text.slice(i) });
  };

  const onInput = (input: NativeInput): void => {
    if (input.kind === 'oversized') {
      // The stream cannot be trusted past a length no browser sends: say why, and end the session.
      const message = `native message of ${input.bytes} bytes is over the host's limit of ${input.limit} bytes`;
      write({ t: 'error', code: 'ERR_INVALID_INPUT', message });
      write({ t: 'close', code: 1009, reason: message });
      finish(1);
      return;
    }
    if (input.kind === 'malformed') {
      write({ t: 'error', code: 'ERR_INVALID_INPUT', message: input.reason });
      return;
    }
    const m = input.value as { t?: unknown; origin?: unknown; text?: unknown } | null;
    if (typeof m !== 'object' || m === null) {
      write({ t: 'error', code: 'ERR_INVALID_INPUT', message: 'a native message must be a JSON object' });
      return;
    }
    if (m.t === 'hello' && !helloSeen && typeof m.origin === 'string') {
      helloSeen = true;
      const hello = JSON.stringify({ t: 'hello', origin: m.origin, ...caller });
      connectAgent(hello).catch((e: unknown) => {
        write({ t: 'close', code: 1011, reason: e instanceof Error ? e.message : String(e) });
        finish(1);
      });
      return;
    }
    if (m.t === 'rpc' && helloSeen && typeof m.text === 'string') {
      const frame = encodeFrame(FRAME_TEXT, m.text);
      if (agent) agent.write(frame);
      else queue.push(frame);
      return;
    }
    write({ t: 'error', code: 'ERR_INVALID_INPUT', message: 'unexpected native message' });
  };

  const connectAgent = async (hello: string): Promise<void> => {
    let socket = await tryConnect(socketPath);
    if (socket === null) {
      options.startAgent();
      const deadline = Date.now() + AGENT_START_WAIT_MS;
      while (socket === null && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 150));
        socket = await tryConnect(socketPath);
      }
      if (socket === null) throw new Error('the Kelid agent did not start (see `kelid serve`)');
    }
    const s = socket;
    let closeSent = false;
    const reader = new FrameReader(
      // The agent's frames are trusted in size; bound them anyway.
      () => 256 * 1024 * 1024,
      (type, payload) => {
        if (type === FRAME_TEXT) return sendText(payload.toString('utf8'));
        let control: { t?: unknown; tier?: unknown; code?: unknown; reason?: unknown };
        try {
          control = JSON.parse(payload.toString('utf8')) as typeof control;
        } catch {
          return;
        }
        if (control.t === 'welcome') write({ t: 'welcome', tier: control.tier });
        else if (control.t === 'close') {
          closeSent = true;
          write({ t: 'close', code: control.code, reason: control.reason });
        }
      },
      () => s.destroy(),
    );
    s.on('data', (chunk: Buffer) => reader.push(chunk));
    s.on('error', () => s.destroy());
    s.on('close', () => {
      // The agent stopped or restarted: the page's SDK reconnects (a new port, a new host).
      if (!closeSent) write({ t: 'close', code: 1012, reason: 'the Kelid agent went away; reconnect' });
      finish(0);
    });
    s.write(encodeFrame(FRAME_CONTROL, hello));
    agent = s;
    for (const f of queue.splice(0)) s.write(f);
  };

  const reader = new NativeMessageReader(onInput);
  options.input.on('data', (chunk: Buffer) => reader.push(chunk));
  options.input.on('end', () => finish(0));
  options.input.on('error', () => finish(0));
  const code = await done;
  agent?.destroy();
  return code;
}

function tryConnect(socketPath: string): Promise<net.Socket | null> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath);
    s.once('connect', () => resolve(s));
    s.once('error', () => resolve(null));
  });
}

/**
 * Start `kelid serve` for this state directory, detached from the browser's process tree. `binKelid`
 * is bin/kelid.js run by node, or undefined for the packaged program, which is its own entry.
 */
export function spawnAgent(binKelid: string | undefined, stateDir: string, config: string | undefined): void {
  const child = spawn(
    process.execPath,
    [
      ...(binKelid !== undefined ? [binKelid] : []),
      'serve',
      '--state-dir',
      stateDir,
      ...(config ? ['--config', config] : []),
    ],
    { detached: true, stdio: 'ignore' },
  );
  child.on('error', () => undefined);
  child.unref();
}
