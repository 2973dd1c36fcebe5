import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KelidError, errorFromRpc } from '../../../src/client/kelid-error.js';
import { USER_MESSAGES } from '../../../src/client/user-messages.js';

const repo = resolve(import.meta.dirname, '../../..');

/** The string literals of a `type Name = | 'A' | 'B';` union in a source file. */
function unionMembers(file: string, name: string): string[] {
  const text = readFileSync(resolve(repo, file), 'utf8');
  const m = new RegExp(`type ${name} =([^;]*);`).exec(text);
  if (!m) throw new Error(`${name} not found in ${file}`);
  return [...m[1]!.matchAll(/'([A-Z_]+)'/g)].map((x) => x[1]!);
}

const PERSIAN = /[\u0600-\u06FF]/;
const codes = [
  ...unionMembers('src/model/types.ts', 'ErrorCode'),
  ...unionMembers('src/client/error-codes.ts', 'SdkErrorCode'),
];

describe('KelidError#userMessage', () => {
  it('knows every error code of the agent and the SDK', () => {
    expect(codes.length).toBeGreaterThan(30);
    expect(Object.keys(USER_MESSAGES).sort()).toEqual([...codes].sort());
  });

  it.each(codes)('%s has a Persian and an English text', (code) => {
    const e = new KelidError(code, 'developer text');
    const fa = e.userMessage('fa');
    const en = e.userMessage('en');
    expect(fa).toMatch(PERSIAN);
    expect(fa).not.toMatch(/ERR_|[a-z]{4,}/); // no codes or English words (only acronyms like PIN, RA)
    expect(en).not.toMatch(PERSIAN);
    expect(en.length).toBeGreaterThan(10);
    expect(e.userMessage()).toBe(fa);
  });

  it('warns on the last try before a PIN lock, from the agent’s error data', () => {
    const e = errorFromRpc({
      code: -32000,
      message: 'wrong PIN',
      data: {
        code: 'ERR_PIN_INCORRECT',
        pin: { countLow: true, finalTry: true, locked: false, toBeChanged: false },
      },
    });
    expect(e.userMessage('en')).toContain('one try left');
    expect(e.userMessage('fa')).toContain('یک بار دیگر');
    expect(new KelidError('ERR_PIN_INCORRECT', 'x').userMessage('en')).not.toContain('one try left');
  });

  it('gives a general text for a code a newer agent sends', () => {
    const e = new KelidError('ERR_SOMETHING_NEW', 'x');
    expect(e.userMessage('en')).toMatch(/failed/);
    expect(e.userMessage('fa')).toMatch(PERSIAN);
  });
});
