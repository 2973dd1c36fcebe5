import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { KelidError } from '../model/errors.js';
import type { ErrorCode } from '../model/errors.js';
import type { AuditHooks } from '../model/test-hooks.js';

// PROTOCOL.md section 9: one JSON line per ra/console operation, site approval or revocation, and
// signature, chained by `prev` = SHA-256 (hex) of the previous line's exact bytes without its newline.
// The first line's `prev` is 64 zeros and its `seq` is 1.
//
// What the chain detects: a line modified, removed, inserted or reordered anywhere before the last
// line, a broken or unterminated line, and the removal of leading lines. What it cannot detect on its
// own: an edit to the very last line, or the removal of whole lines at the end (nothing follows them).
// A running agent keeps the hash of the last line it wrote, so its next line exposes such an edit.
//
// A torn last line (a write cut short by a crash or power loss: bytes after the last newline; whole
// lines before it from the same batch stay, chained as written) is repaired when the log is opened,
// never dropped silently: its bytes are moved to `audit.jsonl.torn-<seq>`, the file is cut back to
// the last newline, and line <seq> records the repair (`method: "audit.repair"`, `tornSha256` =
// SHA-256 of the moved bytes), so the chain shows it and `verifyAuditLog` checks the side file
// against it. Any other damage is left for the operator.

/** The name of the audit log inside the state directory. */
export const AUDIT_LOG_FILE = 'audit.jsonl';

export interface AuditEntry {
  seq: number;
  /** ISO 8601 UTC with milliseconds. */
  time: string;
  origin: string;
  method: string;
  /** `null` for operations without a token (site approvals and revocations). */
  tokenSerial: string | null;
  /** Hex CKA_ID. */
  keyId?: string;
  /** SHA-256 (hex) of the certificate's DER. */
  certificateSha256?: string;
  /** {@link hashDigests} of the digests that were signed. */
  digestsSha256?: string;
  result: 'ok' | 'error';
  /** Present exactly when `result` is `error`. */
  errorCode?: ErrorCode;
  /** `audit.repair` lines: SHA-256 (hex) of the torn bytes moved to `audit.jsonl.torn-<seq>`. */
  tornSha256?: string;
  prev: string;
}

export type AuditRecord = Omit<AuditEntry, 'seq' | 'time' | 'prev'>;

/** A torn last line repaired when the log was opened: the line recording it and the side file. */
export interface AuditRepair {
  line: number;
  tornFile: string;
}

export type AuditVerifyResult =
  { ok: true; lines: number; repairs?: AuditRepair[] } | { ok: false; line: number; reason: string };

/** The method of the line that records a torn-line repair. */
export const AUDIT_REPAIR_METHOD = 'audit.repair';

/** Where the torn bytes repaired by line `seq` are kept. */
export function tornFileOf(file: string, seq: number): string {
  return `${file}.torn-${seq}`;
}

/** The file operations of one batch (group commit); tests wrap them to count fsyncs or make them fail. */
export interface AuditIo {
  /** Append all of `data` to the log opened for append. */
  write(handle: FileHandle, data: Uint8Array): Promise<void>;
  /** Flush the log to disk (fsync). */
  sync(handle: FileHandle): Promise<void>;
}

export interface AuditLogOptions {
  now?: () => Date;
  /** Replaces some of the batch's file operations (tests: count fsyncs, inject failures). */
  io?: Partial<AuditIo>;
  /** Test hooks (a torn line and a crash); only an entry point gives them. */
  hooks?: AuditHooks;
}

const DEFAULT_IO: AuditIo = {
  write: async (handle, data) => {
    // A regular file takes the whole buffer in one write; the loop is for the rare short write.
    for (let off = 0; off < data.length;) off += (await handle.write(data, off)).bytesWritten;
  },
  sync: (handle) => handle.sync(),
};

/** An append waiting for its batch. */
interface PendingLine {
  record: AuditRecord;
  time: string;
  resolve: (entry: AuditEntry) => void;
  reject: (error: unknown) => void;
}

const ZERO_HASH = '0'.repeat(64);
const HEX64 = /^[0-9a-f]{64}$/;
// A line is at most a few hundred bytes; anything this long is damage, not an entry.
const MAX_LINE_BYTES = 64 * 1024;

