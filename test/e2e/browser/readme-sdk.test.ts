// softhsm-only: runs README's example against the demo stack, which is built on SoftHSM
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { REPO } from '../../helpers/agent-process.js';
import { ConsentWindows, screenshotOnFailure } from '../../helpers/browser.js';
import { enrollOnToken, softHsmDemoConfig, startDemoStack } from '../../helpers/demo-stack.js';
import type { DemoStack } from '../../helpers/demo-stack.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// README's SDK example, run as written in Chromium from a site's page against the demo stack (issue 17,
// section 2). The only changes are the agent's address (the test agent listens on a free port, not
// 17443) and `file`, which the example leaves to the page.

const PIN = '4711';

function readmeSdkExample(): string {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const block = /^```js\n([\s\S]*?)^```/m.exec(readme);
  if (!block || !block[1]!.includes('KelidClient.connect('))
    throw new Error("README's SDK example not found");
  return block[1]!;
}

describe("README's SDK example in Chromium", () => {
  let stack: DemoStack;
  let hsm: SoftHsm;
  const errors: string[] = [];

  beforeAll(async () => {
    hsm = new SoftHsm();
    hsm.initToken('Readme', '12345678', PIN);
    stack = await startDemoStack({
      prefix: 'kelid-e2e-readme-',
      errors,
      agentConfig: softHsmDemoConfig(hsm),
      prepare: async (s) => {
        stack = { ...stack, ...s } as DemoStack;
        await enrollOnToken(s, {
          tokenLabel: 'Readme',
          keyLabel: 'signing',
          algorithm: { name: 'EC', namedCurve: 'P-256' },
          subject: 'CN=Readme Reader,C=IR',
          userPin: PIN,
        });
      },
    });
  });

  afterEach(async ({ task }) => screenshotOnFailure(stack.browser, task));

  afterAll(async () => {
    await stack?.close();
    hsm?.cleanup();
  });

  it('connects, asks for access, lists the certificate with a filter and signs a file', async () => {
    const agentHost = `127.0.0.1:${stack.agent.port}`;
    const code = readmeSdkExample()
      .replaceAll('127.0.0.1:17443', agentHost)
      .replace('KelidClient.connect()', `KelidClient.connect({ url: 'wss://${agentHost}/v1' })`);
    const { page, consents, demo } = stack;
    // A page of the site's origin holding nothing but the example (as a module, like a web developer's).
    const url = `${demo.urls.site}/readme-example.html`;
    await page.route(url, (route) =>
      route.fulfill({
        contentType: 'text/html',
        body: `<!doctype html><meta charset="utf-8">
<script>
window.addEventListener('error', (e) => { window.readmeResult = { error: String(e.error?.code ?? e.message) }; });
</script>
<script type="module">
const file = new File(['Loan contract #4411'], 'loan.txt', { type: 'text/plain' });
${code}
window.readmeResult = { cms, subject: cert.subject };
</script>`,
      }),
    );
    // The example imports the SDK from the agent (loopback): the user allows local network access.
    await page.context().grantPermissions(['local-network-access'], { origin: demo.urls.site });
    let seen = consents.urls().length;
    await page.goto(url);
    // Answer each consent the example raises (access: no PIN; the signature: the PIN) until it ends.
    const done = () => page.evaluate(() => 'readmeResult' in globalThis);
    for (let approved = 0; !(await done());) {
      if (consents.urls().length > seen) {
        seen += 1;
        await ConsentWindows.approve(
          await consents.next({ lang: 'fa' }),
          approved === 0 ? {} : { userPin: PIN },
        );
        approved += 1;
      } else {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const result = (await page.evaluate(
      () => (globalThis as unknown as { readmeResult: unknown }).readmeResult,
    )) as {
      cms?: string;
      subject?: string;
      error?: string;
    };
    expect(result.error).toBeUndefined();
    expect(result.subject).toContain('Readme Reader');
    // The signature is real: openssl checks it over the file's bytes.
    const tmp = stack.tmp;
    writeFileSync(join(tmp, 'loan.txt'), 'Loan contract #4411');
    writeFileSync(join(tmp, 'loan.p7s'), Buffer.from(result.cms!, 'base64'));
    writeFileSync(join(tmp, 'root.pem'), demo.ca.rootPem);
    execFileSync(
      'openssl',
      [
        'cms',
        '-verify',
        '-binary',
        '-inform',
        'DER',
        '-in',
        join(tmp, 'loan.p7s'),
        '-content',
        join(tmp, 'loan.txt'),
        '-CAfile',
        join(tmp, 'root.pem'),
        '-purpose',
        'any',
        '-out',
        '/dev/null',
      ],
      { stdio: 'pipe' },
    );
  });
});
