import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, hashDigests, verifyAuditLog } from '../../../src/audit/audit-log.js';
import type { AuditEntry, AuditIo, AuditRecord } from '../../../src/audit/audit-log.js';
import { isKelidError } from '../../../src/model/errors.js';

const CERT_SHA = createHash('sha256').update('certificate').digest('hex');

function record(i: number): AuditRecord {
  const signing = i % 3 !== 0;
  return signing
    ? {
        origin: i % 2 === 0 ? 'https://bank.example' : 'https://notary.example',
        method: 'sign.cms',
        tokenSerial: '0123456789abcdef',
        keyId: 'a1b2c3d4',
        certificateSha256: CERT_SHA,
        digestsSha256: hashDigests([createHash('sha256').update(`doc ${i}`).digest()]),
        result: 'ok',
      }
    : {
        origin: 'https://ra.example',
        method: 'pin.change',
        tokenSerial: 'SERIAL 1',
        result: 'error',
        errorCode: 'ERR_USER_CANCELLED',
      };
}

function lines(file: string): string[] {
  return fs.readFileSync(file, 'utf8').split('\n').slice(0, -1);
}

function writeLines(file: string, ls: string[]): void {
  fs.writeFileSync(file, ls.map((l) => `${l}\n`).join(''));
}

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-audit-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('AuditLog', () => {
  describe('#append', () => {
    it('chains each line to the SHA-256 of the previous line, as openssl computes it', async () => {
      const file = path.join(dir, 'audit.jsonl');
      const log = new AuditLog(file);
      for (let i = 1; i <= 3; i++) await log.append(record(i));
      const ls = lines(file);
      expect(ls).toHaveLength(3);
      expect(JSON.parse(ls[0]).prev).toBe('0'.repeat(64));
      for (let i = 1; i < ls.length; i++) {
        const openssl = spawnSync('openssl', ['dgst', '-sha256', '-r'], { input: ls[i - 1] });
        expect(openssl.status).toBe(0);
        expect(JSON.parse(ls[i]).prev).toBe(openssl.stdout.toString().split(' ')[0]);
      }
      expect(ls.map((l) => JSON.parse(l).seq)).toEqual([1, 2, 3]);
    });

    it('writes the fields in the documented order and omits absent optional ones', async () => {
      const file = path.join(dir, 'audit.jsonl');
      const log = new AuditLog(file, { now: () => new Date('2026-01-02T03:04:05.678Z') });
      const entry = await log.append({
        origin: 'https://ra.example',
        method: 'agent.requestAccess',
        tokenSerial: null,
        result: 'ok',
        keyId: undefined,
      });
      expect(entry).toEqual({
        seq: 1,
        time: '2026-01-02T03:04:05.678Z',
        origin: 'https://ra.example',
        method: 'agent.requestAccess',
        tokenSerial: null,
        result: 'ok',
        prev: '0'.repeat(64),
      });
      expect(lines(file)).toEqual([
        '{"seq":1,"time":"2026-01-02T03:04:05.678Z","origin":"https://ra.example","method":"agent.requestAccess","tokenSerial":null,"result":"ok","prev":"0000000000000000000000000000000000000000000000000000000000000000"}',
      ]);
      const full = await log.append(record(1));
      expect(Object.keys(full)).toEqual([
        'seq',
        'time',
        'origin',
        'method',
        'tokenSerial',
        'keyId',
        'certificateSha256',
        'digestsSha256',
        'result',
        'prev',
      ]);
    });

    it.skipIf(process.platform === 'win32')(
      'creates the file with mode 0600 and its directory with 0700',
      async () => {
        const file = path.join(dir, 'state', 'audit.jsonl');
        await new AuditLog(file).append(record(1));
        expect(fs.statSync(file).mode & 0o777).toBe(0o600);
        expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
      },
    );

    it('refuses a record with a field outside the closed list, without echoing its value', () => {
      const file = path.join(dir, 'audit.jsonl');
      const log = new AuditLog(file);
      const withPin = { ...record(1), pin: '918273' } as AuditRecord;
      expect(() => log.append(withPin)).toThrow(TypeError);
      try {
        log.append(withPin);
      } catch (e) {
        expect(String((e as Error).message)).toContain('pin');
        expect(String((e as Error).message)).not.toContain('918273');
      }
      expect(fs.existsSync(file)).toBe(false);
    });

    it.each([
      ['seq', { seq: 7 }],
      ['time', { time: '2026-01-01T00:00:00.000Z' }],
      ['prev', { prev: '0'.repeat(64) }],
    ])('refuses a caller-supplied %s', (_name, extra) => {
      const log = new AuditLog(path.join(dir, 'audit.jsonl'));
      expect(() => log.append({ ...record(1), ...extra } as AuditRecord)).toThrow(/unknown field/);
    });

    it.each<[string, Partial<Record<keyof AuditRecord, unknown>>]>([
      ['a keyId that is not lower-case hex', { keyId: '918273' + 'Z' }],
      ['a keyId of odd length', { keyId: 'abc' }],
      ['a certificateSha256 of the wrong length', { certificateSha256: 'ab'.repeat(20) }],
      ['a digestsSha256 with upper-case hex', { digestsSha256: 'AB'.repeat(32) }],
      ['an origin with whitespace', { origin: 'https://ra.example\nforged' }],
      ['a method with spaces', { method: 'sign cms' }],
      ['a tokenSerial with a newline', { tokenSerial: 'a\nb' }],
      ['an unknown result', { result: 'maybe' }],
      ['errorCode on a successful result', { errorCode: 'ERR_INTERNAL' }],
      ['an error result without errorCode', { result: 'error' }],
      ['a missing origin', { origin: undefined }],
    ])('refuses %s', (_name, change) => {
      const log = new AuditLog(path.join(dir, 'audit.jsonl'));
      expect(() => log.append({ ...record(1), ...change } as AuditRecord)).toThrow(TypeError);
    });

    it('accepts a token serial with spaces and non-ASCII text, as some tokens report', async () => {
      const log = new AuditLog(path.join(dir, 'audit.jsonl'));
      expect((await log.append({ ...record(1), tokenSerial: 'ABC 123 ü' })).tokenSerial).toBe('ABC 123 ü');
      expect(verifyAuditLog(log.file)).toEqual({ ok: true, lines: 1 });
    });

    it('uses the injected clock', async () => {
      let t = Date.parse('2026-03-01T10:00:00.000Z');
      const log = new AuditLog(path.join(dir, 'audit.jsonl'), { now: () => new Date((t += 1000)) });
      expect((await log.append(record(1))).time).toBe('2026-03-01T10:00:01.000Z');
      expect((await log.append(record(2))).time).toBe('2026-03-01T10:00:02.000Z');
    });
  });

  describe('#constructor', () => {
    it('continues the sequence and the chain of an existing file', async () => {
      const file = path.join(dir, 'audit.jsonl');
      const first = new AuditLog(file);
      for (let i = 1; i <= 5; i++) await first.append(record(i));
      const second = new AuditLog(file);
      const entry = await second.append(record(6));
      expect(entry.seq).toBe(6);
      expect(entry.prev).toBe(createHash('sha256').update(lines(file)[4]).digest('hex'));
      expect(verifyAuditLog(file)).toEqual({ ok: true, lines: 6 });
    });

    it('resumes from the last line only, whatever precedes it', async () => {
      const file = path.join(dir, 'audit.jsonl');
      const log = new AuditLog(file);
      await log.append(record(1));
      const long = 'x'.repeat(20_000); // longer than one backwards read
      fs.writeFileSync(file, `${long}\n${fs.readFileSync(file, 'utf8')}`);
      expect((await new AuditLog(file).append(record(2))).seq).toBe(2);
    });

    it('does not create the file until the first append', () => {
      const file = path.join(dir, 'audit.jsonl');
      new AuditLog(file);
      expect(fs.existsSync(file)).toBe(false);
    });

    it.each([
      ['a last line that is not JSON', (l: string) => `${l.slice(0, 40)}\n`],
      ['a last line with an unknown field', (l: string) => `${l.slice(0, -1)},"pin":"1"}\n`],
    ])('refuses a file ending with %s (ERR_INTERNAL)', async (_name, damage) => {
      const file = path.join(dir, 'audit.jsonl');
      const log = new AuditLog(file);
      await log.append(record(1));
      const good = fs.readFileSync(file, 'utf8');
      await log.append(record(2));
      fs.writeFileSync(file, good + damage(lines(file)[1]));
      let error: unknown;
      try {
        new AuditLog(file);
      } catch (e) {
        error = e;
      }
      expect(isKelidError(error, 'ERR_INTERNAL')).toBe(true);
    });

    it('refuses damage behind a torn last line (only one torn append is a crash)', async () => {
      const file = path.join(dir, 'audit.jsonl');
      await new AuditLog(file).append(record(1));
      fs.appendFileSync(file, '{"seq":2,"ti\n{"seq":3,"tim');
      expect(() => new AuditLog(file)).toThrow(expect.objectContaining({ code: 'ERR_INTERNAL' }));
      expect(fs.readdirSync(dir)).toEqual(['audit.jsonl']);
    });
  });

  describe('torn last line', () => {
    async function tornLog(): Promise<{ file: string; torn: string; good: string }> {
      const file = path.join(dir, 'audit.jsonl');
      const log = new AuditLog(file);
      await log.append(record(1));
      await log.append(record(2));
      const good = fs.readFileSync(file, 'utf8');
      const third = JSON.stringify({ ...record(3), seq: 3 });
      const torn = third.slice(0, 50);
      fs.appendFileSync(file, torn);
      return { file, torn, good };
    }

    it('moves the torn bytes to a side file, cuts the log back and records the repair in the chain', async () => {
      const { file, torn, good } = await tornLog();
      expect(verifyAuditLog(file)).toMatchObject({ ok: false, line: 3 });
      const log = new AuditLog(file);
      const tornFile = `${file}.torn-3`;
      expect(fs.readFileSync(tornFile, 'utf8')).toBe(torn);
      expect(fs.statSync(tornFile).mode & 0o777).toBe(0o600);
      const ls = lines(file);
      expect(fs.readFileSync(file, 'utf8').startsWith(good)).toBe(true);
      expect(JSON.parse(ls[2])).toMatchObject({
        seq: 3,
        origin: 'kelid',
        method: 'audit.repair',
        tokenSerial: null,
        result: 'ok',
        tornSha256: createHash('sha256').update(torn).digest('hex'),
      });
      expect((await log.append(record(4))).seq).toBe(4);
      expect(verifyAuditLog(file)).toEqual({ ok: true, lines: 4, repairs: [{ line: 3, tornFile }] });
    });

    it('repairs a log that is nothing but a torn first line', () => {
      const file = path.join(dir, 'audit.jsonl');
      fs.writeFileSync(file, '{"seq":1,"time":"2026');
      new AuditLog(file);
      expect(JSON.parse(lines(file)[0])).toMatchObject({
        seq: 1,
        method: 'audit.repair',
        prev: '0'.repeat(64),
      });
      expect(verifyAuditLog(file)).toMatchObject({ ok: true, lines: 1 });
    });

    it('completes a repair cut short after the side file was written or after the cut', async () => {
      const { file, torn, good } = await tornLog();
      // Crash after the side file was written: the log still ends with the torn bytes.
      fs.writeFileSync(`${file}.torn-3`, torn);
      new AuditLog(file);
      expect(lines(file).map((l) => JSON.parse(l).method)).toEqual(['sign.cms', 'sign.cms', 'audit.repair']);
      // Crash after the cut: side file present, repair line missing.
      fs.writeFileSync(file, good);
      new AuditLog(file);
      expect(lines(file).map((l) => JSON.parse(l).method)).toEqual(['sign.cms', 'sign.cms', 'audit.repair']);
      expect(verifyAuditLog(file)).toMatchObject({ ok: true, lines: 3 });
    });

    it.each([
      ['removed', (f: string) => fs.rmSync(f)],
      ['changed', (f: string) => fs.appendFileSync(f, 'x')],
    ])('fails verification when the kept torn bytes are %s', async (what, damage) => {
      const { file } = await tornLog();
      new AuditLog(file);
      damage(`${file}.torn-3`);
      const result = verifyAuditLog(file);
      expect(result).toMatchObject({ ok: false, line: 3 });
      expect(!result.ok && result.reason).toContain(what === 'removed' ? 'missing' : 'changed');
    });
  });
});

