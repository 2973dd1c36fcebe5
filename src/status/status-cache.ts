// Verified status answers, kept until the source's nextUpdate: in memory, and (with a state directory)
// as one small JSON file per certificate in <stateDir>/status-cache/, so the agent and the CLI share
// them across processes. A file that cannot be read or fails validation is deleted and ignored: the
// cache only ever saves a network request, it never decides a status on its own.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import type { Status } from '../model/types.js';

export const STATUS_CACHE_DIR = 'status-cache';
const FORMAT_VERSION = 1;
const DEFAULT_MAX_ENTRIES = 1000;

export interface StatusCacheOptions {
  /** Persist entries under `<stateDir>/status-cache/`; memory only when absent. */
  stateDir?: string;
  maxEntries?: number;
  logger?: Logger;
}

interface Entry {
  status: Status;
  expiresAt: number;
}

interface CacheFile {
  version: number;
  key: string;
  expiresAt: string;
  status: Status;
}

const STATUS_VALUES: ReadonlySet<unknown> = new Set(['good', 'revoked', 'unknown']);
const SOURCE_VALUES: ReadonlySet<unknown> = new Set(['ocsp', 'crl']);

function isIsoTime(value: unknown): value is string {
  return typeof value === 'string' && !Number.isNaN(Date.parse(value));
}

function isStatus(value: unknown): value is Status {
  if (typeof value !== 'object' || value === null) return false;
  const s = value as Record<string, unknown>;
  const optional = ['nextUpdate', 'revokedAt'].every((k) => s[k] === undefined || isIsoTime(s[k]));
  return (
    STATUS_VALUES.has(s.status) &&
    SOURCE_VALUES.has(s.source) &&
    isIsoTime(s.checkedAt) &&
    isIsoTime(s.thisUpdate) &&
    optional &&
    (s.reason === undefined || typeof s.reason === 'string')
  );
}

function copyStatus(s: Status): Status {
  return {
    status: s.status,
    source: s.source,
    checkedAt: s.checkedAt,
    thisUpdate: s.thisUpdate,
    ...(s.nextUpdate !== undefined ? { nextUpdate: s.nextUpdate } : {}),
    ...(s.revokedAt !== undefined ? { revokedAt: s.revokedAt } : {}),
    ...(s.reason !== undefined ? { reason: s.reason } : {}),
  };
}

// The cache is an optimisation: a file that cannot be removed is left for the next reader to judge.
function removeQuietly(file: string): void {
  try {
    fs.rmSync(file, { force: true });
  } catch {
    // ignored
  }
}

export class StatusCache {
  private readonly memory = new Map<string, Entry>();
  private readonly dir: string | undefined;
  private readonly maxEntries: number;
  private readonly logger: Logger;

  constructor(options: StatusCacheOptions = {}) {
    this.dir = options.stateDir === undefined ? undefined : path.join(options.stateDir, STATUS_CACHE_DIR);
    this.maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.logger = options.logger ?? silentLogger;
  }

  /** The cached status for `key` if it has not expired at `now`. */
  get(key: string, now: Date): Status | undefined {
    const entry = this.memory.get(key) ?? this.readFile(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= now.getTime()) {
      this.delete(key);
      return undefined;
    }
    this.remember(key, entry);
    return copyStatus(entry.status);
  }

  /** Keep `status` for `key` until `expiresAt`. Disk errors are logged, never thrown. */
  set(key: string, status: Status, expiresAt: Date): void {
    const entry: Entry = { status: copyStatus(status), expiresAt: expiresAt.getTime() };
    this.remember(key, entry);
    if (!this.dir) return;
    const file: CacheFile = {
      version: FORMAT_VERSION,
      key,
      expiresAt: expiresAt.toISOString(),
      status: entry.status,
    };
    const target = this.fileFor(key);
    const temp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      fs.writeFileSync(temp, `${JSON.stringify(file)}\n`, { mode: 0o600 });
      fs.renameSync(temp, target);
    } catch (e) {
      this.logger.warn({ err: e }, 'could not write the status cache');
      removeQuietly(temp);
    }
  }

  delete(key: string): void {
    this.memory.delete(key);
    if (this.dir) removeQuietly(this.fileFor(key));
  }

  private remember(key: string, entry: Entry): void {
    this.memory.delete(key);
    this.memory.set(key, entry);
    // Map iteration order is insertion order: the first key is the least recently used.
    while (this.memory.size > this.maxEntries) {
      const oldest = this.memory.keys().next().value;
      if (oldest === undefined) break;
      this.memory.delete(oldest);
    }
  }

  private fileFor(key: string): string {
    return path.join(this.dir!, `${createHash('sha256').update(key).digest('hex')}.json`);
  }

  private readFile(key: string): Entry | undefined {
    if (!this.dir) return undefined;
    const file = this.fileFor(key);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      return undefined;
    }
    try {
      const parsed = JSON.parse(text) as unknown;
      if (typeof parsed === 'object' && parsed !== null) {
        const f = parsed as Record<string, unknown>;
        if (f.version === FORMAT_VERSION && f.key === key && isIsoTime(f.expiresAt) && isStatus(f.status)) {
          return { status: copyStatus(f.status), expiresAt: Date.parse(f.expiresAt) };
        }
      }
    } catch {
      // fall through: corrupt
    }
    this.logger.warn({ file }, 'ignoring a corrupt status cache file');
    removeQuietly(file);
    return undefined;
  }
}
