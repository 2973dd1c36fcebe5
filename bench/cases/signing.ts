// Signature throughput and latency: raw pkcs11js (sync and async) against Kelid's module host, the
// WebSocket API with single consented `sign.raw` requests (1 and 8 clients) and `sign.batch`.
import type { AgentProcess, RpcClient } from '../../test/helpers/agent-process.js';
import {
  ALGORITHMS,
  SITE_ORIGINS,
  USER_PIN,
  certificateIdOf,
  countBadSignatures,
  dist,
  randomMessages,
} from '../lib/fixture.js';
import type { AlgorithmName, Fixture } from '../lib/fixture.js';
import type { Profile } from '../lib/profile.js';
import { pkcs11js } from '../lib/raw-token.js';
import { row } from '../lib/report.js';
import type { Row } from '../lib/report.js';
import { median, nowMs, opsPerSec, percentile, timed } from '../lib/stats.js';
import type * as DerModule from '../../src/pki/der.js';
import type * as KeyStoreModule from '../../src/tokens/key-store.js';
import type * as TokenSignerModule from '../../src/tokens/token-signer.js';

const SECTION_T = 'Signature throughput (signatures per second)';
const SECTION_L = 'Latency of one signature (ms)';

type Der = typeof DerModule;

/** What a raw C_Sign gets for a digest: the digest (ECDSA) or its DigestInfo (RSA PKCS#1 v1.5). */
async function rawInputs(
  alg: AlgorithmName,
  digests: Buffer[],
): Promise<{ mechanism: number; data: Buffer[] }> {
  const { encodeDigestInfo } = await dist<Der>('pki/der.js');
  if (ALGORITHMS[alg].name === 'EC') return { mechanism: pkcs11js.CKM_ECDSA, data: digests };
  return {
    mechanism: pkcs11js.CKM_RSA_PKCS,
    data: digests.map((d) => Buffer.from(encodeDigestInfo(d, 'SHA-256'))),
  };
}

export interface RawSigning {
  sync: Record<AlgorithmName, number>;
  async: Record<AlgorithmName, number>;
  /** Per-signature latency (ms) of the async call, for the latency rows. */
  asyncLatency: Record<AlgorithmName, number[]>;
  /** Login, sign, logout per signature: the token work of one consented request. */
  loginSignLogout: Record<AlgorithmName, number>;
  loginSignLogoutLatency: Record<AlgorithmName, number[]>;
}

