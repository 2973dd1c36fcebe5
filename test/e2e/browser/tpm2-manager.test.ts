import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess } from '../../helpers/agent-process.js';
import {
  ChromiumHarness,
  ConsentWindows,
  recordingLauncher,
  screenshotOnFailure,
} from '../../helpers/browser.js';
import { Tpm2Stack, tpm2SkipReason } from '../../helpers/tpm2.js';

const skip = tpm2SkipReason();
const SO = 'Officer99';
const PIN = '4815162342';

// The token manager over tpm2-pkcs11 after the TPM's dictionary-attack lockout (issue 18, finding
// 5): no PIN flag says locked, every token is locked, and the SO-PIN cannot unblock it, so the page
// must not send the user to "Unblock PIN".
describe.skipIf(skip !== undefined)(
  `Token manager on tpm2-pkcs11${skip ? ` — skipped: ${skip}` : ''}`,
  () => {
    let tpm: Tpm2Stack;
    let agent: AgentProcess;
    let browser: ChromiumHarness;
    let consents: ConsentWindows;
    const errors: string[] = [];
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-tpm2-ui-'));

    beforeAll(async () => {
      tpm = await Tpm2Stack.start();
      tpm.addToken('tpm-ui', SO, PIN);
      const urls = path.join(work, 'urls.txt');
      agent = await AgentProcess.start({
        prefix: 'kelid-e2e-tpm2-ui-',
        config: {
          modules: [{ id: 'tpm2', path: tpm.module, env: tpm.env }],
          consent: { launcher: recordingLauncher(urls) },
        },
      });
      browser = await ChromiumHarness.launch({ trustCaPem: agent.info.caCertificatePem });
      consents = new ConsentWindows(browser, urls, errors);
    });
    afterEach(async ({ task }) => screenshotOnFailure(browser, task));
    afterAll(async () => {
      await browser?.close();
      await agent?.stop();
      agent?.cleanup();
      tpm?.cleanup();
      fs.rmSync(work, { recursive: true, force: true });
    });

    it('says the SO-PIN cannot unblock a device-wide lockout, and does not point at "Unblock PIN"', async () => {
      // another program spends the TPM's tries (swtpm allows 3); the flags still say unlocked
      for (let i = 0; i < 4; i++) {
        try {
          tpm.tool(['--token-label', 'tpm-ui', '--login', '--pin', '000000', '--list-objects']);
        } catch {
          // CKR_PIN_INCORRECT, then CKR_PIN_LOCKED
        }
      }
      const ui = await agent.cli(['ui', '--print']);
      expect(ui.status).toBe(0);
      const manager = await browser.page(errors);
      await manager.goto(`${ui.stdout.trim()}`);
      await manager.getByTestId('lang-toggle').click();
      await manager.locator('html[dir="ltr"]').waitFor();
      await manager.getByTestId('manager-change-pin').click();
      const consent = await consents.next({ lang: 'en' });
      await ConsentWindows.approve(consent, { oldUserPin: PIN, newUserPin: '2718281828' });
      await manager
        .getByTestId('manager-message')
        .filter({ hasText: 'The SO-PIN cannot unblock it' })
        .waitFor({ timeout: 30_000 });
      expect(await manager.getByTestId('manager-message').textContent()).not.toContain('Use “Unblock PIN”');
      // the token now shows locked, without sending the user to "Unblock PIN"
      const unblock = manager.getByTestId('manager-unblock-pin');
      await manager
        .getByTestId('manager-user-pin')
        .filter({ hasText: 'locked' })
        .first()
        .waitFor({ timeout: 30_000 });
      expect((await unblock.getAttribute('class')) ?? '').not.toContain('primary');
    });
  },
);
