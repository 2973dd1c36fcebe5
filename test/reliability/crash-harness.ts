// softhsm-only: reads SoftHSM's token files (tokenDir) to check crash states; a TPM boot per seeded crash run would dominate the run
// Crash-consistency harness (issue 9): SIGKILL the agent or its module host at a seeded, deterministic
// point inside a provisioning flow run through the real agent API, restart, check that the token is
// in one of the allowed states (docs/crash-consistency.md) as Kelid AND pkcs11-tool see it, that the
// audit log verifies, then retry the flow and check the strict invariants.
//
// Kill points come from the test-only crash points of src/testing/crash-points.ts (KELID_TEST_HOOKS=1 and
// KELID_TEST_CRASH); a run is fully described by its seed, so a failure is replayed with
// `KELID_CRASH_SEED=<seed> KELID_CRASH_RUNS=1`.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AgentProcess, RpcError } from '../helpers/agent-process.js';
import type { RpcClient } from '../helpers/agent-process.js';
import { SoftHsm } from '../helpers/softhsm.js';
import { TestPki } from '../helpers/test-ca.js';
import { childPids } from '../helpers/process-stats.js';
import { until } from '../helpers/wait.js';

export const FLOWS = [
  'tokens.init',
  'keys.generate',
  'certificates.import',
  'objects.delete',
  'pin.change',
] as const;
export type Flow = (typeof FLOWS)[number];

export type KillKind =
  | 'host:before'
  | 'host:after'
  | 'host:during'
  | 'agent:during'
  | 'agent:before'
  | 'agent:after'
  | 'agent:audit-torn';

export interface RunPlan {
  seed: number;
  flow: Flow;
  kind: KillKind;
  /** The write (1-based, among the flow's token writes) before/after/during which the kill comes. */
  write?: number;
  delayMs?: number;
  algorithm: { name: 'RSA'; modulusLength: 2048 } | { name: 'EC'; namedCurve: 'P-256' };
  role: 'user' | 'so';
}

export interface RunResult {
  plan: RunPlan;
  /** The method whose write was hit, as the crash point recorded it. */
  hit: string;
  /** The allowed state found after the restart. */
  state: string;
  failures: string[];
  ms: number;
}

const RA = 'https://ra.example';
const SO_PIN = 'Qz7SoPin4Kelid';
const SO_PIN_2 = 'Wx2SoPin9Kelid';
const USER_PIN = '8273619405';
const USER_PIN_2 = '5190283746';
const LABEL = 'citizen';
const KEY_LABEL = 'sign-1';
const PENDING_ID_HEX = Buffer.from('kelid-pending:', 'ascii').toString('hex');

/** mulberry32: a small seeded PRNG, enough to pick flows and kill points reproducibly. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface KeyJson {
  keyId: string;
  label: string;
  hasCertificate: boolean;
  publicKey: string;
}
interface CertJson {
  keyId: string;
  fingerprintSha256: string;
  category: string;
  hasPrivateKey: boolean;
}
interface TokenJson {
  tokenId: string;
  initialized: boolean;
  userPinInitialized: boolean;
  serialNumber: string;
  label: string;
}

interface PeerObject {
  kind: 'private' | 'public' | 'certificate' | 'other';
  id: string;
  label: string;
}

/** What Kelid and the peer see on the token after a crash. */
interface TokenState {
  token: TokenJson | undefined;
  blankTokenId: string | undefined;
  userPin: string | undefined;
  soPin: string | undefined;
  keys: KeyJson[];
  certs: CertJson[];
  peer: PeerObject[];
}

/** An object that has neither id nor label: created by a module that was killed before filling it. */
const halfCreated = (o: PeerObject): boolean => o.id === '' && o.label === '';

