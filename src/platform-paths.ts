import { createHash } from 'node:crypto';
import * as path from 'node:path';

// Every per-OS path decision of Kelid in one place, as pure functions of (platform, environment,
// home): unit-tested for each OS on any OS. Linux follows the XDG base directories.

export type Platform = 'linux' | 'darwin' | 'win32';

export interface PlatformEnv {
  platform: Platform;
  env: Record<string, string | undefined>;
  home: string;
}

/** The platform Kelid runs on, its environment and home (anything not macOS or Windows counts as Linux). */
export function currentPlatformEnv(): PlatformEnv {
  const p = process.platform;
  return {
    platform: p === 'darwin' || p === 'win32' ? p : 'linux',
    env: process.env,
    home: process.env.HOME !== undefined && process.env.HOME !== '' ? process.env.HOME : homeFallback(),
  };
}

function homeFallback(): string {
  return process.env.USERPROFILE ?? '/';
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

function join(platform: Platform, ...parts: string[]): string {
  return platform === 'win32' ? path.win32.join(...parts) : path.posix.join(...parts);
}

/** The default per-user state directory (same result as env-paths, which the agent uses). */
export function defaultStateDir(p: PlatformEnv): string {
  switch (p.platform) {
    case 'darwin':
      return join(p.platform, p.home, 'Library', 'Application Support', 'kelid');
    case 'win32':
      return join(
        p.platform,
        nonEmpty(p.env.LOCALAPPDATA) ?? join(p.platform, p.home, 'AppData', 'Local'),
        'kelid',
        'Data',
      );
    case 'linux':
      return join(
        p.platform,
        nonEmpty(p.env.XDG_DATA_HOME) ?? join(p.platform, p.home, '.local', 'share'),
        'kelid',
      );
  }
}

/** `$XDG_CONFIG_HOME` or `~/.config` (Linux). */
export function xdgConfigHome(p: PlatformEnv): string {
  return nonEmpty(p.env.XDG_CONFIG_HOME) ?? join(p.platform, p.home, '.config');
}

/** Where the systemd user unit goes (Linux): `$XDG_CONFIG_HOME/systemd/user/kelid.service`. */
export function systemdUnitPath(p: PlatformEnv): string {
  return join(p.platform, xdgConfigHome(p), 'systemd', 'user', SYSTEMD_UNIT_NAME);
}

/** The `WantedBy=default.target` link that `systemctl --user enable` would make. */
export function systemdWantsLinkPath(p: PlatformEnv): string {
  return join(p.platform, xdgConfigHome(p), 'systemd', 'user', 'default.target.wants', SYSTEMD_UNIT_NAME);
}

export const SYSTEMD_UNIT_NAME = 'kelid.service';

/** Where the XDG autostart entry goes (Linux without a user systemd). */
export function xdgAutostartPath(p: PlatformEnv): string {
  return join(p.platform, xdgConfigHome(p), 'autostart', 'kelid.desktop');
}

export const LAUNCH_AGENT_LABEL = 'org.kelid.agent';

/** Where the LaunchAgent plist goes (macOS). */
export function launchAgentPath(p: PlatformEnv): string {
  return join(p.platform, p.home, 'Library', 'LaunchAgents', `${LAUNCH_AGENT_LABEL}.plist`);
}

/** The registry key of the per-user Run entry (Windows). */
export const WINDOWS_RUN_KEY = 'HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run';
export const WINDOWS_RUN_VALUE = 'Kelid';

/**
 * The control channel of the agent of `stateDir`: a Unix socket inside the (0700) state directory, or
 * on Windows a named pipe (pipes live in their own namespace, not on a file path). Pipe names are
 * visible to every account, so the name also hashes `pipeId`, a random value kept in the private
 * state directory: another user can neither guess the name to squat it before the agent starts (and
 * receive the PINs `kelid consent approve` sends) nor collide with ours.
 */
export function controlChannelPath(stateDir: string, platform: Platform, pipeId = ''): string {
  if (platform === 'win32') {
    const id = createHash('sha256')
      .update(`${path.win32.resolve(stateDir).toLowerCase()}\0${pipeId}`)
      .digest('hex');
    return `\\\\.\\pipe\\kelid-control-${id.slice(0, 32)}`;
  }
  return path.posix.join(stateDir, CONTROL_SOCKET);
}

/** `<stateDir>/control-pipe.id` (Windows): the random part of the control pipe's name. */
export const CONTROL_PIPE_ID_FILE = 'control-pipe.id';

export const CONTROL_SOCKET = 'control.sock';

export const AGENT_PORT_RANGE: readonly number[] = [17443, 17444, 17445, 17446, 17447];
