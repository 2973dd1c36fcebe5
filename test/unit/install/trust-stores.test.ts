import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { assertNotWritableByOthers, install } from '../../../src/install/installer.js';
import {
  firefoxProfiles,
  macosTrustPlan,
  macosUntrustPlan,
  nssDatabases,
  windowsTrustPlan,
  windowsUntrustPlan,
} from '../../../src/install/trust-stores.js';

const dirs: string[] = [];
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-trust-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('trust stores', () => {
  describe('#nssDatabases', () => {
    it('lists ~/.pki/nssdb, installed snap and flatpak Chromiums, and Firefox profiles from profiles.ini', () => {
      const home = tmp();
      fs.mkdirSync(path.join(home, 'snap', 'chromium', 'current'), { recursive: true });
      fs.mkdirSync(path.join(home, '.var', 'app', 'com.google.Chrome'), { recursive: true });
      const ff = path.join(home, '.mozilla', 'firefox');
      fs.mkdirSync(path.join(ff, 'p1.default'), { recursive: true });
      fs.writeFileSync(path.join(ff, 'p1.default', 'cert9.db'), '');
      const elsewhere = path.join(home, 'profiles', 'abs');
      fs.mkdirSync(elsewhere, { recursive: true });
      fs.writeFileSync(path.join(elsewhere, 'cert9.db'), '');
      fs.writeFileSync(
        path.join(ff, 'profiles.ini'),
        `[Profile0]\nPath=p1.default\nIsRelative=1\n\n[Profile1]\nPath=${elsewhere}\nIsRelative=0\n\n[Profile2]\nPath=never-ran\n`,
      );
      const dbs = nssDatabases({ platform: 'linux', env: {}, home });
      expect(dbs.map((d) => [path.relative(home, d.dir), d.create])).toEqual([
        ['.pki/nssdb', true],
        ['snap/chromium/current/.pki/nssdb', true],
        ['.var/app/com.google.Chrome/.pki/nssdb', true],
        ['.mozilla/firefox/p1.default', false],
        ['profiles/abs', false],
      ]);
      expect(firefoxProfiles(path.join(home, 'nothing'))).toEqual([]);
      expect(nssDatabases({ platform: 'win32', env: {}, home })).toEqual([]);
    });
  });

  it('plans Windows CurrentUser\\Root and the macOS login keychain by thumbprint', () => {
    expect(windowsTrustPlan('C:\\k\\ca.pem')).toEqual([
      ['certutil.exe', '-user', '-f', '-addstore', 'Root', 'C:\\k\\ca.pem'],
    ]);
    expect(windowsUntrustPlan('AB12')).toEqual([['certutil.exe', '-user', '-delstore', 'Root', 'AB12']]);
    expect(macosTrustPlan('/s/ca.pem', '/Users/a')).toEqual([
      [
        '/usr/bin/security',
        'add-trusted-cert',
        '-r',
        'trustRoot',
        '-p',
        'ssl',
        '-k',
        '/Users/a/Library/Keychains/login.keychain-db',
        '/s/ca.pem',
      ],
    ]);
    expect(macosUntrustPlan('AB12', '/Users/a')).toEqual([
      [
        '/usr/bin/security',
        'delete-certificate',
        '-Z',
        'AB12',
        '/Users/a/Library/Keychains/login.keychain-db',
      ],
    ]);
  });
});

describe('installer', () => {
  describe('#assertNotWritableByOthers (attack: another account swaps the program run at login)', () => {
    it('refuses a program in a directory others may write to', () => {
      const d = tmp();
      const open = path.join(d, 'open');
      fs.mkdirSync(open);
      fs.chmodSync(open, 0o777);
      const prog = path.join(open, 'kelid');
      fs.writeFileSync(prog, '#!/bin/sh\n', { mode: 0o755 });
      expect(() => assertNotWritableByOthers(prog)).toThrow(
        expect.objectContaining({ code: 'ERR_FORBIDDEN' }),
      );
    });
    it('refuses a group- or world-writable program file', () => {
      const prog = path.join(tmp(), 'kelid');
      fs.writeFileSync(prog, '#!/bin/sh\n');
      fs.chmodSync(prog, 0o775);
      expect(() => assertNotWritableByOthers(prog)).toThrow(
        expect.objectContaining({ code: 'ERR_FORBIDDEN' }),
      );
    });
    it('accepts a program only we and root can change (sticky /tmp on the way is fine)', () => {
      const prog = path.join(tmp(), 'kelid');
      fs.writeFileSync(prog, '#!/bin/sh\n', { mode: 0o755 });
      expect(() => assertNotWritableByOthers(prog)).not.toThrow();
      expect(() => assertNotWritableByOthers(process.execPath)).not.toThrow();
    });
    it('install refuses it before writing anything', async () => {
      const home = tmp();
      const open = path.join(home, 'open');
      fs.mkdirSync(open);
      fs.chmodSync(open, 0o777);
      const prog = path.join(open, 'kelid');
      fs.writeFileSync(prog, '', { mode: 0o755 });
      const p = { platform: 'linux' as const, env: { XDG_CONFIG_HOME: path.join(home, 'cfg') }, home };
      await expect(
        install({
          platform: p,
          stateDir: path.join(home, 'state'),
          program: [prog],
          autostart: 'xdg-autostart',
          start: false,
        }),
      ).rejects.toMatchObject({ code: 'ERR_FORBIDDEN' });
      expect(fs.readdirSync(home)).toEqual(['open']);
    });
  });
});

describe('installer (checkout)', () => {
  it('refuses a checkout whose dist/ others may write to (attack: replace the code bin/kelid.js loads)', async () => {
    const root = tmp();
    fs.mkdirSync(path.join(root, 'bin'));
    fs.writeFileSync(path.join(root, 'bin', 'kelid.js'), '', { mode: 0o755 });
    fs.mkdirSync(path.join(root, 'dist'));
    fs.chmodSync(path.join(root, 'dist'), 0o777);
    const p = { platform: 'linux' as const, env: { XDG_CONFIG_HOME: path.join(root, 'cfg') }, home: root };
    await expect(
      install({
        platform: p,
        stateDir: path.join(root, 'state'),
        program: [process.execPath, path.join(root, 'bin', 'kelid.js')],
        autostart: 'xdg-autostart',
        start: false,
      }),
    ).rejects.toMatchObject({ code: 'ERR_FORBIDDEN' });
    expect(fs.existsSync(path.join(root, 'state'))).toBe(false);
  });
});
