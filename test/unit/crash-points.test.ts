import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

// The test-only crash points: inert without KELID_TEST_HOOKS=1, and with it a SIGKILL exactly at the
// planned write, recorded once in the marker file.

const MODULE = fileURLToPath(new URL('../../src/testing/crash-points.ts', import.meta.url));
const WRITES = `
import { afterWrite, beforeWrite } from ${JSON.stringify(MODULE)};
for (const method of ['findObjects', 'createObject', 'setAttributes', 'destroyObject']) {
  const n = beforeWrite('host', method);
  process.stdout.write(method + ':' + n + '\\n');
  afterWrite('host', method, n);
}
`;

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-crash-points-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function run(env: Record<string, string>) {
  const base = { ...process.env };
  delete base.KELID_TEST_HOOKS;
  delete base.KELID_TEST_CRASH;
  return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', WRITES], {
    env: { ...base, ...env },
    encoding: 'utf8',
  });
}

describe('crash points', () => {
  it('do nothing without KELID_TEST_HOOKS=1, whatever KELID_TEST_CRASH says', () => {
    const marker = path.join(dir, 'fired');
    const r = run({ KELID_TEST_CRASH: JSON.stringify({ process: 'host', at: 'before', write: 1, marker }) });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('findObjects:0\ncreateObject:1\nsetAttributes:2\ndestroyObject:3\n');
    expect(fs.existsSync(marker)).toBe(false);
  });

  it.each([
    ['before', 'createObject:1\n'],
    ['after', 'createObject:1\nsetAttributes:2\n'],
  ])('SIGKILL the process %s its 2nd token write and record it once', (at, printed) => {
    const marker = path.join(dir, 'fired');
    const env = {
      KELID_TEST_HOOKS: '1',
      KELID_TEST_CRASH: JSON.stringify({ process: 'host', at, write: 2, marker }),
    };
    const r = run(env);
    expect(r.signal).toBe('SIGKILL');
    expect(r.stdout).toBe(`findObjects:0\n${printed}`);
    expect(JSON.parse(fs.readFileSync(marker, 'utf8'))).toMatchObject({ process: 'host', at, write: 2 });
    // A restarted process with the same environment (a module host after its crash) runs through.
    expect(run(env).status).toBe(0);
  });
});
