import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SITE_GRANTS_FILE, SiteGrants } from '../../../src/consent/site-grants.js';

let dir: string;
let file: string;
let clock: number;
const now = () => new Date(clock);

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-sites-'));
  file = path.join(dir, 'state', SITE_GRANTS_FILE);
  clock = Date.parse('2026-05-01T08:00:00.000Z');
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('SiteGrants', () => {
  describe('#list', () => {
    it('is empty when there is no file', () => {
      expect(new SiteGrants(file).list()).toEqual([]);
      expect(fs.existsSync(file)).toBe(false);
    });

    it('returns the grants in the order they were made', () => {
      const grants = new SiteGrants(file, { now });
      grants.grant('https://bank.example');
      clock += 1000;
      grants.grant('https://notary.example:8443');
      expect(grants.list()).toEqual([
        { origin: 'https://bank.example', grantedAt: '2026-05-01T08:00:00.000Z' },
        { origin: 'https://notary.example:8443', grantedAt: '2026-05-01T08:00:01.000Z' },
      ]);
    });
  });

  describe('#grant', () => {
    it('writes the documented file format with mode 0600', () => {
      new SiteGrants(file, { now }).grant('https://bank.example');
      expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual({
        version: 1,
        sites: [{ origin: 'https://bank.example', grantedAt: '2026-05-01T08:00:00.000Z' }],
      });
      if (process.platform !== 'win32') expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    });

    it('stores the normalized origin', () => {
      expect(new SiteGrants(file, { now }).grant('HTTPS://Bank.Example:443').origin).toBe(
        'https://bank.example',
      );
    });

    it('keeps the first grantedAt when an origin is granted again', () => {
      const grants = new SiteGrants(file, { now });
      grants.grant('https://bank.example');
      clock += 60_000;
      expect(grants.grant('https://bank.example').grantedAt).toBe('2026-05-01T08:00:00.000Z');
      expect(grants.list()).toHaveLength(1);
    });

    it('refuses a malformed origin with a TypeError', () => {
      const grants = new SiteGrants(file);
      for (const bad of ['https://bank.example/', 'null', 'https://user@bank.example', '']) {
        expect(() => grants.grant(bad)).toThrow(TypeError);
      }
      expect(fs.existsSync(file)).toBe(false);
    });

    it('replaces the file by rename, never rewriting it in place, and leaves no temporary file', () => {
      const grants = new SiteGrants(file, { now });
      grants.grant('https://bank.example');
      const before = fs.readFileSync(file, 'utf8');
      const link = path.join(dir, 'old-inode');
      fs.linkSync(file, link);
      grants.grant('https://notary.example');
      // The old inode still holds the old list: the new list went to a new file renamed over it.
      expect(fs.readFileSync(link, 'utf8')).toBe(before);
      expect(fs.readdirSync(path.dirname(file))).toEqual([SITE_GRANTS_FILE]);
    });

    it('ignores temporary files left by an interrupted write', () => {
      const grants = new SiteGrants(file, { now });
      grants.grant('https://bank.example');
      fs.writeFileSync(`${file}.0123456789ab.tmp`, '{"version":1,"sites":[{"origin":"https://evil.example"');
      expect(grants.list().map((g) => g.origin)).toEqual(['https://bank.example']);
    });
  });

  describe('#has', () => {
    it('matches the exact normalized origin only', () => {
      const grants = new SiteGrants(file);
      grants.grant('https://bank.example');
      expect(grants.has('https://bank.example')).toBe(true);
      expect(grants.has('https://BANK.example:443')).toBe(true);
      for (const other of [
        'https://bank.example:8443',
        'https://bank.example.',
        'https://bank.example.evil.com',
        'https://evilbank.example',
        'http://bank.example',
        'https://bank.example/',
        'not an origin',
      ]) {
        expect(grants.has(other)).toBe(false);
      }
    });
  });

  describe('#revoke', () => {
    it('removes a grant and reports whether there was one', () => {
      const grants = new SiteGrants(file);
      grants.grant('https://bank.example');
      grants.grant('https://notary.example');
      expect(grants.revoke('HTTPS://BANK.EXAMPLE')).toBe(true);
      expect(grants.revoke('https://bank.example')).toBe(false);
      expect(grants.revoke('garbage')).toBe(false);
      expect(grants.list().map((g) => g.origin)).toEqual(['https://notary.example']);
    });

    it('is seen at once by another instance on the same file', () => {
      const agent = new SiteGrants(file);
      const cli = new SiteGrants(file);
      agent.grant('https://bank.example');
      expect(cli.revoke('https://bank.example')).toBe(true);
      expect(agent.has('https://bank.example')).toBe(false);
    });
  });

  describe('with a corrupt file', () => {
    it.each([
      ['not JSON', '{"version":1,"sites":['],
      ['empty', ''],
      ['a JSON array', '[]'],
      ['another version', '{"version":2,"sites":[]}'],
      ['sites not an array', '{"version":1,"sites":{}}'],
      [
        'a non-normalized origin',
        '{"version":1,"sites":[{"origin":"https://bank.example/","grantedAt":"2026-01-01T00:00:00.000Z"}]}',
      ],
      [
        'an upper-case origin',
        '{"version":1,"sites":[{"origin":"https://BANK.example","grantedAt":"2026-01-01T00:00:00.000Z"}]}',
      ],
      [
        'an invalid time',
        '{"version":1,"sites":[{"origin":"https://bank.example","grantedAt":"yesterday"}]}',
      ],
      [
        'a duplicate origin',
        '{"version":1,"sites":[{"origin":"https://a.example","grantedAt":"2026-01-01T00:00:00.000Z"},{"origin":"https://a.example","grantedAt":"2026-01-01T00:00:00.000Z"}]}',
      ],
    ])('treats a file that is %s as empty and keeps it as .corrupt', (_name, content) => {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, content);
      const grants = new SiteGrants(file, { now });
      expect(grants.list()).toEqual([]);
      expect(fs.readFileSync(`${file}.corrupt`, 'utf8')).toBe(content);
      grants.grant('https://bank.example');
      expect(grants.list()).toEqual([
        { origin: 'https://bank.example', grantedAt: '2026-05-01T08:00:00.000Z' },
      ]);
    });
  });
});
