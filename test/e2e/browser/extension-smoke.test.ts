import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemo } from '../../../demo/server.mjs';
import type { Demo } from '../../../demo/server.mjs';
import { AgentProcess } from '../../helpers/agent-process.js';
import { ExtensionBrowser } from '../../helpers/extension-browser.js';

describe('smoke', () => {
  let demo: Demo;
  let agent: AgentProcess;
  let browser: ExtensionBrowser;
  beforeAll(async () => {
    demo = await startDemo({ dir: join(mkdtempSync(join(tmpdir(), 'kelid-smoke-')), 'demo'), caPort: 0, raPort: 0, sitePort: 0, agentUrl: 'wss://127.0.0.1:1/v1' });
    agent = await AgentProcess.start({ config: { wss: false, raOrigins: [demo.urls.ra], devOrigins: [demo.urls.ra, demo.urls.site] } });
    browser = await ExtensionBrowser.launch({ stateDir: agent.stateDir, configFile: agent.configFile });
  });
  afterAll(async () => {
    await browser?.close();
    await agent?.stop();
    await demo?.close();
  });
  it('info over the extension', async () => {
    console.log('id', await browser.extensionId());
    const page = await browser.page();
    await page.goto(`${demo.urls.site}/`);
    const r = await page.evaluate(`(async () => {
      const { KelidClient } = await import('/kelid.js');
      const c = await KelidClient.connect();
      return { transport: c.transport, info: await c.info() };
    })()`) as { transport: string };
    console.log(JSON.stringify(r));
    expect(r.transport).toBe('extension');
  });
});