function parsePeer(out: string): PeerObject[] {
  return out
    .split(/\n(?=\S)/)
    .filter((b) => / Object/.test(b.split('\n')[0]))
    .map((b) => {
      const head = b.split('\n')[0];
      const kind = head.startsWith('Private Key')
        ? 'private'
        : head.startsWith('Public Key')
          ? 'public'
          : head.startsWith('Certificate')
            ? 'certificate'
            : 'other';
      return {
        kind,
        id: /\n[ \t]+ID:[ \t]*([0-9a-f]+)/.exec(b)?.[1] ?? '',
        label: /\n[ \t]+label:[ \t]*(.*)/.exec(b)?.[1]?.trim() ?? '',
      };
    });
}

/** Write sequences of the flows, read from the module host's counting crash point during setup. */
export type WriteSequences = Record<Flow, string[]>;

/**
 * One seeded plan: the flow, who dies (agent or module host) and where. Kill points are drawn among
 * the flow's own writes (from `writes`), so every plan reaches its point.
 */
export function planRun(seed: number, writes: WriteSequences): RunPlan {
  const r = prng(seed);
  // Flow and kill kind are spread evenly over consecutive seeds (every flow in any 5 of them, every
  // kind within a few rounds); the write, delay, algorithm and role are drawn from the seeded PRNG.
  const flow = FLOWS[seed % FLOWS.length];
  const seq = writes[flow];
  const kinds: KillKind[] = ['agent:after', 'host:before', 'agent:audit-torn', 'host:after', 'agent:before'];
  // Inside C_GenerateKeyPair: the host killed, or the agent (whose host then dies with it).
  if (seq.includes('generateKeyPair')) kinds.push('host:during', 'agent:during');
  const kind = kinds[(Math.floor(seed / FLOWS.length) + (seed % FLOWS.length)) % kinds.length];
  const algorithm =
    r() < 0.5
      ? ({ name: 'EC', namedCurve: 'P-256' } as const)
      : ({ name: 'RSA', modulusLength: 2048 } as const);
  const role = r() < 0.6 ? 'user' : 'so';
  const plan: RunPlan = { seed, flow, kind, algorithm, role };
  if (kind.endsWith(':during')) {
    // SoftHSM makes an EC P-256 pair in a few ms and an RSA-2048 one in tens to hundreds of ms.
    plan.write = seq.indexOf('generateKeyPair') + 1;
    plan.delayMs = Math.floor(r() * (algorithm.name === 'RSA' ? 300 : 5));
  } else if (kind !== 'agent:audit-torn') {
    plan.write = 1 + Math.floor(r() * seq.length);
  }
  return plan;
}

function copyDir(from: string, to: string): void {
  fs.cpSync(from, to, { recursive: true });
}

/** Poll until `fn` gives a value (not undefined). */
async function waitFor<T>(
  what: string,
  fn: () => T | undefined | Promise<T | undefined>,
  ms = 30_000,
): Promise<T> {
  return (await until(fn, (v) => v !== undefined, what, ms)) as T;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false;
  }
}

/**
 * The lab: token snapshots at each stage of the RA flow, made once through the real agent, the
 * certificate issued by `openssl ca` for the snapshot's key, and the flows' write sequences.
 */
export class CrashLab {
  readonly dir: string;
  tokenSerial = '';
  keyId = '';
  leafPem = '';
  chain: string[] = [];
  writes!: WriteSequences;

