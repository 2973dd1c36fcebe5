import { execFile } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

// scripts/setup.sh decides which system packages to install (issue 17, section 8): the demo needs no
// Chromium and no test tools; on Ubuntu, where apt's chromium is only a snap, it is never apt-installed.
// Run on a copy with dpkg-query, apt-get and id replaced on PATH, so nothing is really installed.

const run = promisify(execFile);
const repo = resolve(import.meta.dirname, '../../..');

describe('scripts/setup.sh', () => {
  let dir: string;
  let aptLog: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kelid-setup-'));
    for (const f of ['package.json', 'package-lock.json']) await cp(join(repo, f), join(dir, f));
    await cp(join(repo, 'scripts'), join(dir, 'scripts'), { recursive: true });
    // The npm side is up to date (the stamp is newer than the lock): only apt-get is in question.
    await mkdir(join(dir, 'node_modules'));
    await writeFile(join(dir, 'node_modules/.kelid-installed'), '');
    const bin = join(dir, 'fake-bin');
    await mkdir(bin);
    aptLog = join(dir, 'apt.log');
    const scripts: Record<string, string> = {
      // Every package is installed except those in $FAKE_MISSING.
      'dpkg-query': `#!/bin/sh\nfor p in $FAKE_MISSING; do [ "$p" = "$3" ] && exit 1; done\necho "install ok installed"\n`,
      'apt-get': `#!/bin/sh\necho "$*" >> "${aptLog}"\n`,
      id: '#!/bin/sh\necho 0\n',
    };
    for (const [name, text] of Object.entries(scripts)) {
      await writeFile(join(bin, name), text);
      await chmod(join(bin, name), 0o755);
    }
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function setup(args: string[], env: Record<string, string> = {}) {
    const { stderr } = await run('bash', ['scripts/setup.sh', '--no-build', ...args], {
      cwd: dir,
      env: {
        ...process.env,
        PATH: `${join(dir, 'fake-bin')}:${process.env.PATH}`,
        FAKE_MISSING: 'chromium tinyproxy',
        ...env,
      },
    });
    const apt = await readFile(aptLog, 'utf8').catch(() => '');
    return { stderr, installs: apt.split('\n').filter((l) => l.startsWith('install')) };
  }

  it('--demo (npm start) installs neither Chromium nor the test tools', async () => {
    expect((await setup(['--demo'])).installs).toEqual([]);
    const demo = await readFile(join(repo, 'scripts/demo.sh'), 'utf8');
    expect(demo).toMatch(/^\s*scripts\/setup\.sh --demo$/m);
  });

  it('installs Chromium and tinyproxy for the tests on Debian', async () => {
    await writeFile(join(dir, 'os-release'), 'NAME="Debian GNU/Linux"\nID=debian\n');
    const { installs } = await setup([], { KELID_OS_RELEASE: join(dir, 'os-release') });
    expect(installs).toHaveLength(1);
    expect(installs[0]!.split(/\s+/)).toEqual(expect.arrayContaining(['chromium', 'tinyproxy']));
  });

  it('never apt-installs the snap-only chromium on Ubuntu, and says what to do instead', async () => {
    await writeFile(join(dir, 'os-release'), 'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="24.04"\n');
    const { installs, stderr } = await setup([], {
      KELID_OS_RELEASE: join(dir, 'os-release'),
      KELID_CHROMIUM: join(dir, 'no-chromium-here'),
    });
    expect(installs).toHaveLength(1);
    expect(installs[0]!.split(/\s+/)).toContain('tinyproxy');
    expect(installs[0]!.split(/\s+/)).not.toContain('chromium');
    expect(stderr).toContain('KELID_CHROMIUM');
  });
});
