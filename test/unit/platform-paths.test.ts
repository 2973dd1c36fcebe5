import { describe, expect, it } from 'vitest';
import {
  AGENT_PORT_RANGE,
  controlChannelPath,
  defaultStateDir,
  launchAgentPath,
  systemdUnitPath,
  systemdWantsLinkPath,
  xdgAutostartPath,
} from '../../src/platform-paths.js';
import type { PlatformEnv } from '../../src/platform-paths.js';

const linux = (env: Record<string, string> = {}): PlatformEnv => ({
  platform: 'linux',
  env,
  home: '/home/ana',
});
const mac: PlatformEnv = { platform: 'darwin', env: {}, home: '/Users/ana' };
const win = (env: Record<string, string> = {}): PlatformEnv => ({
  platform: 'win32',
  env,
  home: 'C:\\Users\\ana',
});

describe('platform paths', () => {
  describe('#defaultStateDir', () => {
    it('follows XDG_DATA_HOME on Linux, else ~/.local/share', () => {
      expect(defaultStateDir(linux())).toBe('/home/ana/.local/share/kelid');
      expect(defaultStateDir(linux({ XDG_DATA_HOME: '/data/ana' }))).toBe('/data/ana/kelid');
      expect(defaultStateDir(linux({ XDG_DATA_HOME: '' }))).toBe('/home/ana/.local/share/kelid');
    });
    it('uses Application Support on macOS and LOCALAPPDATA on Windows', () => {
      expect(defaultStateDir(mac)).toBe('/Users/ana/Library/Application Support/kelid');
      expect(defaultStateDir(win({ LOCALAPPDATA: 'D:\\Local' }))).toBe('D:\\Local\\kelid\\Data');
      expect(defaultStateDir(win())).toBe('C:\\Users\\ana\\AppData\\Local\\kelid\\Data');
    });
  });

  describe('autostart locations', () => {
    it('puts the systemd unit, its wants link and the XDG entry under XDG_CONFIG_HOME', () => {
      expect(systemdUnitPath(linux())).toBe('/home/ana/.config/systemd/user/kelid.service');
      expect(systemdWantsLinkPath(linux({ XDG_CONFIG_HOME: '/cfg' }))).toBe(
        '/cfg/systemd/user/default.target.wants/kelid.service',
      );
      expect(xdgAutostartPath(linux({ XDG_CONFIG_HOME: '/cfg' }))).toBe('/cfg/autostart/kelid.desktop');
    });
    it('puts the LaunchAgent in ~/Library/LaunchAgents', () => {
      expect(launchAgentPath(mac)).toBe('/Users/ana/Library/LaunchAgents/org.kelid.agent.plist');
    });
  });

  describe('#controlChannelPath', () => {
    it('is a socket inside the state directory on Linux and macOS', () => {
      expect(controlChannelPath('/home/ana/.local/share/kelid', 'linux')).toBe(
        '/home/ana/.local/share/kelid/control.sock',
      );
      expect(controlChannelPath('/Users/ana/x', 'darwin')).toBe('/Users/ana/x/control.sock');
    });
    it('is a named pipe on Windows, distinct per user (state directory), case-insensitively stable', () => {
      const ana = controlChannelPath('C:\\Users\\ana\\AppData\\Local\\kelid\\Data', 'win32', 'id1');
      const bob = controlChannelPath('C:\\Users\\bob\\AppData\\Local\\kelid\\Data', 'win32', 'id1');
      expect(ana).toMatch(/^\\\\\.\\pipe\\kelid-control-[0-9a-f]{32}$/);
      expect(bob).not.toBe(ana);
      expect(controlChannelPath('c:\\users\\ANA\\AppData\\Local\\kelid\\Data', 'win32', 'id1')).toBe(ana);
    });
    it('hides the pipe name behind the random id kept in the private state directory (attack: squat the pipe)', () => {
      const dir = 'C:\\Users\\ana\\AppData\\Local\\kelid\\Data';
      // another user knows the state directory's path, not the id: the name they can compute differs
      expect(controlChannelPath(dir, 'win32', 'a1b2c3d4e5f60718293a4b5c6d7e8f90')).not.toBe(
        controlChannelPath(dir, 'win32'),
      );
      expect(controlChannelPath(dir, 'win32', 'x')).not.toBe(controlChannelPath(dir, 'win32', 'y'));
    });
  });

  it('documents a small port range starting at the historical default', () => {
    expect(AGENT_PORT_RANGE[0]).toBe(17443);
    expect(AGENT_PORT_RANGE).toEqual([17443, 17444, 17445, 17446, 17447]);
  });
});
