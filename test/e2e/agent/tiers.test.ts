import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { METHODS } from '../../../src/protocol/methods/index.js';
import { AgentProcess, RpcError } from '../../helpers/agent-process.js';
import type { RpcClient } from '../../helpers/agent-process.js';

// Tier enforcement of PROTOCOL.md section 3, written out from the table (not derived from the code):
// a call from a tier outside the list fails with ERR_FORBIDDEN before its params are even looked at.

type Tier = 'unknown' | 'site' | 'ra' | 'console';
const ALL: Tier[] = ['unknown', 'site', 'ra', 'console'];
const SIGNING: Tier[] = ['site', 'ra', 'console'];
const RA: Tier[] = ['ra', 'console'];

const TABLE: Record<string, Tier[]> = {
  'agent.info': ALL,
  'agent.requestAccess': ['unknown', 'site'],
  'request.cancel': ALL,
  'tokens.list': SIGNING,
  'certificates.list': SIGNING,
  'certificates.status': SIGNING,
  'sign.raw': SIGNING,
  'sign.cms': SIGNING,
  'sign.batch': SIGNING,
  'auth.challenge': SIGNING,
  'tokens.init': RA,
  'pin.change': RA,
  'pin.unblock': RA,
  'keys.generate': RA,
  'keys.list': RA,
  'csr.create': RA,
  'certificates.import': RA,
  'objects.delete': RA,
};

// Params that fail validation: a permitted call must answer -32602, never run (no consent prompt).
const INVALID = { unexpectedMember: true };

async function outcome(client: RpcClient, method: string): Promise<string> {
  try {
    await client.call(method, INVALID);
    return 'ok';
  } catch (e) {
    if (!(e instanceof RpcError)) throw e;
    return e.data?.code === 'ERR_FORBIDDEN' ? 'forbidden' : String(e.code);
  }
}

describe('Dispatcher tiers', () => {
  let agent: AgentProcess;
  const clients = new Map<Tier, RpcClient>();

  beforeAll(async () => {
    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-tiers-',
      config: { raOrigins: ['https://ra.example'], sites: ['https://bank.example'] },
    });
    clients.set('unknown', await agent.connect('https://unknown.example'));
    clients.set('site', await agent.connect('https://bank.example'));
    clients.set('ra', await agent.connect('https://ra.example'));
    const secret = new URL((await agent.cli(['ui', '--print'])).stdout.trim()).hash.slice(1);
    clients.set(
      'console',
      await agent.connect(`https://127.0.0.1:${agent.port}`, { query: `console=${secret}` }),
    );
  });

  afterAll(async () => {
    for (const c of clients.values()) await c.close();
    await agent?.stop();
    agent?.cleanup();
  });

  it('connects each client with the tier it is meant to have', async () => {
    for (const [tier, client] of clients) expect((await client.call('agent.info')).tier).toBe(tier);
  });

  it('gives the exact agent version to the known tiers only: unknown gets the protocol version', async () => {
    const unknown = await clients.get('unknown')!.call('agent.info');
    expect(unknown).toEqual({
      name: 'kelid',
      protocol: 1,
      origin: 'https://unknown.example',
      tier: 'unknown',
    });
    for (const tier of ['site', 'ra', 'console'] as const) {
      expect(await clients.get(tier)!.call('agent.info'), tier).toMatchObject({
        version: expect.stringMatching(/^\d+\.\d+\.\d+/),
        protocol: 1,
      });
    }
  });

  it('serves every method of the protocol table that the agent ships, and nothing else', () => {
    const shipped = METHODS.map((m) => m.name);
    for (const name of shipped) expect(Object.keys(TABLE), name).toContain(name);
    for (const m of METHODS) expect([...m.tiers].sort(), m.name).toEqual([...TABLE[m.name]].sort());
  });

  for (const [method, allowed] of Object.entries(TABLE)) {
    it(`lets only ${allowed.join(', ')} call ${method}`, async () => {
      const shipped = METHODS.some((m) => m.name === method);
      for (const tier of ALL) {
        const result = await outcome(clients.get(tier)!, method);
        if (!shipped) expect(result, `${tier} → ${method}`).toBe('-32601');
        else if (allowed.includes(tier)) expect(result, `${tier} → ${method}`).toBe('-32602');
        else expect(result, `${tier} → ${method}`).toBe('forbidden');
      }
    });
  }

  it('answers unknown methods with -32601 for every tier', async () => {
    for (const tier of ALL) {
      for (const method of [
        'tokens.delete',
        'constructor',
        '__proto__',
        'toString',
        'agent.info ',
        'AGENT.INFO',
      ]) {
        expect(await outcome(clients.get(tier)!, method), `${tier} → ${method}`).toBe('-32601');
      }
    }
  });
});
