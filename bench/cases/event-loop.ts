// Event-loop freedom: `tokens.list` latency through the API while an RSA key pair is generated on
// another token, against raw pkcs11js listing tokens while it runs C_GenerateKeyPairAsync itself.
import { randomBytes } from 'node:crypto';
import type { Template } from 'pkcs11js';
import { RA_ORIGIN, SITE_ORIGINS, USER_PIN, dist } from '../lib/fixture.js';
import type { Fixture } from '../lib/fixture.js';
import type { Profile } from '../lib/profile.js';
import { pkcs11js } from '../lib/raw-token.js';
import { row } from '../lib/report.js';
import type { Row } from '../lib/report.js';
import { nowMs, percentile } from '../lib/stats.js';
import type * as TemplatesModule from '../../src/pkcs11/templates.js';

const SECTION = 'Event-loop freedom: tokens.list while a key pair is generated on another token (ms)';

async function sampleWhile<T>(work: Promise<T>, sample: () => Promise<void> | void): Promise<number[]> {
  let done = false;
  void work.then(
    () => (done = true),
    () => (done = true),
  );
  const out: number[] = [];
  while (!done) {
    const t0 = nowMs();
    await sample();
    out.push(nowMs() - t0);
    await new Promise((r) => setImmediate(r));
  }
  await work;
  return out;
}

export async function eventLoop(f: Fixture, p: Profile): Promise<Row[]> {
  const { signingKeyPairTemplates } = await dist<typeof TemplatesModule>('pkcs11/templates.js');
  const algorithm = { name: 'RSA', modulusLength: p.keygenBits } as const;

  // Raw: list tokens in-process, idle and while C_GenerateKeyPairAsync runs on the `gen` token.
  const rawIdle: number[] = [];
  for (let i = 0; i < p.idleListCalls; i++) {
    const t0 = nowMs();
    f.raw.listTokens();
    rawIdle.push(nowMs() - t0);
  }
  const rawBusy: number[] = [];
  const session = f.raw.openSession(f.raw.slotOf('gen'), true);
  f.raw.p11.C_Login(session, pkcs11js.CKU_USER, USER_PIN);
  try {
    for (let k = 0; k < p.keygens; k++) {
      const t = signingKeyPairTemplates(algorithm, {
        label: 'bench raw keygen',
        id: randomBytes(20),
        alwaysAuthenticate: false,
      });
      const work = f.raw.p11.C_GenerateKeyPairAsync(
        session,
        { mechanism: t.mechanism },
        t.publicTemplate as Template,
        t.privateTemplate as Template,
      );
      rawBusy.push(...(await sampleWhile(work, () => void f.raw.listTokens())));
    }
  } finally {
    f.raw.p11.C_Logout(session);
    f.raw.p11.C_CloseSession(session);
  }

  // Kelid: tokens.list from a site while an RA page generates a key on `gen` (consent answered).
  const agent = await f.startAgent();
  const site = await agent.connect(SITE_ORIGINS[0]);
  const ra = await agent.connect(RA_ORIGIN);
  f.autoApprove(agent, ra, { userPin: USER_PIN });
  const list = async (): Promise<void> => {
    await site.call('tokens.list', {});
  };
  const idle: number[] = [];
  const busy: number[] = [];
  try {
    // The RA page's own tokenId (ids are per origin).
    const { tokens } = await ra.call<{ tokens: Array<{ tokenId: string; label: string }> }>(
      'tokens.list',
      {},
    );
    const gen = tokens.find((t) => t.label === 'gen');
    if (!gen) throw new Error('no gen token');
    for (let i = 0; i < p.idleListCalls; i++) {
      const t0 = nowMs();
      await list();
      idle.push(nowMs() - t0);
    }
    for (let k = 0; k < p.keygens; k++) {
      const work = ra.call('keys.generate', { tokenId: gen.tokenId, algorithm, label: 'bench keygen' });
      busy.push(...(await sampleWhile(work, list)));
    }
  } finally {
    await site.close();
    await ra.close();
    await agent.stop();
    agent.cleanup();
  }
  const rows: Row[] = [];
  for (const q of [50, 99]) {
    rows.push(
      row({
        section: SECTION,
        measure: `tokens.list p${q}, idle (${idle.length} calls)`,
        unit: 'ms',
        baselineLabel: 'raw C_GetSlotList + C_GetTokenInfo',
        baseline: percentile(rawIdle, q),
        kelid: percentile(idle, q),
        better: 'lower',
      }),
      row({
        section: SECTION,
        measure: `tokens.list p${q} during ${p.keygens} × RSA-${p.keygenBits} generation (${busy.length} calls)`,
        unit: 'ms',
        baselineLabel: 'raw, during C_GenerateKeyPairAsync',
        baseline: percentile(rawBusy, q),
        kelid: percentile(busy, q),
        better: 'lower',
        ...(q === 99 ? { target: { text: 'p99 ≤ 20 ms', met: percentile(busy, q) <= 20 } } : {}),
      }),
    );
  }
  return rows;
}
