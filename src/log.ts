import { pino } from 'pino';
import type { Logger } from 'pino';

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

export function createLogger(options: { level?: string; destination?: string } = {}): Logger {
  const level = options.level ?? process.env.KELID_LOG_LEVEL ?? 'info';
  const dest = options.destination
    ? pino.destination({ dest: options.destination, sync: true, mkdir: true })
    : pino.destination(2);
  return pino({ level, redact: { paths: REDACT, censor: '[redacted]' }, base: { pid: process.pid } }, dest);
}

/** A logger that drops everything (library use and tests). */
export const silentLogger: Logger = pino({ level: 'silent' });
