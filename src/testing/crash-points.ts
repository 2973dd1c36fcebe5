import * as fs from 'node:fs';
import type { TestHooks } from '../model/test-hooks.js';

// Test-only crash points for the crash-consistency runs (test/reliability/crash.test.ts). Loaded only
// by the process entries (kelid serve, the module host) when KELID_TEST_HOOKS=1, which hand them to
// the production modules as hooks (model/test-hooks.ts); still inert unless KELID_TEST_CRASH holds a
// plan.
// A plan SIGKILLs the agent or the module host at a deterministic point: before or after its Nth
// token write (C_InitToken, C_InitPIN, C_SetPIN, C_GenerateKeyPair, C_SetAttributeValue,
// C_CreateObject, C_DestroyObject), during the Nth key generation, or halfway through writing an
// audit line. The marker file is created when the point fires ('wx': a restarted module host with
// the same environment finds it and does not fire again) and records what fired.

/** Host methods that write to the token, one PKCS#11 write call each. */
export const WRITE_METHODS: ReadonlySet<string> = new Set([
  'initToken',
  'initPin',
  'setPin',
  'generateKeyPair',
  'setAttributes',
  'createObject',
  'destroyObject',
]);

export type CrashProcess = 'agent' | 'host';

export type CrashPlan =
  | {
      process: CrashProcess;
      /**
       * Kill before the Nth write is made (host) or sent (agent), after it returned, or `delayMs`
       * after it started when it is a key generation (`during`).
       */
      at: 'before' | 'after' | 'during';
      write: number;
      /** For `during`: how long after the call started. */
      delayMs?: number;
      marker: string;
    }
  | { process: 'agent'; at: 'audit-torn'; method: string; marker: string }
  /** Calibration: append each write method's name to the marker file, kill nothing. */
  | { process: CrashProcess; at: 'count'; marker: string };

function readPlan(): CrashPlan | undefined {
  if (process.env.KELID_TEST_HOOKS !== '1') return undefined;
  const raw = process.env.KELID_TEST_CRASH;
  if (raw === undefined || raw === '') return undefined;
  return JSON.parse(raw) as CrashPlan;
}

const plan = readPlan();
let writes = 0;

/** The plan for this process, if it is armed. */
function planFor(proc: CrashProcess): CrashPlan | undefined {
  return plan !== undefined && plan.process === proc ? plan : undefined;
}

/** Record the firing and die at once, as a power cut or `kill -9` would: no cleanup, no exit handlers. */
function fire(marker: string, what: Record<string, unknown>): void {
  try {
    fs.writeFileSync(marker, `${JSON.stringify({ pid: process.pid, ...what })}\n`, { flag: 'wx' });
  } catch {
    return; // already fired once (a restarted host with the same environment)
  }
  process.kill(process.pid, 'SIGKILL');
}

/**
 * Around one token write of `proc`: call `beforeWrite` just before it, and `afterWrite` once it
 * returned. Returns the write's number in this process (0 when not a write).
 */
export function beforeWrite(proc: CrashProcess, method: string): number {
  const p = planFor(proc);
  if (!WRITE_METHODS.has(method)) return 0;
  writes++;
  if (p === undefined) return writes;
  if (p.at === 'count') {
    fs.appendFileSync(p.marker, `${method}\n`);
  } else if (p.at === 'before' && p.write === writes) {
    fire(p.marker, { process: proc, at: 'before', write: writes, method });
  } else if (p.at === 'during' && p.write === writes && method === 'generateKeyPair') {
    const marker = p.marker;
    const n = writes;
    setTimeout(() => fire(marker, { process: proc, at: 'during', write: n, method }), p.delayMs ?? 0);
  }
  return writes;
}

export function afterWrite(proc: CrashProcess, method: string, n: number): void {
  const p = planFor(proc);
  if (p === undefined || n === 0) return;
  if (p.at === 'after' && p.write === n) fire(p.marker, { process: proc, at: 'after', write: n, method });
}

/**
 * For an audit line about to be appended: when the plan tears this method's line, write its first
 * half (as a crash or power cut in the middle of the write would leave it) and die.
 */
export function tearAuditLine(fd: number, method: string, line: string): void {
  const p = planFor('agent');
  if (p === undefined || p.at !== 'audit-torn' || p.method !== method) return;
  if (fs.existsSync(p.marker)) return;
  fs.writeSync(fd, line.slice(0, Math.floor(line.length / 2)));
  fs.fsyncSync(fd);
  fire(p.marker, { process: 'agent', at: 'audit-torn', method });
}

/** Block this process's event loop for `ms`: a module stuck in a synchronous call. */
function hang(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // busy-wait on purpose
  }
}

/** The hooks of one process (`agent` or `host`), for the entry point to inject. */
export function createTestHooks(proc: CrashProcess): TestHooks {
  return {
    beforeWrite: (method) => beforeWrite(proc, method),
    afterWrite: (method, n) => afterWrite(proc, method, n),
    tearAuditLine,
    hang,
  };
}
