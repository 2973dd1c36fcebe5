import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { readBoundedBody } from '../net/bounded-body.js';
import { AGENT_INFO_FILE, readAgentInfo } from '../agent/files.js';
import { isProcessAlive } from './process-alive.js';
import type { KelidConfig } from '../config.js';
import { LOG_DIR, LOG_FILE } from '../log-file.js';
import { AGENT_PORT_RANGE } from '../platform-paths.js';
import type { PlatformEnv } from '../platform-paths.js';
import { createServices } from '../services.js';
import type { RunningServices } from '../services.js';
import { readCaCertificate } from '../transport/tls.js';
import { readInstallState } from './installer.js';
import { readUpdateCheck } from './update-manifest.js';
import { NSS_NICKNAME, hasCertutil, nssDatabases, readNssEntry } from './trust-stores.js';

// `kelid doctor`: what a help desk asks first, checked and reported without secrets. Every check
// returns a status and one line for people; `details` carry the rest for --json and the bundle.

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface DoctorCheck {
  id: string;
  status: CheckStatus;
  summary: string;
  details?: unknown;
}

export interface DoctorReport {
  generatedAt: string;
  versions: Record<string, string>;
  stateDir: string;
  checks: DoctorCheck[];
}

export interface DoctorOptions {
  config: KelidConfig;
  stateDir: string;
  platform: PlatformEnv;
  version: string;
  /** Deadline of each network check (ms). */
  timeoutMs?: number;
}

/** Listening TCP ports on Linux and the uid holding each, from /proc/net/tcp{,6}. */
export function listeningPortOwners(read: (f: string) => string | null = readProc): Map<number, number> {
  const owners = new Map<number, number>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = read(f);
    if (text === null) continue;
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 8 || cols[3] !== '0A') continue;
      const port = parseInt(cols[1].split(':')[1] ?? '', 16);
      if (Number.isInteger(port)) owners.set(port, Number(cols[7]));
    }
  }
  return owners;
}

function readProc(f: string): string | null {
  try {
    return fs.readFileSync(f, 'utf8');
  } catch {
    return null;
  }
}

function userName(uid: number): string {
  try {
    for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const [name, , id] = line.split(':');
      if (Number(id) === uid) return name;
    }
  } catch {
    // no passwd file
  }
  return `uid ${uid}`;
}

/** The agent's /health answer is `{"status":"ok"}`: anything much longer is not the agent. */
const HEALTH_BODY_BYTES = 4096;

interface HttpAnswer {
  status: number;
  date?: string;
  body: string;
}

