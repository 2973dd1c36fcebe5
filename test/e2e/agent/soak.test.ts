// softhsm-only: hot-plugs SoftHSM token directories under load, and runs many signatures a swtpm could not keep up with
import { X509Certificate, createHash, randomBytes, verify as cryptoVerify } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess, RpcError } from '../../helpers/agent-process.js';
import type { RpcClient } from '../../helpers/agent-process.js';
import { SoftHsm } from '../../helpers/softhsm.js';
import { TestPki } from '../../helpers/test-ca.js';
import { childPids, rssKb, slope } from '../../helpers/process-stats.js';

// Mixed load against the real agent for KELID_SOAK_SECONDS (default 25: the smoke run of the normal
// suite; `scripts/soak.sh 10` runs 10 minutes). Concurrently:
//   - a site page listing tokens and certificates (all tokens, the signing token, the hot-plug token);
//   - a site page asking certificates.status of the signing certificate (live `openssl ocsp`);
//   - an RA desk calling sign.batch every 3 s (ra tier: 30 prompts/min, so 20/min stays under it),
//     each consent approved with `kelid consent approve --secrets-stdin`, every signature verified;
//   - a second SoftHSM token unplugged and plugged every 5 s (its directory renamed away and back),
//     with tokens.changed notifications counted;
//   - the RSS of the agent and its module hosts sampled every 2 s.
// Expected: no unexpected error (ERR_TOKEN_REMOVED / ERR_TOKEN_NOT_FOUND only on calls touching the
// hot-plug token), every batch signature valid, one notification per plug and unplug, no consent left
// pending, and, on long runs, no RSS growth over the second half. A JSON summary is written to
// KELID_SOAK_REPORT when set.

const SECONDS = Number(process.env.KELID_SOAK_SECONDS ?? 25);
const REPORT = process.env.KELID_SOAK_REPORT;
const LONG_RUN = SECONDS >= 300;
/** RSS slope bound over the second half of a long run (agent + module hosts). */
const SLOPE_BOUND_MB_PER_MIN = 1;

const RA = 'https://ra.example';
const SITE = 'https://site.example';
const SO_PIN = 'Soak7SoPinKelid';
const USER_PIN = '60381729';
const PLUG_PIN = '71829304';
const BATCH_SIZE = 10;
const BATCH_EVERY_MS = 3000;
const PLUG_EVERY_MS = 5000;
const RSS_EVERY_MS = 2000;

/** Codes a call that involves the hot-plug token may legitimately get while it is unplugged. */
const UNPLUGGED = new Set(['ERR_TOKEN_REMOVED', 'ERR_TOKEN_NOT_FOUND']);

