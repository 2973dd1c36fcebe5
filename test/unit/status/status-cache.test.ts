import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Status } from '../../../src/model/types.js';
import { STATUS_CACHE_DIR, StatusCache } from '../../../src/status/status-cache.js';

const T0 = new Date('2030-01-01T00:00:00.000Z');
const HOUR = 60 * 60_000;

const good: Status = {
  status: 'good',
  source: 'ocsp',
  checkedAt: T0.toISOString(),
  thisUpdate: T0.toISOString(),
  nextUpdate: new Date(T0.getTime() + HOUR).toISOString(),
};

const revoked: Status = {
  status: 'revoked',
  source: 'crl',
  checkedAt: T0.toISOString(),
  thisUpdate: T0.toISOString(),
  revokedAt: new Date(T0.getTime() - HOUR).toISOString(),
  reason: 'keyCompromise',
};

function at(ms: number): Date {
  return new Date(T0.getTime() + ms);
}

describe('StatusCache', () => {
  let stateDir: string;
  let cacheDir: string;

  beforeEach(() => {
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-status-cache-'));
    cacheDir = path.join(stateDir, STATUS_CACHE_DIR);
  });

  afterEach(() => {
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  function onlyFile(): string {
    const files = fs.readdirSync(cacheDir);
    expect(files).toHaveLength(1);
    return path.join(cacheDir, files[0]!);
  }

  describe('#get', () => {
    it('returns an entry until it expires, then forgets it', () => {
      const cache = new StatusCache();
      cache.set('k', good, at(HOUR));
      expect(cache.get('k', at(HOUR - 1))).toEqual(good);
      expect(cache.get('k', at(HOUR))).toBeUndefined();
      expect(cache.get('k', at(0))).toBeUndefined();
    });

    it('returns a copy that callers cannot use to change the cache', () => {
      const cache = new StatusCache();
      cache.set('k', revoked, at(HOUR));
      const first = cache.get('k', T0)!;
      first.status = 'good';
      expect(cache.get('k', T0)).toEqual(revoked);
    });

    it('reads entries written by another instance on the same state directory', () => {
      new StatusCache({ stateDir }).set('k', revoked, at(HOUR));
      expect(new StatusCache({ stateDir }).get('k', at(1))).toEqual(revoked);
      expect(new StatusCache({ stateDir }).get('other', at(1))).toBeUndefined();
    });

    it('deletes an expired file', () => {
      new StatusCache({ stateDir }).set('k', good, at(HOUR));
      const file = onlyFile();
      expect(new StatusCache({ stateDir }).get('k', at(2 * HOUR))).toBeUndefined();
      expect(fs.existsSync(file)).toBe(false);
    });

    it('ignores and deletes a corrupt file', () => {
      new StatusCache({ stateDir }).set('k', good, at(HOUR));
      const file = onlyFile();
      fs.writeFileSync(file, '{"version":1,"key":"k","sta');
      expect(new StatusCache({ stateDir }).get('k', T0)).toBeUndefined();
      expect(fs.existsSync(file)).toBe(false);
    });

    it('ignores files that parse but do not hold a valid entry for the key', () => {
      const variants: ((f: Record<string, unknown>) => unknown)[] = [
        (f) => ({ ...f, version: 2 }),
        (f) => ({ ...f, key: 'another' }),
        (f) => ({ ...f, expiresAt: 'tomorrow' }),
        (f) => ({ ...f, status: { ...good, status: 'maybe' } }),
        (f) => ({ ...f, status: { ...good, source: 'dns' } }),
        (f) => ({ ...f, status: { ...good, thisUpdate: 12 } }),
        (f) => ({ ...f, status: { ...good, reason: 4 } }),
        () => null,
        () => [1, 2],
      ];
      for (const change of variants) {
        new StatusCache({ stateDir }).set('k', good, at(HOUR));
        const file = onlyFile();
        const original = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
        fs.writeFileSync(file, JSON.stringify(change(original)));
        expect(new StatusCache({ stateDir }).get('k', T0)).toBeUndefined();
        expect(fs.existsSync(file)).toBe(false);
      }
    });
  });

  describe('#set', () => {
    it('writes owner-only files in <stateDir>/status-cache', () => {
      new StatusCache({ stateDir }).set('k', good, at(HOUR));
      expect(fs.statSync(cacheDir).mode & 0o777).toBe(0o700);
      const file = onlyFile();
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual({
        version: 1,
        key: 'k',
        expiresAt: at(HOUR).toISOString(),
        status: good,
      });
    });

    it('keeps working in memory when the state directory cannot be written', () => {
      const blocked = path.join(stateDir, 'file');
      fs.writeFileSync(blocked, 'not a directory');
      const cache = new StatusCache({ stateDir: blocked });
      expect(() => cache.set('k', good, at(HOUR))).not.toThrow();
      expect(cache.get('k', T0)).toEqual(good);
    });

    it('keeps at most maxEntries in memory, dropping the least recently used', () => {
      const cache = new StatusCache({ maxEntries: 2 });
      cache.set('a', good, at(HOUR));
      cache.set('b', good, at(HOUR));
      expect(cache.get('a', T0)).toEqual(good);
      cache.set('c', good, at(HOUR));
      expect(cache.get('b', T0)).toBeUndefined();
      expect(cache.get('a', T0)).toEqual(good);
      expect(cache.get('c', T0)).toEqual(good);
    });
  });
});
