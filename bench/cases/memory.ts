// Memory: resident set size of the agent (and its module host) idle, and its growth while signing
// through the API, against raw pkcs11js signing as many in a process of its own. Growth is the
// least-squares slope of RSS sampled after each batch, past warm-up batches (a garbage-collected heap
// grows to its working size first, then saws up and down around it).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { SITE_ORIGINS, USER_PIN, certificateIdOf, randomMessages } from '../lib/fixture.js';
import type { Fixture } from '../lib/fixture.js';
import type { Profile } from '../lib/profile.js';
import { row } from '../lib/report.js';
import type { Row } from '../lib/report.js';
import { childPids, peakRssMiB, rssMiB, slope } from '../lib/stats.js';

const SECTION = 'Memory: resident set size (MiB)';
const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** RSS growth per 100,000 signatures from samples taken after each batch (warm-up batches dropped). */
function growthPer100k(samples: number[], p: Profile): number {
  const kept = samples.slice(p.memoryWarmupBatches);
  const xs = kept.map((_, i) => (i + 1) * p.memoryBatch);
  return slope(xs, kept) * 100_000;
}

function spread(samples: number[], p: Profile): number {
  const kept = samples.slice(p.memoryWarmupBatches);
  return Math.max(...kept) - Math.min(...kept);
}

export async function memory(f: Fixture, p: Profile): Promise<Row[]> {
  const { key } = f.keys['EC P-256'];
  const batches = p.memoryWarmupBatches + Math.ceil(p.memorySignatures / p.memoryBatch);
  const raw = JSON.parse(
    execFileSync(
      process.execPath,
      [
        'bench/lib/raw-sign-child.js',
        f.hsm.module,
        'sign',
        key.keyId,
        USER_PIN,
        String(batches),
        String(p.memoryBatch),
      ],
      { cwd: REPO, env: { ...process.env, ...f.hsm.env }, encoding: 'utf8' },
    ),
  ) as { idle: number; samples: number[] };

  const agent = await f.startAgent();
  const client = await agent.connect(SITE_ORIGINS[0]);
  f.autoApprove(agent, client, { userPin: USER_PIN });
  const pids = (): number[] => [agent.pid, ...childPids(agent.pid)];
  const total = (): number => pids().reduce((s, pid) => s + rssMiB(pid), 0);
  let idle: number;
  let hwm = Number.NaN;
  let agentHwm = Number.NaN;
  const both: number[] = [];
  const agentOnly: number[] = [];
  try {
    await client.call('tokens.list', {});
    const certificateId = await certificateIdOf(client, key.keyId);
    await new Promise((r) => setTimeout(r, 1000));
    idle = total();
    for (let b = 0; b < batches; b++) {
      const msgs = randomMessages(p.memoryBatch);
      const r = await client.call<{ results: unknown[] }>('sign.batch', {
        certificateId,
        format: 'raw',
        digestAlgorithm: 'SHA-256',
        items: msgs.digests.map((d, i) => ({ digest: d.toString('base64'), summary: `m${i}` })),
      });
      if (r.results.length !== p.memoryBatch) throw new Error('short batch');
      both.push(total());
      agentOnly.push(rssMiB(agent.pid));
    }
    // Each process's own high-water mark; their sum bounds the peak of the sum from above.
    agentHwm = peakRssMiB(agent.pid);
    hwm = agentHwm + childPids(agent.pid).reduce((s, pid) => s + peakRssMiB(pid), 0);
  } finally {
    await client.close();
    await agent.stop();
    agent.cleanup();
  }
  const rawGrowth = growthPer100k(raw.samples, p);
  const growth = growthPer100k(both, p);
  const after = `${p.memoryWarmupBatches} warm-up batch${p.memoryWarmupBatches > 1 ? 'es' : ''} of ${p.memoryBatch}`;
  return [
    row({
      section: SECTION,
      measure: 'idle, after start and one tokens.list (agent + module host)',
      unit: 'MiB',
      baselineLabel: 'raw pkcs11js process, logged in',
      baseline: raw.idle,
      kelid: idle,
      better: 'lower',
    }),
    row({
      section: SECTION,
      measure: `peak while signing (agent + module host)`,
      unit: 'MiB',
      baselineLabel: 'raw pkcs11js process',
      baseline: Math.max(...raw.samples),
      kelid: Math.max(...both),
      better: 'lower',
    }),
    row({
      section: SECTION,
      measure:
        'peak since start (sum of agent and module host VmHWM, read after the signing above; at least the peak of the sum)',
      unit: 'MiB',
      baselineLabel: 'raw pkcs11js process',
      baseline: Math.max(...raw.samples),
      kelid: hwm,
      better: 'lower',
      note: `agent ${agentHwm.toFixed(0)} MiB, module host ${(hwm - agentHwm).toFixed(0)} MiB`,
    }),
    row({
      section: SECTION,
      measure: `growth per 100,000 EC signatures (slope over ${p.memorySignatures} in sign.batch requests of ${p.memoryBatch}, after ${after}; agent + host)`,
      unit: 'MiB',
      baselineLabel: 'raw pkcs11js, same slope',
      baseline: rawGrowth,
      kelid: growth,
      better: 'lower',
      relative: Number.NaN,
      target: { text: '≤ 10 MB per 100,000', met: growth * 1.048576 <= 10 },
    }),
    row({
      section: SECTION,
      measure: 'spread of the samples behind that slope (max − min; the collector saws up and down)',
      unit: 'MiB',
      baselineLabel: 'raw pkcs11js, same samples',
      baseline: spread(raw.samples, p),
      kelid: spread(both, p),
      better: 'lower',
      relative: Number.NaN,
    }),
    row({
      section: SECTION,
      measure: 'growth per 100,000, agent process only',
      unit: 'MiB',
      baselineLabel: 'raw pkcs11js, same slope',
      baseline: rawGrowth,
      kelid: growthPer100k(agentOnly, p),
      better: 'lower',
      relative: Number.NaN,
    }),
  ];
}
