import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { startDemo } from '../../demo/server.mjs';
import type { Demo } from '../../demo/server.mjs';
import { AgentProcess } from './agent-process.js';
import { assertClientBuilt, recordingLauncher, until } from './browser.js';
import { ExtensionBrowser } from './extension-browser.js';
import { REPO } from './agent-process.js';

/** The demo pages, a real agent with its WebSocket listener off, and Chromium with the extension. */
export interface ExtensionStack {
  tmp: string;
  demo: Demo;
  agent: AgentProcess;
  browser: ExtensionBrowser;
  /** Approve the next consent request on the control channel (the CA is not trusted: no consent page). */
  approveNext(secrets: Record<string, string>, origin: string): Promise<void>;
  close(): Promise<void>;
}

export async function startExtensionStack(o: {
  prefix: string;
  agentConfig(demo: Demo): Record<string, unknown>;
  browserArgs?: (demo: Demo) => string[];
  /** Trust the agent's CA in the browser (default: not trusted). */
  trustAgentCa?: boolean;
}): Promise<ExtensionStack> {
  assertClientBuilt(REPO);
  const tmp = mkdtempSync(join(tmpdir(), o.prefix));
  const stack = {
    tmp,
    async close() {
      await stack.browser?.close();
      await stack.agent?.stop();
      // An agent the native host started (after a restart test) is no child of ours: stop it by pid.
      if (stack.agent) await stopStartedAgent(stack.agent.stateDir);
      stack.agent?.cleanup();
      await stack.demo?.close();
      rmSync(tmp, { recursive: true, force: true });
    },
    async approveNext(secrets: Record<string, string>, origin: string) {
      const [pending] = await until(
        () => stack.agent.pendingConsents(),
        (l) => l.length > 0,
        'a consent request',
      );
      expect(pending.origin).toBe(origin);
      const r = await stack.agent.consent(pending.requestId, secrets);
      expect(r.status, r.stderr).toBe(0);
    },
  } as ExtensionStack;
  try {
    // The pages are told a closed WebSocket address: everything must go through the extension.
    stack.demo = await startDemo({
      dir: join(tmp, 'demo'),
      caPort: 0,
      raPort: 0,
      sitePort: 0,
      agentUrl: 'wss://127.0.0.1:9/v1',
    });
    const config = o.agentConfig(stack.demo);
    stack.agent = await AgentProcess.start({
      config: {
        wss: false,
        ...config,
        consent: {
          ...(config.consent as object | undefined),
          launcher: recordingLauncher(join(tmp, 'urls.log')),
        },
      },
    });
    stack.browser = await ExtensionBrowser.launch({
      stateDir: stack.agent.stateDir,
      configFile: stack.agent.configFile,
      args: o.browserArgs?.(stack.demo) ?? [],
      ...(o.trustAgentCa ? { trustCaPem: stack.agent.info.caCertificatePem } : {}),
    });
    return stack;
  } catch (e) {
    await stack.close();
    throw e;
  }
}

async function stopStartedAgent(stateDir: string): Promise<void> {
  const file = join(stateDir, 'agent.json');
  if (!existsSync(file)) return;
  const { pid } = JSON.parse(readFileSync(file, 'utf8')) as { pid: number };
  const alive = (): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (!alive()) return;
  process.kill(pid, 'SIGTERM');
  await until(alive, (a) => !a, `agent ${pid} to stop`, 15_000).catch(() => process.kill(pid, 'SIGKILL'));
}
