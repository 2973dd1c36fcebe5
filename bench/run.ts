// npm run bench: Kelid against raw pkcs11js on the same SoftHSM token in the same run — throughput,
// latency, event-loop freedom, provisioning, start-up, memory and large-file hashing. Writes
// <out>/latest.json and <out>/latest.md (default bench/results/), and with the full profile the
// Performance section of README.md. Figures are reported against the targets, never asserted.
//
//   npm run bench                      full profile (about 10 minutes on 2 cores)
//   npm run bench -- --smoke           tiny counts: keeps the bench working (CI); numbers mean nothing
//   npm run bench -- --only signing,memory --out /tmp/b
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { audit } from './cases/audit.js';
import { eventLoop } from './cases/event-loop.js';
import { largeFile } from './cases/large-file.js';
import { memory } from './cases/memory.js';
import { provisioning } from './cases/provisioning.js';
import { apiLevel, hostLevel } from './cases/signing.js';
import { startup } from './cases/startup.js';
import { Fixture } from './lib/fixture.js';
import { PROFILES } from './lib/profile.js';
import { markdown } from './lib/report.js';
import type { Row } from './lib/report.js';
import { nowMs } from './lib/stats.js';

const CASES = ['signing', 'event-loop', 'provisioning', 'startup', 'memory', 'large-file', 'audit'] as const;
type CaseName = (typeof CASES)[number];

const REPO = fileURLToPath(new URL('../', import.meta.url));
const README_BEGIN = '<!-- bench:begin -->';
const README_END = '<!-- bench:end -->';

const opts = new Command()
  .name('bench')
  .option('--smoke', 'tiny counts (CI keeps the bench working; the numbers mean nothing)')
  .option('--only <cases>', `comma-separated subset of: ${CASES.join(', ')}`)
  .option('--out <dir>', 'where latest.json and latest.md go', join(REPO, 'bench', 'results'))
  .option('--no-readme', 'do not update README.md (the full profile does by default)')
  .parse()
  .opts<{ smoke?: boolean; only?: string; out: string; readme: boolean }>();

const profile = PROFILES[opts.smoke ? 'smoke' : 'full'];
const only = new Set<CaseName>(
  opts.only ? (opts.only.split(',').map((s) => s.trim()) as CaseName[]) : [...CASES],
);
for (const c of only) if (!CASES.includes(c)) throw new Error(`unknown case ${c}`);

const started = nowMs();
const rows: Row[] = [];
const log = (s: string): void =>
  void process.stderr.write(`[bench ${((nowMs() - started) / 1000).toFixed(0)}s] ${s}\n`);

const f = await Fixture.create();
try {
  if (only.has('signing')) {
    log('signing: raw pkcs11js and module host');
    const host = await hostLevel(f, profile);
    rows.push(...host.rows);
    log('signing: WebSocket API');
    const agent = await f.startAgent();
    try {
      rows.push(...(await apiLevel(f, agent, profile, host.raw)));
    } catch (e) {
      log(`agent log (tail):\n${agent.stderr.slice(-3000)}`);
      throw e;
    } finally {
      await agent.stop();
      agent.cleanup();
    }
  }
  if (only.has('event-loop')) {
    log('event loop: tokens.list during key generation');
    rows.push(...(await eventLoop(f, profile)));
  }
  if (only.has('provisioning')) {
    log('provisioning');
    rows.push(...(await provisioning(f, profile)));
  }
  if (only.has('startup')) {
    log('start-up');
    rows.push(...(await startup(f, profile)));
  }
  if (only.has('memory')) {
    log('memory');
    rows.push(...(await memory(f, profile)));
  }
  if (only.has('large-file')) {
    log('large file hashing in Chromium');
    rows.push(...(await largeFile(profile)));
  }
  if (only.has('audit')) {
    log('audit log: group commit');
    rows.push(...(await audit(profile)));
  }
} finally {
  await f.cleanup();
}

const meta = {
  date: new Date().toISOString(),
  node: process.version,
  cpus: cpus().length,
  profile: profile.name,
  seconds: (nowMs() - started) / 1000,
};
const md = markdown(rows, meta);
mkdirSync(opts.out, { recursive: true });
writeFileSync(join(opts.out, 'latest.json'), `${JSON.stringify({ meta, profile, rows }, null, 2)}\n`);
writeFileSync(join(opts.out, 'latest.md'), md);
if (profile.name === 'full' && opts.readme && only.size === CASES.length) {
  const readmePath = join(REPO, 'README.md');
  const readme = readFileSync(readmePath, 'utf8');
  const a = readme.indexOf(README_BEGIN);
  const b = readme.indexOf(README_END);
  if (a >= 0 && b > a) {
    writeFileSync(readmePath, `${readme.slice(0, a + README_BEGIN.length)}\n${md}${readme.slice(b)}`);
  }
}
process.stdout.write(md);