// The closed field list, in the order they are written. Each check sees only the value and never
// echoes it, so a secret passed by mistake does not end up in an error message either.
const FIELD_CHECKS: ReadonlyArray<
  readonly [keyof AuditEntry, 'required' | 'optional', (v: unknown) => boolean]
> = [
  ['seq', 'required', (v) => Number.isSafeInteger(v) && (v as number) >= 1],
  ['time', 'required', (v) => typeof v === 'string' && isIsoTime(v)],
  ['origin', 'required', (v) => typeof v === 'string' && /^[\x21-\x7e]{1,300}$/.test(v)],
  ['method', 'required', (v) => typeof v === 'string' && /^[A-Za-z][A-Za-z0-9._-]{0,99}$/.test(v)],
  // Whatever text a token reports as its serial, but no control characters (the log is read in terminals).
  ['tokenSerial', 'required', (v) => v === null || (typeof v === 'string' && /^[^\p{Cc}]{0,64}$/u.test(v))],
  ['keyId', 'optional', (v) => typeof v === 'string' && /^(?:[0-9a-f]{2}){1,64}$/.test(v)],
  ['certificateSha256', 'optional', (v) => typeof v === 'string' && HEX64.test(v)],
  ['digestsSha256', 'optional', (v) => typeof v === 'string' && HEX64.test(v)],
  ['result', 'required', (v) => v === 'ok' || v === 'error'],
  ['errorCode', 'optional', (v) => typeof v === 'string' && /^ERR_[A-Z0-9_]{1,60}$/.test(v)],
  ['tornSha256', 'optional', (v) => typeof v === 'string' && HEX64.test(v)],
  ['prev', 'required', (v) => typeof v === 'string' && HEX64.test(v)],
];
const GENERATED = new Set<string>(['seq', 'time', 'prev']);

function isIsoTime(v: string): boolean {
  return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(v) && new Date(v).toISOString() === v;
}

/** Returns what is wrong with `o` as an entry (or, with `generated` false, as a record), or null. */
function shapeProblem(o: Record<string, unknown>, generated: boolean): string | null {
  const known = new Set<string>(FIELD_CHECKS.map(([name]) => name));
  const unknown = Object.keys(o).filter((k) => !known.has(k) || (!generated && GENERATED.has(k)));
  if (unknown.length > 0) return `unknown field(s): ${unknown.join(', ')}`;
  for (const [name, presence, valid] of FIELD_CHECKS) {
    if (!generated && GENERATED.has(name)) continue;
    const value = o[name];
    if (value === undefined) {
      if (presence === 'required') return `field ${name} is missing`;
    } else if (!valid(value)) {
      return `field ${name} is invalid`;
    }
  }
  if ((o.result === 'error') !== (o.errorCode !== undefined)) {
    return 'field errorCode must be present exactly when result is "error"';
  }
  return null;
}

function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The `digestsSha256` value: SHA-256 (hex) over the signed digests concatenated in order. */
export function hashDigests(digests: readonly Uint8Array[]): string {
  const hash = createHash('sha256');
  for (const d of digests) hash.update(d);
  return hash.digest('hex');
}

/**
 * Appends entries to `<stateDir>/audit.jsonl` (mode 0600) by group commit: the lines appended while a
 * batch is being written and flushed form the next batch, written with one write and one fsync, off
 * the event loop. Each append's promise resolves once the fsync covering its line has completed; a
 * failed write or fsync rejects every append of that batch (ERR_INTERNAL), takes the batch's bytes
 * back out of the file, and the next batch chains onto the last durable line. Lines are numbered and
 * chained in the order of the append calls, so the file holds them in that order.
 *
 * On construction the sequence and chain are resumed from the last line of an existing file (read
 * backwards, not the whole file). A torn last line (no newline) is repaired as described at the top
 * of this file. A file whose last complete line is damaged (not JSON, not an entry) is refused with
 * ERR_INTERNAL: that is not what a crash leaves, chaining onto it would hide it, so the operator runs
 * `kelid audit verify` and moves the file aside.
 */
export class AuditLog {
  readonly file: string;
  readonly #now: () => Date;
  readonly #io: AuditIo;
  readonly #hooks: AuditHooks | undefined;
  // The last durable line: what the next batch chains onto.
  #seq = 0;
  #prev = ZERO_HASH;
  #queue: PendingLine[] = [];
  #draining = false;
  // Set when a failed batch's bytes could not be cut off at once: the next batch cuts there first.
  #cutTo: number | undefined;

