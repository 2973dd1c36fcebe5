import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CHROMIUM_EXTENSION_ID, FIREFOX_EXTENSION_ID } from '../../../src/transport/extension-ids.js';
import { FrameReader, bridgeSocketPath, encodeFrame } from '../../../src/transport/bridge.js';
import { identifyCaller } from '../../../src/transport/native-host.js';
import {
  MAX_TO_BROWSER_BYTES,
  NativeMessageReader,
  encodeNativeMessage,
} from '../../../src/transport/native-messaging.js';
import type { NativeInput } from '../../../src/transport/native-messaging.js';

describe('bridgeSocketPath', () => {
  it('is bridge.sock in the state directory on Unix', () => {
    expect(bridgeSocketPath('/home/a/.local/share/kelid', 'linux')).toBe(
      '/home/a/.local/share/kelid/bridge.sock',
    );
    expect(bridgeSocketPath('/Users/a/kelid', 'darwin')).toBe('/Users/a/kelid/bridge.sock');
  });

  it('is a named pipe named after the state directory on Windows (case-insensitive, one per directory)', () => {
    const a = bridgeSocketPath('C:\\Users\\Ali\\AppData\\Local\\kelid', 'win32');
    expect(a).toMatch(/^\\\\\.\\pipe\\kelid-bridge-[0-9a-f]{32}$/);
    expect(bridgeSocketPath('c:\\users\\ali\\appdata\\local\\KELID', 'win32')).toBe(a);
    expect(bridgeSocketPath('C:\\Users\\Sara\\AppData\\Local\\kelid', 'win32')).not.toBe(a);
  });
});

describe('identifyCaller', () => {
  it('accepts Kelid extension callers only', () => {
    expect(identifyCaller([`chrome-extension://${CHROMIUM_EXTENSION_ID}/`])).toEqual({
      browser: 'chromium',
      extensionId: CHROMIUM_EXTENSION_ID,
    });
    // Windows Chrome adds --parent-window.
    expect(
      identifyCaller([`chrome-extension://${CHROMIUM_EXTENSION_ID}/`, '--parent-window=0']),
    ).not.toBeNull();
    expect(identifyCaller(['C:\\x\\org.kelid.agent.json', FIREFOX_EXTENSION_ID])).toEqual({
      browser: 'firefox',
      extensionId: FIREFOX_EXTENSION_ID,
    });
    expect(identifyCaller(['chrome-extension://bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/'])).toBeNull();
    expect(identifyCaller([`chrome-extension://${CHROMIUM_EXTENSION_ID}`])).toBeNull();
    expect(identifyCaller([FIREFOX_EXTENSION_ID])).toBeNull();
    expect(identifyCaller([])).toBeNull();
    const store = 'abcdefghijklmnopabcdefghijklmnop';
    expect(identifyCaller([`chrome-extension://${store}/`], [store])).not.toBeNull();
  });
});

describe('NativeMessageReader', () => {
  it('reads any split of a stream of messages, and reports oversized and malformed ones', () => {
    fc.assert(
      fc.property(
        fc.array(fc.jsonValue(), { maxLength: 8 }),
        fc.array(fc.nat(64), { maxLength: 10 }),
        (values, cuts) => {
          const stream = Buffer.concat(values.map((v) => encodeNativeMessage(v)));
          const got: NativeInput[] = [];
          const reader = new NativeMessageReader((i) => got.push(i));
          let at = 0;
          for (const c of cuts) {
            reader.push(stream.subarray(at, Math.min(stream.length, at + c)));
            at = Math.min(stream.length, at + c);
          }
          reader.push(stream.subarray(at));
          expect(got).toEqual(
            values.map((v) => ({ kind: 'message', value: JSON.parse(JSON.stringify(v)) as unknown })),
          );
        },
      ),
    );
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
        const reader = new NativeMessageReader(() => undefined, 1024);
        reader.push(Buffer.from(bytes));
      }),
    );
  });

  it('refuses to encode a message over the browser limit', () => {
    expect(() => encodeNativeMessage({ t: 'rpc', text: 'x'.repeat(MAX_TO_BROWSER_BYTES) })).toThrow(
      RangeError,
    );
  });
});

describe('FrameReader (bridge)', () => {
  it('reads frames of any split and refuses a length over the limit from the header', () => {
    const frames: string[] = [];
    const tooBig: number[] = [];
    const reader = new FrameReader(
      () => 10,
      (_type, payload) => frames.push(payload.toString()),
      (bytes) => tooBig.push(bytes),
    );
    const stream = Buffer.concat([encodeFrame(1, 'hello'), encodeFrame(1, '0123456789')]);
    for (const b of stream) reader.push(Buffer.from([b]));
    expect(frames).toEqual(['hello', '0123456789']);
    reader.push(encodeFrame(1, '01234567890').subarray(0, 4));
    expect(tooBig).toEqual([11]);
  });
});
