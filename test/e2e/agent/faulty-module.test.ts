// softhsm-only: the faulty PKCS#11 shim (test/fixtures/faulty-pkcs11) forwards to SoftHSM's library only
import { X509Certificate, createHash, randomBytes, verify as cryptoVerify } from 'node:crypto';
import * as fs from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AgentProcess, rpcError } from '../../helpers/agent-process.js';
import type { RpcClient } from '../../helpers/agent-process.js';
import { FaultyModule, seedSigner } from '../../helpers/faulty-module.js';
import { childPids } from '../../helpers/process-stats.js';
import { SoftHsm } from '../../helpers/softhsm.js';
import { until } from '../../helpers/wait.js';

// The agent over a real C module that misbehaves (test/fixtures/faulty-pkcs11, forwarding to SoftHSM)
// next to plain SoftHSM: crashes and hangs cost one call and a module host restart, never the agent
// or the other module; token errors and PIN states come back as their documented codes; a PIN pad
// token is used without Kelid ever asking for or passing a PIN.

const RA = 'https://ra.example';
const PIN = '2468';
const SO_PIN = 'SoPin1357';

interface CertificateJson {
  certificateId: string;
  tokenId: string;
  certificate: string;
}

interface TokenJson {
  tokenId: string;
  label: string;
  protectedAuthenticationPath: boolean;
  userPin: { countLow: boolean; finalTry: boolean; locked: boolean; toBeChanged: boolean };
}

/** The pid of the module host loading `modulePath` under the agent. */
function hostPid(agentPid: number, modulePath: string): number | undefined {
  return childPids(agentPid).find((pid) => {
    try {
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return argv.some((a) => a.endsWith('module-host.js')) && argv.includes(modulePath);
    } catch {
      return false; // the process went away while we looked
    }
  });
}

/**
 * The agent with two modules: the faulty shim over one SoftHSM directory and plain SoftHSM over
 * another, each token seeded with a signing key and certificate, and an RA connection.
 */
async function startFaultyStack(prefix: string, loginTimeoutSeconds: number) {
  const faultyHsm = new SoftHsm(`${prefix}a-`);
  const plainHsm = new SoftHsm(`${prefix}b-`);
  faultyHsm.initToken('faulty-tok', SO_PIN, PIN);
  plainHsm.initToken('plain-tok', SO_PIN, PIN);
  seedSigner(faultyHsm, 'faulty-tok', PIN);
  seedSigner(plainHsm, 'plain-tok', PIN);
  const faulty = new FaultyModule(faultyHsm);
  const agent = await AgentProcess.start({
    prefix,
    config: {
      modules: [
        { id: 'faulty', path: faulty.path, env: faulty.env },
        { id: 'plain', path: plainHsm.module, env: plainHsm.env },
      ],
      raOrigins: [RA],
      revocation: { enforceOnSign: 'off' },
      pkcs11: { loginTimeoutSeconds },
    },
  });
  const ra = await agent.connect(RA);
  const { certificates } = await ra.call<{ certificates: Array<CertificateJson & { label: string }> }>(
    'certificates.list',
    { filter: { hasPrivateKey: true } },
  );
  return {
    faulty,
    agent,
    ra,
    onFaulty: certificates.find((c) => c.label === 'faulty-tok')!,
    onPlain: certificates.find((c) => c.label === 'plain-tok')!,
    async close(): Promise<void> {
      await ra.close();
      await agent.stop();
      agent.cleanup();
      faulty.cleanup();
      faultyHsm.cleanup();
      plainHsm.cleanup();
    },
  };
}

