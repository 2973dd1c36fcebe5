import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readAgentInfo } from '../agent/files.js';
import { ensurePrivateDirectory } from '../consent/control-channel.js';
import { KelidError } from '../model/errors.js';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import type { PlatformEnv } from '../platform-paths.js';
import { TLS_DIR, ensureTlsMaterial, readCaCertificate } from '../transport/tls.js';
import { isProcessAlive } from './process-alive.js';
import { autostartPlan, chooseAutostart, hasUserSystemd } from './autostart.js';
import { planNativeHostManifests } from './native-host-manifests.js';
import type { AutostartKind } from './autostart.js';
import {
  caIdentity,
  hasCertutil,
  installInNssDb,
  macosTrustPlan,
  macosUntrustPlan,
  mkdirTracked,
  nssDatabases,
  removeEmptyDirs,
  uninstallFromNssDb,
  windowsTrustPlan,
  windowsUntrustPlan,
} from './trust-stores.js';
import type { NssInstallResult, PlannedCommand } from './trust-stores.js';

// `kelid install` / `kelid uninstall`: per user, no root. Install is a list of steps (autostart,
// trust, and the native-messaging manifests added by the extension work); each returns a record of
// exactly what it created, kept in `<stateDir>/install.json`, and uninstall undoes those records in
// reverse order. Nothing is removed that install did not create.

/** `<stateDir>/install.json`: what `kelid install` created (read by uninstall and by CA renewal). */
export const INSTALL_STATE_FILE = 'install.json';

export interface AutostartRecord {
  kind: AutostartKind;
  files: string[];
  links: string[];
  createdDirs: string[];
  removeCommands: PlannedCommand[];
}

export interface TrustRecord {
  nss: NssInstallResult[];
  /** Windows CurrentUser\Root / macOS login keychain: the thumbprint of the CA put there. */
  systemStore?: { kind: 'windows-user-root' | 'macos-login-keychain'; sha1: string };
}

export interface InstallState {
  version: 1;
  command: string[];
  /** Parents of the state directory that install created (removed by `uninstall --purge` when empty). */
  stateDirCreated: string[];
  steps: Record<string, unknown>;
}

export interface InstallContext {
  platform: PlatformEnv;
  stateDir: string;
  caPemFile: string;
  /** The command the login item runs. */
  command: string[];
  autostart: AutostartKind | 'none';
  /** Start the agent now (systemd/launchd/…); tests never do. */
  start: boolean;
  uid?: number;
  log: (line: string) => void;
}

/** One install step: `install` returns the record that `uninstall` is later given. */
export interface InstallStep {
  id: string;
  install(ctx: InstallContext): Promise<unknown>;
  uninstall(ctx: InstallContext, record: unknown): Promise<void>;
}

