import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { setMessageLimit, unknownMaxPayload } from '../../../src/transport/server.js';

// setMessageLimit reaches into ws (its receiver's maxPayload, which ws has no API to change): this runs
// it against the installed ws, so an upgrade of ws that moves the field fails here first.

describe('setMessageLimit', () => {
  let wss: WebSocketServer | undefined;
  afterEach(async () => {
    for (const c of wss?.clients ?? []) c.terminate();
    await new Promise<void>((r) => (wss ? wss.close(() => r()) : r()));
  });

  async function pair(maxPayload: number): Promise<{ server: WebSocket; client: WebSocket }> {
    const server = new WebSocketServer({ port: 0, host: '127.0.0.1', maxPayload });
    wss = server;
    await new Promise<void>((r) => server.once('listening', r));
    const accepted = new Promise<WebSocket>((r) => server.once('connection', r));
    const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
    await new Promise<void>((r) => client.once('open', () => r()));
    const ws = await accepted;
    // ws reports a too-long frame as an 'error' event before it closes with 1009.
    ws.on('error', () => undefined);
    return { server: ws, client };
  }

  function next(server: WebSocket, client: WebSocket): Promise<string | number> {
    return new Promise((resolve) => {
      server.once('message', (d: Buffer) => resolve(d.toString('utf8')));
      client.once('close', (code: number) => resolve(code));
    });
  }

  it('lowers the limit of an open connection: a longer frame closes it with 1009', async () => {
    const { server, client } = await pair(1024 * 1024);
    expect(setMessageLimit(server, 16)).toBe(true);
    const got = next(server, client);
    client.send('x'.repeat(17));
    expect(await got).toBe(1009);
  });

  it('raises it: a frame over the old limit is read', async () => {
    const { server, client } = await pair(16);
    expect(setMessageLimit(server, 1024)).toBe(true);
    const got = next(server, client);
    client.send('y'.repeat(1000));
    expect(await got).toBe('y'.repeat(1000));
  });

  it('reports false for a socket it cannot reach into', () => {
    expect(setMessageLimit({} as WebSocket, 16)).toBe(false);
  });

  it('keeps the unknown tier at 8 KiB, never above maxMessageBytes', () => {
    expect(unknownMaxPayload(1024 * 1024)).toBe(8192);
    expect(unknownMaxPayload(4096)).toBe(4096);
  });
});
