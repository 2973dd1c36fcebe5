import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { startDemo } from '../../demo/server.mjs';
import type { Demo } from '../../demo/server.mjs';
import { AgentProcess, REPO } from './agent-process.js';
import { ChromiumHarness, ConsentWindows, assertClientBuilt, recordingLauncher } from './browser.js';
import type { SoftHsm } from './softhsm.js';

/** Demo pages + CA, a real agent over TLS, and Chromium trusting the agent's CA: what the browser tests share. */
export interface DemoStack {
  tmp: string;
  demo: Demo;
  agent: AgentProcess;
  browser: ChromiumHarness;
  consents: ConsentWindows;
  page: Page;
  /** The agent URL the demo pages are told to use; a test may point it elsewhere (e.g. a closed port). */
  agentUrl: string;
  close(): Promise<void>;
}

export interface DemoStackOptions {
  prefix: string;
  /** Page errors collected by the harness (console errors, failed requests). */
  errors: string[];
  /** The agent's config; `consent.launcher` is set to a recording launcher whatever is given. */
  agentConfig(demo: Demo): Record<string, unknown>;
  /** Work to do with the agent before the browser starts (its consents are not the browser's). */
  prepare?(stack: Pick<DemoStack, 'tmp' | 'demo' | 'agent'>): Promise<void>;
}

/** An `agentConfig` with one SoftHSM module, the demo RA trusted, and the RA and the site as dev origins. */
export function softHsmDemoConfig(
  hsm: Pick<SoftHsm, 'module' | 'env'>,
): (demo: Demo) => Record<string, unknown> {
  return (d) => ({
    modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
    raOrigins: [d.urls.ra],
    devOrigins: [d.urls.ra, d.urls.site],
  });
}

export async function startDemoStack(o: DemoStackOptions): Promise<DemoStack> {
  assertClientBuilt(REPO);
  const tmp = mkdtempSync(join(tmpdir(), o.prefix));
  const parts: Partial<DemoStack> = { tmp };
  const stack = {
    ...parts,
    agentUrl: '',
    async close() {
      await stack.browser?.close();
      await stack.agent?.stop();
      stack.agent?.cleanup();
      await stack.demo?.close();
      rmSync(tmp, { recursive: true, force: true });
    },
  } as DemoStack;
  try {
    stack.demo = await startDemo({
      dir: join(tmp, 'demo'),
      caPort: 0,
      raPort: 0,
      sitePort: 0,
      agentUrl: () => stack.agentUrl,
    });
    const urlLog = join(tmp, 'consent-urls.log');
    const config = o.agentConfig(stack.demo);
    stack.agent = await AgentProcess.start({
      config: {
        ...config,
        consent: { ...(config.consent as object | undefined), launcher: recordingLauncher(urlLog) },
      },
    });
    stack.agentUrl = `wss://127.0.0.1:${stack.agent.port}/v1`;
    await o.prepare?.(stack);
    stack.browser = await ChromiumHarness.launch({ trustCaPem: stack.agent.info.caCertificatePem });
    stack.consents = new ConsentWindows(stack.browser, urlLog, o.errors);
    stack.page = await stack.browser.page(o.errors);
    return stack;
  } catch (e) {
    await stack.close();
    throw e;
  }
}

/** What {@link enrollOnToken} provisions: a key pair on the token labelled `tokenLabel`, its certificate and chain. */
export interface Enrollment {
  tokenLabel: string;
  keyLabel: string;
  algorithm: { name: 'EC'; namedCurve: 'P-256' | 'P-384' } | { name: 'RSA'; modulusLength: number };
  subject: string | Array<{ type: string; value: string }>;
  userPin: string;
}

/**
 * Provision a signing certificate as an RA page would, before the browser starts: `keys.generate`
 * with a CSR, the demo CA issues it, `certificates.import` writes it back; each consent is approved
 * on the agent's CLI control channel.
 */
export async function enrollOnToken(s: Pick<DemoStack, 'demo' | 'agent'>, e: Enrollment): Promise<void> {
  const ra = await s.agent.connect(s.demo.urls.ra);
  const consented = async <T>(method: string, params: unknown): Promise<T> => {
    const id = ra.nextId;
    const result = ra.call<T>(method, params);
    const approved = await s.agent.consent(await ra.consentFor(id), { userPin: e.userPin });
    if (approved.status !== 0) throw new Error(`consent approve failed: ${approved.stderr}`);
    return result;
  };
  try {
    const { tokens } = await ra.call<{ tokens: Array<{ tokenId: string; label: string }> }>('tokens.list');
    const token = tokens.find((t) => t.label === e.tokenLabel);
    if (!token) throw new Error(`no token labelled ${e.tokenLabel}`);
    const { csr } = await consented<{ csr: string }>('keys.generate', {
      tokenId: token.tokenId,
      algorithm: e.algorithm,
      label: e.keyLabel,
      csr: { subject: e.subject },
    });
    const issued = await s.demo.ca.issue(csr);
    await consented('certificates.import', {
      tokenId: token.tokenId,
      certificate: issued.certificate,
      chain: issued.chain,
    });
  } finally {
    await ra.close();
  }
}