/** Raw pkcs11js in this process, one session, and Kelid's module host under one login. */
export async function hostLevel(f: Fixture, p: Profile): Promise<{ rows: Row[]; raw: RawSigning }> {
  const rows: Row[] = [];
  const raw = {
    sync: {},
    async: {},
    asyncLatency: {},
    loginSignLogout: {},
    loginSignLogoutLatency: {},
  } as RawSigning;
  const slot = f.raw.slotOf('sign');
  const session = f.raw.openSession(slot);
  f.raw.p11.C_Login(session, pkcs11js.CKU_USER, USER_PIN);
  const kelid = await f.kelidInProcess();
  const { findSigningKey } = await dist<typeof KeyStoreModule>('tokens/key-store.js');
  const { Pkcs11Signer } = await dist<typeof TokenSignerModule>('tokens/token-signer.js');
  const tokenId = await kelid.tokenId('sign');
  try {
    for (const alg of Object.keys(ALGORITHMS) as AlgorithmName[]) {
      const n = p.batch[alg];
      const { key } = f.keys[alg];
      const msgs = randomMessages(n);
      const { mechanism, data } = await rawInputs(alg, msgs.digests);
      const handle = f.raw.findPrivateKey(session, key.keyId);
      const scheme = ALGORITHMS[alg].name === 'EC' ? 'ECDSA' : 'RSASSA-PKCS1-v1_5';
      const times = {
        sync: [] as number[],
        async: [] as number[],
        host: [] as number[],
        runs: [] as number[],
      };
      const latencies: number[] = [];
      let hostSignatures: Buffer[] = [];
      let runSignatures: Buffer[] = [];
      for (let r = 0; r < p.rounds; r++) {
        times.sync.push(
          await timed(() => data.forEach((d) => f.raw.signSync(session, mechanism, handle, d))),
        );
        times.async.push(
          await timed(async () => {
            for (const d of data) {
              const t0 = nowMs();
              await f.raw.signAsync(session, mechanism, handle, d);
              latencies.push(nowMs() - t0);
            }
          }),
        );
        // Kelid's module host under one login: one IPC call per signature, then runs per call.
        const underLogin = async (
          sign: (signer: TokenSignerModule.Pkcs11Signer) => Promise<Uint8Array[]>,
        ): Promise<{ ms: number; signatures: Buffer[] }> => {
          let signatures: Buffer[] = [];
          const ms = await timed(() =>
            kelid.tokens.withSession(tokenId, { readWrite: false }, async (s) => {
              await s.login('user', USER_PIN);
              const signer = await Pkcs11Signer.create(s, await findSigningKey(s, key.keyId));
              signatures = (await sign(signer)).map((x) => Buffer.from(x));
            }),
          );
          return { ms, signatures };
        };
        const perCall = await underLogin(async (signer) => {
          const sigs: Uint8Array[] = [];
          for (const d of msgs.digests) sigs.push(await signer.signDigest(d, 'SHA-256', scheme));
          return sigs;
        });
        const runs = await underLogin((signer) => signer.signDigests(msgs.digests, 'SHA-256', scheme));
        times.host.push(perCall.ms);
        times.runs.push(runs.ms);
        hostSignatures = perCall.signatures;
        runSignatures = runs.signatures;
      }
      const bad =
        countBadSignatures(key.publicKey, msgs.data, hostSignatures) +
        countBadSignatures(key.publicKey, msgs.data, runSignatures);
      if (bad > 0) throw new Error(`${bad} module-host signatures did not verify`);
      raw.sync[alg] = opsPerSec(n, median(times.sync));
      raw.async[alg] = opsPerSec(n, median(times.async));
      raw.asyncLatency[alg] = latencies;
      const host = opsPerSec(n, median(times.host));
      rows.push(
        row({
          section: SECTION_T,
          measure: `${alg}: raw pkcs11js C_Sign (sync), ${n} signatures, one login`,
          unit: 'sig/s',
          baselineLabel: 'raw async (C_SignAsync)',
          baseline: raw.async[alg],
          kelid: raw.sync[alg],
          better: 'higher',
          note: 'both raw: the two baselines side by side',
        }),
        row({
          section: SECTION_T,
          measure: `${alg}: Kelid module host, one IPC call per signature, ${n} signatures, one login`,
          unit: 'sig/s',
          baselineLabel: 'best raw (sync/async)',
          baseline: Math.max(raw.sync[alg], raw.async[alg]),
          kelid: host,
          better: 'higher',
        }),
        row({
          section: SECTION_T,
          measure: `${alg}: Kelid module host, runs of signatures per IPC call (the sign.batch path), ${n} signatures`,
          unit: 'sig/s',
          baselineLabel: 'best raw (sync/async)',
          baseline: Math.max(raw.sync[alg], raw.async[alg]),
          kelid: opsPerSec(n, median(times.runs)),
          better: 'higher',
        }),
      );

      // The token work of one consented request: log in, find the key, sign, log out.
      const m = p.single[alg];
      const lsl: number[] = [];
      const lslTimes: number[] = [];
      for (let r = 0; r < p.rounds; r++) {
        lslTimes.push(
          await timed(() => {
            for (let i = 0; i < m; i++) {
              const t0 = nowMs();
              f.raw.p11.C_Logout(session);
              f.raw.p11.C_Login(session, pkcs11js.CKU_USER, USER_PIN);
              f.raw.signSync(session, mechanism, f.raw.findPrivateKey(session, key.keyId), data[i % n]);
              lsl.push(nowMs() - t0);
            }
          }),
        );
      }
      raw.loginSignLogout[alg] = opsPerSec(m, median(lslTimes));
      raw.loginSignLogoutLatency[alg] = lsl;
    }
  } finally {
    await kelid.modules.stop();
    f.raw.p11.C_Logout(session);
    f.raw.p11.C_CloseSession(session);
  }
  return { rows, raw };
}

interface SignRawResult {
  signature: string;
}

/** `count` single sign.raw requests spread over `clients`, each consented; per-request latencies. */
async function singleRequests(
  clients: RpcClient[],
  certificateIds: string[],
  digests: Buffer[],
): Promise<{ ms: number; latencies: number[]; signatures: Buffer[] }> {
  const latencies: number[] = [];
  const signatures: Buffer[] = new Array<Buffer>(digests.length);
  let next = 0;
  const t0 = nowMs();
  await Promise.all(
    clients.map(async (client, c) => {
      while (next < digests.length) {
        const i = next++;
        const s = nowMs();
        const r = await client.call<SignRawResult>('sign.raw', {
          certificateId: certificateIds[c],
          digest: digests[i].toString('base64'),
          digestAlgorithm: 'SHA-256',
          summary: `bench document ${i + 1}`,
        });
        latencies.push(nowMs() - s);
        signatures[i] = Buffer.from(r.signature, 'base64');
      }
    }),
  );
  return { ms: nowMs() - t0, latencies, signatures };
}

