import { pino } from 'pino';
import type { Logger } from 'pino';
import { RotatingFile } from './log-file.js';

// Fields that could ever carry a secret are censored at the logger, as a second line of defence:
// code must still never pass a PIN to a log call.
const REDACT = [
  'pin',
  'soPin',
  'userPin',
  'oldPin',
  'newPin',
  'puk',
  'secrets',
  '*.pin',
  '*.secrets',
  '*.soPin',
  '*.userPin',
];

export type { Logger };

export interface LoggerOptions {
  level?: string;
  /** Write to this file (no rotation), instead of stderr. */
  destination?: string;
  /** Write to this size-rotated file. */
  rotatingFile?: string;
  /** With `rotatingFile`: also write to stderr. */
  stderr?: boolean;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? process.env.KELID_LOG_LEVEL ?? 'info';
  const settings = { level, redact: { paths: REDACT, censor: '[redacted]' }, base: { pid: process.pid } };
  if (options.rotatingFile) {
    const file = new RotatingFile(options.rotatingFile);
    if (!options.stderr) return pino(settings, file);
    return pino(
      settings,
      pino.multistream([
        { stream: file, level: 'trace' },
        { stream: pino.destination(2), level: 'trace' },
      ]),
    );
  }
  const dest = options.destination
    ? pino.destination({ dest: options.destination, sync: true, mkdir: true })
    : pino.destination(2);
  return pino(settings, dest);
}

/** A logger that drops everything (library use and tests). */
export const silentLogger: Logger = pino({ level: 'silent' });
