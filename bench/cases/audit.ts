// The audit log: lines per second and per-line latency (call to durable) of AuditLog.append at
// concurrency 1 and 32, on a real file with real fsyncs, against the way it wrote before issue 16:
// one open + write + fsync + close per line, synchronous, on the event loop. The files go under
// KELID_BENCH_AUDIT_DIR when set (default: the temporary directory; fsync on tmpfs costs nothing).
import { createHash } from 'node:crypto';
import { appendFileSync, closeSync, fsyncSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as AuditLogModule from '../../src/audit/audit-log.js';
import type { AuditRecord } from '../../src/audit/audit-log.js';
import { dist } from '../lib/fixture.js';
import type { Profile } from '../lib/profile.js';
import { row } from '../lib/report.js';
import type { Row } from '../lib/report.js';
import { median, nowMs, percentile } from '../lib/stats.js';

const SECTION = 'Audit log: one line per operation, real file and fsync';
const BASELINE = 'write + fsync per line on the event loop (before)';

/** A signature's line, the most common one. */
export const AUDIT_RECORD: AuditRecord = {
  origin: 'https://bank.example',
  method: 'sign.cms',
  tokenSerial: '0123456789abcdef',
  keyId: 'a1b2c3d4',
  certificateSha256: 'ab'.repeat(32),
  digestsSha256: 'cd'.repeat(32),
  result: 'ok',
};

/**
 * `concurrency` callers, each appending one line after another until `total` lines are written.
 * Latency is from a caller's call to its line being durable. Each call first yields to the event
 * loop, as a request arriving by socket would, so callers queued behind a synchronous fsync wait
 * for it as requests do.
 */
export async function measureAudit(
  append: (record: AuditRecord) => unknown,
  concurrency: number,
  total: number,
): Promise<{ linesPerSec: number; latencies: number[] }> {
  let issued = 0;
  const latencies: number[] = [];
  const t0 = nowMs();
  const caller = async (): Promise<void> => {
    while (issued < total) {
      issued++;
      const start = nowMs();
      await new Promise((r) => setImmediate(r));
      await append(AUDIT_RECORD);
      latencies.push(nowMs() - start);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, caller));
  return { linesPerSec: (total / (nowMs() - t0)) * 1000, latencies };
}

/** The I/O of the audit log before group commit: open, write, fsync, close for every line. */
function syncAppender(file: string): (record: AuditRecord) => void {
  let seq = 0;
  let prev = '0'.repeat(64);
  return (record) => {
    const line = JSON.stringify({ seq: ++seq, time: new Date().toISOString(), ...record, prev });
    const fd = openSync(file, 'a', 0o600);
    try {
      appendFileSync(fd, `${line}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    prev = createHash('sha256').update(line).digest('hex');
  };
}

export async function audit(p: Profile): Promise<Row[]> {
  const { AuditLog, verifyAuditLog } = await dist<typeof AuditLogModule>('audit/audit-log.js');
  const total = p.name === 'full' ? 2000 : 64;
  const dir = mkdtempSync(join(process.env.KELID_BENCH_AUDIT_DIR ?? tmpdir(), 'kelid-bench-audit-'));
  const rows: Row[] = [];
  try {
    for (const concurrency of [1, 32]) {
      const before = { rate: [] as number[], lat: [] as number[] };
      const after = { rate: [] as number[], lat: [] as number[] };
      for (let round = 0; round < p.rounds; round++) {
        const old = await measureAudit(
          syncAppender(join(dir, `old-${concurrency}-${round}.jsonl`)),
          concurrency,
          total,
        );
        before.rate.push(old.linesPerSec);
        before.lat.push(...old.latencies);
        const file = join(dir, `new-${concurrency}-${round}.jsonl`);
        const log = new AuditLog(file);
        const now = await measureAudit((r) => log.append(r), concurrency, total);
        const check = verifyAuditLog(file);
        if (!check.ok || check.lines !== total) throw new Error(`audit bench: ${JSON.stringify(check)}`);
        after.rate.push(now.linesPerSec);
        after.lat.push(...now.latencies);
      }
      const common = { section: SECTION, baselineLabel: BASELINE };
      rows.push(
        row({
          ...common,
          measure: `lines/s, ${concurrency} caller${concurrency === 1 ? '' : 's'}`,
          unit: 'lines/s',
          baseline: median(before.rate),
          kelid: median(after.rate),
          better: 'higher',
        }),
      );
      for (const q of [50, 99]) {
        rows.push(
          row({
            ...common,
            measure: `latency to durable p${q}, ${concurrency} caller${concurrency === 1 ? '' : 's'}`,
            unit: 'ms',
            baseline: percentile(before.lat, q),
            kelid: percentile(after.lat, q),
            better: 'lower',
          }),
        );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}
