import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const repo = resolve(import.meta.dirname, '../../..');

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function exec(file: string, args: string[], cwd: string): Promise<RunResult> {
  try {
    const { stdout, stderr } = await run(file, args, { cwd, timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

type PackageJson = Record<string, Record<string, string>>;

describe('package-lock.json', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kelid-lock-'));
    await cp(join(repo, 'package.json'), join(dir, 'package.json'));
    await cp(join(repo, 'package-lock.json'), join(dir, 'package-lock.json'));
    await cp(join(repo, 'scripts'), join(dir, 'scripts'), { recursive: true });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function editPackage(edit: (pkg: PackageJson) => void): Promise<void> {
    const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as PackageJson;
    edit(pkg);
    await writeFile(join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
  }

  it('is complete: npm ci accepts it offline with an empty cache (dry run)', async () => {
    // The lock once lacked the optional per-platform packages (@rollup/rollup-*) and npm ci refused it.
    const result = await exec(
      'npm',
      [
        'ci',
        '--dry-run',
        '--ignore-scripts',
        '--offline',
        '--cache',
        join(dir, 'cache'),
        '--no-audit',
        '--no-fund',
      ],
      dir,
    );
    expect(result.stderr).not.toMatch(/in sync/);
    expect(result.code).toBe(0);
  });

  it('matches package.json (scripts/check-lock.mjs)', async () => {
    const result = await exec('node', ['scripts/check-lock.mjs'], dir);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('check-lock refuses a dependency added to package.json only, even one npm ci would let through', async () => {
    const lock = JSON.parse(await readFile(join(dir, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { version: string }>;
    };
    // semver is in the lock as a transitive dependency, so the old tree still satisfies the new range.
    const semver = lock.packages['node_modules/semver']!.version;
    await editPackage((pkg) => {
      pkg['dependencies']!['semver'] = semver;
    });
    const result = await exec('node', ['scripts/check-lock.mjs'], dir);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/out of sync/);
    expect(result.stderr).toContain('dependencies.semver: in package.json, not in the lock');
  });

  it('check-lock refuses an edited range and a removed dependency', async () => {
    await editPackage((pkg) => {
      pkg['dependencies']!['ws'] = '^8.0.0';
      delete pkg['devDependencies']!['fast-check'];
    });
    const result = await exec('node', ['scripts/check-lock.mjs'], dir);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('dependencies.ws: package.json ^8.0.0, lock ^8.23.0');
    expect(result.stderr).toContain('devDependencies.fast-check: in the lock, not in package.json');
  });

  it('an out-of-sync lock fails scripts/setup.sh (so CI) before anything is installed', async () => {
    await editPackage((pkg) => {
      pkg['dependencies']!['left-pad'] = '^1.3.0';
    });
    const result = await exec('bash', ['scripts/setup.sh', '--no-browser', '--no-build'], dir);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('dependencies.left-pad: in package.json, not in the lock');
    await expect(stat(join(dir, 'node_modules'))).rejects.toThrow(/ENOENT/);
  });

  it('setup.sh installs with npm ci, not npm install', async () => {
    const setup = await readFile(join(repo, 'scripts/setup.sh'), 'utf8');
    const commands = setup.split('\n').filter((line) => /^\s*npm (ci|install)\b/.test(line));
    expect(commands).toEqual([expect.stringMatching(/^\s*npm ci /)]);
  });
});