  private constructor(readonly pki: TestPki) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-crash-lab-'));
  }

  snapshot(name: string): string {
    return path.join(this.dir, 'snapshots', name);
  }

  static async create(): Promise<CrashLab> {
    const pki = await TestPki.create();
    const lab = new CrashLab(pki);
    try {
      await lab.setup();
    } catch (e) {
      await lab.cleanup();
      throw e;
    }
    return lab;
  }

  private async setup(): Promise<void> {
    const hsm = new SoftHsm('kelid-crash-setup-');
    const counter = path.join(this.dir, 'writes.txt');
    fs.writeFileSync(counter, '');
    const agent = await AgentProcess.start({
      prefix: 'kelid-crash-setup-agent-',
      config: agentConfig(hsm),
      env: {
        KELID_TEST_HOOKS: '1',
        KELID_TEST_CRASH: JSON.stringify({ process: 'host', at: 'count', marker: counter }),
      },
    });
    const seq = (): string[] => fs.readFileSync(counter, 'utf8').split('\n').filter(Boolean);
    const writes: Partial<WriteSequences> = {};
    const measure = async <T>(flow: Flow, fn: () => Promise<T>): Promise<T> => {
      const before = seq().length;
      const v = await fn();
      writes[flow] = seq().slice(before);
      return v;
    };
    const ra = await agent.connect(RA);
    try {
      const snap = (name: string) => copyDir(hsm.tokenDir, this.snapshot(name));
      snap('blank');
      const blank = (await ra.call<{ tokens: TokenJson[] }>('tokens.list')).tokens.find(
        (t) => !t.initialized,
      )!;
      const token = await measure('tokens.init', () =>
        consented(
          agent,
          ra,
          'tokens.init',
          { tokenId: blank.tokenId, label: LABEL },
          {
            newSoPin: SO_PIN,
            newUserPin: USER_PIN,
          },
        ),
      );
      const tokenId = (token as { token: TokenJson }).token.tokenId;
      this.tokenSerial = (token as { token: TokenJson }).token.serialNumber;
      snap('initialized');
      const gen = (await measure('keys.generate', () =>
        consented(agent, ra, 'keys.generate', keygenParams(tokenId, { name: 'EC', namedCurve: 'P-256' }), {
          userPin: USER_PIN,
        }),
      )) as { key: KeyJson; csr: string };
      this.keyId = gen.key.keyId;
      snap('pending-key');
      this.leafPem = (
        await this.pki.issueFromCsr('crash-leaf', gen.csr, { extendedKeyUsage: 'clientAuth' })
      ).pem;
      this.chain = [this.pki.intermediate.pem, this.pki.root.pem];
      await measure('certificates.import', () =>
        consented(agent, ra, 'certificates.import', this.importParams(tokenId), { userPin: USER_PIN }),
      );
      snap('certified');
      await measure('pin.change', () =>
        consented(
          agent,
          ra,
          'pin.change',
          { tokenId, role: 'user' },
          { oldUserPin: USER_PIN, newUserPin: USER_PIN_2 },
        ),
      );
      await measure('objects.delete', () =>
        consented(
          agent,
          ra,
          'objects.delete',
          { tokenId, keyId: this.keyId, scope: 'all' },
          { userPin: USER_PIN_2 },
        ),
      );
      this.writes = writes as WriteSequences;
    } finally {
      await ra.close();
      await agent.stop();
      agent.cleanup();
      hsm.cleanup();
    }
  }

  importParams(tokenId: string): Record<string, unknown> {
    return { tokenId, certificate: this.leafPem, chain: this.chain, label: KEY_LABEL };
  }

  async cleanup(): Promise<void> {
    fs.rmSync(this.dir, { recursive: true, force: true });
    await this.pki.cleanup();
  }

  /** Run one plan: crash, restart, check the allowed states, retry, check the strict invariants. */
  async run(plan: RunPlan): Promise<RunResult> {
    const started = Date.now();
    const failures: string[] = [];
    const hsm = new SoftHsm('kelid-crash-hsm-');
    this.hsm = hsm;
    const agents: AgentProcess[] = [];
    const clients: RpcClient[] = [];
    let hit = '';
    let state = '';
    try {
      const snapshot = {
        'tokens.init': 'blank',
        'keys.generate': 'certified',
        'certificates.import': 'pending-key',
        'objects.delete': 'certified',
        'pin.change': 'certified',
      }[plan.flow];
      fs.rmSync(hsm.tokenDir, { recursive: true, force: true });
      copyDir(this.snapshot(snapshot), hsm.tokenDir);
      const marker = path.join(hsm.dir, 'crash-fired.json');
      const [proc, at] = plan.kind.split(':') as ['agent' | 'host', string];
      const crash =
        at === 'audit-torn'
          ? { process: 'agent', at, method: plan.flow, marker }
          : { process: proc, at, write: plan.write, delayMs: plan.delayMs, marker };
      const first = await AgentProcess.start({
        prefix: 'kelid-crash-agent-',
        config: agentConfig(hsm),
        env: { KELID_TEST_HOOKS: '1', KELID_TEST_CRASH: JSON.stringify(crash) },
      });
      agents.push(first);
      const ra = await first.connect(RA);
      clients.push(ra);
      const hosts = await waitFor('the module host', () => {
        const pids = childPids(first.pid);
        return pids.length > 0 ? pids : undefined;
      });

      // The flow, as an RA page would run it; it fails when the kill comes.
      const before = await this.inspect(ra, { peer: false });
      const outcome = await this.runFlow(first, ra, plan, before, { first: true }).then(
        () => 'completed',
        (e: unknown) => (e instanceof RpcError ? (e.data?.code ?? String(e.code)) : (e as Error).message),
      );
      const fired = await waitFor('the crash point', () =>
        fs.existsSync(marker)
          ? (JSON.parse(fs.readFileSync(marker, 'utf8')) as { method: string })
          : undefined,
      ).catch(() => undefined);
      if (!fired) {
        failures.push(`the kill point was not reached (flow outcome: ${outcome})`);
        return { plan, hit, state, failures, ms: Date.now() - started };
      }
      hit = fired.method;

      let active = first;
      let client = ra;
      if (proc === 'agent') {
        await waitFor('the agent to die', () =>
          first.child.exitCode !== null || first.child.signalCode !== null ? true : undefined,
        );
        // Its module host must not outlive it holding the token.
        const orphans = await waitFor(
          'the module host to exit',
          () => {
            const left = hosts.filter(alive);
            return left.length === 0 ? [] : undefined;
          },
          10_000,
        ).catch(() => hosts.filter(alive));
        if (orphans.length > 0) {
          failures.push(`module host ${orphans.join(',')} outlived the killed agent`);
          for (const pid of orphans) process.kill(pid, 'SIGKILL');
        }
        active = await AgentProcess.start({ dir: first.dir, config: agentConfig(hsm) });
        agents.push(active);
        client = await active.connect(RA);
        clients.push(client);
      } else if (outcome !== 'ERR_MODULE_FAILED' && !(at === 'during' && outcome === 'completed')) {
        failures.push(`the flow ended with ${outcome}, expected ERR_MODULE_FAILED`);
      }

      // KELID_CRASH_KEEP=1 keeps the token as the crash left it, for a look with pkcs11-tool.
      if (process.env.KELID_CRASH_KEEP === '1') copyDir(hsm.tokenDir, path.join(hsm.dir, 'after-crash'));

      // After the restart: one of the allowed states, the audit log verifies.
      const after = await waitFor('the token after the restart', async () => {
        const s = await this.inspect(client, { peer: true }).catch(() => undefined);
        return s?.token !== undefined || plan.flow === 'tokens.init' ? s : undefined;
      });
      state = this.classify(plan, after, failures);
      this.commonInvariants(after, failures, { strict: false });
      await this.checkAudit(active, failures, at === 'audit-torn');

      // Retry: the flow completes from whatever state the crash left.
      await this.recover(active, client, plan, after, state).catch((e: unknown) =>
        failures.push(
          `retry failed: ${e instanceof RpcError ? `${e.data?.code} ${e.message}` : (e as Error).message}`,
        ),
      );
      const final = await this.inspect(client, { peer: true });
      this.finalInvariants(plan, final, failures);
      this.commonInvariants(final, failures, { strict: true });
      await this.checkAudit(active, failures, false);
    } catch (e) {
      failures.push(`harness: ${(e as Error).stack ?? String(e)}`);
    } finally {
      for (const c of clients) await c.close().catch(() => undefined);
      for (const a of agents.reverse()) {
        await a.stop().catch(() => undefined);
      }
      if (failures.length > 0 && process.env.KELID_CRASH_KEEP === '1') {
        failures.push(`kept: ${hsm.dir} (after-crash/, softhsm2.conf), ${agents[0]?.dir ?? ''}`);
      } else {
        agents[0]?.cleanup();
        hsm.cleanup();
      }
    }
    return { plan, hit, state, failures, ms: Date.now() - started };
  }

  private async runFlow(
    agent: AgentProcess,
    ra: RpcClient,
    plan: RunPlan,
    s: TokenState,
    options: { first: boolean },
  ): Promise<unknown> {
    const tokenId = s.token?.tokenId ?? '';
    switch (plan.flow) {
      case 'tokens.init': {
        const blank = options.first || !s.token?.initialized;
        const secrets: Record<string, string> = blank
          ? { newSoPin: SO_PIN, newUserPin: USER_PIN }
          : { soPin: SO_PIN, newUserPin: USER_PIN };
        const target = blank ? s.blankTokenId! : tokenId;
        return consented(agent, ra, 'tokens.init', { tokenId: target, label: LABEL }, secrets);
      }
      case 'keys.generate':
        return consented(agent, ra, 'keys.generate', keygenParams(tokenId, plan.algorithm), {
          userPin: USER_PIN,
        });
      case 'certificates.import':
        return consented(agent, ra, 'certificates.import', this.importParams(tokenId), { userPin: USER_PIN });
      case 'objects.delete':
        return consented(
          agent,
          ra,
          'objects.delete',
          { tokenId, keyId: this.keyId, scope: 'all' },
          { userPin: USER_PIN },
        );
      case 'pin.change':
        return consented(
          agent,
          ra,
          'pin.change',
          { tokenId, role: plan.role },
          plan.role === 'user'
            ? { oldUserPin: USER_PIN, newUserPin: USER_PIN_2 }
            : { oldSoPin: SO_PIN, newSoPin: SO_PIN_2 },
        );
    }
  }

  private hsm: SoftHsm | undefined;

  private pinWorks(role: 'user' | 'so', pin: string): boolean {
    const args =
      role === 'user'
        ? ['--login', '--pin', pin]
        : // An SO login needs a R/W session (CKR_SESSION_READ_ONLY_EXISTS otherwise).
          ['--session-rw', '--login', '--login-type', 'so', '--so-pin', pin];
    try {
      this.hsm!.tool(['--token-label', LABEL, ...args, '--list-objects']);
      return true;
    } catch {
      return false;
    }
  }

  /** Kelid's view (tokens.list, keys.list, certificates.list) and the peer's (pkcs11-tool). */
  private async inspect(ra: RpcClient, options: { peer: boolean }): Promise<TokenState> {
    const { tokens } = await ra.call<{ tokens: TokenJson[] }>('tokens.list');
    const token = tokens.find((t) => t.initialized);
    const blank = tokens.find((t) => !t.initialized);
    const s: TokenState = {
      token,
      blankTokenId: blank?.tokenId,
      userPin: undefined,
      soPin: undefined,
      keys: [],
      certs: [],
      peer: [],
    };
    if (!token || !options.peer) return s;
    s.soPin = [SO_PIN, SO_PIN_2].find((p) => this.pinWorks('so', p));
    if (!token.userPinInitialized) return s;
    s.userPin = [USER_PIN, USER_PIN_2].find((p) => this.pinWorks('user', p));
    s.keys = (await ra.call<{ keys: KeyJson[] }>('keys.list', { tokenId: token.tokenId })).keys;
    s.certs = (
      await ra.call<{ certificates: CertJson[] }>('certificates.list', { tokenId: token.tokenId })
    ).certificates;
    if (s.userPin !== undefined)
      s.peer = parsePeer(
        this.hsm!.tool(['--token-label', LABEL, '--login', '--pin', s.userPin, '--list-objects']),
      );
    return s;
  }

  /** Name the state the crash left, or record why it is not an allowed one. */
  private classify(plan: RunPlan, s: TokenState, failures: string[]): string {
    const fail = (why: string): string => {
      failures.push(`not an allowed state: ${why}`);
      return 'invalid';
    };
    const userCerts = s.certs.filter((c) => c.category === 'user');
    const authority = s.certs.filter((c) => c.category === 'authority').length;
    const halves = (id: string) => ({
      priv: s.peer.some((o) => o.kind === 'private' && o.id === id),
      pub: s.peer.some((o) => o.kind === 'public' && o.id === id),
    });
    switch (plan.flow) {
      case 'tokens.init':
        if (!s.token) return s.blankTokenId ? 'blank' : fail('no token at all');
        if (s.token.label !== LABEL) return fail(`token label ${s.token.label}`);
        if (s.soPin !== SO_PIN) return fail('the SO-PIN does not work');
        if (!s.token.userPinInitialized) return 'initialized, user PIN not set';
        if (s.userPin !== USER_PIN) return fail('the user PIN does not work');
        if (s.peer.length > 0) return fail('objects on a new token');
        return 'initialized';
      case 'keys.generate': {
        const k = s.keys.find((x) => x.keyId === this.keyId);
        if (!k?.hasCertificate) return fail('the certified key changed');
        if (s.peer.some((o) => o.id.startsWith(PENDING_ID_HEX)))
          return 'interrupted generation (provisional id)';
        if (s.peer.some(halfCreated)) return 'interrupted generation (half-created object)';
        const others = s.keys.filter((x) => x.keyId !== this.keyId);
        if (others.length === 0) return 'no new key';
        if (others.length > 1) return fail('more than one new key');
        const h = halves(others[0].keyId);
        if (!h.priv || !h.pub || others[0].hasCertificate) return fail('new key incomplete');
        return 'new key, pending';
      }
      case 'certificates.import': {
        const k = s.keys.find((x) => x.keyId === this.keyId);
        if (!k) return fail('the key is gone');
        if (userCerts.length === 0 && !k.hasCertificate) return `pending, ${authority}/2 chain certificates`;
        if (userCerts.length === 1 && k.hasCertificate && authority === 2) return 'certified';
        return fail(`${userCerts.length} user certificates, ${authority} chain certificates`);
      }
      case 'objects.delete': {
        const h = halves(this.keyId);
        const cert = userCerts.some((c) => c.keyId === this.keyId);
        if (cert && h.priv && h.pub) return 'untouched';
        if (!cert && h.priv && h.pub) return 'certificate deleted, key pending';
        if (!cert && !h.priv && h.pub) return 'public half left, pending';
        if (!cert && !h.priv && !h.pub) return 'deleted';
        return fail(`certificate ${cert}, private ${h.priv}, public ${h.pub}`);
      }
      case 'pin.change': {
        const [oldPin, newPin, found] =
          plan.role === 'user' ? [USER_PIN, USER_PIN_2, s.userPin] : [SO_PIN, SO_PIN_2, s.soPin];
        if (found === oldPin) return 'old PIN';
        if (found === newPin) return 'new PIN';
        return fail('neither the old nor the new PIN works');
      }
    }
  }

  /** Invariants of every state; with `strict` (after the retry) interrupted generations are gone too. */
  private commonInvariants(s: TokenState, failures: string[], { strict }: { strict: boolean }): void {
    if (!s.token?.userPinInitialized) return;
    const when = strict ? 'after the retry' : 'after the crash';
    const bad = (why: string) => failures.push(`${when}: ${why}`);
    if (s.userPin === undefined) return void bad('no user PIN works');
    // An object a module created but was killed before filling: removed by the next write session.
    if (strict && s.peer.some(halfCreated)) bad('a half-created object (no id, no label) is left');
    const peer = s.peer.filter((o) => !halfCreated(o));
    const peerCerts = peer.filter((o) => o.kind === 'certificate');
    if (peerCerts.length !== s.certs.length)
      bad(`pkcs11-tool sees ${peerCerts.length} certificate objects, Kelid ${s.certs.length} readable ones`);
    if (peerCerts.some((c) => c.id === '')) bad('a certificate object without CKA_ID');
    if (peer.some((o) => o.kind === 'other')) bad('an object that is neither key nor certificate');
    const fps = s.certs.map((c) => c.fingerprintSha256);
    if (new Set(fps).size !== fps.length) bad('duplicate certificates');
    const users = s.certs.filter((c) => c.category === 'user');
    for (const c of users) {
      if (!c.hasPrivateKey || !s.keys.some((k) => k.keyId === c.keyId))
        bad(`certificate of ${c.keyId} without its key`);
    }
    if (users.length > 0 && s.certs.filter((c) => c.category === 'authority').length !== 2)
      bad('a user certificate without its chain');
    const privs = peer.filter((o) => o.kind === 'private');
    const pubs = peer.filter((o) => o.kind === 'public');
    const pending = (o: PeerObject) => o.id.startsWith(PENDING_ID_HEX);
    for (const p of privs) {
      if (pubs.some((q) => q.id === p.id && q.label === p.label)) continue;
      // Interrupted generation: the private half renamed (or not), the public one still provisional.
      const interrupted = pending(p) || pubs.some((q) => pending(q) && q.label === p.label);
      if (strict || !interrupted) bad(`private key ${p.id || '(no id)'} without its public key`);
    }
    if (strict) {
      if (s.peer.some(pending)) bad('an object still carries the provisional id');
      for (const q of pubs)
        if (!privs.some((p) => p.id === q.id)) bad(`public key ${q.id} without its private key`);
    }
    for (const k of s.keys) {
      const found = pubs.some((q) => q.id === k.keyId || (!strict && pending(q) && q.label === k.label));
      if (!found) bad(`Kelid lists key ${k.keyId} that pkcs11-tool does not see`);
    }
    // Every finished public key is listed; a provisional one only once its key material is written.
    const listable = strict ? pubs : pubs.filter((q) => !pending(q));
    if (listable.length > s.keys.length || s.keys.length > pubs.length)
      bad(`pkcs11-tool sees ${pubs.length} public keys, Kelid lists ${s.keys.length}`);
  }

  /** Retry the flow from the state the crash left (and delete what was left pending by it). */
  private async recover(
    agent: AgentProcess,
    ra: RpcClient,
    plan: RunPlan,
    s: TokenState,
    state: string,
  ): Promise<void> {
    switch (plan.flow) {
      case 'tokens.init':
        if (state !== 'initialized') await this.runFlow(agent, ra, plan, s, { first: false });
        return;
      case 'keys.generate': {
        const { key } = (await this.runFlow(agent, ra, plan, s, { first: false })) as { key: KeyJson };
        const tokenId = s.token!.tokenId;
        const keys = (await ra.call<{ keys: KeyJson[] }>('keys.list', { tokenId })).keys;
        // What the crash left is pending: it can be deleted.
        for (const k of keys.filter((x) => x.keyId !== this.keyId && x.keyId !== key.keyId))
          await consented(
            agent,
            ra,
            'objects.delete',
            { tokenId, keyId: k.keyId, scope: 'all' },
            { userPin: USER_PIN },
          );
        return;
      }
      case 'certificates.import':
        await this.runFlow(agent, ra, plan, s, { first: false });
        return;
      case 'objects.delete':
        try {
          await this.runFlow(agent, ra, plan, s, { first: false });
        } catch (e) {
          if (!(state === 'deleted' && e instanceof RpcError && e.data?.code === 'ERR_KEY_NOT_FOUND'))
            throw e;
        }
        return;
      case 'pin.change':
        if (state === 'old PIN') await this.runFlow(agent, ra, plan, s, { first: false });
    }
  }

  private finalInvariants(plan: RunPlan, s: TokenState, failures: string[]): void {
    const bad = (why: string) => failures.push(`after the retry: ${why}`);
    if (!s.token?.userPinInitialized) return void bad('the token has no user PIN');
    const users = s.certs.filter((c) => c.category === 'user');
    const authority = s.certs.filter((c) => c.category === 'authority').length;
    switch (plan.flow) {
      case 'tokens.init':
        if (s.userPin !== USER_PIN || s.soPin !== SO_PIN || s.peer.length > 0 || s.token.label !== LABEL)
          bad('the token is not freshly initialized with the new PINs');
        return;
      case 'keys.generate':
        if (s.keys.length !== 2 || !s.keys.some((k) => k.keyId === this.keyId && k.hasCertificate))
          bad(`expected the certified key and one new pending key, found ${s.keys.length} keys`);
        return;
      case 'certificates.import':
        if (s.keys.length !== 1 || !s.keys[0].hasCertificate || users.length !== 1 || authority !== 2)
          bad('the key is not certified with its chain');
        return;
      case 'objects.delete':
        if (s.keys.length !== 0 || users.length !== 0 || authority !== 2)
          bad('the key or its certificate is left');
        return;
      case 'pin.change':
        if ((plan.role === 'user' ? s.userPin : s.soPin) !== (plan.role === 'user' ? USER_PIN_2 : SO_PIN_2))
          bad('the new PIN does not work');
    }
  }

  private async checkAudit(agent: AgentProcess, failures: string[], expectRepair: boolean): Promise<void> {
    const r = await agent.cli(['audit', 'verify', '--json']);
    const result = JSON.parse(r.stdout || '{}') as { ok?: boolean; reason?: string; repairs?: unknown[] };
    if (r.status !== 0 || result.ok !== true)
      failures.push(`audit verify failed: ${result.reason ?? r.stderr}`);
    else if (expectRepair && (result.repairs ?? []).length === 0)
      failures.push('the torn audit line was not reported as repaired');
  }
}

