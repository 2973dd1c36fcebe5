import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { backends } from '../helpers/token-backend.js';

// Issue 18, "no silent SoftHSM-only passes": a test file that builds its token with `new SoftHsm(`
// instead of test/helpers/token-backend.ts's backends() runs on SoftHSM only, so it says why in a
// `// softhsm-only: <reason>` line. A new SoftHSM-only file without one fails here.

const ROOT = join(import.meta.dirname, '..');
const MARKER = /^\/\/ softhsm-only: (.{20,})$/m;
// The backend helper wraps SoftHsm for every backend-parameterized suite.
const EXEMPT = new Set(['helpers/token-backend.ts', 'unit/test-backends.test.ts']);

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? e.name === 'node_modules' || e.name === 'fixtures'
        ? []
        : tsFiles(join(dir, e.name))
      : e.name.endsWith('.ts')
        ? [join(dir, e.name)]
        : [],
  );
}

/** The files that construct SoftHsm directly and carry no reason. */
function unmarked(files: Array<{ path: string; text: string }>): string[] {
  return files.filter((f) => /\bnew SoftHsm\(/.test(f.text) && !MARKER.test(f.text)).map((f) => f.path);
}

describe('SoftHSM-only test files', () => {
  const files = tsFiles(ROOT)
    .map((p) => ({ path: relative(ROOT, p), text: readFileSync(p, 'utf8') }))
    .filter((f) => !EXEMPT.has(f.path));

  it('each file that constructs SoftHsm directly carries a `// softhsm-only: <reason>` line', () => {
    expect(files.filter((f) => /\bnew SoftHsm\(/.test(f.text)).length).toBeGreaterThan(10);
    expect(unmarked(files)).toEqual([]);
  });

  it('finds a file without the line, and one whose reason is too short to say anything', () => {
    const body = "const hsm = new SoftHsm('x-');\n";
    expect(
      unmarked([
        { path: 'bare.test.ts', text: body },
        { path: 'short.test.ts', text: `// softhsm-only: later\n${body}` },
        { path: 'ok.test.ts', text: `// softhsm-only: the faulty shim forwards to SoftHSM only\n${body}` },
        { path: 'ported.test.ts', text: "const b = await backend.start('x-');\n" },
      ]),
    ).toEqual(['bare.test.ts', 'short.test.ts']);
  });
});

describe('backends()', () => {
  const saved = { path: process.env.PATH, wanted: process.env.KELID_TEST_BACKEND };
  afterEach(() => {
    process.env.PATH = saved.path;
    if (saved.wanted === undefined) delete process.env.KELID_TEST_BACKEND;
    else process.env.KELID_TEST_BACKEND = saved.wanted;
  });

  it('names why tpm2-pkcs11 is skipped when its stack is missing, and keeps SoftHSM', () => {
    delete process.env.KELID_TEST_BACKEND;
    process.env.PATH = '/nonexistent';
    const [softhsm, tpm2] = backends();
    expect(softhsm).toMatchObject({ name: 'softhsm', skip: undefined });
    expect(tpm2!.name).toBe('tpm2');
    expect(tpm2!.skip).toMatch(/^tpm2-pkcs11 on swtpm: missing .*swtpm/);
  });

  it('narrows a run with KELID_TEST_BACKEND, saying so in the skip reason', () => {
    process.env.KELID_TEST_BACKEND = 'tpm2';
    expect(backends().find((b) => b.name === 'softhsm')!.skip).toBe('KELID_TEST_BACKEND=tpm2');
    process.env.KELID_TEST_BACKEND = 'softhsm';
    expect(backends().find((b) => b.name === 'tpm2')!.skip).toBe('KELID_TEST_BACKEND=softhsm');
  });
});