describe('Agent with a faulty PKCS#11 module next to plain SoftHSM', () => {
  let stack: Awaited<ReturnType<typeof startFaultyStack>>;
  let faulty: FaultyModule;
  let agent: AgentProcess;
  let ra: RpcClient;
  let onFaulty: CertificateJson;
  let onPlain: CertificateJson;

  beforeAll(async () => {
    // A hung C_Login costs 2 s here instead of the default 120 s.
    stack = await startFaultyStack('kelid-e2e-faulty-', 2);
    ({ faulty, agent, ra, onFaulty, onPlain } = stack);
    expect(onFaulty).toBeDefined();
    expect(onPlain).toBeDefined();
  });

  beforeEach(() => {
    faulty.clear();
    faulty.resetCalls();
  });

  afterAll(async () => {
    await stack?.close();
  });

  /** Start sign.raw over fresh data; `consent` resolves with the request id once it is pending. */
  function startSign(cert: CertificateJson): {
    call: Promise<{ signature: string; signatureAlgorithm: string }>;
    consent: Promise<string>;
    data: Buffer;
  } {
    const data = randomBytes(64);
    const id = ra.nextId;
    const call = ra.call<{ signature: string; signatureAlgorithm: string }>('sign.raw', {
      certificateId: cert.certificateId,
      digest: createHash('sha256').update(data).digest('base64'),
      digestAlgorithm: 'SHA-256',
      summary: 'faulty-module test',
    });
    const consent = Promise.race([
      ra.consentFor(id),
      // A call that fails before its consent is pending: fail the wait with its error.
      call.then(() => Promise.reject(new Error('the call finished without a consent'))),
    ]);
    consent.catch(() => undefined);
    return { call, consent, data };
  }

  /** sign.raw approved through `kelid consent approve` with `secrets`; the call's promise. */
  async function sign(cert: CertificateJson, secrets: Record<string, string> = { userPin: PIN }) {
    const s = startSign(cert);
    const approved = await agent.consent(await s.consent, secrets);
    expect(approved.status, approved.stderr).toBe(0);
    return { call: s.call, data: s.data };
  }

  async function expectVerifies(
    cert: CertificateJson,
    p: { call: Promise<{ signature: string }>; data: Buffer },
  ) {
    const { signature } = await p.call;
    const key = new X509Certificate(Buffer.from(cert.certificate, 'base64')).publicKey;
    expect(cryptoVerify('sha256', p.data, key, Buffer.from(signature, 'base64'))).toBe(true);
  }

  async function faultyToken(): Promise<TokenJson> {
    const { tokens } = await ra.call<{ tokens: TokenJson[] }>('tokens.list');
    return tokens.find((t) => t.tokenId === onFaulty.tokenId)!;
  }

  it('signs through the shim and through plain SoftHSM when no fault is set', async () => {
    await expectVerifies(onFaulty, await sign(onFaulty));
    await expectVerifies(onPlain, await sign(onPlain));
    expect(faulty.loginCalls()).toEqual([{ userType: 1, withPin: true }]);
  });

  it('segfault in C_Sign: ERR_MODULE_FAILED, the agent stays up, the host restarts, the other module signs', async () => {
    const before = hostPid(agent.pid, faulty.path);
    expect(before).toBeDefined();
    faulty.set('segfault C_Sign');
    const crashed = await sign(onFaulty);
    expect((await rpcError(crashed.call)).data?.code).toBe('ERR_MODULE_FAILED');

    // The other module, while the faulty one restarts.
    await expectVerifies(onPlain, await sign(onPlain));
    expect((await ra.call<{ name: string }>('agent.info')).name).toBe('kelid');
    expect(agent.child.exitCode).toBeNull();

    faulty.clear();
    const after = await until(
      () => hostPid(agent.pid, faulty.path),
      (pid) => pid !== undefined && pid !== before,
      'a new module host',
    );
    expect(after).not.toBe(before);
    await expectVerifies(onFaulty, await sign(onFaulty));
  });

  it('hang in C_Login: ERR_MODULE_FAILED at the login deadline, the host is replaced, the other module signs', async () => {
    const before = hostPid(agent.pid, faulty.path);
    faulty.set('hang C_Login');
    const hung = await sign(onFaulty);
    // Started while the faulty host hangs: it may wait for the hung host's answer to tokens.list, but
    // never longer than that host's deadline.
    const other = await sign(onPlain);
    const e = await rpcError(hung.call);
    expect(e.data?.code).toBe('ERR_MODULE_FAILED');
    expect(e.message).toMatch(/did not answer within 2 s/);
    await expectVerifies(onPlain, other);
    faulty.clear();
    await until(
      () => hostPid(agent.pid, faulty.path),
      (pid) => pid !== undefined && pid !== before,
      'a new module host',
    );
    await expectVerifies(onFaulty, await sign(onFaulty));
  });

  it('CKR_DEVICE_REMOVED on the open session while the user reads the consent: ERR_TOKEN_REMOVED, then recovery', async () => {
    const s = startSign(onFaulty);
    const requestId = await s.consent;
    faulty.set('device-removed');
    expect((await agent.consent(requestId, { userPin: PIN })).status).toBe(0);
    const e = await rpcError(s.call);
    expect(e.data?.code).toBe('ERR_TOKEN_REMOVED');
    expect(e.data?.retriable).toBe(true);

    faulty.clear();
    await expectVerifies(onFaulty, await sign(onFaulty));
  });

  it('CKR_DEVICE_REMOVED from C_Sign after a good login: ERR_TOKEN_REMOVED', async () => {
    faulty.set('device-removed C_Sign');
    const removed = await sign(onFaulty);
    expect((await rpcError(removed.call)).data?.code).toBe('ERR_TOKEN_REMOVED');
    expect(faulty.loginCalls()).toEqual([{ userType: 1, withPin: true }]);
  });

  it('a module that leaves the operation active after a failed C_Sign: ERR_DEVICE_ERROR once, then signs again', async () => {
    // CKR_DEVICE_ERROR returned without reaching SoftHSM: its signing operation stays active.
    faulty.set('rv C_Sign 0x30');
    const failed = await sign(onFaulty);
    expect((await rpcError(failed.call)).data?.code).toBe('ERR_DEVICE_ERROR');
    faulty.clear();
    await expectVerifies(onFaulty, await sign(onFaulty));
    await expectVerifies(onFaulty, await sign(onFaulty));
  });

  it('a locked user PIN: ERR_PIN_LOCKED without a prompt and without any C_Login call', async () => {
    faulty.set('flags user-pin-locked');
    expect((await faultyToken()).userPin.locked).toBe(true);
    const e = await rpcError(startSign(onFaulty).call);
    expect(e.data?.code).toBe('ERR_PIN_LOCKED');
    expect(e.data?.pin).toMatchObject({ locked: true });
    expect(await agent.pendingConsents()).toEqual([]);
    expect(faulty.loginCalls()).toEqual([]);
  });

  it('a PIN locked while the consent is pending: ERR_PIN_LOCKED, still no C_Login call', async () => {
    const s = startSign(onFaulty);
    const requestId = await s.consent;
    faulty.set('flags user-pin-locked');
    expect((await agent.consent(requestId, { userPin: PIN })).status).toBe(0);
    expect((await rpcError(s.call)).data?.code).toBe('ERR_PIN_LOCKED');
    expect(faulty.loginCalls()).toEqual([]);
  });

  it('CKR_PIN_EXPIRED from C_Login, and a PIN flagged to be changed: ERR_PIN_EXPIRED', async () => {
    faulty.set('pin-expired');
    const expired = await sign(onFaulty);
    expect((await rpcError(expired.call)).data?.code).toBe('ERR_PIN_EXPIRED');

    faulty.set('flags user-pin-to-be-changed');
    const toChange = await sign(onFaulty);
    expect((await rpcError(toChange.call)).data?.code).toBe('ERR_PIN_EXPIRED');
    expect(faulty.loginCalls()).toHaveLength(2);
  });

  it('final try and count low: the token and the consent request carry the warning', async () => {
    for (const [flag, warning, field] of [
      ['user-pin-final-try', 'pin-final-try', 'finalTry'],
      ['user-pin-count-low', 'pin-count-low', 'countLow'],
    ] as const) {
      faulty.set(`flags ${flag}`);
      expect((await faultyToken()).userPin[field]).toBe(true);
      const s = startSign(onFaulty);
      const requestId = await s.consent;
      const [request] = await agent.pendingConsents();
      expect(request).toMatchObject({ requestId, needs: ['userPin'], warnings: [warning] });
      if (warning === 'pin-final-try') {
        const listed = await agent.cli(['consent', 'list']);
        expect(listed.stdout).toContain(`warnings:    ${warning}`);
      }
      expect((await agent.consent(requestId, { userPin: PIN })).status).toBe(0);
      await s.call;
    }
  });

  it('a PIN pad token: no userPin need, approval without secrets, C_Login without a PIN, a signature that verifies', async () => {
    faulty.set(`pinpad ${PIN}`);
    expect((await faultyToken()).protectedAuthenticationPath).toBe(true);
    const s = startSign(onFaulty);
    const requestId = await s.consent;
    const [request] = await agent.pendingConsents();
    expect(request).toMatchObject({ requestId, needs: [], pinpad: true });
    const listed = await agent.cli(['consent', 'list']);
    expect(listed.stdout).toContain("PIN:         type it on the reader's keypad");

    // A PIN typed into Kelid anyway is refused: the keypad is the only way in.
    const typed = await agent.consent(requestId, { userPin: PIN });
    expect(typed.status).not.toBe(0);
    expect(typed.stderr).toMatch(/only these secrets are expected: \(none\)/);

    const approved = await agent.cli(['consent', 'approve', requestId]);
    expect(approved.status, approved.stderr).toBe(0);
    expect(approved.stderr).toContain("PIN pad reader: type it on the reader's keypad");
    await expectVerifies(onFaulty, { call: s.call, data: s.data });
    expect(faulty.loginCalls()).toEqual([{ userType: 1, withPin: false }]);
  });

  it('a PIN pad token: keys.generate (ra) needs no PIN; a wrong PIN on the keypad is ERR_PIN_INCORRECT', async () => {
    faulty.set(`pinpad ${PIN}`);
    let id = ra.nextId;
    const gen = ra.call<{ key: { keyId: string; tokenId: string } }>('keys.generate', {
      tokenId: onFaulty.tokenId,
      algorithm: { name: 'EC', namedCurve: 'P-256' },
      label: 'pinpad-key',
    });
    let requestId = await ra.consentFor(id);
    expect((await agent.pendingConsents())[0]).toMatchObject({ requestId, needs: [], pinpad: true });
    expect((await agent.consent(requestId, {})).status).toBe(0);
    expect((await gen).key.tokenId).toBe(onFaulty.tokenId);

    faulty.set('pinpad 0000');
    id = ra.nextId;
    const del = ra.call('objects.delete', {
      tokenId: onFaulty.tokenId,
      keyId: (await gen).key.keyId,
      scope: 'keypair',
    });
    requestId = await ra.consentFor(id);
    expect((await agent.consent(requestId, {})).status).toBe(0);
    expect((await rpcError(del)).data?.code).toBe('ERR_PIN_INCORRECT');
    expect(faulty.loginCalls().every((c) => !c.withPin)).toBe(true);
  });
});

