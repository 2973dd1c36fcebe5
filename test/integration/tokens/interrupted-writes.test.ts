// softhsm-only: crash states are made by raw pkcs11js and pkcs11-tool writes of half-done objects on SoftHSM; not ported to tpm2 yet
import { spawnSync } from 'node:child_process';
import { createHash, createPublicKey } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as Pkcs11 from 'pkcs11js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_PIN_POLICY } from '../../../src/tokens/pin-policy.js';
import { ModuleManager } from '../../../src/pkcs11/module-manager.js';
import { ProvisioningService } from '../../../src/tokens/provisioning-service.js';
import { TokenService } from '../../../src/tokens/token-service.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// The states a crash inside a token write can leave (docs/crash-consistency.md), made on the token by
// pkcs11-tool or raw pkcs11js, as Kelid sees and repairs them: both halves still carrying the
// provisional CKA_ID ("kelid-pending:" + 6 random bytes), the private half renamed but not the public
// one, a single half left by a crash during C_GenerateKeyPair, and the empty objects SoftHSM leaves
// when it dies (or fails) between creating an object and storing its template.

const SO = 'Admin2024';
const PIN = '739154';
const PENDING = Buffer.from('kelid-pending:', 'ascii').toString('hex');

/** CKA_ID Kelid gives an EC key: SHA-1 of the uncompressed point (computed here with node:crypto). */
function ecKeyId(spkiBase64: string): string {
  const jwk = createPublicKey({ key: Buffer.from(spkiBase64, 'base64'), format: 'der', type: 'spki' }).export(
    {
      format: 'jwk',
    },
  );
  const point = Buffer.concat([
    Buffer.from([4]),
    Buffer.from(jwk.x!, 'base64url'),
    Buffer.from(jwk.y!, 'base64url'),
  ]);
  return createHash('sha1').update(point).digest('hex');
}

interface PeerObject {
  kind: string;
  id: string;
  label: string;
}

/** What SoftHSM leaves after a C_CreateObject it refuses (as after a kill inside the call): empty objects. */
function leaveEmptyObjects(conf: string): void {
  const p = createRequire(import.meta.url)('pkcs11js') as typeof Pkcs11;
  const previous = process.env.SOFTHSM2_CONF;
  process.env.SOFTHSM2_CONF = conf;
  const m = new p.PKCS11();
  m.load('/usr/lib/softhsm/libsofthsm2.so');
  m.C_Initialize();
  try {
    const slot = m.C_GetSlotList(true)[0];
    const s = m.C_OpenSession(slot, p.CKF_SERIAL_SESSION | p.CKF_RW_SESSION);
    m.C_Login(s, p.CKU_USER, PIN);
    const token = { type: p.CKA_TOKEN, value: true };
    for (const template of [
      [{ type: p.CKA_CLASS, value: p.CKO_PUBLIC_KEY }, { type: p.CKA_KEY_TYPE, value: p.CKK_EC }, token],
      [{ type: p.CKA_CLASS, value: p.CKO_PRIVATE_KEY }, { type: p.CKA_KEY_TYPE, value: p.CKK_EC }, token],
      [
        { type: p.CKA_CLASS, value: p.CKO_CERTIFICATE },
        { type: p.CKA_CERTIFICATE_TYPE, value: p.CKC_X_509 },
        token,
      ],
    ]) {
      expect(() => m.C_CreateObject(s, template)).toThrow(/CKR_TEMPLATE_INCOMPLETE/);
    }
  } finally {
    m.C_Finalize();
    if (previous === undefined) delete process.env.SOFTHSM2_CONF;
    else process.env.SOFTHSM2_CONF = previous;
  }
}