describe('AuditLog group commit', () => {
  // One distinct origin per call, so the file shows which call each line came from.
  const nth = (i: number): AuditRecord => ({ ...record(i), origin: `https://site-${i}.example` });

  it('writes many concurrent appends in call order, numbered and chained, each promise with its line', async () => {
    const file = path.join(dir, 'audit.jsonl');
    const log = new AuditLog(file);
    const calls: Promise<AuditEntry>[] = [];
    // Three waves: one turn, then two more while earlier batches are being written.
    for (let wave = 0; wave < 3; wave++) {
      for (let i = 0; i < 100; i++) calls.push(log.append(nth(calls.length + 1)));
      await new Promise((r) => setImmediate(r));
    }
    const entries = await Promise.all(calls);
    const ls = lines(file);
    expect(ls.map((l) => JSON.parse(l).origin)).toEqual(calls.map((_, i) => `https://site-${i + 1}.example`));
    expect(entries.map((e) => e.seq)).toEqual(calls.map((_, i) => i + 1));
    expect(entries.map((e) => JSON.stringify(e))).toEqual(ls);
    expect(verifyAuditLog(file)).toEqual({ ok: true, lines: 300 });
  });

  it('flushes N concurrent appends with fewer than N fsyncs and answers none before its fsync completed', async () => {
    const file = path.join(dir, 'audit.jsonl');
    const calls: Promise<AuditEntry>[] = [];
    const early: number[] = []; // lines answered before an fsync covering them completed
    let durable = 0; // lines in the file when the last completed fsync started
    let syncs = 0;
    const batches: number[] = [];
    const append = (): void => {
      const call = log.append(nth(calls.length + 1));
      calls.push(call);
      void call.then((e) => (e.seq > durable ? early.push(e.seq) : undefined));
    };
    const log: AuditLog = new AuditLog(file, {
      io: {
        write: async (handle, data) => {
          batches.push(data.toString().split('\n').length - 1);
          // Appended while the first batch is being written: they must form the next batch.
          if (batches.length === 1) for (let i = 0; i < 25; i++) append();
          await handle.write(data);
        },
        sync: async (handle) => {
          syncs++;
          const inFile = lines(file).length;
          await handle.sync();
          durable = inFile;
        },
      },
    });
    for (let i = 0; i < 25; i++) append();
    await calls[0];
    const entries = await Promise.all(calls);
    expect(entries).toHaveLength(50);
    expect(batches).toEqual([25, 25]);
    expect(syncs).toBe(2);
    expect(syncs).toBeLessThan(entries.length);
    expect(early).toEqual([]);
    expect(verifyAuditLog(file)).toEqual({ ok: true, lines: 50 });
  });

  it.each<[string, Partial<AuditIo>]>([
    [
      'write, cut short',
      {
        write: async (handle, data) => {
          await handle.write(data.subarray(0, Math.floor(data.length / 2)));
          throw new Error('ENOSPC (injected)');
        },
      },
    ],
    [
      'fsync',
      {
        sync: async (handle) => {
          await handle.sync();
          throw new Error('EIO (injected)');
        },
      },
    ],
  ])(
    'rejects every caller of a batch whose %s failed, leaves none of its lines, and the next batch works',
    async (_what, failing) => {
      const file = path.join(dir, 'audit.jsonl');
      let fail = false;
      const next: Promise<AuditEntry>[] = [];
      const log: AuditLog = new AuditLog(file, {
        io: {
          write: async (handle, data) => {
            if (fail) {
              // The next batch gathers while this one fails.
              for (let i = 0; i < 3; i++) next.push(log.append(nth(100 + i)));
              if (failing.write) {
                fail = false;
                return failing.write(handle, data);
              }
            }
            await handle.write(data);
          },
          sync: async (handle) => {
            if (fail && failing.sync) {
              fail = false;
              return failing.sync(handle);
            }
            return handle.sync();
          },
        },
      });
      await Promise.all([log.append(nth(1)), log.append(nth(2))]);
      const good = fs.readFileSync(file, 'utf8');
      fail = true;
      const failed = await Promise.allSettled([1, 2, 3, 4, 5].map((i) => log.append(nth(10 + i))));
      expect(fail).toBe(false);
      for (const r of failed) {
        expect(r.status).toBe('rejected');
        expect(isKelidError(r.status === 'rejected' ? r.reason : undefined, 'ERR_INTERNAL')).toBe(true);
      }
      expect(fs.readFileSync(file, 'utf8')).toBe(good);
      const after = await Promise.all(next);
      expect(after.map((e) => e.seq)).toEqual([3, 4, 5]);
      expect((await log.append(nth(200))).seq).toBe(6);
      expect(lines(file).map((l) => JSON.parse(l).origin)).toEqual(
        [1, 2, 100, 101, 102, 200].map((i) => `https://site-${i}.example`),
      );
      expect(verifyAuditLog(file)).toEqual({ ok: true, lines: 6 });
    },
  );

  it('repairs a batch cut short by a crash: its whole lines stay, its torn line is moved aside', async () => {
    const whole = path.join(dir, 'whole.jsonl');
    const writer = new AuditLog(whole);
    await writer.append(nth(1));
    const before = fs.statSync(whole).size;
    await Promise.all([2, 3, 4, 5].map((i) => writer.append(nth(i))));
    const bytes = fs.readFileSync(whole);
    // Cut the batch (lines 2-5) in the middle of line 4, as a crash during its one write may leave it.
    const line4 = bytes.indexOf('\n', bytes.indexOf('\n', before) + 1) + 1;
    const file = path.join(dir, 'audit.jsonl');
    fs.writeFileSync(file, bytes.subarray(0, line4 + 40));
    const log = new AuditLog(file);
    expect(fs.readFileSync(`${file}.torn-4`)).toEqual(bytes.subarray(line4, line4 + 40));
    expect(lines(file).map((l) => JSON.parse(l).method)).toEqual([
      'sign.cms',
      'sign.cms',
      'pin.change',
      'audit.repair',
    ]);
    expect((await log.append(nth(6))).seq).toBe(5);
    expect(verifyAuditLog(file)).toEqual({
      ok: true,
      lines: 5,
      repairs: [{ line: 4, tornFile: `${file}.torn-4` }],
    });
  });
});

