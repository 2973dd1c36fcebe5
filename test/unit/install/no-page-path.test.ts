import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

// A hostile page must not reach install or trust: nothing a page can call (protocol methods, the
// transport, the consent backend) imports the installer or the trust-store code. The agent itself
// re-trusts only a CA it generated, in stores `kelid install` (run by the user) recorded.

const SRC = path.resolve(__dirname, '../../../src');

function files(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? files(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

describe('install is not reachable from a page', () => {
  it('no protocol, transport, consent or client module imports src/install', () => {
    const offenders = ['protocol', 'transport', 'consent', 'client', 'ui']
      .flatMap((d) => files(path.join(SRC, d)))
      .filter((f) => /from '[./]*(install\/|\.\.\/install)/.test(fs.readFileSync(f, 'utf8')));
    expect(offenders).toEqual([]);
  });

  it('no protocol method is named after install, trust or the CA', () => {
    const names = fs
      .readdirSync(path.join(SRC, 'protocol', 'methods'))
      .filter((n) => /install|trust|(^|-)ca(-|\.)/.test(n));
    expect(names).toEqual([]);
  });
});
