// Start-up: process start to GET /health answering, for `kelid serve` (one SoftHSM module) and for
// the least a token agent must do (bench/lib/baseline-server.js: pkcs11js, the module, the token
// list, an HTTPS listener).
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../test/helpers/test-ca.js';
import type { Fixture } from '../lib/fixture.js';
import type { Profile } from '../lib/profile.js';
import { row } from '../lib/report.js';
import type { Row } from '../lib/report.js';
import { childPids, median, nowMs, rssMiB } from '../lib/stats.js';

const SECTION = 'Start-up: process start to /health answering (ms)';
/** The memory section's title (bench/cases/memory.ts): the figure at ready is read here, at start. */
const SECTION_M = 'Memory: resident set size (MiB)';
const REPO = fileURLToPath(new URL('../../', import.meta.url));

function healthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = get(
      { host: '127.0.0.1', port, path: '/health', rejectUnauthorized: false, timeout: 1000 },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
  });
}

/** Spawn, poll /health every 5 ms, return the time to the first 200 and what `atReady` read, then stop. */
async function timeToHealth<T>(
  args: string[],
  port: number,
  env: NodeJS.ProcessEnv,
  atReady: (pid: number, spawnedAt: number) => Promise<T>,
): Promise<{ ms: number; ready: T }> {
  const t0 = nowMs();
  const spawnedAt = Date.now();
  const child = spawn(process.execPath, args, { cwd: REPO, env, stdio: 'ignore' });
  const exited = new Promise((r) => child.once('exit', r));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${args[0]} exited before answering /health`);
      if (await healthy(port)) {
        const ms = nowMs() - t0;
        return { ms, ready: await atReady(child.pid!, spawnedAt) };
      }
      if (nowMs() - t0 > 60_000) throw new Error(`${args[0]} did not answer /health within 60 s`);
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

/** RSS (MiB) of a process and of its children (the agent and its module host), read from /proc. */
function rssWithChildren(pid: number): { own: number; children: number } {
  return { own: rssMiB(pid), children: childPids(pid).reduce((sum, p) => sum + rssMiB(p), 0) };
}

/**
 * Milliseconds from the spawn of agent `pid` to its first module host's "module loaded" log line
 * (the host has loaded the library and run C_Initialize), read from the agent's own log file.
 */
async function hostReadyMs(logFile: string, pid: number, spawnedAt: number): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const lines = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n') : [];
    for (const line of lines) {
      if (!line.includes('"module loaded"')) continue;
      const entry = JSON.parse(line) as { pid?: number; time?: number };
      if (entry.pid === pid && typeof entry.time === 'number') return entry.time - spawnedAt;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('the agent never logged "module loaded"');
}

export async function startup(f: Fixture, p: Profile): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'kelid-bench-startup-'));
  try {
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-subj',
        '/CN=127.0.0.1',
        '-days',
        '1',
      ],
      { stdio: 'ignore' },
    );
    const env = { ...process.env, ...f.hsm.env };
    const baseline: number[] = [];
    const baselineRss: number[] = [];
    const warm: number[] = [];
    const hostReady: number[] = [];
    const rssAtReady: number[] = [];
    const agentRss: number[] = [];
    const noModule: number[] = [];
    let cold = Number.NaN;
    const stateDir = join(dir, 'state');
    const config = join(dir, 'config.json');
    const logFile = join(stateDir, 'logs', 'kelid.log');
    for (let r = 0; r <= p.startups; r++) {
      const port = await freePort();
      writeFileSync(
        config,
        JSON.stringify({
          port,
          autoDetectModules: false,
          modules: [{ id: 'softhsm', path: f.hsm.module, env: f.hsm.env }],
          consent: { launcher: 'none' },
        }),
      );
      const t = await timeToHealth(
        ['bin/kelid.js', 'serve', '--config', config, '--state-dir', stateDir],
        port,
        env,
        async (pid, spawnedAt) => ({
          rss: rssWithChildren(pid),
          host: await hostReadyMs(logFile, pid, spawnedAt),
        }),
      );
      // The first start of an install generates its local CA and TLS key; later starts load them.
      if (r === 0) cold = t.ms;
      else {
        warm.push(t.ms);
        hostReady.push(t.ready.host);
        rssAtReady.push(t.ready.rss.own + t.ready.rss.children);
        agentRss.push(t.ready.rss.own);
      }
      if (r > 0) {
        // The same agent with no module configured: /health as soon as the agent itself is up, what
        // listening before the module hosts are ready would give.
        const nport = await freePort();
        writeFileSync(
          config,
          JSON.stringify({
            port: nport,
            autoDetectModules: false,
            modules: [],
            consent: { launcher: 'none' },
          }),
        );
        const n = await timeToHealth(
          ['bin/kelid.js', 'serve', '--config', config, '--state-dir', stateDir],
          nport,
          env,
          () => Promise.resolve(undefined),
        );
        noModule.push(n.ms);
        const bport = await freePort();
        const b = await timeToHealth(
          ['bench/lib/baseline-server.js', f.hsm.module, String(bport), key, cert],
          bport,
          env,
          (pid) => Promise.resolve(rssMiB(pid)),
        );
        baseline.push(b.ms);
        baselineRss.push(b.ready);
      }
    }
    const startMs = median(warm);
    const readyRss = median(rssAtReady);
    return [
      row({
        section: SECTION,
        measure: `kelid serve, median of ${p.startups} starts (TLS material already generated)`,
        unit: 'ms',
        baselineLabel: 'node + pkcs11js + module + HTTPS listener',
        baseline: median(baseline),
        kelid: startMs,
        better: 'lower',
        target: { text: 'start-up to /health ≤ 500 ms', met: startMs <= 500 },
      }),
      row({
        section: SECTION,
        measure: `kelid serve, spawn to its first module host ready (library loaded, C_Initialize done), median of ${p.startups}`,
        unit: 'ms',
        baselineLabel: 'node + pkcs11js + module + HTTPS listener',
        baseline: median(baseline),
        kelid: median(hostReady),
        better: 'lower',
      }),
      row({
        section: SECTION,
        measure: `kelid serve with no module configured (the agent alone: /health if it listened before its module hosts are ready), median of ${p.startups}`,
        unit: 'ms',
        baselineLabel: 'node + pkcs11js + module + HTTPS listener',
        baseline: median(baseline),
        kelid: median(noModule),
        better: 'lower',
      }),
      row({
        section: SECTION,
        measure: 'kelid serve, first start of an install (generates its local CA and TLS key)',
        unit: 'ms',
        baselineLabel: 'node + pkcs11js + module + HTTPS listener',
        baseline: median(baseline),
        kelid: cold,
        better: 'lower',
      }),
      row({
        section: SECTION_M,
        measure: `at ready: RSS of agent + one module host when /health first answers, median of ${p.startups}`,
        unit: 'MiB',
        baselineLabel: 'node + pkcs11js + module + HTTPS listener',
        baseline: median(baselineRss),
        kelid: readyRss,
        better: 'lower',
        note: `agent ${median(agentRss).toFixed(0)} MiB, module host ${(readyRss - median(agentRss)).toFixed(0)} MiB`,
        target: { text: 'RSS at ready ≤ 100 MiB', met: readyRss <= 100 },
      }),
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
