import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../src/config.js';
import { redact, redactConfig, tarArchive } from '../../../src/install/bundle.js';
import { listeningPortOwners } from '../../../src/install/doctor.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('doctor bundle', () => {
  describe('#redact', () => {
    it('removes known secrets, URL fragments, bearer tokens, key blocks and PIN-named fields', () => {
      const text = [
        'secret-file-content-0123456789',
        'launch https://127.0.0.1:17443/consent/?lang=en#Abc123_-xyz987654321',
        'Authorization: Bearer abc.def-ghi',
        '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----',
        '{"userPin":"1234","newSoPin":"abcd","pin":5678,"secrets":{"a":"b"},"origin":"https://a.example"}',
      ].join('\n');
      const out = redact(text, ['secret-file-content-0123456789']);
      for (const s of [
        'secret-file-content',
        'Abc123_-xyz987654321',
        'abc.def-ghi',
        'MIGHAgEA',
        '1234',
        'abcd',
        '5678',
      ]) {
        expect(out).not.toContain(s);
      }
      expect(out).toContain('"origin":"https://a.example"');
      expect(out).toContain('/consent/?lang=en#[redacted]');
    });
  });

  it('replaces module environment values in the config', () => {
    const config = resolveConfig({
      modules: [{ id: 'vendor', path: '/usr/lib/v.so', env: { VENDOR_PIN: '0000' } }],
    });
    expect(JSON.stringify(redactConfig(config))).not.toContain('0000');
    expect(JSON.stringify(redactConfig(config))).toContain('VENDOR_PIN');
  });

  it('writes a tar archive that tar(1) reads back', () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-tar-'));
    dirs.push(d);
    const big = 'x'.repeat(1000) + '\n';
    fs.writeFileSync(
      path.join(d, 'a.tar.gz'),
      gzipSync(
        tarArchive([
          { name: 'r/a.txt', content: 'hello\n' },
          { name: 'r/b.txt', content: big },
        ]),
      ),
    );
    execFileSync('tar', ['-xzf', path.join(d, 'a.tar.gz'), '-C', d]);
    expect(fs.readFileSync(path.join(d, 'r', 'a.txt'), 'utf8')).toBe('hello\n');
    expect(fs.readFileSync(path.join(d, 'r', 'b.txt'), 'utf8')).toBe(big);
  });
});

describe('doctor', () => {
  it('reads listening ports and their owners from /proc/net/tcp', () => {
    const tcp = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0100007F:4423 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1',
      '   1: 0100007F:4424 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 2 1',
      '   2: 0100007F:4425 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1002        0 3 1',
    ].join('\n');
    const owners = listeningPortOwners((f) => (f === '/proc/net/tcp' ? tcp : null));
    expect([...owners]).toEqual([
      [17443, 1000],
      [17444, 1001],
    ]);
  });
});