describe('Agent listing tokens while one module hangs in C_Login', () => {
  let stack: Awaited<ReturnType<typeof startFaultyStack>>;

  beforeAll(async () => {
    // Long enough that the hang below ends by being released, not by the host being killed.
    stack = await startFaultyStack('kelid-e2e-faulty-list-', 60);
  });

  afterAll(async () => {
    await stack?.close();
  });

  it('answers tokens.list with every token while the login hangs, and the login completes when released', async () => {
    const { faulty, agent, ra, onFaulty: cert } = stack;
    const before = hostPid(agent.pid, faulty.path);
    faulty.set('hang C_Login');
    const data = randomBytes(64);
    const id = ra.nextId;
    const signing = ra.call<{ signature: string }>('sign.raw', {
      certificateId: cert.certificateId,
      digest: createHash('sha256').update(data).digest('base64'),
      digestAlgorithm: 'SHA-256',
      summary: 'listing while a login hangs',
    });
    expect((await agent.consent(await ra.consentFor(id), { userPin: PIN })).status).toBe(0);
    await until(
      () => faulty.loginCalls().length,
      (n) => n > 0,
      'the hung C_Login',
    );

    // The faulty module's host is stuck in C_Login; the list still comes, with its token as last seen.
    let settled = false;
    void signing.then(
      () => (settled = true),
      () => (settled = true),
    );
    const { tokens } = await ra.call<{ tokens: TokenJson[] }>('tokens.list');
    expect(settled).toBe(false);
    expect(
      tokens
        .map((t) => t.label)
        .filter(Boolean)
        .sort(),
    ).toEqual(['faulty-tok', 'plain-tok']);

    faulty.clear();
    const { signature } = await signing;
    const key = new X509Certificate(Buffer.from(cert.certificate, 'base64')).publicKey;
    expect(cryptoVerify('sha256', data, key, Buffer.from(signature, 'base64'))).toBe(true);
    expect(hostPid(agent.pid, faulty.path)).toBe(before);
  });
});
