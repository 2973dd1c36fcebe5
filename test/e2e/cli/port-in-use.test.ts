import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// First contact (issue 17, section 8): `kelid serve` on a port another program holds says so in one
// line, naming the port and what to do, with no stack trace.

const run = promisify(execFile);
const BIN = path.resolve(import.meta.dirname, '../../../bin/kelid.js');

describe('kelid serve on a port in use', () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-port-in-use-'));
  const config = path.join(work, 'kelid.json');
  let holder: net.Server;
  let port: number;

  beforeAll(async () => {
    fs.writeFileSync(config, JSON.stringify({ autoDetectModules: false, consent: { launcher: 'none' } }));
    holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    port = (holder.address() as net.AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => holder.close(() => resolve()));
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('exits 1 with one line naming the port and the way out, and no stack trace', async () => {
    const result = await run(
      'node',
      [BIN, 'serve', '--config', config, '--state-dir', path.join(work, 'state'), '--port', String(port)],
      { timeout: 30_000, env: { ...process.env, KELID_LOG_LEVEL: 'silent' } },
    ).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code?: number; stderr?: string }) => ({ code: e.code, stderr: e.stderr ?? '' }),
    );
    expect(result.code).toBe(1);
    // The agent's own log lines (JSON) may come first; the error is the one plain line.
    const lines = result.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'));
    expect(lines).toEqual([
      `kelid: port ${port} on 127.0.0.1 is already in use (another Kelid agent, or another program): ` +
        'stop it, or choose another port with --port <n> or config "port" (0 picks a free one) (ERR_BUSY)',
    ]);
    expect(result.stderr).not.toMatch(/^\s+at /m);
  });
});
