// Memory: resident set size of the agent (and its module host) idle and after many signatures
// through the API, against raw pkcs11js signing as many in a process of its own.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { SITE_ORIGINS, USER_PIN, randomMessages } from '../lib/fixture.js';
import type { Fixture } from '../lib/fixture.js';
import type { Profile } from '../lib/profile.js';
import { row } from '../lib/report.js';
import type { Row } from '../lib/report.js';
import { childPids, rssMiB } from '../lib/stats.js';

const SECTION = 'Memory: resident set size (MiB)';
const REPO = fileURLToPath(new URL('../../', import.meta.url));

export async function memory(f: Fixture, p: Profile): Promise<Row[]> {
  const { key, certificateId } = f.keys['EC P-256'];
  const rawOut = JSON.parse(
    execFileSync(
      process.execPath,
      [
        'bench/lib/raw-sign-child.js',
        f.hsm.module,
        'sign',
        key.keyId,
        USER_PIN,
        String(p.memorySignatures),
        String(p.memoryBatch),
      ],
      { cwd: REPO, env: { ...process.env, ...f.hsm.env }, encoding: 'utf8' },
    ),
  ) as { idle: number; afterWarmup: number; after: number };

  const agent = await f.startAgent();
  const client = await agent.connect(SITE_ORIGINS[0]);
  f.autoApprove(agent, client, { userPin: USER_PIN });
  const total = (): number => [agent.pid, ...childPids(agent.pid)].reduce((s, pid) => s + rssMiB(pid), 0);
  const batch = async (): Promise<void> => {
    const msgs = randomMessages(p.memoryBatch);
    const r = await client.call<{ results: unknown[] }>('sign.batch', {
      certificateId,
      format: 'raw',
      digestAlgorithm: 'SHA-256',
      items: msgs.digests.map((d, i) => ({ digest: d.toString('base64'), summary: `m${i}` })),
    });
    if (r.results.length !== p.memoryBatch) throw new Error('short batch');
  };
  let idle: number;
  let afterWarmup: number;
  let after: number;
  let agentOnly: { afterWarmup: number; after: number };
  try {
    await client.call('tokens.list', {});
    await new Promise((r) => setTimeout(r, 1000));
    idle = total();
    await batch();
    afterWarmup = total();
    const agentWarm = rssMiB(agent.pid);
    for (let done = 0; done < p.memorySignatures; done += p.memoryBatch) await batch();
    after = total();
    agentOnly = { afterWarmup: agentWarm, after: rssMiB(agent.pid) };
  } finally {
    // Close the page before the agent: a 1 MiB response may still be in flight otherwise.
    await client.close();
    await agent.stop();
    agent.cleanup();
  }
  const per100k = (growth: number): number => (growth / p.memorySignatures) * 100_000;
  const growth = after - afterWarmup;
  return [
    row({
      section: SECTION,
      measure: 'idle, after start and one tokens.list (agent + module host)',
      unit: 'MiB',
      baselineLabel: 'raw pkcs11js process, logged in',
      baseline: rawOut.idle,
      kelid: idle,
      better: 'lower',
    }),
    row({
      section: SECTION,
      measure: `growth over ${p.memorySignatures} EC signatures in sign.batch requests of ${p.memoryBatch}, after a warm-up batch (agent + host), per 100,000`,
      unit: 'MiB',
      baselineLabel: 'raw pkcs11js growth, per 100,000',
      baseline: per100k(rawOut.after - rawOut.afterWarmup),
      kelid: per100k(growth),
      better: 'lower',
      relative: Number.NaN,
      target: { text: '≤ 10 MB per 100,000', met: per100k(growth) * 1.048576 <= 10 },
    }),
    row({
      section: SECTION,
      measure: 'the same, agent process only',
      unit: 'MiB',
      baselineLabel: 'raw pkcs11js growth, per 100,000',
      baseline: per100k(rawOut.after - rawOut.afterWarmup),
      kelid: per100k(agentOnly.after - agentOnly.afterWarmup),
      better: 'lower',
      relative: Number.NaN,
    }),
  ];
}
