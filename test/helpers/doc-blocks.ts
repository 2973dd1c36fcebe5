import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

// Fenced code blocks of README.md and docs/*.md, and the `test:` markers of shell blocks (issue 17,
// section 2). test/unit/docs/code-blocks.test.ts requires every sh block to carry a valid marker or
// `no-test: <reason>`; test/e2e/docs/shell-blocks.test.ts runs the marked ones.
//
// Marker syntax, in the info string after `sh`:  test: [session=<name>] [needs=<a>,<b>] [given=<fixture>] [exit=<n>]
// - session=<name>  blocks of one file with the same session run in document order, in one sandbox
//                   (same working directory, HOME, state directory, token, agent); after a failing
//                   block the rest of its session is not run. Without it a block is a session alone.
// - needs=          tty      run under a pseudo-terminal; the test answers the PIN prompts with the
//                            sandbox's demo PINs (SO-PIN prompts get the SO-PIN, other PIN prompts the user PIN)
//                   agent    a running agent on the sandbox's state directory ($KELID_STATE_DIR)
//                   new-user a HOME and XDG directories of the block's own, no KELID_STATE_DIR, no agent:
//                            a user who has not run Kelid yet (what the block starts is stopped after it)
//                   consent  every distinct `<…requestId>` placeholder in the block is replaced by the
//                            id of a request pending consent (an RA page's keys.generate on the demo
//                            token, user PIN 1234); implies agent
// - given=issued:<name>  before the block, the test CA issues `<name>.pem` from `<name>.csr` and writes
//                   its chain to `ca-chain.pem` (what a CA does between two days of an RA walkthrough)
//   given=site:<host>  before the block, the user has approved https://<host> (its page called
//                   agent.requestAccess and the consent was approved); implies agent
// - exit=<n>        the exit status the block must end with (default 0)
// Every block runs with `bash -euo pipefail` in the sandbox, `kelid` on PATH being the built bin/kelid.js.

export const REPO = resolve(import.meta.dirname, '../..');

export interface Block {
  file: string;
  line: number;
  lang: string;
  info: string;
  code: string;
}

export type Need = 'tty' | 'agent' | 'consent' | 'new-user';

export interface ShellMarker {
  session?: string;
  needs: Need[];
  given?: { issued: string } | { site: string };
  exit: number;
}

export function blocksOf(file: string): Block[] {
  const lines = readFileSync(join(REPO, file), 'utf8').split('\n');
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

/** README.md and every docs/*.md. */
export function docFiles(): string[] {
  return [
    'README.md',
    ...readdirSync(join(REPO, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .sort()
      .map((f) => `docs/${f}`),
  ];
}

export const untested = (b: Block): boolean => /^no-test:\s*\S/.test(b.info);

const NEEDS = new Set<string>(['tty', 'agent', 'consent', 'new-user']);

/** The `test:` marker of a block, or undefined when it has none; throws on a malformed one. */
export function shellMarker(b: Block): ShellMarker | undefined {
  const m = /^test:(.*)$/.exec(b.info);
  if (!m) return undefined;
  const marker: ShellMarker = { needs: [], exit: 0 };
  for (const word of m[1]!.trim().split(/\s+/).filter(Boolean)) {
    const [key, value] = word.split(/=(.*)/s) as [string, string | undefined];
    if (!value) throw new Error(`${b.file}:${b.line}: marker word without a value: ${word}`);
    if (key === 'session' && /^[\w-]+$/.test(value)) marker.session = value;
    else if (key === 'exit' && /^\d+$/.test(value)) marker.exit = Number(value);
    else if (key === 'given' && /^issued:[\w-]+$/.test(value)) marker.given = { issued: value.slice(7) };
    else if (key === 'given' && /^site:[\w.-]+$/.test(value)) marker.given = { site: value.slice(5) };
    else if (key === 'needs') {
      for (const n of value.split(',')) {
        if (!NEEDS.has(n)) throw new Error(`${b.file}:${b.line}: unknown need ${n}`);
        marker.needs.push(n as Need);
      }
    } else throw new Error(`${b.file}:${b.line}: unknown or malformed marker word ${word}`);
  }
  const agent = marker.needs.includes('consent') || (marker.given !== undefined && 'site' in marker.given);
  if (agent && !marker.needs.includes('agent')) marker.needs.push('agent');
  return marker;
}

// Marker syntax of js/ts blocks, in the info string after `js`/`ts`:  test: check=<name> [given=access] [run=node]
// (test/e2e/browser/doc-sdk-blocks.test.ts runs them.)
// - check=<name>   the outcome the block must have, named in that test's CHECKS table (a signature
//                  openssl verifies, a non-empty certificate list, an expected error code…); the page's
//                  origin is the one the check names, or else https://<name>.docs.example (new to the agent)
// - given=access   the page's origin was approved before the block (agent.requestAccess, approved);
//                  such blocks share one origin, https://site.docs.example, unless the check names one
// - run=node       a server-side block: run with Node, `kelid` being the built package (dist/index.js);
//                  the names it leaves to the reader's server come from its check
// Browser blocks run as a module of a page in Chromium against the demo stack; what the test changes
// and provides (`file`, `show`, `sendToCa`) is described at the top of that test.

export interface JsMarker {
  check: string;
  given?: 'access';
  run: 'browser' | 'node';
}

/** The `test:` marker of a js/ts block, or undefined when it has none; throws on a malformed one. */
export function jsMarker(b: Block): JsMarker | undefined {
  const m = /^test:(.*)$/.exec(b.info);
  if (!m) return undefined;
  let check: string | undefined;
  const marker: Omit<JsMarker, 'check'> = { run: 'browser' };
  for (const word of m[1]!.trim().split(/\s+/).filter(Boolean)) {
    const [key, value] = word.split(/=(.*)/s) as [string, string | undefined];
    if (key === 'check' && value && /^[a-z][\w-]*$/.test(value)) check = value;
    else if (key === 'given' && value === 'access') marker.given = 'access';
    else if (key === 'run' && (value === 'node' || value === 'browser')) marker.run = value;
    else throw new Error(`${b.file}:${b.line}: unknown or malformed marker word ${word}`);
  }
  if (!check) throw new Error(`${b.file}:${b.line}: a js/ts block's marker needs check=<name>`);
  return { check, ...marker };
}