describe('ProvisioningService after an interrupted write', () => {
  let hsm: SoftHsm;
  let modules: ModuleManager;
  let service: ProvisioningService;
  let tokenId: string;
  const work = mkdtempSync(join(tmpdir(), 'kelid-interrupted-'));

  const tool = (args: string[]): string => hsm.tool(['--login', '--pin', PIN, ...args]);

  /** Every key object as pkcs11-tool lists it (the peer's view). */
  function peerObjects(): PeerObject[] {
    const out = tool(['--list-objects']);
    return out
      .split(/\n(?=\S)/)
      .filter((b) => /^(Private|Public) Key Object/.test(b))
      .map((b) => ({
        kind: b.startsWith('Private') ? 'private' : 'public',
        id: /\n[ \t]+ID:[ \t]*([0-9a-f]+)/.exec(b)?.[1] ?? '',
        label: /\n[ \t]+label:[ \t]*(.*)/.exec(b)?.[1]?.trim() ?? '',
      }));
  }

  /** An EC pair made by another program but carrying Kelid's provisional id: a crash before the rename. */
  function pendingPair(label: string): string {
    const id = PENDING + Buffer.from(label.padEnd(6, '.').slice(0, 6)).toString('hex');
    tool(['--keypairgen', '--key-type', 'EC:prime256v1', '--id', id, '--label', label, '--usage-sign']);
    return id;
  }

  beforeEach(async () => {
    hsm = new SoftHsm('kelid-interrupted-hsm-');
    hsm.initToken('citizen', SO, PIN);
    modules = new ModuleManager([{ id: 'softhsm', path: hsm.module, env: hsm.env }]);
    await modules.start();
    const tokens = new TokenService(modules);
    service = new ProvisioningService(tokens, DEFAULT_PIN_POLICY);
    tokenId = (await tokens.listTokens()).find((t) => t.initialized)!.tokenId;
  });

  afterEach(async () => {
    await modules.stop();
    hsm.cleanup();
  });

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('lists a pair with the provisional id as a pending key under its final keyId, and signs its CSR', async () => {
    pendingPair('half-done');
    const [key] = await service.listKeys(tokenId);
    expect(key).toMatchObject({ label: 'half-done', hasCertificate: false });
    expect(key.keyId).toBe(ecKeyId(key.publicKey));
    const csr = await service.createCsr(tokenId, PIN, key.keyId, { subject: 'CN=after a crash' });
    const file = join(work, 'pending.csr');
    writeFileSync(file, csr);
    const verify = spawnSync('openssl', ['req', '-in', file, '-verify', '-noout'], { encoding: 'utf8' });
    expect(`${verify.stdout}${verify.stderr}`).toMatch(/verify OK/i);
  });

  it('gives both halves their final id at the next write session (here: another keys.generate)', async () => {
    pendingPair('half-done');
    const { key } = await service.generateKey(tokenId, PIN, {
      algorithm: { name: 'EC', namedCurve: 'P-256' },
      label: 'next',
    });
    const keys = await service.listKeys(tokenId);
    expect(keys).toHaveLength(2);
    const repaired = keys.find((k) => k.label === 'half-done')!;
    expect(peerObjects().sort((a, b) => (a.id + a.kind).localeCompare(b.id + b.kind))).toEqual(
      [
        { kind: 'private', id: repaired.keyId, label: 'half-done' },
        { kind: 'public', id: repaired.keyId, label: 'half-done' },
        { kind: 'private', id: key.keyId, label: 'next' },
        { kind: 'public', id: key.keyId, label: 'next' },
      ].sort((a, b) => (a.id + a.kind).localeCompare(b.id + b.kind)),
    );
    expect(peerObjects().every((o) => !o.id.startsWith(PENDING))).toBe(true);
  });

  it('completes a pair whose private half already has its final id and the public one not yet', async () => {
    const pending = pendingPair('renaming');
    const [listed] = await service.listKeys(tokenId);
    tool(['--set-id', listed.keyId, '--id', pending, '--type', 'privkey']);
    expect(peerObjects().map((o) => [o.kind, o.id === listed.keyId])).toEqual(
      expect.arrayContaining([
        ['private', true],
        ['public', false],
      ]),
    );
    expect(await service.deleteObjects(tokenId, PIN, listed.keyId, 'all')).toBe(2);
    expect(peerObjects()).toEqual([]);
  });

  it.each([
    ['public', 'pubkey'],
    ['private', 'privkey'],
  ])('removes a lone %s half with the provisional id at the next write session', async (half, type) => {
    const pending = pendingPair('lone');
    const [listed] = await service.listKeys(tokenId);
    tool(['--delete-object', '--type', type === 'pubkey' ? 'privkey' : 'pubkey', '--id', pending]);
    expect(peerObjects()).toEqual([{ kind: half, id: pending, label: 'lone' }]);
    if (half === 'public') {
      // Listed as pending (the peer sees it too), and deleting it by its listed keyId succeeds.
      expect((await service.listKeys(tokenId)).map((k) => k.keyId)).toEqual([listed.keyId]);
      expect(await service.deleteObjects(tokenId, PIN, listed.keyId, 'all')).toBe(1);
    } else {
      // Invisible without a login; the next write session under the PIN removes it.
      expect(await service.listKeys(tokenId)).toEqual([]);
      await service.generateKey(tokenId, PIN, {
        algorithm: { name: 'EC', namedCurve: 'P-256' },
        label: 'next',
      });
    }
    expect(peerObjects().filter((o) => o.label === 'lone')).toEqual([]);
  });

  it('removes the empty objects a module left when it died creating them, and nothing else', async () => {
    const { key } = await service.generateKey(tokenId, PIN, {
      algorithm: { name: 'EC', namedCurve: 'P-256' },
      label: 'kept',
    });
    leaveEmptyObjects(hsm.conf);
    // pkcs11-tool sees three objects without id or label; Kelid lists only the real key.
    expect(peerObjects().filter((o) => o.label === '')).toHaveLength(2);
    expect(tool(['--list-objects', '--type', 'cert'])).toMatch(/Certificate Object/);
    expect((await service.listKeys(tokenId)).map((k) => k.keyId)).toEqual([key.keyId]);
    expect((await service.listCertificates(tokenId)).length).toBe(0);

    await service.deleteObjects(tokenId, PIN, key.keyId, 'keypair');
    expect(peerObjects()).toEqual([]);
    expect(tool(['--list-objects', '--type', 'cert'])).not.toMatch(/Certificate Object/);
  });
});