function run(cmd: PlannedCommand, log: (line: string) => void): boolean {
  try {
    execFileSync(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    return true;
  } catch (e) {
    log(`warning: ${cmd.join(' ')} failed: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
    return false;
  }
}

function writeFileTracked(file: string, content: string, mode: number, created: string[]): void {
  created.push(...mkdirTracked(path.dirname(file), 0o700));
  const tmp = `${file}.kelid-tmp`;
  fs.writeFileSync(tmp, content, { mode });
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, file);
}

const autostartStep: InstallStep = {
  id: 'autostart',
  async install(ctx) {
    if (ctx.autostart === 'none') return null;
    const plan = autostartPlan(ctx.autostart, ctx.platform, ctx.command, { uid: ctx.uid });
    const record: AutostartRecord = {
      kind: plan.kind,
      files: [],
      links: [],
      createdDirs: [],
      removeCommands: plan.removeCommands,
    };
    for (const f of plan.files) {
      writeFileTracked(f.path, f.content, f.mode, record.createdDirs);
      record.files.push(f.path);
      ctx.log(`wrote ${f.path}`);
    }
    for (const l of plan.links) {
      record.createdDirs.push(...mkdirTracked(path.dirname(l.path), 0o700));
      fs.rmSync(l.path, { force: true });
      fs.symlinkSync(l.target, l.path);
      record.links.push(l.path);
    }
    if (ctx.start) for (const c of plan.commands) run(c, ctx.log);
    // XDG autostart and the Run key only act at the next login: start the agent now as well.
    if (ctx.start && (plan.kind === 'xdg-autostart' || plan.kind === 'windows-run-key')) {
      await startDetached(ctx.command, ctx.stateDir, ctx.log);
    } else if (ctx.start && plan.kind === 'systemd') {
      // `systemctl --user enable --now` returns before the agent listens: wait, so that a
      // `kelid doctor` right after install finds it up.
      await waitForAgent(ctx.stateDir, () => undefined);
      if (runningAgentPid(ctx.stateDir) === null)
        ctx.log('warning: the agent is not up yet ("systemctl --user status kelid")');
    }
    return record;
  },
  async uninstall(ctx, raw) {
    const record = raw as AutostartRecord | null;
    if (!record) return;
    if (ctx.start) for (const c of record.removeCommands) run(c, ctx.log);
    if (ctx.start && (record.kind === 'xdg-autostart' || record.kind === 'windows-run-key')) {
      await stopRunningAgent(ctx.stateDir, ctx.log);
    }
    for (const l of record.links) fs.rmSync(l, { force: true });
    for (const f of record.files) fs.rmSync(f, { force: true });
    if (record.kind === 'systemd' && ctx.start) run(['systemctl', '--user', 'daemon-reload'], ctx.log);
    removeEmptyDirs(record.createdDirs);
  },
};

/** Put the CA into every store this user's browsers read; returns what was done. */
export function installTrust(
  ctx: Pick<InstallContext, 'platform' | 'caPemFile' | 'log' | 'start'>,
): TrustRecord {
  const record: TrustRecord = { nss: [] };
  const pem = fs.readFileSync(ctx.caPemFile, 'utf8');
  const { sha1 } = caIdentity(pem);
  if (ctx.platform.platform === 'linux') {
    if (!hasCertutil()) {
      ctx.log(
        'warning: certutil is not installed (Debian/Ubuntu: apt install libnss3-tools): no browser trusts the CA',
      );
    } else {
      for (const db of nssDatabases(ctx.platform)) {
        try {
          record.nss.push(installInNssDb(db.dir, ctx.caPemFile, db.create));
          ctx.log(`trusted the CA in ${db.browser}: ${db.dir}`);
        } catch (e) {
          ctx.log(
            `warning: could not trust the CA in ${db.dir}: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`,
          );
        }
      }
    }
  } else if (ctx.platform.platform === 'win32') {
    if (windowsTrustPlan(ctx.caPemFile).every((c) => run(c, ctx.log)))
      record.systemStore = { kind: 'windows-user-root', sha1 };
  } else if (macosTrustPlan(ctx.caPemFile, ctx.platform.home).every((c) => run(c, ctx.log))) {
    record.systemStore = { kind: 'macos-login-keychain', sha1 };
  }
  return record;
}

/** Remove the CA from every store `record` lists. */
export function uninstallTrust(ctx: Pick<InstallContext, 'platform' | 'log'>, record: TrustRecord): void {
  for (const r of record.nss) {
    try {
      uninstallFromNssDb(r);
    } catch (e) {
      ctx.log(
        `warning: could not remove the CA from ${r.dir}: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`,
      );
    }
  }
  const s = record.systemStore;
  if (s?.kind === 'windows-user-root') for (const c of windowsUntrustPlan(s.sha1)) run(c, ctx.log);
  if (s?.kind === 'macos-login-keychain')
    for (const c of macosUntrustPlan(s.sha1, ctx.platform.home)) run(c, ctx.log);
}

const trustStep: InstallStep = {
  id: 'trust',
  async install(ctx) {
    return installTrust(ctx);
  },
  async uninstall(ctx, raw) {
    if (raw) uninstallTrust(ctx, raw as TrustRecord);
  },
};

interface NativeMessagingRecord {
  files: string[];
  createdDirs: string[];
  /** Windows: HKCU keys naming the manifests. */
  registry: string[];
}

/** The program the login item runs, as the extension's host wrapper starts it (`kelid native-host`). */
function nativeHostProgram(ctx: InstallContext): {
  nodePath: string;
  kelidBin?: string;
  configPath?: string;
} {
  const serve = ctx.command.indexOf('serve');
  const program = ctx.command.slice(0, serve);
  const config = ctx.command.indexOf('--config');
  return {
    nodePath: program[0]!,
    ...(program.length > 1 ? { kelidBin: program[1]! } : {}),
    ...(config > serve ? { configPath: ctx.command[config + 1]! } : {}),
  };
}

/** The browser extension's native-messaging host manifests (docs/extension.md), for every browser. */
const nativeMessagingStep: InstallStep = {
  id: 'native-messaging',
  async install(ctx) {
    const plan = planNativeHostManifests({
      platform: ctx.platform.platform,
      home: ctx.platform.home,
      ...(ctx.platform.env.LOCALAPPDATA ? { localAppData: ctx.platform.env.LOCALAPPDATA } : {}),
      stateDir: ctx.stateDir,
      ...nativeHostProgram(ctx),
    });
    const record: NativeMessagingRecord = { files: [], createdDirs: [], registry: [] };
    for (const f of [plan.wrapper, ...plan.manifests]) {
      writeFileTracked(f.path, f.content, f.mode, record.createdDirs);
      record.files.push(f.path);
      ctx.log(`wrote ${f.path}`);
    }
    for (const r of plan.registry)
      if (run(['reg', 'add', r.key, '/ve', '/t', 'REG_SZ', '/d', r.value, '/f'], ctx.log))
        record.registry.push(r.key);
    return record;
  },
  async uninstall(ctx, raw) {
    const record = raw as NativeMessagingRecord | null;
    if (!record) return;
    for (const key of record.registry) run(['reg', 'delete', key, '/f'], ctx.log);
    for (const f of record.files) fs.rmSync(f, { force: true });
    removeEmptyDirs(record.createdDirs);
  },
};

/** The install steps, in order. Uninstall runs them in reverse. */
export const INSTALL_STEPS: InstallStep[] = [trustStep, autostartStep, nativeMessagingStep];

export function readInstallState(stateDir: string): InstallState | null {
  try {
    const state = JSON.parse(
      fs.readFileSync(path.join(stateDir, INSTALL_STATE_FILE), 'utf8'),
    ) as InstallState;
    return state.version === 1 && typeof state.steps === 'object' ? state : null;
  } catch {
    return null;
  }
}

function writeInstallState(stateDir: string, state: InstallState): void {
  const file = path.join(stateDir, INSTALL_STATE_FILE);
  fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(`${file}.tmp`, file);
}

/**
 * Refuse a program that another account could replace: the file and every directory above it must be
 * owned by root or by us and not writable by group or others (sticky directories like /tmp excepted,
 * where others cannot replace what is ours). Otherwise the login item would run their code as us.
 */
export function assertNotWritableByOthers(file: string, uid = process.getuid?.()): void {
  if (uid === undefined) return; // Windows: ACLs, not modes (the per-user install dir is the user's own)
  let p = path.resolve(file);
  for (;;) {
    const st = fs.statSync(p);
    const owner = st.uid === 0 || st.uid === uid;
    const sticky = st.isDirectory() && (st.mode & 0o1000) !== 0;
    if (!owner || ((st.mode & 0o022) !== 0 && !sticky)) {
      throw new KelidError(
        'ERR_FORBIDDEN',
        `${p} can be changed by another account (owner uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)}): refusing to start it at login`,
      );
    }
    const parent = path.dirname(p);
    if (parent === p) return;
    p = parent;
  }
}

/** The program that runs Kelid: this executable, plus the script when run by node. */
export function kelidProgram(): string[] {
  const script = process.argv[1];
  if (script && /\.[cm]?js$/.test(script) && path.resolve(script) !== process.execPath) {
    return [process.execPath, fs.realpathSync(script)];
  }
  return [process.execPath];
}

export interface InstallOptions {
  platform: PlatformEnv;
  stateDir: string;
  config?: string;
  autostart?: AutostartKind | 'none';
  start?: boolean;
  program?: string[];
  log?: (line: string) => void;
}

function contextFor(options: InstallOptions, command: string[]): InstallContext {
  const autostart = options.autostart ?? chooseAutostart(options.platform, hasUserSystemd(options.platform));
  return {
    platform: options.platform,
    stateDir: options.stateDir,
    caPemFile: path.join(options.stateDir, TLS_DIR, 'ca-cert.pem'),
    command,
    autostart,
    start: options.start ?? true,
    uid: process.getuid?.(),
    log: options.log ?? (() => undefined),
  };
}

/** `kelid install`: start at login and trust the CA, for this user. Installing again replaces the old install. */
export async function install(options: InstallOptions): Promise<InstallState> {
  const stateDir = path.resolve(options.stateDir);
  const program = options.program ?? kelidProgram();
  for (const p of program) assertNotWritableByOthers(p);
  // Run from a checkout (node + bin/kelid.js): the code it loads lives beside bin/, check it too.
  if (program.length > 1) {
    const root = path.dirname(path.dirname(program[1]));
    for (const d of ['dist', 'node_modules'])
      if (fs.existsSync(path.join(root, d))) assertNotWritableByOthers(path.join(root, d));
  }
  const createdParents = fs.existsSync(stateDir) ? [] : mkdirTracked(path.dirname(stateDir));
  // install.json says what to delete later: only trusted from a directory no one else can write.
  ensurePrivateDirectory(stateDir);
  const previous = readInstallState(stateDir);
  if (previous) await uninstall({ ...options, purge: false });
  const stateDirCreated = previous?.stateDirCreated ?? createdParents;
  await ensureTlsMaterial(stateDir);
  const command = [...program, 'serve', '--state-dir', stateDir];
  if (options.config !== undefined) command.push('--config', path.resolve(options.config));
  const ctx = contextFor({ ...options, stateDir }, command);
  const state: InstallState = { version: 1, command, stateDirCreated, steps: {} };
  try {
    for (const step of INSTALL_STEPS) {
      state.steps[step.id] = await step.install(ctx);
      // Written after every step: an interrupted install can still be uninstalled.
      writeInstallState(stateDir, state);
    }
  } catch (e) {
    await undoSteps(ctx, state);
    fs.rmSync(path.join(stateDir, INSTALL_STATE_FILE), { force: true });
    throw e;
  }
  return state;
}

async function undoSteps(ctx: InstallContext, state: InstallState): Promise<void> {
  for (const step of [...INSTALL_STEPS].reverse()) {
    if (!(step.id in state.steps)) continue;
    try {
      await step.uninstall(ctx, state.steps[step.id]);
    } catch (e) {
      ctx.log(`warning: uninstalling ${step.id} failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}

/**
 * Start `command` in the background, unless this state directory's agent already runs, and wait
 * (up to 15 s) until it is up: `kelid install && kelid doctor` must find it running.
 */
async function startDetached(
  command: string[],
  stateDir: string,
  log: (line: string) => void,
): Promise<void> {
  if (runningAgentPid(stateDir) !== null) return;
  const child = spawn(command[0], command.slice(1), { detached: true, stdio: 'ignore' });
  let failed: string | undefined;
  child.on('error', (e) => (failed = e.message));
  child.on('exit', (code, signal) => (failed ??= `it exited (${signal ?? `code ${code}`})`));
  await waitForAgent(stateDir, () => failed);
  child.unref();
  if (failed !== undefined) log(`warning: could not start the agent: ${failed}; "kelid serve" shows why`);
  else if (runningAgentPid(stateDir) === null)
    log(`warning: the agent (pid ${child.pid ?? '?'}) is not up yet`);
  else log(`started the agent (pid ${child.pid ?? '?'})`);
}

/** Wait up to 15 s for agent.json to name a live agent, or until `failed()` says why not. */
async function waitForAgent(stateDir: string, failed: () => string | undefined): Promise<void> {
  for (let i = 0; i < 300 && failed() === undefined && runningAgentPid(stateDir) === null; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
}

function runningAgentPid(stateDir: string): number | null {
  const pid = readAgentInfo(stateDir)?.pid;
  if (pid === undefined || !Number.isInteger(pid) || pid <= 1 || pid === process.pid) return null;
  try {
    if (process.platform === 'linux') {
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmdline.includes('kelid') || !cmdline.includes('serve')) return null;
    } else {
      process.kill(pid, 0);
    }
    return pid;
  } catch {
    return null;
  }
}

/** Stop this state directory's running agent (its pid from agent.json, checked to be a kelid process of ours). */
async function stopRunningAgent(stateDir: string, log: (line: string) => void): Promise<void> {
  const pid = runningAgentPid(stateDir);
  if (pid === null) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  // Wait (up to 10 s) until it is gone: it removes its own files from the state directory on exit.
  for (let i = 0; i < 200 && isProcessAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  log(`stopped the running agent (pid ${pid})`);
}

/** `kelid uninstall [--purge]`: undo what install recorded; `purge` also removes the state directory. */
export async function uninstall(options: InstallOptions & { purge: boolean }): Promise<boolean> {
  const stateDir = path.resolve(options.stateDir);
  if (!fs.existsSync(stateDir)) return false;
  // A planted install.json would make us delete what it lists: refuse a directory others can write.
  ensurePrivateDirectory(stateDir);
  const state = readInstallState(stateDir);
  const log = options.log ?? (() => undefined);
  if (state) {
    const ctx = contextFor({ ...options, stateDir }, state.command);
    await undoSteps(ctx, state);
    fs.rmSync(path.join(stateDir, INSTALL_STATE_FILE), { force: true });
  }
  if (options.purge) {
    await stopRunningAgent(stateDir, log);
    fs.rmSync(stateDir, { recursive: true, force: true });
    removeEmptyDirs(state?.stateDirCreated ?? []);
    log(`removed ${stateDir}`);
  }
  return state !== null;
}

/**
 * The agent generated a new CA: put it into the stores install trusted the old one in (and only
 * those), so browsers keep trusting the agent. Nothing happens when Kelid was never installed.
 */
export function reinstallTrust(stateDir: string, platform: PlatformEnv, logger: Logger = silentLogger): void {
  const state = readInstallState(stateDir);
  const old = state?.steps.trust as TrustRecord | null | undefined;
  if (!state || !old || readCaCertificate(stateDir) === null) return;
  const caPemFile = path.join(stateDir, TLS_DIR, 'ca-cert.pem');
  const log = (line: string): void => logger.warn(line);
  const next: TrustRecord = { nss: [] };
  for (const r of old.nss) {
    try {
      const again = installInNssDb(r.dir, caPemFile, false);
      next.nss.push({ ...r, createdDb: r.createdDb || again.createdDb });
    } catch (e) {
      log(
        `could not trust the new CA in ${r.dir}: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`,
      );
    }
  }
  if (old.systemStore) {
    uninstallTrust({ platform, log }, { nss: [], systemStore: old.systemStore });
    const fresh = installTrust({
      platform: { ...platform, platform: platform.platform },
      caPemFile,
      log,
      start: false,
    });
    if (fresh.systemStore) next.systemStore = fresh.systemStore;
  }
  state.steps.trust = next;
  writeInstallState(stateDir, state);
  logger.info(
    { stores: next.nss.length + (next.systemStore ? 1 : 0) },
    'trusted the new local CA where install had trusted the old one',
  );
}
