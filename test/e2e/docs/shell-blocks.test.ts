// softhsm-only: the docs' shell blocks run against one sandbox agent with a SoftHSM token (SOFTHSM2_CONF in the sandbox env); not ported to tpm2 yet
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess, REPO, assertBuilt, rpcError } from '../../helpers/agent-process.js';
import type { RpcClient } from '../../helpers/agent-process.js';
import { blocksOf, docFiles, shellMarker } from '../../helpers/doc-blocks.js';
import type { Block, ShellMarker } from '../../helpers/doc-blocks.js';
import { SoftHsm } from '../../helpers/softhsm.js';
import { REQUESTED_EXTENSIONS_ONLY, TestPki } from '../../helpers/test-ca.js';

// Every sh block of README.md and docs/*.md marked `test: …` runs here, as a user would type it, so
// the documented commands cannot rot (issue 17, section 2). The marker syntax is described in
// test/helpers/doc-blocks.ts. One sandbox for the file: a temporary HOME and XDG directories, a
// SoftHSM2 config of its own (auto-detected as on a user's machine, through SOFTHSM2_CONF), `kelid`
// on PATH running the built bin/kelid.js, and one agent whose state directory is $KELID_STATE_DIR.
// The docs' PINs are demo PINs; they reach the commands through the terminal or stdin as the docs
// say, and are cut out of any output this test shows.

const BIN = join(REPO, 'bin', 'kelid.js');
const RA = 'https://ra.example';
/** The docs' demo user PIN (`{"userPin":"1234"}`) and the SO-PIN typed at SO-PIN prompts. */
const USER_PIN = '1234';
const SO_PIN = 'SoDemo5678';

interface Run {
  status: number;
  output: string;
}

const redact = (text: string): string => text.replaceAll(SO_PIN, '<SO-PIN>').replaceAll(USER_PIN, '<PIN>');

const sessions = new Map<string, Array<{ block: Block; marker: ShellMarker }>>();
for (const block of docFiles().flatMap(blocksOf)) {
  if (block.lang !== 'sh') continue;
  const marker = shellMarker(block);
  if (!marker) continue;
  const key = marker.session ? `${block.file} session ${marker.session}` : `${block.file}:${block.line}`;
  sessions.set(key, [...(sessions.get(key) ?? []), { block, marker }]);
}
const all = [...sessions.values()].flat();
const needsAgent = all.some((s) => s.marker.needs.includes('agent'));

