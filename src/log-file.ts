import * as fs from 'node:fs';
import * as path from 'node:path';

// A size-rotated log file: `kelid.log` is written until the next line would pass `maxBytes`; then
// `kelid.log.(n-1)` → `kelid.log.n` … `kelid.log` → `kelid.log.1` and a new `kelid.log` starts. At most
// `files` files are kept (default 5 × 1 MiB), each private to the user (0600, in the 0700 state dir).

/** `<stateDir>/logs/kelid.log`: the agent's log by default. */
export const LOG_DIR = 'logs';
export const LOG_FILE = 'kelid.log';

export interface RotatingFileOptions {
  maxBytes?: number;
  files?: number;
}

export class RotatingFile {
  readonly file: string;
  readonly #maxBytes: number;
  readonly #files: number;
  #fd: number;
  #size: number;

  constructor(file: string, options: RotatingFileOptions = {}) {
    this.file = file;
    this.#maxBytes = options.maxBytes ?? 1024 * 1024;
    this.#files = Math.max(1, options.files ?? 5);
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    this.#fd = fs.openSync(file, 'a', 0o600);
    this.#size = fs.fstatSync(this.#fd).size;
  }

  /** pino's destination interface: one call per log line. */
  write(line: string): boolean {
    const bytes = Buffer.byteLength(line);
    if (this.#size > 0 && this.#size + bytes > this.#maxBytes) this.#rotate();
    fs.writeSync(this.#fd, line);
    this.#size += bytes;
    return true;
  }

  #rotate(): void {
    fs.closeSync(this.#fd);
    fs.rmSync(`${this.file}.${this.#files - 1}`, { force: true });
    for (let i = this.#files - 2; i >= 1; i--) {
      try {
        fs.renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`);
      } catch {
        // not there yet
      }
    }
    if (this.#files > 1) fs.renameSync(this.file, `${this.file}.1`);
    else fs.rmSync(this.file, { force: true });
    this.#fd = fs.openSync(this.file, 'a', 0o600);
    this.#size = 0;
  }

  close(): void {
    fs.closeSync(this.#fd);
  }
}

/** The last `lines` lines of the log (across the rotated files, newest last). */
export function tailLog(file: string, lines: number, files = 5): string[] {
  const out: string[] = [];
  for (let i = 0; i < files && out.length < lines; i++) {
    let text: string;
    try {
      text = fs.readFileSync(i === 0 ? file : `${file}.${i}`, 'utf8');
    } catch {
      continue;
    }
    const part = text.split('\n').filter((l) => l !== '');
    out.unshift(...part.slice(Math.max(0, part.length - (lines - out.length))));
  }
  return out;
}
