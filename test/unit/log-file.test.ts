import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RotatingFile, tailLog } from '../../src/log-file.js';
import { createLogger } from '../../src/log.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-log-'));
  dirs.push(d);
  return d;
}

describe('RotatingFile', () => {
  it('rotates by size and keeps at most `files` private files', () => {
    const file = path.join(tmp(), 'logs', 'kelid.log');
    const log = new RotatingFile(file, { maxBytes: 100, files: 3 });
    for (let i = 0; i < 40; i++) log.write(`line ${String(i).padStart(3, '0')} ${'x'.repeat(20)}\n`);
    log.close();
    const names = fs.readdirSync(path.dirname(file)).sort();
    expect(names).toEqual(['kelid.log', 'kelid.log.1', 'kelid.log.2']);
    for (const n of names) {
      const st = fs.statSync(path.join(path.dirname(file), n));
      expect(st.size).toBeLessThanOrEqual(100);
      expect(st.mode & 0o777).toBe(0o600);
    }
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    const tail = tailLog(file, 5, 3);
    expect(tail).toHaveLength(5);
    expect(tail[4]).toMatch(/^line 039 /);
    expect(tail[0]).toMatch(/^line 035 /);
  });

  it('is where createLogger writes, PINs censored', () => {
    const file = path.join(tmp(), 'kelid.log');
    const logger = createLogger({ rotatingFile: file, level: 'info' });
    logger.info({ pin: '123456', origin: 'https://a.example' }, 'hello');
    const text = fs.readFileSync(file, 'utf8');
    expect(text).toContain('"msg":"hello"');
    expect(text).not.toContain('123456');
  });
});