function agentConfig(hsm: SoftHsm): Record<string, unknown> {
  return { modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }], raOrigins: [RA] };
}

function keygenParams(tokenId: string, algorithm: RunPlan['algorithm']): Record<string, unknown> {
  return { tokenId, algorithm, label: KEY_LABEL, csr: { subject: 'CN=Crash Test,O=Kelid Test,C=IR' } };
}

/** Call a consent method and approve its consent with `secrets` through `kelid consent approve`. */
async function consented(
  agent: AgentProcess,
  ra: RpcClient,
  method: string,
  params: Record<string, unknown>,
  secrets: Record<string, string>,
): Promise<unknown> {
  const id = ra.nextId;
  const call = ra.call(method, params);
  const requestId = await Promise.race([
    ra.consentFor(id),
    call.then(
      () => undefined,
      () => undefined,
    ),
  ]);
  // The agent may die while approving (that is the point): the call's outcome is what counts.
  if (requestId !== undefined) await agent.consent(requestId, secrets);
  return call;
}

/** A summary table: runs per flow and kill kind, the allowed states seen, failures with seeds. */
export function summarize(results: RunResult[], wallMs: number): string {
  const lines: string[] = [];
  const kinds = [...new Set(results.map((r) => r.plan.kind))].sort();
  lines.push(`| flow | ${kinds.join(' | ')} | runs | failed |`);
  lines.push(`|---|${kinds.map(() => '---:').join('|')}|---:|---:|`);
  for (const flow of FLOWS) {
    const rs = results.filter((r) => r.plan.flow === flow);
    if (rs.length === 0) continue;
    const cells = kinds.map((k) => String(rs.filter((r) => r.plan.kind === k).length));
    lines.push(
      `| ${flow} | ${cells.join(' | ')} | ${rs.length} | ${rs.filter((r) => r.failures.length > 0).length} |`,
    );
  }
  lines.push('', '| flow | state after the crash | runs |', '|---|---|---:|');
  const states = new Map<string, number>();
  for (const r of results)
    states.set(`${r.plan.flow}\t${r.state}`, (states.get(`${r.plan.flow}\t${r.state}`) ?? 0) + 1);
  for (const [k, n] of [...states].sort()) lines.push(`| ${k.split('\t').join(' | ')} | ${n} |`);
  const failed = results.filter((r) => r.failures.length > 0);
  lines.push(
    '',
    `${results.length} runs, ${failed.length} failed, wall time ${(wallMs / 1000).toFixed(1)} s`,
  );
  for (const r of failed)
    lines.push(
      `FAILED seed ${r.plan.seed} (${r.plan.flow}, ${r.plan.kind}, write ${r.plan.write ?? '-'} ${r.hit}): ${r.failures.join('; ')}`,
    );
  return lines.join('\n');
}
