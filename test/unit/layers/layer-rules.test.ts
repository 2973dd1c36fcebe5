import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The layer rules of .dependency-cruiser.cjs (run by `npm run lint`) catch what they promise: each
// violation below is planted in a throwaway tree shaped like src/, and must be reported by its rule.
// (The real src/ is checked by `npm run lint` itself.)

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../../..');
const DEPCRUISE = path.join(ROOT, 'node_modules', '.bin', 'depcruise');

interface Violation {
  rule: { name: string };
  from: string;
  to: string;
}

async function cruise(dir: string): Promise<Violation[]> {
  const result = await run(
    DEPCRUISE,
    ['src', '--config', path.join(ROOT, '.dependency-cruiser.cjs'), '--output-type', 'json'],
    { cwd: dir, maxBuffer: 16 * 1024 * 1024 },
  ).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
  return (JSON.parse(result.stdout) as { summary: { violations: Violation[] } }).summary.violations;
}

function write(dir: string, file: string, text: string): void {
  fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
  fs.writeFileSync(path.join(dir, file), text);
}

describe('layer rules', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-layers-'));
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    write(dir, 'tsconfig.json', fs.readFileSync(path.join(ROOT, 'tsconfig.json'), 'utf8'));
    // model/ reaching up into protocol/ (the cause of the old layering).
    write(
      dir,
      'src/model/types.ts',
      "import type { Method } from '../protocol/method.js';\nexport type M = Method;\n",
    );
    write(dir, 'src/protocol/method.ts', 'export interface Method { name: string }\n');
    // A cycle inside one folder.
    write(dir, 'src/status/a.ts', "import { b } from './b.js';\nexport const a = (): number => b() + 1;\n");
    write(
      dir,
      'src/status/b.ts',
      "import { a } from './a.js';\nexport const b = (): number => (a.length > 9 ? 0 : 1);\n",
    );
    // pkcs11js outside src/pkcs11/.
    write(dir, 'src/tokens/raw.ts', "import * as pkcs11js from 'pkcs11js';\nexport const raw = pkcs11js;\n");
    // The SDK importing agent code, and the model's types by value.
    write(dir, 'src/client/leak.ts', "import { b } from '../status/b.js';\nexport const leak = b;\n");
    write(dir, 'src/client/value.ts', "import * as t from '../model/types.js';\nexport const v = t;\n");
    // A production module importing the test hooks instead of taking them as an argument.
    write(dir, 'src/testing/hooks.ts', 'export const hang = (ms: number): number => ms;\n');
    write(dir, 'src/audit/log.ts', "import { hang } from '../testing/hooks.js';\nexport const h = hang;\n");
    // A new top-level module nobody gave a floor.
    write(dir, 'src/stray.ts', "import { b } from './status/b.js';\nexport const s = b;\n");
    // Allowed: downward, and a type-only import of the wire types by the SDK.
    write(dir, 'src/tokens/ok.ts', "import type { M } from '../model/types.js';\nexport type T = M;\n");
    write(dir, 'src/client/ok.ts', "import type { M } from '../model/types.js';\nexport type C = M;\n");
    write(dir, 'src/cli/ok.ts', "import { hang } from '../testing/hooks.js';\nexport const e = hang;\n");
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reports every planted violation under its rule, and nothing that is allowed', async () => {
    const found = (await cruise(dir)).map(
      (v) => `${v.rule.name} ${v.from} -> ${v.to.replace(/^.*(node_modules\/)/, '$1')}`,
    );
    expect(found).toEqual(
      expect.arrayContaining([
        'floor-0-imports-up src/model/types.ts -> src/protocol/method.ts',
        'no-cycles src/status/a.ts -> src/status/b.ts',
        'only-pkcs11-binds src/tokens/raw.ts -> node_modules/pkcs11js/index.js',
        'client-stands-alone src/client/leak.ts -> src/status/b.ts',
        'client-takes-only-wire-types src/client/value.ts -> src/model/types.ts',
        'every-module-has-a-floor src/stray.ts -> src/status/b.ts',
        'test-hooks-only-from-entries src/audit/log.ts -> src/testing/hooks.ts',
      ]),
    );
    expect(found.filter((f) => f.includes('/ok.ts'))).toEqual([]);
  }, 60_000);
});
