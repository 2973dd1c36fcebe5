import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BodyTooLargeError, readBoundedBody } from '../../../src/net/bounded-body.js';

/** A stream of `chunk`-byte chunks, `count` of them (Infinity: endless); counts the chunks pulled. */
function source(chunk: number, count: number): { stream: Readable; pulled: () => number } {
  let pulled = 0;
  const stream = new Readable({
    highWaterMark: chunk,
    read() {
      if (pulled >= count) return void this.push(null);
      pulled += 1;
      this.push(Buffer.alloc(chunk, 0x61));
    },
  });
  return { stream, pulled: () => pulled };
}

describe('readBoundedBody', () => {
  it('returns a body of exactly the limit', async () => {
    const { stream } = source(1024, 4);
    const body = await readBoundedBody(stream, 4096);
    expect(body.length).toBe(4096);
    expect(body.every((b) => b === 0x61)).toBe(true);
  });

  it('refuses one byte past the limit, stops pulling and destroys the stream', async () => {
    const { stream, pulled } = source(1024, Infinity);
    const e = await readBoundedBody(stream, 4096).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(BodyTooLargeError);
    expect((e as BodyTooLargeError).limit).toBe(4096);
    expect(stream.destroyed).toBe(true);
    const after = pulled();
    await new Promise((r) => setTimeout(r, 20));
    expect(pulled()).toBe(after);
    expect(after).toBeLessThanOrEqual(7);
  });

  it('refuses limit + 1 bytes even when they arrive as one chunk', async () => {
    await expect(readBoundedBody(Readable.from([Buffer.alloc(4097)]), 4096)).rejects.toBeInstanceOf(
      BodyTooLargeError,
    );
    expect((await readBoundedBody(Readable.from([Buffer.alloc(4096)]), 4096)).length).toBe(4096);
  });

  it('with overflow "stop", pauses the stream without destroying it', async () => {
    const { stream } = source(1024, Infinity);
    await expect(readBoundedBody(stream, 2048, { overflow: 'stop' })).rejects.toBeInstanceOf(
      BodyTooLargeError,
    );
    expect(stream.destroyed).toBe(false);
    expect(stream.isPaused()).toBe(true);
    stream.destroy();
  });

  it('rejects a stream that closes or fails before its end', async () => {
    const closing = new Readable({ read() {} });
    closing.push(Buffer.from('partial'));
    const read = readBoundedBody(closing, 4096);
    setImmediate(() => closing.destroy());
    await expect(read).rejects.toThrow(/closed before the end/);
    const failing = new Readable({ read() {} });
    const failed = readBoundedBody(failing, 4096);
    setImmediate(() => failing.destroy(new Error('boom')));
    await expect(failed).rejects.toThrow('boom');
  });

  describe('on a real HTTP response', () => {
    let server: http.Server;
    let port: number;
    let serverSawClose: Promise<void>;

    beforeAll(async () => {
      let closed!: () => void;
      serverSawClose = new Promise((r) => (closed = r));
      // Sends 1 KiB chunks until the client goes away.
      server = http.createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        const timer = setInterval(() => res.write(Buffer.alloc(1024)), 1);
        res.on('close', () => {
          clearInterval(timer);
          closed();
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      port = (server.address() as AddressInfo).port;
    });

    afterAll(() => new Promise<void>((r) => server.close(() => r())));

    it('drops the connection of an endless body at the limit', async () => {
      const res = await new Promise<http.IncomingMessage>((resolve, reject) =>
        http.get({ host: '127.0.0.1', port, agent: false }, resolve).on('error', reject),
      );
      await expect(readBoundedBody(res, 16 * 1024)).rejects.toBeInstanceOf(BodyTooLargeError);
      // The server sees its response closed: nothing keeps streaming into a body nobody reads.
      await serverSawClose;
      expect(res.socket?.destroyed ?? true).toBe(true);
    });
  });
});
