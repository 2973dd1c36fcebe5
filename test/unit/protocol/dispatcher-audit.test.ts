import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../../src/audit/audit-log.js';
import type { ConnectionContext } from '../../../src/protocol/context.js';
import { Dispatcher } from '../../../src/protocol/dispatcher.js';
import { defineMethod } from '../../../src/protocol/method.js';
import type { OriginIds } from '../../../src/protocol/origin-ids.js';
import type { ProtocolEnv } from '../../../src/protocol/context.js';

// The reply to an audited call goes out only once its audit line is on disk (issue 16, group commit).

const OP = defineMethod<Record<string, never>>({
  name: 'test.op',
  tiers: ['console'],
  schema: { type: 'object', additionalProperties: false, properties: {} },
  run: async () => ({ done: true }),
});

function connection(): ConnectionContext {
  return {
    id: 'c1',
    origin: 'https://ra.example',
    tier: 'console',
    calls: new Map(),
    closed: new AbortController().signal,
    notify: () => undefined,
  };
}

// A console call touches neither the environment nor the per-origin ids.
function dispatcher(log: AuditLog, logs: string[] = []): Dispatcher {
  return new Dispatcher({
    env: {} as ProtocolEnv,
    methods: [OP],
    ids: {} as OriginIds,
    audit: (record) => log.append(record),
    logger: pino({ level: 'error' }, { write: (s: string) => void logs.push(s) }),
  });
}

const REQUEST = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'test.op' });

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-dispatch-audit-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('Dispatcher', () => {
  describe('#handle', () => {
    it('answers an audited call only after the fsync of its audit line completed', async () => {
      const file = path.join(dir, 'audit.jsonl');
      let entered!: () => void;
      const syncEntered = new Promise<void>((r) => (entered = r));
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      const log = new AuditLog(file, {
        io: {
          sync: async (handle) => {
            entered();
            await released;
            await handle.sync();
          },
        },
      });
      let reply: string | undefined;
      const answered = dispatcher(log)
        .handle(connection(), REQUEST)
        .then((r) => (reply = r));
      await syncEntered;
      // The line is written, its fsync has not returned: no reply yet.
      expect(fs.readFileSync(file, 'utf8')).toContain('"method":"test.op"');
      expect(reply).toBeUndefined();
      release();
      await answered;
      expect(JSON.parse(reply!)).toEqual({ jsonrpc: '2.0', id: 1, result: { done: true } });
    });

    it('still answers when the audit line cannot be written, and logs it (as before group commit)', async () => {
      const file = path.join(dir, 'audit.jsonl');
      const log = new AuditLog(file, {
        io: {
          sync: () => Promise.reject(new Error('EIO (injected)')),
        },
      });
      const logs: string[] = [];
      const reply = await dispatcher(log, logs).handle(connection(), REQUEST);
      expect(JSON.parse(reply)).toEqual({ jsonrpc: '2.0', id: 1, result: { done: true } });
      expect(logs.join('')).toContain('cannot write the audit log');
      expect(fs.readFileSync(file, 'utf8')).toBe('');
    });
  });
});