/** One request; the body is read up to `maxBodyBytes` (0: not read, the connection is dropped). */
function request(
  url: string,
  options: https.RequestOptions,
  timeoutMs: number,
  maxBodyBytes: number,
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const lib = url.startsWith('https:') ? https : http;
    const req = lib.request(url, { ...options, agent: false, timeout: timeoutMs }, (res) => {
      const answer = (body: string): HttpAnswer => ({
        status: res.statusCode ?? 0,
        body,
        ...(res.headers.date ? { date: res.headers.date } : {}),
      });
      if (maxBodyBytes === 0) {
        res.destroy();
        resolve(answer(''));
        return;
      }
      readBoundedBody(res, maxBodyBytes).then((body) => resolve(answer(body.toString('utf8'))), reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

function message(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0] : String(e);
}

async function agentChecks(o: DoctorOptions, timeoutMs: number): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const info = readAgentInfo(o.stateDir);
  const ports =
    o.config.port === AGENT_PORT_RANGE[0]
      ? [...AGENT_PORT_RANGE]
      : o.config.port === 0
        ? info
          ? [info.port]
          : []
        : [o.config.port];
  if (o.platform.platform === 'linux') {
    const owners = listeningPortOwners();
    const me = process.getuid?.();
    const held = ports.map((port) => {
      const uid = owners.get(port);
      return {
        port,
        holder: uid === undefined ? null : userName(uid),
        ours: uid !== undefined && uid === me,
        agent: info?.port === port,
      };
    });
    const mine = held.find((h) => h.agent && h.ours);
    checks.push({
      id: 'port',
      status: mine ? 'ok' : held.every((h) => h.holder !== null) ? 'fail' : 'warn',
      summary: mine
        ? `the agent listens on 127.0.0.1:${mine.port}`
        : held.every((h) => h.holder !== null)
          ? `every port of ${ports.join(', ')} is taken`
          : `no agent of this user listens on ${ports.join(', ')}`,
      details: held,
    });
  } else {
    checks.push({
      id: 'port',
      status: 'skip',
      summary: 'port owners are read on Linux only',
      details: { ports },
    });
  }
  if (!info) {
    checks.push({ id: 'agent', status: 'fail', summary: `the agent is not running (no ${AGENT_INFO_FILE})` });
    return checks;
  }
  if (!isProcessAlive(info.pid)) {
    checks.push({
      id: 'agent',
      status: 'fail',
      summary: `agent.json names pid ${info.pid}, which is not running`,
    });
    return checks;
  }
  try {
    const answer = await request(
      `https://127.0.0.1:${info.port}/health`,
      { ca: info.caCertificatePem, headers: { Host: `127.0.0.1:${info.port}` } },
      timeoutMs,
      HEALTH_BODY_BYTES,
    );
    const healthy = answer.status === 200;
    checks.push({
      id: 'agent',
      status: healthy ? 'ok' : 'fail',
      summary: healthy
        ? `running (pid ${info.pid}) and healthy`
        : `running (pid ${info.pid}); /health answered ${answer.status}`,
      details: { pid: info.pid, port: info.port, url: info.url },
    });
  } catch (e) {
    checks.push({
      id: 'agent',
      status: 'fail',
      summary: `pid ${info.pid} runs but /health failed: ${message(e)}`,
    });
  }
  return checks;
}

function trustChecks(o: DoctorOptions): DoctorCheck[] {
  const ca = readCaCertificate(o.stateDir)?.trim();
  if (!ca)
    return [
      { id: 'trust', status: 'warn', summary: 'no local CA yet (the agent creates it on first start)' },
    ];
  if (o.platform.platform !== 'linux') {
    const store = readInstallState(o.stateDir)?.steps.trust;
    return [
      {
        id: 'trust',
        status: store ? 'ok' : 'warn',
        summary: store
          ? 'kelid install trusted the CA (the system store is not read back here)'
          : 'the CA was not installed: run "kelid install"',
      },
    ];
  }
  if (!hasCertutil()) {
    return [
      { id: 'trust', status: 'skip', summary: 'certutil is not installed (apt install libnss3-tools)' },
    ];
  }
  const checks: DoctorCheck[] = [];
  for (const db of nssDatabases(o.platform)) {
    if (!fs.existsSync(path.join(db.dir, 'cert9.db'))) {
      checks.push({
        id: 'trust',
        status: 'skip',
        summary: `${db.browser}: no NSS database yet`,
        details: { dir: db.dir },
      });
      continue;
    }
    const entries = readNssEntry(db.dir).map((p) => p.replace(/\r/g, '').trim());
    const ok = entries.includes(ca);
    checks.push({
      id: 'trust',
      status: ok ? 'ok' : 'warn',
      summary: ok
        ? `${db.browser} trusts the CA`
        : entries.length > 0
          ? `${db.browser} trusts an older "${NSS_NICKNAME}": run "kelid install"`
          : `${db.browser} does not trust the CA: run "kelid install"`,
      details: { dir: db.dir },
    });
  }
  return checks;
}

async function moduleChecks(o: DoctorOptions): Promise<DoctorCheck[]> {
  let services: RunningServices;
  try {
    // The agent's own composition: the same modules, deadlines and quirks it would load.
    services = await createServices(o.config, { stateDir: o.stateDir, watchTokens: false });
  } catch (e) {
    return [{ id: 'modules', status: 'fail', summary: `modules could not start: ${message(e)}` }];
  }
  try {
    const status = services.modules();
    const failed = status.filter((m) => m.state !== 'loaded');
    const checks: DoctorCheck[] = [
      {
        id: 'modules',
        status: status.length === 0 ? 'warn' : failed.length > 0 ? 'warn' : 'ok',
        summary:
          status.length === 0
            ? 'no PKCS#11 module found'
            : `${status.length - failed.length} of ${status.length} modules loaded${failed.length > 0 ? `; failed: ${failed.map((m) => `${m.id} (${m.reason ?? m.state})`).join(', ')}` : ''}`,
        details: status.map((m) => ({
          id: m.id,
          path: m.path,
          state: m.state,
          ...(m.reason ? { reason: m.reason } : {}),
        })),
      },
    ];
    try {
      const tokens = await services.listTokens();
      checks.push({
        id: 'tokens',
        status: tokens.length > 0 ? 'ok' : 'warn',
        summary: tokens.length > 0 ? `${tokens.length} token(s) present` : 'no token present',
        // Labels and models only: what a help desk needs to tell tokens apart, no objects.
        details: tokens.map((t) => ({ label: t.label, model: t.model, manufacturer: t.manufacturer })),
      });
    } catch (e) {
      checks.push({ id: 'tokens', status: 'fail', summary: `listing tokens failed: ${message(e)}` });
    }
    return checks;
  } finally {
    await services.close();
  }
}

function pcscdCheck(o: DoctorOptions): DoctorCheck {
  if (o.platform.platform !== 'linux')
    return {
      id: 'pcscd',
      status: 'skip',
      summary: 'Linux only (the smart card service is built in elsewhere)',
    };
  const sockets = ['/run/pcscd/pcscd.comm', '/var/run/pcscd/pcscd.comm'];
  const found = sockets.find((s) => fs.existsSync(s));
  return found
    ? { id: 'pcscd', status: 'ok', summary: `pcscd socket present (${found})` }
    : {
        id: 'pcscd',
        status: 'warn',
        summary: 'pcscd is not running: smart card readers (not SoftHSM) need it (apt install pcscd)',
      };
}

async function networkChecks(o: DoctorOptions, timeoutMs: number): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  checks.push({
    id: 'ocsp',
    status: 'skip',
    summary:
      'OCSP responders come from each certificate (checked with "kelid status <certificate>"); no proxy is configured: connections are direct',
  });
  let date: string | undefined;
  if (o.config.tsaUrl) {
    try {
      // Only the status line and Date matter: the page a TSA shows for GET is not read.
      const answer = await request(o.config.tsaUrl, { method: 'GET' }, timeoutMs, 0);
      date = answer.date;
      checks.push({
        id: 'tsa',
        status: 'ok',
        summary: `TSA ${o.config.tsaUrl} answered HTTP ${answer.status}`,
      });
    } catch (e) {
      checks.push({
        id: 'tsa',
        status: 'fail',
        summary: `TSA ${o.config.tsaUrl} unreachable: ${message(e)}`,
      });
    }
  } else {
    checks.push({ id: 'tsa', status: 'skip', summary: 'no tsaUrl configured' });
  }
  if (date === undefined) {
    checks.push({
      id: 'clock',
      status: 'skip',
      summary: 'no configured server answered with a Date header to compare the clock with',
    });
  } else {
    const skew = Math.round((Date.now() - Date.parse(date)) / 1000);
    checks.push({
      id: 'clock',
      status: Math.abs(skew) > 60 ? 'warn' : 'ok',
      summary: `clock is ${Math.abs(skew)} s ${skew >= 0 ? 'ahead of' : 'behind'} the TSA's`,
      details: { skewSeconds: skew },
    });
  }
  return checks;
}

function updateCheck(o: DoctorOptions): DoctorCheck {
  if (o.config.updates.url === null)
    return { id: 'updates', status: 'skip', summary: 'no updates.url configured' };
  const last = readUpdateCheck(o.stateDir);
  if (!last) return { id: 'updates', status: 'skip', summary: 'the agent has not checked for updates yet' };
  switch (last.status) {
    case 'available':
      return {
        id: 'updates',
        status: 'warn',
        summary: `Kelid ${last.latest} is available: ${last.download}`,
        details: last,
      };
    case 'current':
      return {
        id: 'updates',
        status: 'ok',
        summary: `up to date (latest ${last.latest}, checked ${last.checkedAt})`,
      };
    default:
      return { id: 'updates', status: 'warn', summary: `last update check: ${last.reason}`, details: last };
  }
}

/** Run every check. */
export async function runDoctor(o: DoctorOptions): Promise<DoctorReport> {
  const timeoutMs = o.timeoutMs ?? 5000;
  const versions: Record<string, string> = {
    kelid: o.version,
    node: process.versions.node,
    openssl: process.versions.openssl,
    platform: `${process.platform} ${os.release()} ${process.arch}`,
  };
  const checks: DoctorCheck[] = [
    {
      id: 'versions',
      status: 'ok',
      summary: `kelid ${o.version}, node ${process.versions.node}, ${versions.platform}`,
    },
    ...(await agentChecks(o, timeoutMs)),
    ...trustChecks(o),
    ...(await moduleChecks(o)),
    pcscdCheck(o),
    ...(await networkChecks(o, timeoutMs)),
    updateCheck(o),
  ];
  return { generatedAt: new Date().toISOString(), versions, stateDir: o.stateDir, checks };
}

/** The report for people: one line per check. */
export function formatDoctor(report: DoctorReport): string {
  const mark: Record<CheckStatus, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL', skip: 'skip' };
  return `${report.checks.map((c) => `${mark[c.status]}  ${c.id.padEnd(8)} ${c.summary}`).join('\n')}\n`;
}

/** The agent's log file in a state directory. */
export function logFileOf(stateDir: string): string {
  return path.join(stateDir, LOG_DIR, LOG_FILE);
}
