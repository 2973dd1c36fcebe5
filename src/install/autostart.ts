import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  LAUNCH_AGENT_LABEL,
  WINDOWS_RUN_KEY,
  WINDOWS_RUN_VALUE,
  launchAgentPath,
  systemdUnitPath,
  systemdWantsLinkPath,
  xdgAutostartPath,
} from '../platform-paths.js';
import type { PlatformEnv } from '../platform-paths.js';
import type { PlannedCommand } from './trust-stores.js';

// How Kelid starts at login, per OS, as pure plans (files to write, links, commands) that
// `kelid install` carries out and unit tests read. Nothing here touches the disk except
// `hasUserSystemd`, which only looks.

export type AutostartKind = 'systemd' | 'xdg-autostart' | 'launch-agent' | 'windows-run-key';

export interface PlannedFile {
  path: string;
  content: string;
  mode: number;
}

export interface AutostartPlan {
  kind: AutostartKind;
  files: PlannedFile[];
  /** Symbolic links to make: `path` → `target`. */
  links: Array<{ path: string; target: string }>;
  /** Run after writing (best effort: start it now). */
  commands: PlannedCommand[];
  /** Run by uninstall before the files are removed. */
  removeCommands: PlannedCommand[];
}

/**
 * Whether this session has a systemd user manager: its runtime directory `$XDG_RUNTIME_DIR/systemd`
 * exists (systemd --user creates it; a desktop without systemd, a container or WSL1 has none).
 */
export function hasUserSystemd(p: PlatformEnv, exists: (file: string) => boolean = fs.existsSync): boolean {
  const runtime = p.env.XDG_RUNTIME_DIR;
  if (runtime === undefined || runtime === '') return false;
  return exists(path.posix.join(runtime, 'systemd'));
}

/** The autostart mechanism of this platform (Linux: systemd when the user has one, else XDG autostart). */
export function chooseAutostart(p: PlatformEnv, userSystemd: boolean): AutostartKind {
  if (p.platform === 'darwin') return 'launch-agent';
  if (p.platform === 'win32') return 'windows-run-key';
  return userSystemd ? 'systemd' : 'xdg-autostart';
}

// systemd: a word with spaces, quotes or backslashes is double-quoted with C-style escapes; `%` is
// a specifier and `$` an environment variable, both doubled.
function systemdQuote(word: string): string {
  const escaped = word.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /[\s"'\\;]/.test(escaped) ? `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"` : escaped;
}

// Desktop entry Exec: reserved characters need double quotes, inside which `"`, `` ` ``, `$` and `\`
// are backslash-escaped; then the whole value is escaped once more as a string value.
function desktopQuote(word: string): string {
  const q = /[\s"'\\><~|&;$*?#()`]/.test(word) ? `"${word.replace(/(["`$\\])/g, '\\$1')}"` : word;
  return q.replace(/%/g, '%%').replace(/\\/g, '\\\\');
}

function xmlEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

// Windows command line quoting (CommandLineToArgvW rules).
function windowsQuote(word: string): string {
  if (word !== '' && !/[\s"]/.test(word)) return word;
  return `"${word.replace(/(\\*)"/g, '$1$1\\"').replace(/(\\+)$/, '$1$1')}"`;
}

/** The systemd user unit: restarts on failure, started with the user's session. */
export function systemdUnit(command: string[]): string {
  return [
    '[Unit]',
    'Description=Kelid agent (PKCS#11 tokens for web pages)',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${command.map(systemdQuote).join(' ')}`,
    'Restart=on-failure',
    'RestartSec=5',
    // The agent logs to its own rotating file; the journal keeps the rest.
    'UMask=0077',
    'NoNewPrivileges=yes',
    '',
    '[Install]',
    'WantedBy=default.target',
    '',
  ].join('\n');
}

/** The XDG autostart entry (desktops without a user systemd). */
export function xdgDesktopEntry(command: string[]): string {
  return [
    '[Desktop Entry]',
    'Type=Application',
    'Name=Kelid',
    'Comment=Kelid agent (PKCS#11 tokens for web pages)',
    `Exec=${command.map(desktopQuote).join(' ')}`,
    'Terminal=false',
    'NoDisplay=true',
    'X-GNOME-Autostart-enabled=true',
    '',
  ].join('\n');
}

/** The LaunchAgent (macOS): started at login, restarted when it exits with an error. */
export function launchAgentPlist(command: string[]): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    '<plist version="1.0">',
    '<dict>',
    '  <key>Label</key>',
    `  <string>${LAUNCH_AGENT_LABEL}</string>`,
    '  <key>ProgramArguments</key>',
    '  <array>',
    ...command.map((w) => `    <string>${xmlEscape(w)}</string>`),
    '  </array>',
    '  <key>RunAtLoad</key>',
    '  <true/>',
    '  <key>KeepAlive</key>',
    '  <dict>',
    '    <key>SuccessfulExit</key>',
    '    <false/>',
    '  </dict>',
    '  <key>ProcessType</key>',
    '  <string>Interactive</string>',
    '</dict>',
    '</plist>',
    '',
  ].join('\n');
}

/** The plan for `kind`, running `command` (absolute program path first) at login. */
export function autostartPlan(
  kind: AutostartKind,
  p: PlatformEnv,
  command: string[],
  options: { uid?: number } = {},
): AutostartPlan {
  switch (kind) {
    case 'systemd':
      return {
        kind,
        files: [{ path: systemdUnitPath(p), content: systemdUnit(command), mode: 0o644 }],
        links: [{ path: systemdWantsLinkPath(p), target: systemdUnitPath(p) }],
        commands: [
          ['systemctl', '--user', 'daemon-reload'],
          ['systemctl', '--user', 'restart', 'kelid.service'],
        ],
        removeCommands: [['systemctl', '--user', 'stop', 'kelid.service']],
      };
    case 'xdg-autostart':
      return {
        kind,
        files: [{ path: xdgAutostartPath(p), content: xdgDesktopEntry(command), mode: 0o644 }],
        links: [],
        commands: [],
        removeCommands: [],
      };
    case 'launch-agent': {
      const plist = launchAgentPath(p);
      const domain = `gui/${options.uid ?? 501}`;
      return {
        kind,
        files: [{ path: plist, content: launchAgentPlist(command), mode: 0o644 }],
        links: [],
        commands: [['/bin/launchctl', 'bootstrap', domain, plist]],
        removeCommands: [['/bin/launchctl', 'bootout', `${domain}/${LAUNCH_AGENT_LABEL}`]],
      };
    }
    case 'windows-run-key':
      return {
        kind,
        files: [],
        links: [],
        commands: [
          [
            'reg.exe',
            'add',
            WINDOWS_RUN_KEY,
            '/v',
            WINDOWS_RUN_VALUE,
            '/t',
            'REG_SZ',
            '/d',
            command.map(windowsQuote).join(' '),
            '/f',
          ],
        ],
        removeCommands: [['reg.exe', 'delete', WINDOWS_RUN_KEY, '/v', WINDOWS_RUN_VALUE, '/f']],
      };
  }
}
