import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ORIGIN_IDS_SECRET_FILE,
  OriginIds,
  idReplacer,
  loadOriginIdsSecret,
  mapIdMembers,
} from '../../../src/protocol/origin-ids.js';
import { certificateIdOf } from '../../../src/tokens/certificate-store.js';
import { tokenIdOf } from '../../../src/tokens/token-id.js';

const BANK = 'https://bank.example';
const SHOP = 'https://shop.example';

describe('OriginIds', () => {
  const ids = new OriginIds(randomBytes(32));
  const internal = tokenIdOf({
    moduleId: 'softhsm',
    manufacturer: 'SoftHSM project',
    model: 'SoftHSM v2',
    serialNumber: '0123456789abcdef',
    slotDescription: 'SoftHSM slot ID 0x1',
  });

  it('maps internal ids (every one has 32 lower-case hex characters) to 32 hex characters and back', () => {
    const cert = certificateIdOf(internal, 'ab'.repeat(32));
    for (const id of [internal, cert]) {
      expect(id).toMatch(/^[0-9a-f]{32}$/);
      const wire = ids.forOrigin(BANK).toWire(id);
      expect(wire).toMatch(/^[0-9a-f]{32}$/);
      expect(wire).not.toBe(id);
      expect(ids.forOrigin(BANK).fromWire(wire)).toBe(id);
    }
  });

  it('gives each origin its own ids, and another origin’s id maps to a different internal id', () => {
    const bank = ids.forOrigin(BANK).toWire(internal);
    const shop = ids.forOrigin(SHOP).toWire(internal);
    expect(bank).not.toBe(shop);
    expect(ids.forOrigin(SHOP).fromWire(bank)).not.toBe(internal);
    // Origins are compared exactly: a port or scheme makes another origin.
    expect(ids.forOrigin(`${BANK}:8443`).toWire(internal)).not.toBe(bank);
    expect(ids.forOrigin('http://bank.example').toWire(internal)).not.toBe(bank);
  });

  it('is deterministic for one secret and differs between secrets (agents)', () => {
    const secret = randomBytes(32);
    expect(new OriginIds(secret).forOrigin(BANK).toWire(internal)).toBe(
      new OriginIds(Buffer.from(secret)).forOrigin(BANK).toWire(internal),
    );
    expect(new OriginIds(randomBytes(32)).forOrigin(BANK).toWire(internal)).not.toBe(
      new OriginIds(secret).forOrigin(BANK).toWire(internal),
    );
  });

  it('passes strings that are not ids unchanged (they name nothing either way)', () => {
    const codec = ids.forOrigin(BANK);
    for (const s of ['', 'x', 'A'.repeat(32), 'ab'.repeat(17), internal.toUpperCase()]) {
      expect(codec.fromWire(s)).toBe(s);
      expect(codec.toWire(s)).toBe(s);
    }
  });

  it('refuses a secret that is not 32 bytes', () => {
    expect(() => new OriginIds(randomBytes(16))).toThrow(TypeError);
  });
});

describe('mapIdMembers', () => {
  it('maps tokenId and certificateId members at any depth, in a copy', () => {
    const params = {
      tokenId: 't',
      certificateId: 'c',
      keyId: 'k',
      nested: [{ tokenId: 'u', other: 1 }, 'tokenId'],
      filter: { certificateId: 'd', n: null },
    };
    const before = JSON.stringify(params);
    expect(mapIdMembers(params, (id) => `<${id}>`)).toEqual({
      tokenId: '<t>',
      certificateId: '<c>',
      keyId: 'k',
      nested: [{ tokenId: '<u>', other: 1 }, 'tokenId'],
      filter: { certificateId: '<d>', n: null },
    });
    expect(JSON.stringify(params)).toBe(before);
  });

  it('leaves members that are not strings alone', () => {
    expect(mapIdMembers({ tokenId: 5, certificateId: { tokenId: 'a' } }, (id) => `<${id}>`)).toEqual({
      tokenId: 5,
      certificateId: { tokenId: '<a>' },
    });
  });
});

describe('idReplacer', () => {
  it('maps ids wherever they appear in a serialized result', () => {
    const result = {
      tokens: [{ tokenId: 'a', label: 'x' }],
      certificates: [{ certificateId: 'b', tokenId: 'a', keyId: 'k' }],
    };
    expect(
      JSON.parse(
        JSON.stringify(
          result,
          idReplacer((id) => id.toUpperCase()),
        ),
      ),
    ).toEqual({
      tokens: [{ tokenId: 'A', label: 'x' }],
      certificates: [{ certificateId: 'B', tokenId: 'A', keyId: 'k' }],
    });
  });
});

describe('loadOriginIdsSecret', () => {
  let dir: string;
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('generates the secret once, mode 0600, and reads the same one afterwards', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-ids-'));
    const first = loadOriginIdsSecret(dir);
    expect(first.generated).toBe(true);
    expect(first.secret).toHaveLength(32);
    const file = path.join(dir, ORIGIN_IDS_SECRET_FILE);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const again = loadOriginIdsSecret(dir);
    expect(again.generated).toBe(false);
    expect(again.secret.equals(first.secret)).toBe(true);
    expect(fs.readdirSync(dir)).toEqual([ORIGIN_IDS_SECRET_FILE]);
  });

  it('keeps a damaged file as .corrupt and starts a new secret', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-ids-'));
    const file = path.join(dir, ORIGIN_IDS_SECRET_FILE);
    fs.writeFileSync(file, 'not a secret\n', { mode: 0o600 });
    const loaded = loadOriginIdsSecret(dir);
    expect(loaded.generated).toBe(true);
    expect(fs.readFileSync(`${file}.corrupt`, 'utf8')).toBe('not a secret\n');
    expect(fs.readFileSync(file, 'utf8').trim()).toBe(loaded.secret.toString('hex'));
  });
});
