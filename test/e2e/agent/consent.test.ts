// softhsm-only: consent life cycle with several wrong or cancelled steps; the module does not matter (not ported yet)
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess, rpcError } from '../../helpers/agent-process.js';
import { SoftHsm } from '../../helpers/softhsm.js';
import { sendControlRequest } from '../../../src/consent/control-channel.js';

// Consent life cycle (PROTOCOL.md section 5) against the real agent: timeout, denial and the
// cooldown, request.cancel, a page that goes away, one pending consent per connection, the
// prompt rate limit, and the consent page's HTTP API (opened through a launcher command that records
// the URL it is given, as a browser would receive it).

const RA = 'https://ra.example';
const SO_PIN = 'Xy8SoPin3';
const USER_PIN = '9081726354';
const NEW_PIN = '4657382910';

interface ApiResponse {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
}

describe('ConsentBroker', () => {
  const hsm = new SoftHsm('kelid-e2e-consent-hsm-');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-e2e-consent-'));
  const urlFile = path.join(work, 'urls.txt');
  let agent: AgentProcess;
  let tokenId: string;

  function api(
    method: 'GET' | 'POST',
    route: string,
    secret: string | null,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<ApiResponse> {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port: agent.port,
          path: `/consent/api/${route}`,
          method,
          ca: agent.info.caCertificatePem,
          agent: false,
          headers: {
            ...(secret ? { Authorization: `Bearer ${secret}` } : {}),
            ...(payload !== undefined ? { 'Content-Type': 'application/json' } : {}),
            ...headers,
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
              headers: res.headers,
            }),
          );
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** The consent page URLs the launcher was given so far. */
  function launchedUrls(): URL[] {
    if (!fs.existsSync(urlFile)) return [];
    return fs
      .readFileSync(urlFile, 'utf8')
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((u) => new URL(u));
  }

  async function waitFor<T>(
    get: () => T | undefined | Promise<T | undefined>,
    timeoutMs = 10_000,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await get();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  beforeAll(async () => {
    hsm.initToken('consent-token', SO_PIN, USER_PIN);
    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-consent-',
      config: {
        modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
        raOrigins: [RA],
        consent: {
          // Long enough for the CLI processes these tests spawn on a loaded machine; the timeout
          // itself is tested on an agent of its own.
          timeoutSeconds: 60,
          language: 'en',
          launcher: `sh -c 'printf "%s\\n" "$1" >> ${urlFile}' launcher {url}`,
        },
      },
    });
    const ra = await agent.connect(RA);
    const { tokens } = await ra.call<{ tokens: Array<{ tokenId: string; label: string }> }>('tokens.list');
    tokenId = tokens.find((t) => t.label === 'consent-token')!.tokenId;
    await ra.close();
  });

  afterAll(async () => {
    await agent?.stop();
    agent?.cleanup();
    hsm.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  describe('#request', () => {
    it('fails with ERR_CONSENT_TIMEOUT when nobody decides, and forgets the request', async () => {
      const quick = await AgentProcess.start({
        prefix: 'kelid-e2e-consent-timeout-',
        config: { consent: { timeoutSeconds: 2, launcher: 'none' } },
      });
      // The pending list is read over the control socket: a CLI process could take longer than 2 s to
      // start on a loaded machine.
      const pending = async (): Promise<string[]> =>
        ((await sendControlRequest(quick.stateDir, { op: 'list' })) as Array<{ requestId: string }>).map(
          (r) => r.requestId,
        );
      try {
        const page = await quick.connect('https://slow.example');
        const id = page.nextId;
        const call = page.call('agent.requestAccess', {});
        const requestId = await page.consentFor(id);
        expect(await pending()).toContain(requestId);
        const e = await rpcError(call);
        expect(e.data).toMatchObject({ code: 'ERR_CONSENT_TIMEOUT', retriable: true });
        expect(await pending()).not.toContain(requestId);
        await page.close();
        const audit = fs.readFileSync(path.join(quick.stateDir, 'audit.jsonl'), 'utf8').trim().split('\n');
        expect(audit.map((l) => JSON.parse(l) as Record<string, unknown>)).toEqual([
          expect.objectContaining({
            origin: 'https://slow.example',
            method: 'agent.requestAccess',
            errorCode: 'ERR_CONSENT_TIMEOUT',
          }),
        ]);
      } finally {
        await quick.stop();
        quick.cleanup();
      }
    });

    it('fails with ERR_USER_CANCELLED on denial, then ERR_ORIGIN_DENIED without a prompt for that origin only', async () => {
      const page = await agent.connect('https://pushy.example');
      const id = page.nextId;
      const call = page.call('agent.requestAccess', { reason: 'please' });
      const denied = await agent.deny(await page.consentFor(id));
      expect(denied.status, denied.stderr).toBe(0);
      expect((await rpcError(call)).data?.code).toBe('ERR_USER_CANCELLED');

      // Another connection of the same origin is still cooling down, and nothing is shown to the user.
      const again = await agent.connect('https://pushy.example');
      const e = await rpcError(again.call('agent.requestAccess', {}));
      expect(e.data?.code).toBe('ERR_ORIGIN_DENIED');
      // A first denial costs a minute (issue 17; consent-limits.test.ts has the escalation).
      expect(e.data?.retryAfterMs).toBeGreaterThan(30 * 1000);
      expect(await agent.pendingConsents()).toEqual([]);
      expect(again.notifications.filter((n) => n.method === 'consent.pending')).toEqual([]);

      // Other origins are not affected.
      const other = await agent.connect('https://calm.example');
      const otherId = other.nextId;
      const otherCall = other.call('agent.requestAccess', {});
      await agent.deny(await other.consentFor(otherId));
      await rpcError(otherCall);
      await Promise.all([page.close(), again.close(), other.close()]);
    });

    it('withdraws the consent on request.cancel', async () => {
      const page = await agent.connect('https://cancel.example');
      const id = page.nextId;
      const call = page.call('agent.requestAccess', {});
      const requestId = await page.consentFor(id);
      expect(await page.call('request.cancel', { id: 12345 })).toEqual({ cancelled: false });
      expect(await page.call('request.cancel', { id })).toEqual({ cancelled: true });
      expect((await rpcError(call)).data?.code).toBe('ERR_USER_CANCELLED');
      expect((await agent.pendingConsents()).map((r) => r.requestId)).not.toContain(requestId);
      const late = await agent.consent(requestId, {});
      expect(late.status).toBe(1);
      await page.close();
    });

    it('withdraws the consent when the page disconnects', async () => {
      const page = await agent.connect('https://gone.example');
      const id = page.nextId;
      void page.call('agent.requestAccess', {}).catch(() => undefined);
      const requestId = await page.consentFor(id);
      expect((await agent.pendingConsents()).map((r) => r.requestId)).toContain(requestId);
      page.ws.terminate();
      await waitFor(async () =>
        (await agent.pendingConsents()).some((r) => r.requestId === requestId) ? undefined : true,
      );
      expect((await agent.cli(['consent', 'list'])).stdout).toContain('No pending consent requests');
    });

    it('allows one pending consent per connection (ERR_BUSY)', async () => {
      const page = await agent.connect('https://twice.example');
      const id = page.nextId;
      const first = page.call('agent.requestAccess', {});
      await page.consentFor(id);
      const e = await rpcError(page.call('agent.requestAccess', {}));
      expect(e.data).toMatchObject({ code: 'ERR_BUSY', retriable: true });
      await page.call('request.cancel', { id });
      await rpcError(first);
      await page.close();
    });

    it('limits prompts per site origin (ERR_RATE_LIMITED after 5 in a minute)', async () => {
      const page = await agent.connect('https://eager.example');
      await page.promptAndWithdraw(5);
      const e = await rpcError(page.call('agent.requestAccess', {}));
      expect(e.data?.code).toBe('ERR_RATE_LIMITED');
      await page.close();
    });
  });

  describe('consent page API', () => {
    it('opens the page with a one-time secret; GET shows the request; approve spends the secret', async () => {
      const before = launchedUrls().length;
      const page = await agent.connect('https://page.example');
      const id = page.nextId;
      const call = page.call<{ tier: string }>('agent.requestAccess', { reason: 'Sign your tax return' });
      const requestId = await page.consentFor(id);
      const url = await waitFor(() => launchedUrls()[before]);
      expect(url.origin).toBe(`https://127.0.0.1:${agent.port}`);
      expect(url.pathname).toBe('/consent/');
      expect(url.searchParams.get('lang')).toBe('en');
      const secret = url.hash.slice(1);

      const view = await api('GET', 'request', secret);
      expect(view.status).toBe(200);
      expect(view.body).toMatchObject({
        requestId,
        origin: 'https://page.example',
        tier: 'unknown',
        method: 'agent.requestAccess',
        summary: 'Sign your tax return',
        needs: [],
        digests: [],
        warnings: [],
      });
      expect(view.body.pinRules).toMatchObject({ user: { minLength: 4 }, so: { minLength: 4 } });
      expect(view.headers['cache-control']).toBe('no-store');
      expect(Object.keys(view.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);

      // A secret is not a request id, and another site's page cannot post.
      expect((await api('GET', 'request', requestId)).status).toBe(404);
      expect(
        (await api('POST', 'approve', secret, { secrets: {} }, { Origin: 'https://evil.example' })).status,
      ).toBe(403);
      expect((await api('POST', 'approve', secret, '{"secrets":', {})).status).toBe(400);
      expect((await api('POST', 'approve', secret, { secrets: {}, extra: 1 })).status).toBe(400);
      expect((await api('POST', 'approve', secret, { secrets: { userPin: '1234' } })).body).toMatchObject({
        error: { code: 'ERR_INVALID_INPUT' },
      });
      expect(
        (await api('POST', 'approve', secret, { secrets: {} }, { Origin: `https://127.0.0.1:${agent.port}` }))
          .body,
      ).toEqual({ ok: true });
      expect(await call).toEqual({ tier: 'site' });
      expect((await api('GET', 'request', secret)).status).toBe(404);
      expect((await api('POST', 'approve', secret, { secrets: {} })).status).toBe(404);
      await page.close();
    });

    it('keeps the request open on a new PIN that breaks the policy (400 ERR_PIN_POLICY with need), then approves', async () => {
      const before = launchedUrls().length;
      const ra = await agent.connect(RA);
      const id = ra.nextId;
      const call = ra.call('pin.change', { tokenId, role: 'user' });
      await ra.consentFor(id);
      const secret = (await waitFor(() => launchedUrls()[before])).hash.slice(1);
      const view = await api('GET', 'request', secret);
      expect(view.body).toMatchObject({
        method: 'pin.change',
        needs: ['oldUserPin', 'newUserPin'],
        token: { label: 'consent-token' },
      });

      const refused = await api('POST', 'approve', secret, {
        secrets: { oldUserPin: USER_PIN, newUserPin: '12' },
      });
      expect(refused.status).toBe(400);
      expect(refused.body).toMatchObject({ error: { code: 'ERR_PIN_POLICY', need: 'newUserPin' } });
      expect(JSON.stringify(refused.body)).not.toContain(USER_PIN);
      expect((await api('GET', 'request', secret)).status).toBe(200);

      expect(
        (await api('POST', 'approve', secret, { secrets: { oldUserPin: USER_PIN, newUserPin: NEW_PIN } }))
          .body,
      ).toEqual({ ok: true });
      expect(await call).toEqual({});
      expect(
        hsm.tool(['--token-label', 'consent-token', '--login', '--pin', NEW_PIN, '--list-objects']),
      ).not.toMatch(/error/i);
      await ra.close();
    });

    it('denies through POST /consent/api/deny', async () => {
      const before = launchedUrls().length;
      const page = await agent.connect('https://denied-by-page.example');
      const id = page.nextId;
      const call = page.call('agent.requestAccess', {});
      await page.consentFor(id);
      const secret = (await waitFor(() => launchedUrls()[before])).hash.slice(1);
      expect((await api('POST', 'deny', secret)).body).toEqual({ ok: true });
      expect((await rpcError(call)).data?.code).toBe('ERR_USER_CANCELLED');
      expect((await api('POST', 'deny', secret)).status).toBe(404);
      await page.close();
    });
  });

  describe('audit', () => {
    it('records site approvals and denials, and `kelid sites revoke` with its audit line', async () => {
      const revoke = await agent.cli(['sites', 'revoke', 'https://page.example']);
      expect(revoke.status, revoke.stderr).toBe(0);
      const lines = fs
        .readFileSync(path.join(agent.stateDir, 'audit.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const access = (origin: string) =>
        lines.filter((l) => l.origin === origin && l.method === 'agent.requestAccess');
      expect(access('https://page.example')).toEqual([
        expect.objectContaining({ result: 'ok', tokenSerial: null }),
      ]);
      expect(access('https://pushy.example')).toEqual([
        expect.objectContaining({ result: 'error', errorCode: 'ERR_USER_CANCELLED' }),
      ]);
      expect(lines.filter((l) => l.method === 'sites.revoke')).toEqual([
        expect.objectContaining({ origin: 'https://page.example', result: 'ok' }),
      ]);
      expect((await agent.cli(['audit', 'verify'])).status).toBe(0);
    });

    it('drops a revoked site to the unknown tier on its next connection', async () => {
      const page = await agent.connect('https://page.example');
      expect((await page.call('agent.info')).tier).toBe('unknown');
      expect((await rpcError(page.call('tokens.list'))).data?.code).toBe('ERR_FORBIDDEN');
      await page.close();
    });
  });
});
