import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../../src/config.js';

// Code in README.md and docs/ that cannot rot (issue 17, section 2). Every fenced js, ts, sh and json
// block is either checked here or marked with an info string `<lang> no-test: <reason>`:
// - js/ts SDK blocks are type-checked against the browser SDK (src/client), the imports of
//   /sdk/kelid.js and `kelid/client` mapped to it: a wrong call shape (e.g. listCertificates without `filter`) fails;
//   README's SDK example is also run in Chromium against the demo stack (e2e/browser/readme-sdk.test.ts);
// - json blocks parse, and those that look like an agent config pass the config schema.

const run = promisify(execFile);
const repo = resolve(import.meta.dirname, '../../..');
const LANGS = new Set(['js', 'ts', 'sh', 'json']);

interface Block {
  file: string;
  line: number;
  lang: string;
  info: string;
  code: string;
}

function blocksOf(file: string): Block[] {
  const lines = readFileSync(join(repo, file), 'utf8').split('\n');
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !lines[i]!.startsWith('```'); i++) body.push(lines[i]!);
    out.push({ file, line: start + 1, lang: open[1]!, info: open[2]!.trim(), code: body.join('\n') });
  }
  return out;
}

const files = [
  'README.md',
  ...readdirSync(join(repo, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const blocks = files.flatMap(blocksOf).filter((b) => LANGS.has(b.lang));
const untested = (b: Block): boolean => /^no-test:\s*\S/.test(b.info);

describe('code blocks in README.md and docs/', () => {
  const work = mkdtempSync(join(tmpdir(), 'kelid-doc-blocks-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('are checked here, or marked `no-test: <reason>`', () => {
    const unmarked = blocks.filter((b) => !untested(b) && (b.lang === 'sh' || b.info !== ''));
    expect(unmarked.map((b) => `${b.file}:${b.line} ${b.lang} ${b.info}`)).toEqual([]);
    expect(blocks.length).toBeGreaterThan(5);
  });

  const sdkBlocks = blocks.filter((b) => (b.lang === 'js' || b.lang === 'ts') && !untested(b));
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