describe('verifyAuditLog', () => {
  let chainDir: string;
  let chain: string[];

  beforeAll(async () => {
    chainDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-audit-chain-'));
    const file = path.join(chainDir, 'audit.jsonl');
    const log = new AuditLog(file);
    await Promise.all(Array.from({ length: 1000 }, (_, i) => log.append(record(i + 1))));
    chain = lines(file);
  });
  afterAll(() => {
    fs.rmSync(chainDir, { recursive: true, force: true });
  });

  function verifyLines(ls: string[]): ReturnType<typeof verifyAuditLog> {
    const file = path.join(dir, 'audit.jsonl');
    writeLines(file, ls);
    return verifyAuditLog(file);
  }

  it('accepts an intact chain of 1000 entries', () => {
    expect(verifyLines(chain)).toEqual({ ok: true, lines: 1000 });
  });

  it('accepts an empty file', () => {
    expect(verifyLines([])).toEqual({ ok: true, lines: 0 });
  });

  it('reports line 501 when one character of line 500 changes and it stays a valid entry', () => {
    const edited = [...chain];
    edited[499] = edited[499].replace('.example', '.exbmple');
    expect(edited[499]).not.toBe(chain[499]);
    const result = verifyLines(edited);
    expect(result).toMatchObject({ ok: false, line: 501 });
    expect(!result.ok && result.reason).toContain('line 500 was modified');
  });

  it('reports line 500 itself when the edit breaks its JSON', () => {
    const edited = [...chain];
    edited[499] = edited[499].replace('{"seq"', '{seq');
    expect(verifyLines(edited)).toEqual({ ok: false, line: 500, reason: 'not valid JSON' });
  });

  it('reports line 500 when its own prev was changed', () => {
    const edited = [...chain];
    const entry = JSON.parse(edited[499]);
    edited[499] = edited[499].replace(
      entry.prev,
      entry.prev.replace(/^./, (c: string) => (c === 'a' ? 'b' : 'a')),
    );
    expect(verifyLines(edited)).toMatchObject({ ok: false, line: 500 });
  });

  it('reports the position of a removed line', () => {
    const edited = chain.filter((_, i) => i !== 499);
    const result = verifyLines(edited);
    expect(result).toMatchObject({ ok: false, line: 500 });
    expect(!result.ok && result.reason).toContain('line 499');
  });

  it('reports two swapped lines at the first of them', () => {
    const edited = [...chain];
    [edited[499], edited[500]] = [edited[500], edited[499]];
    expect(verifyLines(edited)).toMatchObject({ ok: false, line: 500 });
  });

  it('reports a forged line inserted with a correct prev at the line after it', () => {
    const forged = {
      ...JSON.parse(chain[499]),
      seq: 501,
      method: 'tokens.init',
      prev: createHash('sha256').update(chain[499]).digest('hex'),
    };
    const edited = [...chain.slice(0, 500), JSON.stringify(forged), ...chain.slice(500)];
    // The forgery links to line 500 correctly, so it is the next original line that breaks.
    expect(verifyLines(edited)).toMatchObject({ ok: false, line: 502 });
  });

  it('reports line 1 when leading lines were removed', () => {
    const result = verifyLines(chain.slice(3));
    expect(result).toMatchObject({ ok: false, line: 1 });
    expect(!result.ok && result.reason).toContain('lines before it were removed');
  });

  it('reports a wrong seq on a line whose prev is correct', () => {
    const file = path.join(dir, 'audit.jsonl');
    const first = JSON.stringify({ ...JSON.parse(chain[0]), seq: 2 });
    writeLines(file, [first]);
    expect(verifyAuditLog(file)).toEqual({ ok: false, line: 1, reason: 'seq is 2, expected 1' });
  });

  it('reports a last line cut in the middle', () => {
    const file = path.join(dir, 'audit.jsonl');
    fs.writeFileSync(file, `${chain.join('\n')}\n`.slice(0, -30));
    expect(verifyAuditLog(file)).toMatchObject({ ok: false, line: 1000, reason: 'not valid JSON' });
  });

  it('reports a last line that lost only its newline', () => {
    const file = path.join(dir, 'audit.jsonl');
    fs.writeFileSync(file, chain.join('\n'));
    expect(verifyAuditLog(file)).toEqual({
      ok: false,
      line: 1000,
      reason: 'last line has no newline: the file was cut short',
    });
  });

  it('reports a blank line', () => {
    expect(verifyLines([...chain.slice(0, 10), '', ...chain.slice(10)])).toEqual({
      ok: false,
      line: 11,
      reason: 'not valid JSON',
    });
  });

  it('reports invalid UTF-8', () => {
    const file = path.join(dir, 'audit.jsonl');
    fs.writeFileSync(
      file,
      Buffer.concat([Buffer.from(`${chain[0]}\n`), Buffer.from([0xff, 0x7b, 0x7d, 0x0a])]),
    );
    expect(verifyAuditLog(file)).toEqual({ ok: false, line: 2, reason: 'not valid UTF-8' });
  });

  it('reports a line carrying a field outside the closed list', () => {
    const edited = [...chain];
    edited[0] = `${edited[0].slice(0, -1)},"pin":"1234"}`;
    expect(verifyLines(edited.slice(0, 1))).toEqual({ ok: false, line: 1, reason: 'unknown field(s): pin' });
  });

  it('reports a line longer than any entry', () => {
    expect(verifyLines([chain[0], 'x'.repeat(200_000)])).toEqual({
      ok: false,
      line: 2,
      reason: 'line is too long to be an entry',
    });
  });

  it('misses an edit of the last line, which the running agent exposes with its next append', async () => {
    const file = path.join(dir, 'audit.jsonl');
    const log = new AuditLog(file);
    for (let i = 1; i <= 3; i++) await log.append(record(i));
    const ls = lines(file);
    ls[2] = ls[2].replace('ERR_USER_CANCELLED', 'ERR_CONSENT_TIMEOUT');
    expect(ls[2]).not.toBe(lines(file)[2]);
    writeLines(file, ls);
    expect(verifyAuditLog(file)).toEqual({ ok: true, lines: 3 });
    await log.append(record(4));
    expect(verifyAuditLog(file)).toMatchObject({ ok: false, line: 4 });
  });

  it('throws when the file does not exist', () => {
    expect(() => verifyAuditLog(path.join(dir, 'missing.jsonl'))).toThrow(/ENOENT/);
  });
});

describe('hashDigests', () => {
  it('is the SHA-256 of the digests concatenated in order', () => {
    const a = createHash('sha256').update('a').digest();
    const b = createHash('sha384').update('b').digest();
    expect(hashDigests([a, b])).toBe(
      createHash('sha256')
        .update(Buffer.concat([a, b]))
        .digest('hex'),
    );
    expect(hashDigests([a])).toBe(createHash('sha256').update(a).digest('hex'));
  });
});
