import { describe, expect, it } from 'vitest';
import {
  autostartPlan,
  chooseAutostart,
  hasUserSystemd,
  launchAgentPlist,
  systemdUnit,
  xdgDesktopEntry,
} from '../../../src/install/autostart.js';
import type { PlatformEnv } from '../../../src/platform-paths.js';

const linux = (env: Record<string, string> = {}): PlatformEnv => ({
  platform: 'linux',
  env,
  home: '/home/ana',
});

describe('autostart', () => {
  describe('#hasUserSystemd / #chooseAutostart', () => {
    it('chooses systemd when $XDG_RUNTIME_DIR/systemd exists, XDG autostart otherwise', () => {
      const p = linux({ XDG_RUNTIME_DIR: '/run/user/1000' });
      expect(hasUserSystemd(p, (f) => f === '/run/user/1000/systemd')).toBe(true);
      expect(hasUserSystemd(p, () => false)).toBe(false);
      expect(hasUserSystemd(linux(), () => true)).toBe(false);
      expect(chooseAutostart(p, true)).toBe('systemd');
      expect(chooseAutostart(p, false)).toBe('xdg-autostart');
    });
    it('chooses a LaunchAgent on macOS and the Run key on Windows', () => {
      expect(chooseAutostart({ platform: 'darwin', env: {}, home: '/Users/a' }, true)).toBe('launch-agent');
      expect(chooseAutostart({ platform: 'win32', env: {}, home: 'C:\\Users\\a' }, false)).toBe(
        'windows-run-key',
      );
    });
  });

  describe('#systemdUnit', () => {
    it('restarts on failure and quotes words with spaces, % and $', () => {
      const unit = systemdUnit(['/opt/kelid/kelid', 'serve', '--state-dir', '/home/a b/100%$x']);
      expect(unit).toContain('ExecStart=/opt/kelid/kelid serve --state-dir "/home/a b/100%%$$x"\n');
      expect(unit).toContain('Restart=on-failure\n');
      expect(unit).toContain('WantedBy=default.target\n');
    });
  });

  describe('#xdgDesktopEntry', () => {
    it('quotes reserved characters in Exec', () => {
      const entry = xdgDesktopEntry(['/opt/kelid/kelid', 'serve', '--state-dir', '/home/a b/$x']);
      expect(entry).toContain('Exec=/opt/kelid/kelid serve --state-dir "/home/a b/\\\\$x"\n');
    });
  });

  describe('#launchAgentPlist', () => {
    it('runs at load, restarts after an unsuccessful exit, and escapes XML', () => {
      const plist = launchAgentPlist([
        '/Applications/Kelid.app/Contents/MacOS/kelid',
        'serve',
        '--state-dir',
        '/Users/a&b',
      ]);
      expect(plist).toContain('<string>org.kelid.agent</string>');
      expect(plist).toContain('<string>/Users/a&amp;b</string>');
      expect(plist).toMatch(/<key>RunAtLoad<\/key>\s*<true\/>/);
      expect(plist).toMatch(/<key>SuccessfulExit<\/key>\s*<false\/>/);
    });
  });

  describe('#autostartPlan', () => {
    it('plans the Windows Run key in HKCU with a quoted command line, and its removal', () => {
      const plan = autostartPlan('windows-run-key', { platform: 'win32', env: {}, home: 'C:\\Users\\a' }, [
        'C:\\Users\\a\\AppData\\Local\\Programs\\Kelid\\kelid.exe',
        'serve',
        '--state-dir',
        'C:\\Users\\a\\App Data\\kelid',
      ]);
      expect(plan.files).toEqual([]);
      expect(plan.commands).toEqual([
        [
          'reg.exe',
          'add',
          'HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run',
          '/v',
          'Kelid',
          '/t',
          'REG_SZ',
          '/d',
          'C:\\Users\\a\\AppData\\Local\\Programs\\Kelid\\kelid.exe serve --state-dir "C:\\Users\\a\\App Data\\kelid"',
          '/f',
        ],
      ]);
      expect(plan.removeCommands).toEqual([
        ['reg.exe', 'delete', 'HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run', '/v', 'Kelid', '/f'],
      ]);
    });
    it('plans the LaunchAgent file and its bootstrap in the gui domain of the user', () => {
      const plan = autostartPlan(
        'launch-agent',
        { platform: 'darwin', env: {}, home: '/Users/a' },
        ['/k', 'serve'],
        {
          uid: 502,
        },
      );
      expect(plan.files.map((f) => [f.path, f.mode])).toEqual([
        ['/Users/a/Library/LaunchAgents/org.kelid.agent.plist', 0o644],
      ]);
      expect(plan.commands).toEqual([
        ['/bin/launchctl', 'bootstrap', 'gui/502', '/Users/a/Library/LaunchAgents/org.kelid.agent.plist'],
      ]);
      expect(plan.removeCommands).toEqual([['/bin/launchctl', 'bootout', 'gui/502/org.kelid.agent']]);
    });
    it('plans the systemd unit with its default.target.wants link', () => {
      const plan = autostartPlan('systemd', linux({ XDG_CONFIG_HOME: '/cfg' }), ['/k', 'serve']);
      expect(plan.files[0].path).toBe('/cfg/systemd/user/kelid.service');
      expect(plan.links).toEqual([
        {
          path: '/cfg/systemd/user/default.target.wants/kelid.service',
          target: '/cfg/systemd/user/kelid.service',
        },
      ]);
    });
  });
});