/** Through the WebSocket API of a running agent, consents answered over the control channel. */
export async function apiLevel(f: Fixture, agent: AgentProcess, p: Profile, raw: RawSigning): Promise<Row[]> {
  const rows: Row[] = [];
  const clients: RpcClient[] = [];
  for (const origin of SITE_ORIGINS) {
    const c = await agent.connect(origin);
    f.autoApprove(agent, c, { userPin: USER_PIN });
    clients.push(c);
  }
  try {
    for (const alg of Object.keys(ALGORITHMS) as AlgorithmName[]) {
      const { key } = f.keys[alg];
      const certificateIds = await Promise.all(clients.map((c) => certificateIdOf(c, key.keyId)));
      const bestRaw = Math.max(raw.sync[alg], raw.async[alg]);

      // sign.batch: one request, one consent, n signatures.
      const n = p.batch[alg];
      const msgs = randomMessages(n);
      const batchTimes: number[] = [];
      let batchSignatures: Buffer[] = [];
      for (let r = 0; r < p.rounds; r++) {
        batchTimes.push(
          await timed(async () => {
            const res = await clients[0].call<{ results: Array<{ signature: string }> }>('sign.batch', {
              certificateId: certificateIds[0],
              format: 'raw',
              digestAlgorithm: 'SHA-256',
              items: msgs.digests.map((d, i) => ({ digest: d.toString('base64'), summary: `item ${i + 1}` })),
            });
            batchSignatures = res.results.map((x) => Buffer.from(x.signature, 'base64'));
          }),
        );
      }
      if (countBadSignatures(key.publicKey, msgs.data, batchSignatures) > 0)
        throw new Error('sign.batch signatures did not verify');
      const batch = opsPerSec(n, median(batchTimes));
      rows.push(
        row({
          section: SECTION_T,
          measure: `${alg}: sign.batch over the API, ${n} items, one consent`,
          unit: 'sig/s',
          baselineLabel: 'best raw (sync/async)',
          baseline: bestRaw,
          kelid: batch,
          better: 'higher',
          target: { text: '≥ 90% of raw', met: batch >= 0.9 * bestRaw },
        }),
      );

      // Single sign.raw requests, each with its own consent, login and logout.
      const m = p.single[alg];
      const singles = randomMessages(m);
      for (const concurrency of [1, 8]) {
        const runs: Array<Awaited<ReturnType<typeof singleRequests>>> = [];
        for (let r = 0; r < p.rounds; r++) {
          runs.push(await singleRequests(clients.slice(0, concurrency), certificateIds, singles.digests));
        }
        for (const run of runs) {
          if (countBadSignatures(key.publicKey, singles.data, run.signatures) > 0)
            throw new Error('sign.raw signatures did not verify');
        }
        const ops = opsPerSec(m, median(runs.map((x) => x.ms)));
        rows.push(
          row({
            section: SECTION_T,
            measure: `${alg}: single sign.raw requests, ${concurrency} client${concurrency > 1 ? 's' : ''} (pipelined), ${m} requests, a consent each`,
            unit: 'sig/s',
            baselineLabel: 'best raw (sync/async)',
            baseline: bestRaw,
            kelid: ops,
            better: 'higher',
            ...(concurrency > 1 ? { target: { text: '≥ 50% of raw', met: ops >= 0.5 * bestRaw } } : {}),
          }),
          row({
            section: SECTION_T,
            measure: `${alg}: the same, against raw login + sign + logout per signature`,
            unit: 'sig/s',
            baselineLabel: 'raw login+sign+logout',
            baseline: raw.loginSignLogout[alg],
            kelid: ops,
            better: 'higher',
          }),
        );
        if (concurrency === 1) {
          const lat = runs.flatMap((x) => x.latencies);
          for (const q of [50, 99]) {
            // The target: what Kelid adds to the token work of one consented request.
            const rawQ = percentile(raw.loginSignLogoutLatency[alg], q);
            const overhead = percentile(lat, q) - rawQ;
            const limit = q === 50 ? 2 : 8;
            rows.push(
              row({
                section: SECTION_L,
                measure: `${alg}: sign.raw p${q} overhead over raw login + sign + logout (consent answered by a program)`,
                unit: 'ms',
                baselineLabel: 'raw login+sign+logout',
                baseline: rawQ,
                kelid: overhead,
                better: 'lower',
                relative: Number.NaN,
                target: { text: `p${q} overhead ≤ ${limit} ms`, met: overhead <= limit },
              }),
            );
            rows.push(
              row({
                section: SECTION_L,
                measure: `${alg}: sign.raw p${q} (consent, login, sign, logout)`,
                unit: 'ms',
                baselineLabel: 'raw login+sign+logout',
                baseline: percentile(raw.loginSignLogoutLatency[alg], q),
                kelid: percentile(lat, q),
                better: 'lower',
              }),
              row({
                section: SECTION_L,
                measure: `${alg}: sign.raw p${q}, against one raw signature`,
                unit: 'ms',
                baselineLabel: 'raw C_SignAsync',
                baseline: percentile(raw.asyncLatency[alg], q),
                kelid: percentile(lat, q),
                better: 'lower',
              }),
            );
          }
        }
      }
    }
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
  if (f.approvalErrors.length > 0) throw new Error(`consent answers failed: ${f.approvalErrors[0]}`);
  return rows;
}
