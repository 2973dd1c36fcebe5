import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../src/config.js';
import { REPO, blocksOf, docFiles, jsMarker, shellMarker, untested } from '../../helpers/doc-blocks.js';
import type { Block } from '../../helpers/doc-blocks.js';

// Code in README.md and docs/ that cannot rot (issue 17, section 2). Every fenced js, ts, sh and json
// block is either checked or marked with an info string `<lang> no-test: <reason>`:
// - sh blocks carry a `test:` marker (syntax in test/helpers/doc-blocks.ts) and are run in a sandbox
//   against SoftHSM and a real agent by test/e2e/docs/shell-blocks.test.ts;
// - js/ts blocks carry a `test: check=<name>` marker and are run, browser blocks in Chromium against
//   the demo stack, `run=node` blocks in Node against the built package, each with an outcome check
//   (test/e2e/browser/doc-sdk-blocks.test.ts); README's SDK example runs in e2e/browser/readme-sdk.test.ts.
//   Browser blocks are also type-checked here against the browser SDK (src/client), the imports of
//   /sdk/kelid.js and `kelid/client` mapped to it: a wrong call shape (e.g. listCertificates without `filter`) fails;
// - json blocks parse, and those that look like an agent config pass the config schema.

const run = promisify(execFile);
const repo = REPO;
const LANGS = new Set(['js', 'ts', 'sh', 'json']);

const blocks = docFiles()
  .flatMap(blocksOf)
  .filter((b) => LANGS.has(b.lang));

describe('code blocks in README.md and docs/', () => {
  const work = mkdtempSync(join(tmpdir(), 'kelid-doc-blocks-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('are checked, or marked `no-test: <reason>`', () => {
    const isRun = (b: Block): boolean =>
      b.lang === 'sh' ? shellMarker(b) !== undefined : b.lang !== 'json' && jsMarker(b) !== undefined;
    // README's SDK example is the one js block run by its own test (readme-sdk.test.ts), unmarked.
    const readmeSdk = (b: Block): boolean => b.file === 'README.md' && b.lang === 'js' && b.info === '';
    const unmarked = blocks.filter(
      (b) => !untested(b) && !isRun(b) && !readmeSdk(b) && (b.lang !== 'json' || b.info !== ''),
    );
    expect(unmarked.map((b) => `${b.file}:${b.line} ${b.lang} ${b.info}`)).toEqual([]);
    expect(blocks.length).toBeGreaterThan(5);
    // The README's walkthrough and the consent commands are run, not merely marked; so are the SDK guide's examples.
    expect(blocks.filter((b) => b.lang === 'sh' && isRun(b)).length).toBeGreaterThanOrEqual(4);
    expect(blocks.filter((b) => b.lang !== 'sh' && isRun(b)).length).toBeGreaterThanOrEqual(15);
    // Shell code is fenced as `sh`, so that no block escapes the rule under another name.
    const otherShells = docFiles()
      .flatMap(blocksOf)
      .filter((b) => ['bash', 'shell', 'console', 'zsh', 'shell-session'].includes(b.lang));
    expect(otherShells.map((b) => `${b.file}:${b.line} ${b.lang}`)).toEqual([]);
  });

  it('have well-formed `test:` markers on sh, js and ts blocks, and no marker elsewhere', () => {
    for (const b of blocks.filter((x) => /^test:/.test(x.info))) {
      expect(['sh', 'js', 'ts'], `${b.file}:${b.line}`).toContain(b.lang);
      if (b.lang === 'sh') expect(() => shellMarker(b), `${b.file}:${b.line}`).not.toThrow();
      else expect(() => jsMarker(b), `${b.file}:${b.line}`).not.toThrow();
    }
    expect(() =>
      jsMarker({ file: 'x.md', line: 1, lang: 'ts', info: 'test: given=access', code: '' }),
    ).toThrow(/needs check=<name>/);
    expect(() =>
      jsMarker({ file: 'x.md', line: 1, lang: 'ts', info: 'test: check=a run=deno', code: '' }),
    ).toThrow(/unknown or malformed/);
    expect(() =>
      shellMarker({ file: 'x.md', line: 1, lang: 'sh', info: 'test: needs=root', code: '' }),
    ).toThrow(/unknown need root/);
    expect(() =>
      shellMarker({ file: 'x.md', line: 1, lang: 'sh', info: 'test: sesion=a', code: '' }),
    ).toThrow(/unknown or malformed/);
  });

  // Browser blocks only: a `run=node` block is server code over names of the reader's server.
  const sdkBlocks = blocks.filter(
    (b) => (b.lang === 'js' || b.lang === 'ts') && !untested(b) && jsMarker(b)?.run !== 'node',
  );
  // tsc reports files relative to its cwd (`work`): `<name>(line,col): error …`.
  const nameOf = (b: Block): string => `${b.file.replace(/\W/g, '-')}-${b.line}.ts`;
  const fileOf = (b: Block): string => join(work, nameOf(b));
  // One tsc program for every block (each block is its own module): one compiler start, not one per
  // block. Each test then reads the diagnostics of its own file.
  let diagnostics: Promise<string> | undefined;
  const typeCheck = (): Promise<string> => {
    diagnostics ??= (async () => {
      // Names an example leaves to the reader's page.
      const prelude = 'declare const file: File;\n';
      for (const b of sdkBlocks) writeFileSync(fileOf(b), `${prelude}${b.code}\nexport {};\n`);
      writeFileSync(
        join(work, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            noEmit: true,
            target: 'es2022',
            module: 'esnext',
            moduleResolution: 'bundler',
            lib: ['es2022', 'dom'],
            types: [],
            skipLibCheck: true,
            paths: {
              'https://127.0.0.1:17443/sdk/kelid.js': [join(repo, 'src/client/index.ts')],
              // docs/sdk.md imports the SDK as an npm user does (test/e2e/browser/sdk-package.test.ts
              // checks that the packed package resolves this name the same way).
              'kelid/client': [join(repo, 'src/client/index.ts')],
            },
          },
          files: sdkBlocks.map(fileOf),
        }),
      );
      return run(
        join(repo, 'node_modules/.bin/tsc'),
        ['-p', join(work, 'tsconfig.json'), '--pretty', 'false'],
        { cwd: work, timeout: 120_000 },
      ).then(
        () => '',
        (e: { stdout?: string }) => e.stdout ?? 'tsc failed',
      );
    })();
    return diagnostics;
  };
  it.each(sdkBlocks.map((b) => [`${b.file}:${b.line}`, b] as const))(
    'SDK example %s type-checks against src/client',
    async (_name, block) => {
      const output = await typeCheck();
      const lines = output.split('\n');
      const mine = lines.filter((l) => l.startsWith(`${nameOf(block)}(`));
      expect(mine).toEqual([]);
      // Errors outside any block's file (the SDK itself, the config) fail every block.
      const others = lines.filter(
        (l) => l !== '' && !l.startsWith(' ') && !sdkBlocks.some((b) => l.startsWith(`${nameOf(b)}(`)),
      );
      expect(others).toEqual([]);
    },
    120_000,
  );

  const jsonBlocks = blocks.filter((b) => b.lang === 'json' && !untested(b));
  it.each(jsonBlocks.map((b) => [`${b.file}:${b.line}`, b] as const))(
    'JSON example %s parses',
    (_name, block) => {
      const value = JSON.parse(block.code) as Record<string, unknown>;
      if ('raOrigins' in value || 'modules' in value) expect(() => resolveConfig(value)).not.toThrow();
    },
  );
});
