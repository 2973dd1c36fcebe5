import { spawn } from 'node:child_process';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';

// Config `consent.launcher` (PROTOCOL.md section 5): how the agent opens its trusted pages.
//   "browser" — the system browser (xdg-open, open, or the URL handler on Windows);
//   "none"    — nothing is opened: the user answers with `kelid consent …` (headless machines, tests);
//   anything else is a command line run without a shell; `{url}` is replaced by the URL (appended as
//   the last argument when absent). Single and double quotes group words, as in a shell.
// The URL carries a one-time secret, so it is never logged.

export type Launcher = (url: string) => void;

export function createLauncher(
  setting: string,
  options: { logger?: Logger; platform?: NodeJS.Platform } = {},
): Launcher {
  const log = options.logger ?? silentLogger;
  const platform = options.platform ?? process.platform;
  if (setting === 'none') return () => undefined;
  let argv: (url: string) => string[];
  if (setting === 'browser') {
    if (platform === 'darwin') argv = (url) => ['open', url];
    else if (platform === 'win32') argv = (url) => ['rundll32', 'url.dll,FileProtocolHandler', url];
    else argv = (url) => ['xdg-open', url];
  } else {
    const words = splitCommandLine(setting);
    if (words.length === 0) throw new TypeError('consent.launcher is an empty command line');
    const hasPlaceholder = words.some((w) => w.includes('{url}'));
    argv = (url) => {
      const replaced = words.map((w) => w.split('{url}').join(url));
      return hasPlaceholder ? replaced : [...replaced, url];
    };
  }
  return (url: string) => {
    const [command, ...args] = argv(url);
    const child = spawn(command, args, { detached: true, stdio: 'ignore', windowsHide: true });
    child.on('error', (e: NodeJS.ErrnoException) => {
      log.warn({ launcher: command, err: e.code ?? e.message }, 'the consent launcher could not be started');
    });
    child.unref();
  };
}

/** Split a command line into words: whitespace separates, quotes group, backslash escapes outside single quotes. */
export function splitCommandLine(line: string): string[] {
  const words: string[] = [];
  let current = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote === "'") {
      if (c === "'") quote = null;
      else current += c;
    } else if (
      c === '\\' &&
      i + 1 < line.length &&
      (quote === null || line[i + 1] === '"' || line[i + 1] === '\\')
    ) {
      current += line[++i];
      inWord = true;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else current += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else {
      current += c;
      inWord = true;
    }
  }
  if (quote !== null) throw new TypeError('consent.launcher has an unterminated quote');
  if (inWord) words.push(current);
  return words;
}
