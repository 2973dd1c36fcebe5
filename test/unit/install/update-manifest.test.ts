import { generateKeyPairSync, sign } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../../src/agent/agent.js';
import type { CallContext } from '../../../src/protocol/context.js';
import { agentInfo } from '../../../src/protocol/methods/agent-info.js';
import { resolveConfig } from '../../../src/config.js';
import {
  checkForUpdate,
  readUpdateCheck,
  verifyUpdateManifest,
} from '../../../src/install/update-manifest.js';

// The signed update manifest against a real HTTP server and real Ed25519 keys: a manifest whose
// signature does not verify (tampered, other key, wrong key type) is ignored.

const pinned = generateKeyPairSync('ed25519');
const other = generateKeyPairSync('ed25519');
const PINNED_PEM = pinned.publicKey.export({ type: 'spki', format: 'pem' }).toString();

function manifest(version: string): Buffer {
  return Buffer.from(JSON.stringify({ version, download: 'https://kelid.example/download', notes: 'fixes' }));
}
const sig = (bytes: Buffer, key = pinned.privateKey): string => sign(null, bytes, key).toString('base64');

describe('update manifest', () => {
  const files = new Map<string, Buffer | string>();
  let server: http.Server;
  let base = '';
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const body = files.get(req.url ?? '');
      if (body === undefined) res.writeHead(404).end();
      else res.writeHead(200).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => server.close());

  function publish(name: string, bytes: Buffer, signature: string): string {
    files.set(`/${name}`, bytes);
    files.set(`/${name}.sig`, signature);
    return `${base}/${name}`;
  }

  it('reports a newer version from a manifest signed by the pinned key', async () => {
    const m = manifest('9.0.0');
    const url = publish('good.json', m, sig(m));
    expect(await checkForUpdate({ url, publicKeyPem: PINNED_PEM, currentVersion: '0.1.0' })).toMatchObject({
      status: 'available',
      latest: '9.0.0',
      download: 'https://kelid.example/download',
    });
    expect(await checkForUpdate({ url, publicKeyPem: PINNED_PEM, currentVersion: '9.0.0' })).toMatchObject({
      status: 'current',
    });
  });

  it('ignores a tampered manifest, one signed by another key, and a missing signature', async () => {
    const m = manifest('9.0.0');
    const tampered = Buffer.from(m.toString().replace('kelid.example', 'evil.example'));
    for (const url of [
      publish('tampered.json', tampered, sig(m)),
      publish('other-key.json', m, sig(m, other.privateKey)),
      publish('garbage-sig.json', m, 'AAAA'),
    ]) {
      const r = await checkForUpdate({ url, publicKeyPem: PINNED_PEM, currentVersion: '0.1.0' });
      expect(r.status).toBe('invalid');
      expect(JSON.stringify(r)).not.toContain('evil.example');
    }
    files.set('/nosig.json', m);
    expect(
      (await checkForUpdate({ url: `${base}/nosig.json`, publicKeyPem: PINNED_PEM, currentVersion: '0.1.0' }))
        .status,
    ).toBe('unreachable');
  });

  it('refuses a signed manifest whose download is not https, and a non-Ed25519 key', () => {
    const m = Buffer.from(JSON.stringify({ version: '9.0.0', download: 'http://kelid.example/x' }));
    expect(verifyUpdateManifest(m, sig(m), PINNED_PEM)).toBeNull();
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const good = manifest('9.0.0');
    expect(
      verifyUpdateManifest(good, sig(good), rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString()),
    ).toBeNull();
  });

  it('the agent checks at start and keeps the result for doctor; a bad signature is ignored', async () => {
    const m = manifest('9.0.0');
    const good = publish('agent-good.json', m, sig(m));
    const bad = publish('agent-bad.json', m, sig(m, other.privateKey));
    for (const [url, expected] of [
      [bad, 'invalid'],
      [good, 'available'],
    ] as const) {
      const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-update-'));
      const config = resolveConfig({ port: 0, autoDetectModules: false, consent: { launcher: 'none' } });
      config.updates.url = url;
      const agent = new Agent({ config, stateDir, updatePublicKeyPem: PINNED_PEM, version: '0.1.0' });
      await agent.start();
      try {
        for (let i = 0; i < 100 && readUpdateCheck(stateDir) === null; i++)
          await new Promise((r) => setTimeout(r, 50));
        expect(readUpdateCheck(stateDir)?.status).toBe(expected);
      } finally {
        await agent.stop();
        fs.rmSync(stateDir, { recursive: true, force: true });
      }
    }
  });
});

describe('agent.info update field', () => {
  const ctx = (tier: string): CallContext =>
    ({
      connection: { tier, origin: 'https://a.example' },
      env: {
        version: '0.1.0',
        services: { modules: () => [] },
        updateAvailable: () => ({ latest: '9.0.0', download: 'https://kelid.example/download' }),
      },
    }) as unknown as CallContext;

  it("tells the console (the user's token manager) about a newer version, and no page", async () => {
    expect(await agentInfo.run(ctx('console'), {})).toMatchObject({ update: { latest: '9.0.0' } });
    for (const tier of ['ra', 'site', 'unknown']) {
      expect(await agentInfo.run(ctx(tier), {})).not.toHaveProperty('update');
    }
  });
});
