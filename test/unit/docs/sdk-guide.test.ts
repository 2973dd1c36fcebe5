import { readFileSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KelidClient } from '../../../src/client/kelid-client.js';
import type { KelidClientEvent } from '../../../src/client/kelid-client.js';
import { KelidError as SdkError } from '../../../src/client/kelid-error.js';
import { USER_MESSAGES } from '../../../src/client/user-messages.js';
import { KelidError as AgentError } from '../../../src/model/errors.js';
import type { ErrorCode } from '../../../src/model/errors.js';

// docs/sdk.md is the web developer's reference (issue 17, section 6): it must name every public method
// of KelidClient, every event and every error code, and say what a page should do about each code.
// Its code blocks are type-checked by code-blocks.test.ts.

const repo = resolve(import.meta.dirname, '../../..');
const guide = readFileSync(resolve(repo, 'docs/sdk.md'), 'utf8');
/** The SDK's own codes (the SdkErrorCode union, in whichever file of src/client declares it). */
const sdkCodes = readdirSync(resolve(repo, 'src/client'))
  .filter((f) => f.endsWith('.ts'))
  .map((f) => /type SdkErrorCode =([^;]*);/.exec(readFileSync(resolve(repo, 'src/client', f), 'utf8')))
  .flatMap((m) => (m ? [...m[1]!.matchAll(/'([A-Z_]+)'/g)].map((x) => x[1]!) : []));

/** The table rows of docs/sdk.md whose first cell is `` `code` ``, by code. */
function tableRows(): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of guide.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    const m = /^`(ERR_[A-Z_]+)`$/.exec(cells[1] ?? '');
    if (m) rows.set(m[1]!, cells.slice(2, -1));
  }
  return rows;
}

describe('docs/sdk.md', () => {
  it('names every public method and getter of KelidClient', () => {
    const members = Object.getOwnPropertyNames(KelidClient.prototype).filter((n) => n !== 'constructor');
    // TypeScript's `private` members are on the prototype too: tell them apart by the source.
    const source = readFileSync(resolve(repo, 'src/client/kelid-client.ts'), 'utf8');
    const isPrivate = (n: string): boolean => new RegExp(`\\n  private (?:async )?${n}\\b`).test(source);
    const publicMembers = [...members.filter((n) => !isPrivate(n)), 'connect'];
    expect(publicMembers.length).toBeGreaterThan(25);
    expect(publicMembers.filter((n) => !guide.includes(`\`${n}`) && !guide.includes(`.${n}(`))).toEqual([]);
  });

  it('documents every event with its payload', () => {
    const events: KelidClientEvent[] = ['tokensChanged', 'consentPending', 'disconnected', 'reconnected'];
    const rows = guide.split('\n').filter((l) => /^\| `[a-zA-Z]+` \| `\{/.test(l));
    expect(rows.map((l) => /^\| `([a-zA-Z]+)`/.exec(l)![1]).sort()).toEqual([...events].sort());
  });

  it('has a row for every error code, with whether it is retriable and what the page should do', () => {
    const rows = tableRows();
    const codes = Object.keys(USER_MESSAGES);
    expect(sdkCodes.length).toBeGreaterThan(10);
    expect(codes.filter((c) => !rows.has(c))).toEqual([]);
    for (const [code, cells] of rows) {
      expect(codes, `${code} is not a code the SDK knows`).toContain(code);
      expect(cells[2]!.length, `${code}: what should the page do?`).toBeGreaterThan(3);
      // `retriable` as the agent sends it for its codes, as the SDK sets it for its own.
      const retriable = sdkCodes.includes(code)
        ? new SdkError(code, 'x').retriable
        : new AgentError(code as ErrorCode, 'x').retriable;
      expect(cells[0], `${code} retriable`).toBe(retriable ? 'yes' : 'no');
    }
  });
});