interface TokenJson {
  tokenId: string;
  moduleId: string;
  label: string;
  initialized: boolean;
}
interface CertificateJson {
  certificateId: string;
  certificate: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resident set size (kB) of a process and of its direct children (the module hosts). */
function treeRssKb(pid: number): { agent: number; hosts: number } {
  const rss = (p: number): number => {
    try {
      return rssKb(p);
    } catch {
      return 0;
    }
  };
  return { agent: rss(pid), hosts: childPids(pid).reduce((sum, c) => sum + rss(c), 0) };
}

describe('Agent soak: mixed load with hot-plug', () => {
  const signHsm = new SoftHsm('kelid-soak-sign-');
  const plugHsm = new SoftHsm('kelid-soak-plug-');
  let pki: TestPki;
  let agent: AgentProcess;
  let signTokenId = '';
  /** Tokens of the signing module: they must never come or go. */
  let certificate: CertificateJson;
  /** The same objects as the site's pages name them (ids are per origin, PROTOCOL.md section 4). */
  const siteIds = { signToken: '', plugToken: '', certificate: '', steadyTokens: [] as string[] };
  const clients: RpcClient[] = [];

  beforeAll(async () => {
    signHsm.initToken('soak-sign', SO_PIN, USER_PIN);
    plugHsm.initToken('soak-plug', SO_PIN, PLUG_PIN);
    pki = await TestPki.create();
    await pki.startOcsp();
    agent = await AgentProcess.start({
      prefix: 'kelid-soak-',
      config: {
        modules: [
          { id: 'sign', path: signHsm.module, env: signHsm.env },
          { id: 'plug', path: plugHsm.module, env: plugHsm.env },
        ],
        raOrigins: [RA],
        sites: [SITE],
        consent: { timeoutSeconds: 60 },
        revocation: { enforceOnSign: 'block-revoked', timeoutSeconds: 5 },
      },
    });
    // The RA desk makes the signing key and certificate on the token, as in ra-flow.test.ts.
    const ra = await agent.connect(RA);
    const { tokens } = await ra.call<{ tokens: TokenJson[] }>('tokens.list');
    signTokenId = tokens.find((t) => t.label === 'soak-sign')!.tokenId;
    let id = ra.nextId;
    const generated = ra.call<{ csr: string }>('keys.generate', {
      tokenId: signTokenId,
      algorithm: { name: 'EC', namedCurve: 'P-256' },
      label: 'soak',
      csr: {
        subject: [{ type: 'CN', value: 'Kelid Soak' }],
        keyUsage: ['digitalSignature', 'nonRepudiation'],
      },
    });
    expect((await agent.consent(await ra.consentFor(id), { userPin: USER_PIN })).status).toBe(0);
    const issued = await pki.issueFromCsr('soak', (await generated).csr);
    id = ra.nextId;
    const imported = ra.call<{ certificate: CertificateJson }>('certificates.import', {
      tokenId: signTokenId,
      certificate: issued.pem,
      chain: [pki.intermediate.pem, pki.root.pem],
      label: 'soak',
    });
    expect((await agent.consent(await ra.consentFor(id), { userPin: USER_PIN })).status).toBe(0);
    certificate = (await imported).certificate;
    await ra.close();
    const site = await agent.connect(SITE);
    const siteTokens = (await site.call<{ tokens: TokenJson[] }>('tokens.list')).tokens;
    siteIds.signToken = siteTokens.find((t) => t.label === 'soak-sign')!.tokenId;
    siteIds.plugToken = siteTokens.find((t) => t.label === 'soak-plug')!.tokenId;
    siteIds.steadyTokens = siteTokens.filter((t) => t.moduleId === 'sign').map((t) => t.tokenId);
    const { certificates } = await site.call<{ certificates: CertificateJson[] }>('certificates.list', {
      tokenId: siteIds.signToken,
    });
    siteIds.certificate = certificates.find((c) => c.certificate === certificate.certificate)!.certificateId;
    await site.close();
  }, 120_000);

  afterAll(async () => {
    for (const c of clients) await c.close();
    await agent?.stop();
    agent?.cleanup();
    signHsm.cleanup();
    plugHsm.cleanup();
    await pki?.cleanup();
  });

  it(
    `keeps serving list, status, batch signatures and hot-plug for ${SECONDS} s without errors, leaks or stuck consents`,
    async () => {
      const deadline = Date.now() + SECONDS * 1000;
      const running = (): boolean => Date.now() < deadline;
      const counts: Record<string, number> = {};
      const expected: Record<string, number> = {};
      const unexpected: string[] = [];
      const count = (k: string, into = counts): void => {
        into[k] = (into[k] ?? 0) + 1;
      };
      const fail = (what: string, e: unknown): void => {
        const code = e instanceof RpcError ? (e.data?.code ?? String(e.code)) : '';
        const text = `${what}: ${code} ${e instanceof Error ? e.message : String(e)}`;
        if (unexpected.length < 50) unexpected.push(text);
        count('unexpectedErrors');
      };
      /** A call; errors in `allowed` are counted as expected, anything else as unexpected. */
      const call = async <T>(
        client: RpcClient,
        method: string,
        params: unknown,
        allowed: ReadonlySet<string> = new Set(),
      ): Promise<T | undefined> => {
        try {
          const r = await client.call<T>(method, params);
          count(method);
          return r;
        } catch (e) {
          const code = e instanceof RpcError ? e.data?.code : undefined;
          if (code !== undefined && allowed.has(code)) count(`${method} ${code}`, expected);
          else fail(method, e);
          return undefined;
        }
      };

      const lister = await agent.connect(SITE);
      const checker = await agent.connect(SITE);
      const signer = await agent.connect(RA);
      clients.push(lister, checker, signer);
      for (const c of clients) void c.closed.then(() => running() && fail('connection', new Error('closed')));

      // Hot-plug: the token's directory of the second SoftHSM renamed away and back.
      const plugDir = fs.readdirSync(plugHsm.tokenDir)[0];
      const plugged = path.join(plugHsm.tokenDir, plugDir);
      const away = path.join(plugHsm.dir, 'unplugged');
      let isPlugged = true;
      let unplugs = 0;
      let replugs = 0;
      const plugLoop = (async () => {
        while (running()) {
          await sleep(PLUG_EVERY_MS);
          if (!running()) break;
          if (isPlugged) {
            fs.renameSync(plugged, away);
            unplugs += 1;
          } else {
            fs.renameSync(away, plugged);
            replugs += 1;
          }
          isPlugged = !isPlugged;
        }
        if (!isPlugged) {
          fs.renameSync(away, plugged);
          replugs += 1;
          isPlugged = true;
        }
      })();

      const listLoop = (async () => {
        while (running()) {
          await call(lister, 'tokens.list', {});
          // Listing every token touches the hot-plug one too.
          await call(lister, 'certificates.list', {}, UNPLUGGED);
          const own = await call<{ certificates: CertificateJson[] }>(lister, 'certificates.list', {
            tokenId: siteIds.signToken,
          });
          if (own && !own.certificates.some((c) => c.certificateId === siteIds.certificate))
            fail('certificates.list', new Error('the signing certificate is missing'));
          await call(lister, 'certificates.list', { tokenId: siteIds.plugToken }, UNPLUGGED);
          await sleep(100);
        }
      })();

      const statusLoop = (async () => {
        while (running()) {
          const r = await call<{ status: string }>(checker, 'certificates.status', {
            certificateId: siteIds.certificate,
          });
          if (r && r.status !== 'good') fail('certificates.status', new Error(`status ${r.status}`));
          await sleep(500);
        }
      })();

      const publicKey = new X509Certificate(Buffer.from(certificate.certificate, 'base64')).publicKey;
      let signatures = 0;
      let badSignatures = 0;
      const signLoop = (async () => {
        while (running()) {
          const started = Date.now();
          const documents = Array.from({ length: BATCH_SIZE }, (_, i) => randomBytes(64 + i));
          const id = signer.nextId;
          const batch = signer.call<{ results: Array<{ signature: string }> }>('sign.batch', {
            certificateId: certificate.certificateId,
            format: 'raw',
            digestAlgorithm: 'SHA-256',
            items: documents.map((d, i) => ({
              digest: createHash('sha256').update(d).digest('base64'),
              summary: `soak ${id}/${i}`,
            })),
          });
          const pending = await Promise.race([
            signer.consentFor(id),
            batch.then(
              () => null,
              () => null,
            ),
          ]);
          if (pending === null) {
            await batch.catch((e: unknown) => fail('sign.batch (before consent)', e));
          } else {
            const approved = await agent.consent(pending, { userPin: USER_PIN });
            if (approved.status !== 0) fail('consent approve', new Error(approved.stderr.trim()));
            try {
              const { results } = await batch;
              count('sign.batch');
              results.forEach((r, i) => {
                if (cryptoVerify('sha256', documents[i], publicKey, Buffer.from(r.signature, 'base64')))
                  signatures += 1;
                else badSignatures += 1;
              });
              if (results.length !== BATCH_SIZE) fail('sign.batch', new Error(`${results.length} results`));
            } catch (e) {
              fail('sign.batch', e);
            }
          }
          await sleep(Math.max(0, BATCH_EVERY_MS - (Date.now() - started)));
        }
      })();

      const started = Date.now();
      const rss: Array<{ s: number; agentKb: number; hostsKb: number }> = [];
      const rssLoop = (async () => {
        while (running()) {
          const r = treeRssKb(agent.pid);
          rss.push({ s: Math.round((Date.now() - started) / 100) / 10, agentKb: r.agent, hostsKb: r.hosts });
          await sleep(RSS_EVERY_MS);
        }
      })();

      await Promise.all([plugLoop, listLoop, statusLoop, signLoop, rssLoop]);

      // The last plug reaches the pages (the watcher polls every second).
      const changes = (): Array<{ added: TokenJson[]; removed: string[] }> =>
        lister.notifications
          .filter((n) => n.method === 'tokens.changed')
          .map((n) => n.params as { added: TokenJson[]; removed: string[] });
      const addedCount = (): number =>
        changes().filter((c) => c.added.some((t) => t.tokenId === siteIds.plugToken)).length;
      const settle = Date.now() + 15_000;
      while (addedCount() < replugs && Date.now() < settle) await sleep(200);
      const removedNotifications = changes().filter((c) => c.removed.includes(siteIds.plugToken)).length;
      const addedNotifications = addedCount();
      // Only the hot-plug module's slots come and go (SoftHSM also renumbers its free slot then).
      const others = changes().filter(
        (c) =>
          c.added.some((t) => t.moduleId !== 'plug') ||
          c.removed.some((t) => siteIds.steadyTokens.includes(t)),
      );

      const pendingConsents = await agent.pendingConsents();
      const half = rss.filter((r) => r.s >= SECONDS / 2);
      const minutes = half.map((r) => r.s / 60);
      const slopeAgent = slope(
        minutes,
        half.map((r) => r.agentKb / 1024),
      );
      const slopeTotal = slope(
        minutes,
        half.map((r) => (r.agentKb + r.hostsKb) / 1024),
      );
      const summary = {
        seconds: SECONDS,
        counts,
        expectedErrors: expected,
        unexpectedErrors: unexpected,
        signatures: { verified: signatures, invalid: badSignatures },
        hotplug: {
          unplugs,
          replugs,
          removedNotifications,
          addedNotifications,
          otherTokenChanges: others,
        },
        pendingConsentsAtEnd: pendingConsents.length,
        rss: {
          firstKb: rss[0],
          lastKb: rss[rss.length - 1],
          maxAgentKb: Math.max(...rss.map((r) => r.agentKb)),
          slopeSecondHalfMbPerMin: {
            agent: Number(slopeAgent.toFixed(3)),
            withModuleHosts: Number(slopeTotal.toFixed(3)),
          },
          samples: rss,
        },
      };
      if (REPORT !== undefined) {
        fs.writeFileSync(REPORT, `${JSON.stringify(summary, null, 2)}\n`);
        console.log(JSON.stringify({ ...summary, rss: { ...summary.rss, samples: rss.length } }, null, 2));
      }

      expect(unexpected).toEqual([]);
      expect(counts.unexpectedErrors ?? 0).toBe(0);
      expect(counts['sign.batch']).toBeGreaterThanOrEqual(Math.floor(SECONDS / 6));
      expect(signatures).toBe(counts['sign.batch'] * BATCH_SIZE);
      expect(badSignatures).toBe(0);
      expect(counts['tokens.list']).toBeGreaterThan(SECONDS);
      expect(counts['certificates.status']).toBeGreaterThan(SECONDS / 2);
      expect(unplugs).toBeGreaterThanOrEqual(Math.floor(SECONDS / 10));
      expect(removedNotifications).toBe(unplugs);
      expect(addedNotifications).toBe(replugs);
      expect(others).toEqual([]);
      expect(pendingConsents).toEqual([]);
      expect(summary.rss.maxAgentKb - rss[0].agentKb).toBeLessThan(200 * 1024);
      if (LONG_RUN) expect(slopeTotal).toBeLessThan(SLOPE_BOUND_MB_PER_MIN);
      expect(agent.child.exitCode).toBeNull();
    },
    (SECONDS + 120) * 1000,
  );
});
