// Start-up: process start to GET /health answering, for `kelid serve` (one SoftHSM module) and for
// the least a token agent must do (bench/lib/baseline-server.js: pkcs11js, the module, the token
// list, an HTTPS listener).
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../test/helpers/test-ca.js';
import type { Fixture } from '../lib/fixture.js';
import type { Profile } from '../lib/profile.js';
import { row } from '../lib/report.js';
import type { Row } from '../lib/report.js';
import { median, nowMs } from '../lib/stats.js';

const SECTION = 'Start-up: process start to /health answering (ms)';
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

/** Spawn, poll /health every 5 ms, return the time to the first 200, then stop the process. */
async function timeToHealth(args: string[], port: number, env: NodeJS.ProcessEnv): Promise<number> {
  const t0 = nowMs();
  const child = spawn(process.execPath, args, { cwd: REPO, env, stdio: 'ignore' });
  const exited = new Promise((r) => child.once('exit', r));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${args[0]} exited before answering /health`);
      if (await healthy(port)) return nowMs() - t0;
      if (nowMs() - t0 > 60_000) throw new Error(`${args[0]} did not answer /health within 60 s`);
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
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
    const warm: number[] = [];
    let cold = Number.NaN;
    const stateDir = join(dir, 'state');
    const config = join(dir, 'config.json');
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
      );
      // The first start of an install generates its local CA and TLS key; later starts load them.
      if (r === 0) cold = t;
      else warm.push(t);
      if (r > 0) {
        const bport = await freePort();
        baseline.push(
          await timeToHealth(
            ['bench/lib/baseline-server.js', f.hsm.module, String(bport), key, cert],
            bport,
            env,
          ),
        );
      }
    }
    return [
      row({
        section: SECTION,
        measure: `kelid serve, median of ${p.startups} starts (TLS material already generated)`,
        unit: 'ms',
        baselineLabel: 'node + pkcs11js + module + HTTPS listener',
        baseline: median(baseline),
        kelid: median(warm),
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
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