describe('shell blocks of README.md and docs/ run against SoftHSM and a real agent', () => {
  const root = mkdtempSync(join(tmpdir(), 'kelid-doc-shell-'));
  const hsm = new SoftHsm('kelid-doc-shell-hsm-');
  const home = join(root, 'home');
  let agent: AgentProcess | undefined;
  let pki: TestPki | undefined;
  let env: Record<string, string> = {};
  let demoTokenId = '';

  let inherited: Record<string, string> = {};

  /** HOME, the XDG directories and the runtime directory of one user, under `dir`. */
  function userEnv(dir: string): Record<string, string> {
    const runtime = join(dir, 'run');
    mkdirSync(runtime, { recursive: true, mode: 0o700 });
    return {
      ...inherited,
      HOME: dir,
      XDG_CONFIG_HOME: join(dir, '.config'),
      XDG_DATA_HOME: join(dir, '.local/share'),
      XDG_STATE_HOME: join(dir, '.local/state'),
      XDG_CACHE_HOME: join(dir, '.cache'),
      XDG_RUNTIME_DIR: runtime,
    };
  }

  beforeAll(async () => {
    assertBuilt();
    const bin = join(root, 'bin');
    mkdirSync(bin, { recursive: true, mode: 0o700 });
    writeFileSync(join(bin, 'kelid'), `#!/bin/sh\nexec '${process.execPath}' '${BIN}' "$@"\n`);
    chmodSync(join(bin, 'kelid'), 0o755);
    inherited = {
      ...Object.fromEntries(
        Object.entries(process.env).filter(
          (e): e is [string, string] => e[1] !== undefined && !/^(KELID_|SOFTHSM2_CONF$|XDG_)/.test(e[0]),
        ),
      ),
      PATH: `${bin}:${process.env.PATH ?? ''}`,
      LANG: 'C.UTF-8',
      SOFTHSM2_CONF: hsm.conf,
    };
    env = { ...userEnv(home), KELID_STATE_DIR: join(root, 'state') };
    if (needsAgent) {
      // The token the consent requests log in to, with the docs' demo user PIN.
      hsm.initToken('demo', SO_PIN, USER_PIN);
      agent = await AgentProcess.start({
        prefix: 'kelid-doc-shell-agent-',
        env,
        config: { modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }], raOrigins: [RA] },
      });
      env.KELID_STATE_DIR = agent.stateDir;
      const ra = await agent.connect(RA);
      const { tokens } = await ra.call<{ tokens: Array<{ tokenId: string; label: string }> }>('tokens.list');
      demoTokenId = tokens.find((t) => t.label === 'demo')!.tokenId;
      await ra.close();
    }
  }, 60_000);

  /**
   * Stop what a `new-user` block left running in `dir` (`kelid install` starts an agent): every
   * process of bin/kelid.js whose command line names that directory (agent.json may not be written yet).
   */
  function stopProcessesOf(dir: string): void {
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        if (cmdline.includes(BIN) && cmdline.includes(dir)) process.kill(Number(pid), 'SIGTERM');
      } catch {
        // gone meanwhile
      }
    }
  }

  afterAll(async () => {
    await agent?.stop();
    agent?.cleanup();
    await pki?.cleanup();
    hsm.cleanup();
    rmSync(root, { recursive: true, force: true });
  });

  /** `bash -euo pipefail <script>`, under a pseudo-terminal (util-linux script) when asked. */
  function runShell(script: string, cwd: string, tty: boolean, env: Record<string, string>): Promise<Run> {
    return new Promise((resolve, reject) => {
      const child = tty
        ? spawn('script', ['-qefc', `bash -euo pipefail '${script}'`, '/dev/null'], { cwd, env })
        : spawn('bash', ['-euo', 'pipefail', script], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      let answered = 0;
      const onData = (d: Buffer): void => {
        output += d.toString('utf8');
        if (!tty) return;
        // A PIN prompt waits at the end of the output: answer it as the person at the terminal would.
        const prompt = /([^\r\n]*PIN[^\r\n]*): $/.exec(output.slice(answered));
        if (!prompt) return;
        answered = output.length;
        const secret = prompt[1]!.includes('SO-PIN') ? SO_PIN : USER_PIN;
        // Raw (no-echo) mode starts just after the prompt is written.
        setTimeout(() => child.stdin?.write(`${secret}\r`), 100);
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.once('error', reject);
      child.once('close', (status) => {
        child.stdin?.end();
        resolve({ status: status ?? -1, output });
      });
    });
  }

  /**
   * Pending consent requests for the `<…requestId>` placeholders of a block, one per distinct name,
   * each from a page of its own (a connection's calls are answered in order).
   */
  async function pendingRequests(
    code: string,
  ): Promise<{ code: string; calls: Map<string, Promise<unknown>>; pages: RpcClient[] }> {
    const names = [...new Set(code.match(/<\w*[rR]equestId>/g) ?? [])];
    const calls = new Map<string, Promise<unknown>>();
    const pages: RpcClient[] = [];
    for (const name of names) {
      const ra = await agent!.connect(RA);
      pages.push(ra);
      const id = ra.nextId;
      const call = ra.call('keys.generate', {
        tokenId: demoTokenId,
        algorithm: { name: 'EC', namedCurve: 'P-256' },
        label: `docs ${name}`,
      });
      // Settled (approved or denied) by the block; checked after it ran.
      call.catch(() => undefined);
      const requestId = await ra.consentFor(id);
      calls.set(new RegExp(`consent (approve|deny) ${name}`).exec(code)?.[1] ?? name, call);
      code = code.replaceAll(name, requestId);
    }
    return { code, calls, pages };
  }

  /** What a reader copies from `kelid certs`: the id of the one certificate with its key on a token. */
  function signingCertificateId(cwd: string): string {
    // The test's own look-up: only the SoftHSM module, under the id auto-detection gives it (ids of
    // tokens and certificates include it), not every module found here (faster).
    const config = join(root, 'softhsm-only.json');
    writeFileSync(
      config,
      JSON.stringify({ autoDetectModules: false, modules: [{ id: 'softhsm2', path: hsm.module }] }),
    );
    const kelid = <T>(args: string[]): T =>
      JSON.parse(
        execFileSync(process.execPath, [BIN, ...args, '--json', '--config', config], {
          cwd,
          env,
          encoding: 'utf8',
        }),
      ) as T;
    const mine = kelid<Array<{ tokenId: string; initialized: boolean }>>(['tokens'])
      .filter((t) => t.initialized)
      .flatMap((t) =>
        kelid<Array<{ certificateId: string; hasPrivateKey: boolean }>>(['certs', '--token', t.tokenId]),
      )
      .filter((c) => c.hasPrivateKey);
    expect(mine.length, 'certificates with a key on a token').toBe(1);
    return mine[0]!.certificateId;
  }

  function writeScript(name: string, code: string): string {
    const script = join(root, `${name}.sh`);
    writeFileSync(script, `${code}\n`);
    return script;
  }

  /** The user approves `origin` the way a person does: its page asks, Kelid's window says yes. */
  async function approveSite(origin: string): Promise<void> {
    const page = await agent!.connect(origin);
    const id = page.nextId;
    const call = page.call('agent.requestAccess', { reason: 'documentation example' });
    const approved = await agent!.consent(await page.consentFor(id));
    expect(approved.status, approved.stderr).toBe(0);
    await call;
    await page.close();
  }

  for (const [name, steps] of sessions) {
    describe(name, () => {
      const cwd = join(root, name.replace(/\W+/g, '-'));
      let broken = '';
      for (const { block, marker } of steps) {
        it(`${block.file}:${block.line} exits with ${marker.exit}`, async () => {
          expect(broken, 'an earlier block of this session failed').toBe('');
          broken = `${block.file}:${block.line}`;
          mkdirSync(cwd, { recursive: true });
          if (marker.given && 'issued' in marker.given) {
            pki ??= await TestPki.create();
            const n = marker.given.issued;
            const csr = readFileSync(join(cwd, `${n}.csr`), 'utf8');
            writeFileSync(
              join(cwd, `${n}.pem`),
              (await pki.issueFromCsr(n, csr, REQUESTED_EXTENSIONS_ONLY)).pem,
            );
            writeFileSync(join(cwd, 'ca-chain.pem'), pki.chainPem);
          }
          if (marker.given && 'site' in marker.given) await approveSite(`https://${marker.given.site}`);
          const pending = marker.needs.includes('consent')
            ? await pendingRequests(block.code)
            : { code: block.code, calls: new Map<string, Promise<unknown>>(), pages: [] };
          const code = block.code.includes('<certificateId>')
            ? pending.code.replaceAll('<certificateId>', signingCertificateId(cwd))
            : pending.code;
          const script = writeScript(`${block.file.replace(/\W/g, '-')}-${block.line}`, code);
          const user = marker.needs.includes('new-user') ? join(cwd, 'home') : undefined;
          let r: Run;
          try {
            r = await runShell(script, cwd, marker.needs.includes('tty'), user ? userEnv(user) : env);
          } finally {
            if (user) stopProcessesOf(user);
          }
          const shown = redact(r.output);
          expect(r.output.includes(SO_PIN), 'the SO-PIN reached the output').toBe(false);
          expect(r.status, `${block.file}:${block.line} output:\n${shown}`).toBe(marker.exit);
          if (pending.calls.size > 0) {
            // The block answered every request it was given as it says: approved ones ran, denied
            // ones failed with ERR_USER_CANCELLED, none is still waiting.
            const approved = pending.calls.get('approve');
            const denied = pending.calls.get('deny');
            if (approved) expect(await approved).toMatchObject({ key: { tokenId: demoTokenId } });
            if (denied) expect((await rpcError(denied)).data).toMatchObject({ code: 'ERR_USER_CANCELLED' });
            await Promise.allSettled(pending.calls.values());
            expect(await agent!.pendingConsents()).toEqual([]);
            for (const page of pending.pages) await page.close();
          }
          broken = '';
        }, 60_000);
      }
    });
  }
});
