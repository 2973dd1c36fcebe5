import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess, RpcError } from '../../helpers/agent-process.js';
import type { RpcClient } from '../../helpers/agent-process.js';
import { recordingLauncher } from '../../helpers/browser.js';
import { until } from '../../helpers/wait.js';

// Issue 13, section 4: prompt floods from unknown origins. 200 sites of the `unknown` tier (200
// subdomains, one connection each) ask for access at once. At most 3 may wait for the user, the rest
// are refused at once with ERR_RATE_LIMITED (no prompt, no page, no audit line); the launcher opens
// one consent page at a time; requests withdrawn before the user saw them leave no audit line.

const FLOOD = 200;
const origin = (i: number): string => `https://s${i}.flood.example`;

type Outcome = { kind: 'pending'; requestId: string } | { kind: 'refused'; code: string | undefined };

describe('Consent flood from unknown origins', () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-e2e-consent-flood-'));
  const urlFile = path.join(work, 'urls.txt');
  let agent: AgentProcess;

  const launched = (): string[] =>
    fs.existsSync(urlFile) ? fs.readFileSync(urlFile, 'utf8').split('\n').filter(Boolean) : [];
  const auditLines = (): Array<Record<string, unknown>> => {
    const file = path.join(agent.stateDir, 'audit.jsonl');
    if (!fs.existsSync(file)) return [];
    return fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  };

  function openPage(launchSecret: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port: agent.port,
          path: '/consent/api/session',
          method: 'POST',
          ca: agent.info.caCertificatePem,
          agent: false,
          headers: { Authorization: `Bearer ${launchSecret}` },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  beforeAll(async () => {
    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-consent-flood-',
      config: {
        // Room for 200 unknown connections (the unknown tier gets half of `connections`), and a
        // global pending bound above 200: the limit under test is the unknown tier's pending budget.
        limits: { connections: 1000, connectionsPerOrigin: 8 },
        consent: { timeoutSeconds: 120, launcher: recordingLauncher(urlFile) },
      },
    });
  });

  afterAll(async () => {
    await agent?.stop();
    agent?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('200 subdomains asking at once: at most 3 pending, one page opened, no audit line for unseen withdrawals', async () => {
    const pages: RpcClient[] = [];
    for (let i = 0; i < FLOOD; i += 50) {
      pages.push(...(await Promise.all(Array.from({ length: 50 }, (_, j) => agent.connect(origin(i + j))))));
    }
    const calls = pages.map((p) => {
      const id = p.nextId;
      const call = p.call('agent.requestAccess', { reason: 'flood' });
      return {
        call,
        outcome: Promise.race<Outcome>([
          p.consentFor(id).then((requestId) => ({ kind: 'pending' as const, requestId })),
          call.then(
            () => ({ kind: 'refused' as const, code: 'approved?' }),
            (e: unknown) => ({
              kind: 'refused' as const,
              code: e instanceof RpcError ? e.data?.code : String(e),
            }),
          ),
        ]),
      };
    });
    const outcomes = await Promise.all(calls.map((c) => c.outcome));
    const pending = outcomes.flatMap((o, i) => (o.kind === 'pending' ? [i] : []));
    const refused = outcomes.filter((o) => o.kind === 'refused');

    expect(pending.length).toBeGreaterThan(0);
    expect(pending.length).toBeLessThanOrEqual(3);
    expect(refused.length).toBe(FLOOD - pending.length);
    expect(new Set(refused.map((o) => (o.kind === 'refused' ? o.code : '')))).toEqual(
      new Set(['ERR_RATE_LIMITED']),
    );
    // One consent page at a time: the launcher has run once (give it time to write what it got).
    await until(launched, (u) => u.length >= 1, 'the first consent page');
    await new Promise((r) => setTimeout(r, 500));
    expect(launched()).toHaveLength(1);
    expect(auditLines()).toEqual([]);

    // The user sees the first one (its page trades the launch secret); the others stay queued unseen.
    const shownSecret = new URL(launched()[0]).hash.slice(1);
    expect(await openPage(shownSecret)).toBe(200);

    // The queued ones are withdrawn (request.cancel) before anyone saw them: no audit line, no page.
    const shown = pending[0];
    for (const i of pending.slice(1)) {
      const cancelled = await pages[i].call('request.cancel', { id: 1 });
      expect(cancelled).toEqual({ cancelled: true });
      await expect(calls[i].call).rejects.toMatchObject({ data: { code: 'ERR_USER_CANCELLED' } });
    }
    // The shown one is withdrawn by its page going away: audited, the user saw it.
    await pages[shown].close();
    await until(auditLines, (l) => l.length >= 1, 'the audit line of the shown request');
    await Promise.all(pages.map((p) => p.close()));
    expect(await agent.pendingConsents()).toEqual([]);
    expect(auditLines()).toEqual([
      expect.objectContaining({
        origin: origin(shown),
        method: 'agent.requestAccess',
        errorCode: 'ERR_USER_CANCELLED',
      }),
    ]);
    expect(launched()).toHaveLength(1);

    // The budget is back: a new site may ask (and its page is opened, now that nothing else is shown).
    const late = await agent.connect('https://late.example');
    const id = late.nextId;
    const call = late.call('agent.requestAccess', {});
    await late.consentFor(id);
    await until(launched, (u) => u.length === 2, 'the next consent page');
    await late.call('request.cancel', { id });
    await expect(call).rejects.toMatchObject({ data: { code: 'ERR_USER_CANCELLED' } });
    await late.close();
  });
  it('requests withdrawn once their page has loaded (seen, never decided) do not make a stream of pages either', async () => {
    // The hostile page waits for each consent page to load (here: trades its launch secret, as the
    // page does on load) before withdrawing the request, then asks again from the next subdomain.
    const before = launched().length;
    let opened = 0;
    for (let i = 0; i < 14; i++) {
      const p = await agent.connect(`https://l${i}.loaded.example`);
      const id = p.nextId;
      const call = p.call('agent.requestAccess', {});
      const outcome = await Promise.race([
        p.consentFor(id).then(() => 'pending'),
        call.then(
          () => 'approved?',
          () => 'refused',
        ),
      ]);
      expect(outcome).toBe('pending');
      const urls = await until(launched, (u) => u.length > before + opened, 'a page', 1000).catch(() => null);
      if (urls !== null) {
        expect(await openPage(new URL(urls[before + opened]).hash.slice(1))).toBe(200);
        opened += 1;
      }
      await p.call('request.cancel', { id });
      await call.catch(() => undefined);
      await p.close();
    }
    expect(opened).toBeGreaterThan(0);
    expect(opened).toBeLessThanOrEqual(10);
  });

  it('requests withdrawn as soon as they are pending do not make a stream of pages', async () => {
    const before = launched().length;
    const pages = await Promise.all(
      Array.from({ length: 50 }, (_, i) => agent.connect(`https://w${i}.withdraw.example`)),
    );
    let prompted = 0;
    for (let round = 0; round < 4; round++) {
      await Promise.all(
        pages.map(async (p) => {
          const id = p.nextId;
          const call = p.call('agent.requestAccess', {});
          const outcome = await Promise.race([
            p.consentFor(id).then(() => 'pending'),
            call.then(
              () => 'approved?',
              () => 'refused',
            ),
          ]);
          if (outcome !== 'pending') return;
          prompted += 1;
          await p.call('request.cancel', { id });
          await call.catch(() => undefined);
        }),
      );
    }
    expect(prompted).toBeGreaterThan(3);
    // Give the launcher time to write what it was given.
    await new Promise((r) => setTimeout(r, 500));
    // Pages for requests withdrawn unseen: at most 10 a minute (one was already wasted above).
    expect(launched().length - before).toBeLessThanOrEqual(10);
    expect(auditLines().filter((l) => String(l.origin).endsWith('.withdraw.example'))).toEqual([]);
    await Promise.all(pages.map((p) => p.close()));
  });
});
