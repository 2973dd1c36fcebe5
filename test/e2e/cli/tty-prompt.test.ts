// softhsm-only: tests PIN prompts on a pty; the module does not matter
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SoftHsm } from '../../helpers/softhsm.js';

const BIN = join(process.cwd(), 'bin', 'kelid.js');

describe('kelid PIN prompts on a terminal', () => {
  const hsm = new SoftHsm('kelid-tty-');
  const work = mkdtempSync(join(tmpdir(), 'kelid-tty-work-'));
  const config = join(work, 'kelid.json');
  writeFileSync(
    config,
    JSON.stringify({
      autoDetectModules: false,
      modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
    }),
  );
  hsm.initToken('tty', 'SoPin3344', '7391');

  afterAll(() => {
    hsm.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  it('asks without echo on a pseudo-terminal (util-linux script), keeps type-ahead for the next prompt, and changes the PIN', () => {
    // All keystrokes arrive at once: the old PIN, the new one and its confirmation.
    const r = spawnSync(
      'script',
      ['-qec', `node ${BIN} pin change --token tty --config ${config}`, '/dev/null'],
      {
        input: '7391\r5820\r5820\r',
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(r.stdout).toContain('Current user PIN:');
    expect(r.stdout).toContain('New user PIN (again):');
    expect(r.stdout).toContain('user PIN changed.');
    // The pty's own line discipline echoes keys typed before the first prompt switched it to raw
    // mode (what a person typing ahead would also see); from the first prompt on nothing is echoed.
    const afterPrompt = r.stdout.slice(r.stdout.indexOf('Current user PIN:'));
    expect(afterPrompt).not.toContain('7391');
    expect(afterPrompt).not.toContain('5820');
    // someone else's code logs in with the new PIN
    expect(hsm.tool(['--token-label', 'tty', '--login', '--pin', '5820', '--list-objects'])).not.toMatch(
      /error/i,
    );
  });
});