  constructor(file: string, options: AuditLogOptions = {}) {
    this.file = file;
    this.#now = options.now ?? (() => new Date());
    this.#io = { ...DEFAULT_IO, ...options.io };
    this.#hooks = options.hooks;
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const torn = readTornTail(file);
    const last = readLastLine(file, torn?.offset);
    if (last !== null) {
      const entry = last.complete ? parseLine(last.bytes) : 'unterminated';
      if (typeof entry === 'string') {
        const message = `audit log ${file} ends with a damaged line; run "kelid audit verify"`;
        throw new KelidError('ERR_INTERNAL', message, { data: { auditLog: file } });
      }
      this.#seq = entry.seq;
      this.#prev = sha256Hex(last.bytes);
    }
    const tornFile = tornFileOf(file, this.#seq + 1);
    if (torn !== null) {
      // Keep the torn bytes first, then cut them off: a crash in between repeats the repair.
      writeDurably(tornFile, torn.bytes);
      const fd = fs.openSync(file, 'r+');
      try {
        fs.ftruncateSync(fd, torn.offset);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    // A side file without its line: the repair was cut short after the truncation; record it now.
    // Written at once (start-up, before any append), so the log is whole when the constructor returns.
    if (fs.existsSync(tornFile)) {
      const record: AuditRecord = {
        origin: 'kelid',
        method: AUDIT_REPAIR_METHOD,
        tokenSerial: null,
        result: 'ok',
        tornSha256: sha256Hex(fs.readFileSync(tornFile)),
      };
      const entry = makeEntry(record, this.#seq + 1, this.#now().toISOString(), this.#prev);
      const line = JSON.stringify(entry);
      try {
        const fd = fs.openSync(this.file, 'a', 0o600);
        try {
          this.#hooks?.tearAuditLine(fd, entry.method, `${line}\n`);
          fs.appendFileSync(fd, `${line}\n`);
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
      } catch (e) {
        throw new KelidError('ERR_INTERNAL', 'could not write the audit log', { cause: e });
      }
      this.#seq = entry.seq;
      this.#prev = sha256Hex(line);
    }
  }

  /**
   * Queue one line; resolves to its entry once the line is on disk (fsynced), rejects with
   * ERR_INTERNAL when its batch could not be written. A malformed record throws TypeError at once.
   */
  append(record: AuditRecord): Promise<AuditEntry> {
    if (typeof record !== 'object' || record === null) throw new TypeError('audit record must be an object');
    const problem = shapeProblem(record as unknown as Record<string, unknown>, false);
    if (problem !== null) throw new TypeError(`audit record refused: ${problem}`);
    // The time of the call, not of the batch; seq and prev are given when the batch is formed.
    const time = this.#now().toISOString();
    return new Promise<AuditEntry>((resolve, reject) => {
      this.#queue.push({ record: { ...record }, time, resolve, reject });
      if (!this.#draining) {
        this.#draining = true;
        // After the current task: the appends made in the same turn share the first batch.
        queueMicrotask(() => void this.#drain());
      }
    });
  }

  /** Write batches until the queue is empty; one open file for a run of back-to-back batches. */
  async #drain(): Promise<void> {
    let handle: FileHandle | undefined;
    let size = 0;
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue;
        this.#queue = [];
        if (handle === undefined) {
          try {
            handle = await fsp.open(this.file, 'a', 0o600);
            if (this.#cutTo !== undefined) {
              await handle.truncate(this.#cutTo);
              await this.#io.sync(handle);
              this.#cutTo = undefined;
            }
            size = (await handle.stat()).size;
          } catch (e) {
            failBatch(batch, e);
            await closeQuietly(handle);
            handle = undefined;
            continue;
          }
        }
        const written = await this.#commit(handle, size, batch);
        if (written === null) {
          // The handle may be what failed: the next batch opens the file again.
          await closeQuietly(handle);
          handle = undefined;
        } else {
          size += written;
        }
      }
    } finally {
      await closeQuietly(handle);
      this.#draining = false;
      // Appended while the file was being closed: start another run.
      if (this.#queue.length > 0) {
        this.#draining = true;
        queueMicrotask(() => void this.#drain());
      }
    }
  }

  /**
   * One batch: one write and one fsync, then its callers are answered. Returns the bytes written, or
   * null when the batch failed (its callers rejected, its bytes cut off again).
   */
  async #commit(handle: FileHandle, size: number, batch: readonly PendingLine[]): Promise<number | null> {
    const entries: AuditEntry[] = [];
    const lines: string[] = [];
    let prev = this.#prev;
    for (const [i, p] of batch.entries()) {
      const entry = makeEntry(p.record, this.#seq + 1 + i, p.time, prev);
      const line = JSON.stringify(entry);
      entries.push(entry);
      lines.push(`${line}\n`);
      prev = sha256Hex(line);
    }
    const data = Buffer.from(lines.join(''));
    try {
      // Test hooks only: a crash plan may tear one of these lines and kill the process here.
      const hooks = this.#hooks;
      if (hooks)
        for (const [i, entry] of entries.entries()) hooks.tearAuditLine(handle.fd, entry.method, lines[i]);
      await this.#io.write(handle, data);
      await this.#io.sync(handle);
    } catch (e) {
      // Take the batch back out: its callers are told it failed, and the next batch chains onto the
      // last durable line. If even that fails, the next batch cuts first.
      try {
        await handle.truncate(size);
        await this.#io.sync(handle);
      } catch {
        this.#cutTo = size;
      }
      failBatch(batch, e);
      return null;
    }
    this.#seq = entries[entries.length - 1].seq;
    this.#prev = prev;
    for (const [i, p] of batch.entries()) p.resolve(entries[i]);
    return data.length;
  }
}

function failBatch(batch: readonly PendingLine[], cause: unknown): void {
  for (const p of batch) p.reject(new KelidError('ERR_INTERNAL', 'could not write the audit log', { cause }));
}

async function closeQuietly(handle: FileHandle | undefined): Promise<void> {
  // Every line it carried is already fsynced or already failed: a close error changes nothing.
  await handle?.close().catch(() => undefined);
}

/** The entry for `record` as line `seq`, chained onto `prev`, with the fields in the documented order. */
function makeEntry(record: AuditRecord, seq: number, time: string, prev: string): AuditEntry {
  return {
    seq,
    time,
    origin: record.origin,
    method: record.method,
    tokenSerial: record.tokenSerial,
    ...(record.keyId === undefined ? {} : { keyId: record.keyId }),
    ...(record.certificateSha256 === undefined ? {} : { certificateSha256: record.certificateSha256 }),
    ...(record.digestsSha256 === undefined ? {} : { digestsSha256: record.digestsSha256 }),
    result: record.result,
    ...(record.errorCode === undefined ? {} : { errorCode: record.errorCode }),
    ...(record.tornSha256 === undefined ? {} : { tornSha256: record.tornSha256 }),
    prev,
  };
}

/** The entry on a line, or the reason it is not one. */
function parseLine(bytes: Uint8Array): AuditEntry | string {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return 'not valid UTF-8';
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return 'not valid JSON';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
  const problem = shapeProblem(value as Record<string, unknown>, true);
  return problem ?? (value as AuditEntry);
}

/** Write a file and flush it and its directory entry to disk. */
function writeDurably(file: string, bytes: Uint8Array): void {
  const fd = fs.openSync(file, 'w', 0o600);
  try {
    fs.writeSync(fd, bytes);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  const dir = fs.openSync(path.dirname(file), 'r');
  try {
    fs.fsyncSync(dir);
  } finally {
    fs.closeSync(dir);
  }
}

/**
 * The bytes after the last newline (a torn append) and where they start; null when the file ends
 * with a newline.
 */
function readTornTail(file: string): { bytes: Buffer; offset: number } | null {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    const size = fs.fstatSync(fd).size;
    let end = size;
    const parts: Buffer[] = [];
    while (end > 0) {
      if (size - end > MAX_LINE_BYTES) {
        // Longer than any entry: not an append cut short but damage for the operator.
        const message = `audit log ${file} ends with a damaged line; run "kelid audit verify"`;
        throw new KelidError('ERR_INTERNAL', message, { data: { auditLog: file } });
      }
      const start = Math.max(0, end - 4096);
      const chunk = Buffer.alloc(end - start);
      fs.readSync(fd, chunk, 0, chunk.length, start);
      const nl = chunk.lastIndexOf(0x0a);
      if (nl !== -1) {
        parts.unshift(chunk.subarray(nl + 1));
        end = start + nl + 1;
        break;
      }
      parts.unshift(chunk);
      end = start;
    }
    return end === size ? null : { bytes: Buffer.concat(parts), offset: end };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The last line's bytes (without its newline) and whether it had one, in the file's first `size`
 * bytes (default: all of it); null for a missing or empty file.
 */
function readLastLine(file: string, limit?: number): { bytes: Buffer; complete: boolean } | null {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    const size = limit ?? fs.fstatSync(fd).size;
    if (size === 0) return null;
    const lastByte = Buffer.alloc(1);
    fs.readSync(fd, lastByte, 0, 1, size - 1);
    const complete = lastByte[0] === 0x0a;
    let end = complete ? size - 1 : size;
    const parts: Buffer[] = [];
    let length = 0;
    while (end > 0 && length <= MAX_LINE_BYTES) {
      const start = Math.max(0, end - 4096);
      const chunk = Buffer.alloc(end - start);
      fs.readSync(fd, chunk, 0, chunk.length, start);
      const nl = chunk.lastIndexOf(0x0a);
      parts.unshift(nl === -1 ? chunk : chunk.subarray(nl + 1));
      length += parts[0].length;
      if (nl !== -1) break;
      end = start;
    }
    return { bytes: Buffer.concat(parts), complete: complete && length <= MAX_LINE_BYTES };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Check the whole chain of an audit log, streaming it. Reports the first line (1-based) at which the
 * chain breaks. An edit that keeps line k a valid entry is found at line k+1, whose `prev` no longer
 * matches; the reason then names line k. Throws the file system error if the file cannot be read.
 */
export function verifyAuditLog(file: string): AuditVerifyResult {
  let expectedPrev = ZERO_HASH;
  let lineNo = 0;
  const repairs: AuditRepair[] = [];

  // The reason line `lineNo` breaks the chain, or null.
  const check = (bytes: Buffer): string | null => {
    lineNo += 1;
    if (bytes.length > MAX_LINE_BYTES) return 'line is too long to be an entry';
    const entry = parseLine(bytes);
    if (typeof entry === 'string') return entry;
    if (entry.prev !== expectedPrev) {
      return lineNo === 1
        ? 'prev of the first line is not 64 zeros: lines before it were removed'
        : `prev does not match the SHA-256 of line ${lineNo - 1}: line ${lineNo - 1} was modified, or lines were inserted, removed or reordered between lines ${lineNo - 1} and ${lineNo}`;
    }
    if (entry.seq !== lineNo) return `seq is ${entry.seq}, expected ${lineNo}`;
    if (entry.method === AUDIT_REPAIR_METHOD && entry.tornSha256 !== undefined) {
      const tornFile = tornFileOf(file, lineNo);
      let kept: Buffer;
      try {
        kept = fs.readFileSync(tornFile);
      } catch {
        return `the torn bytes this line recorded are missing (${path.basename(tornFile)})`;
      }
      if (sha256Hex(kept) !== entry.tornSha256)
        return `the torn bytes this line recorded were changed (${path.basename(tornFile)})`;
      repairs.push({ line: lineNo, tornFile });
    }
    expectedPrev = sha256Hex(bytes);
    return null;
  };

  const fd = fs.openSync(file, 'r');
  try {
    const chunk = Buffer.alloc(64 * 1024);
    // The current line's bytes so far; past MAX_LINE_BYTES only the length matters.
    let pending: Buffer[] = [];
    let pendingLength = 0;
    for (let n = fs.readSync(fd, chunk); n > 0; n = fs.readSync(fd, chunk)) {
      const data = chunk.subarray(0, n);
      let start = 0;
      for (let nl = data.indexOf(0x0a); nl !== -1; nl = data.indexOf(0x0a, start)) {
        const reason = check(Buffer.concat([...pending, data.subarray(start, nl)]));
        if (reason !== null) return { ok: false, line: lineNo, reason };
        pending = [];
        pendingLength = 0;
        start = nl + 1;
      }
      if (pendingLength <= MAX_LINE_BYTES) pending.push(Buffer.from(data.subarray(start)));
      pendingLength += n - start;
    }
    if (pendingLength > 0) {
      const reason = check(Buffer.concat(pending)) ?? 'last line has no newline: the file was cut short';
      return { ok: false, line: lineNo, reason };
    }
    return repairs.length === 0 ? { ok: true, lines: lineNo } : { ok: true, lines: lineNo, repairs };
  } finally {
    fs.closeSync(fd);
  }
}
