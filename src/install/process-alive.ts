import * as fs from 'node:fs';

/**
 * Whether `pid` runs. A process of another user (EPERM) runs; a zombie, exited but not yet reaped by
 * its parent, does not (Linux: read from /proc).
 */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  if (process.platform !== 'linux') return true;
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
