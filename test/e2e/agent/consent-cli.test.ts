// softhsm-only: tests `kelid consent approve` without a terminal; the module does not matter
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess, rpcError } from '../../helpers/agent-process.js';
import { SoftHsm } from '../../helpers/softhsm.js';

const RA = 'https://ra.example';

describe('kelid consent approve without --secrets-stdin', () => {
  const hsm = new SoftHsm('kelid-e2e-consent-cli-');
  let agent: AgentProcess;
  let tokenId: string;

  beforeAll(async () => {
    hsm.initToken('cli-token', 'SoPin7788', '5566');
    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-consent-cli-',
      config: { modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }], raOrigins: [RA] },
    });
    const ra = await agent.connect(RA);
    const { tokens } = await ra.call<{ tokens: Array<{ tokenId: string; label: string }> }>('tokens.list');
    tokenId = tokens.find((t) => t.label === 'cli-token')!.tokenId;
    await ra.close();
  });

  afterAll(async () => {
    await agent?.stop();
    agent?.cleanup();
    hsm.cleanup();
  });

  it('refuses to approve a request that needs PINs when there is no terminal to ask on, and leaves it pending', async () => {
    const ra = await agent.connect(RA);
    const id = ra.nextId;
    const call = ra.call('pin.change', { tokenId, role: 'user' });
    const requestId = await ra.consentFor(id);
    const r = await agent.cli(['consent', 'approve', requestId]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/--secrets-stdin/);
    expect((await agent.pendingConsents()).map((p) => p.requestId)).toContain(requestId);
    const denied = await agent.cli(['consent', 'deny', requestId]);
    expect(denied.status).toBe(0);
    expect((await rpcError(call)).data).toMatchObject({ code: 'ERR_USER_CANCELLED' });
    await ra.close();
  });
});
