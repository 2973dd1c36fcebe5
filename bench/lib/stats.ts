import { readFileSync } from 'node:fs';
import { childPids, rssKb, slope } from '../../test/helpers/process-stats.js';

// Small statistics helpers for the bench: medians of rounds, percentiles of per-call latencies.

export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

/** Nearest-rank percentile (p in 0..100) of a non-empty sample. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) throw new Error('percentile of an empty sample');
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))];
}

/** Milliseconds since an arbitrary origin, with sub-millisecond resolution. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Wall time of `fn` in milliseconds. */
export async function timed(fn: () => unknown): Promise<number> {
  const t0 = nowMs();
  await fn();
  return nowMs() - t0;
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function opsPerSec(count: number, ms: number): number {
  return Math.round((count / ms) * 1000);
}

/** Resident set size of a process in MiB. */
export function rssMiB(pid: number): number {
  return rssKb(pid) / 1024;
}

/** Peak resident set size of a process in MiB (/proc/<pid>/status VmHWM, the kernel's high-water mark). */
export function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmHWM for pid ${pid}`);
  return Number(m[1]) / 1024;
}

export { childPids, slope };
