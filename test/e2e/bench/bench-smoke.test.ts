import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO, assertBuilt } from '../../helpers/agent-process.js';

// The bench with tiny counts, so it keeps working between full runs (`npm run bench`). Its numbers
// mean nothing and are not checked; what is checked is that every case ran against its baseline
// (each case also verifies its own signatures and digests, and throws when one is wrong).

interface BenchRow {
  section: string;
  measure: string;
  baseline: number;
  kelid: number;
  target?: { text: string; met: boolean };
}

describe('npm run bench -- --smoke', () => {
  const out = mkdtempSync(join(tmpdir(), 'kelid-bench-smoke-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('runs every case against its raw pkcs11js baseline and writes the results', () => {
    assertBuilt();
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--smoke', '--out', out], {
      cwd: REPO,
      encoding: 'utf8',
      timeout: 300_000,
    });
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const json = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')) as {
      meta: { profile: string };
      rows: BenchRow[];
    };
    expect(json.meta.profile).toBe('smoke');
    const sections = new Set(json.rows.map((x) => x.section.split(':')[0]));
    expect([...sections].sort()).toEqual(
      [
        'Event-loop freedom',
        'Large files in Chromium',
        'Latency of one signature (ms)',
        'Memory',
        'Provisioning',
        'Signature throughput (signatures per second)',
        'Start-up',
      ].sort(),
    );
    for (const row of json.rows) {
      // (memory growth may be negative: the collector ran)
      expect(Number.isFinite(row.baseline), row.measure).toBe(true);
      expect(Number.isFinite(row.kelid), row.measure).toBe(true);
      if (!row.section.startsWith('Memory'))
        expect(row.baseline > 0 && row.kelid > 0, row.measure).toBe(true);
    }
    const targets = json.rows.filter((x) => x.target).map((x) => x.target!.text);
    expect(targets).toEqual(
      expect.arrayContaining([
        '≥ 90% of raw',
        '≥ 50% of raw',
        'p99 ≤ 20 ms',
        'overhead ≤ 10%',
        '≤ 10 MB per 100,000',
        'p50 overhead ≤ 2 ms',
        'p99 overhead ≤ 8 ms',
        'start-up to /health ≤ 500 ms',
        'RSS at ready ≤ 100 MiB',
      ]),
    );
    const md = readFileSync(join(out, 'latest.md'), 'utf8');
    expect(md).toContain('| measure | baseline |');
    // The targets table: one line per target row, each met or missed.
    const targetLines = md.split('\n').filter((l) => /\| (met|\*\*missed\*\*) \|$/.test(l));
    expect(targetLines).toHaveLength(targets.length);
  }, 320_000);
});
