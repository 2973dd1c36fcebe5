// softhsm-only: tests prompt rate limits; the module does not matter
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendControlRequest } from '../../../src/consent/control-channel.js';
import { AgentProcess, rpcError } from '../../helpers/agent-process.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// Consent limits that respect people (issue 17, section 3), against the real agent: approved prompts
// do not count towards the per-minute limit, a site's first denial costs one minute (not ten), and the
// RA tier has no denial cooldown. Decisions go through the control socket, as `kelid consent` does.

const RA = 'https://ra.limits.example';

describe('consent limits', () => {
  const hsm = new SoftHsm('kelid-e2e-limits-hsm-');
  let agent: AgentProcess;
  let tokenId: string;

  const control = (request: Parameters<typeof sendControlRequest>[1]) =>
    sendControlRequest(agent.stateDir, request);

  beforeAll(async () => {
    hsm.initToken('limits-token', '12345678', '87654321');
    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-limits-',
      config: {
        modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
        raOrigins: [RA],
        consent: { timeoutSeconds: 60, launcher: 'none' },
      },
    });
    const ra = await agent.connect(RA);
    const { tokens } = await ra.call<{ tokens: Array<{ tokenId: string; label: string }> }>('tokens.list');
    tokenId = tokens.find((t) => t.label === 'limits-token')!.tokenId;
    await ra.close();
  });

  afterAll(async () => {
    await agent?.stop();
    agent?.cleanup();
    hsm.cleanup();
  });

  it('lets a site ask a sixth time within the minute when the user approved the first five', async () => {
    const origin = 'https://citizen.example';
    for (let i = 0; i < 6; i++) {
      const page = await agent.connect(origin);
      const id = page.nextId;
      const call = page.call('agent.requestAccess', { reason: `document ${i + 1}` });
      const requestId = await page.consentFor(id);
      expect(await control({ op: 'approve', requestId, secrets: {} })).toEqual({ ok: true });
      expect(await call).toEqual({ tier: 'site' });
      // Forget the approval so the next round prompts again.
      await control({ op: 'sites.revoke', origin });
      await page.close();
    }
  });

  it('still refuses the sixth prompt when the first five were left unanswered', async () => {
    const page = await agent.connect('https://pushy-limits.example');
    await page.promptAndWithdraw(5);
    expect((await rpcError(page.call('agent.requestAccess', {}))).data?.code).toBe('ERR_RATE_LIMITED');
    await page.close();
  });

  it('makes a site wait one minute after a first denial, not ten', async () => {
    const page = await agent.connect('https://oops.example');
    const id = page.nextId;
    const call = page.call('agent.requestAccess', {});
    await control({ op: 'deny', requestId: await page.consentFor(id) });
    expect((await rpcError(call)).data?.code).toBe('ERR_USER_CANCELLED');
    const e = await rpcError(page.call('agent.requestAccess', {}));
    expect(e.data?.code).toBe('ERR_ORIGIN_DENIED');
    expect(e.data?.retryAfterMs).toBeGreaterThan(30_000);
    expect(e.data?.retryAfterMs).toBeLessThanOrEqual(60_000);
    await page.close();
  });

  it('gives the RA tier no denial cooldown: the officer can ask again at once', async () => {
    const ra = await agent.connect(RA);
    for (let i = 0; i < 2; i++) {
      const id = ra.nextId;
      const call = ra.call('pin.change', { tokenId, role: 'user' });
      const requestId = await ra.consentFor(id);
      expect(await control({ op: 'deny', requestId })).toEqual({ ok: true });
      expect((await rpcError(call)).data?.code).toBe('ERR_USER_CANCELLED');
    }
    // A third request is put in front of the user again.
    const id = ra.nextId;
    const call = ra.call('pin.change', { tokenId, role: 'user' });
    await ra.consentFor(id);
    await ra.call('request.cancel', { id });
    expect((await rpcError(call)).data?.code).toBe('ERR_USER_CANCELLED');
    await ra.close();
  });
});
