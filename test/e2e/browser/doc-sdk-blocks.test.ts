// softhsm-only: runs the docs' blocks against the demo stack, which is built on SoftHSM
import { execFile } from 'node:child_process';
import { createHash, createPublicKey, verify, X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { transform } from 'esbuild';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { REPO, assertBuilt } from '../../helpers/agent-process.js';
import type { RpcClient } from '../../helpers/agent-process.js';
import { screenshotOnFailure, until } from '../../helpers/browser.js';
import { startDemoStack } from '../../helpers/demo-stack.js';
import type { DemoStack } from '../../helpers/demo-stack.js';
import { blocksOf, docFiles, jsMarker } from '../../helpers/doc-blocks.js';
import type { Block, JsMarker } from '../../helpers/doc-blocks.js';
import { opensslCmsVerify } from '../../helpers/openssl-cms.js';
import { SoftHsm } from '../../helpers/softhsm.js';
import { TestPki, freePort } from '../../helpers/test-ca.js';

// Every js/ts block of README.md and docs/*.md marked `test: check=<name>` runs here (issue 17,
// section 2): browser blocks as a module of a page in Chromium against the demo stack (one agent, one
// SoftHSM token, one browser for the file), `run=node` blocks in Node against the built package. The
// marker syntax is in test/helpers/doc-blocks.ts; CHECKS below holds each block's expected outcome.
//
// What the test changes in a browser block, and only this: the SDK imports (`kelid/client`, the
// agent's /sdk/kelid.js) load the test agent's /sdk/kelid.js, `127.0.0.1:17443` becomes the test
// agent's address, and KelidClient.connect() defaults its `url` to the test agent. The page also
// provides the names the docs leave to the reader's page: `file` (a File), `show(text)` and
// `sendToCa(csrPem)` (the demo CA). Every consent the block raises is approved in Kelid's consent
// page with the demo PINs. The test records what the block logs and what each SDK call returned.

const run = promisify(execFile);
const USER_PIN = '4711';
const SO_PIN = 'DocsSo8642';
const FILE_TEXT = 'Loan contract #4411';
const RA_ORIGIN = 'https://ra-flow.docs.example';
/** The secrets a consent page asks for, by need. */
const SECRETS: Record<string, string> = { soPin: SO_PIN, newSoPin: SO_PIN, oldSoPin: SO_PIN };

interface Call {
  m: string;
  args: unknown;
  r?: unknown;
  code?: string;
}

interface BlockRun {
  origin: string;
  /** The same browser block again, KelidClient.connect() defaulting to `agentUrl`. */
  rerun?(agentUrl: string): Promise<BlockRun>;
  logs: unknown[][];
  calls: Call[];
  error?: string;
  page?: Page;
}

interface Check {
  /** The page's origin when it matters (the docs name it); default https://<check>.docs.example. */
  origin?: string;
  /** Names a `run=node` block reads from its server (the request, the roots…). */
  globals?(): Record<string, unknown>;
  /** The error code the block ends with (uncaught), when that is its documented outcome. */
  throws?: string;
  /** The outcome the block must have; may wait for what arrives after the module ends. */
  verify(r: BlockRun): void | Promise<void>;
}

const blocks: Array<{ block: Block; marker: JsMarker }> = [];
for (const block of docFiles().flatMap(blocksOf)) {
  if (block.lang !== 'js' && block.lang !== 'ts') continue;
  const marker = jsMarker(block);
  if (marker) blocks.push({ block, marker });
}

describe('js/ts blocks of README.md and docs/ run in Chromium and Node', () => {
  let stack: DemoStack;
  let hsm: SoftHsm;
  let pki: TestPki;
  const errors: string[] = [];
  /** What the sign-in block posted to /login, for the server block. */
  const login: { nonce?: string; token?: unknown } = {};
  let sdkUrl = '';

  const calls = (r: BlockRun, m: string): Call[] => r.calls.filter((c) => c.m === m);
  const b64 = (s: string): Buffer => Buffer.from(s, 'base64');
  /** An ECDSA (DER) or RSA PKCS#1 v1.5 signature over `data`, by the certificate's key (base64 DER). */
  const verifies = (certificate: string, data: string | Buffer, signature: string): boolean =>
    verify(
      'sha256',
      Buffer.from(data),
      {
        key: createPublicKey(
          new X509Certificate(b64(certificate)).publicKey.export({ type: 'spki', format: 'pem' }),
        ),
        dsaEncoding: 'der',
      },
      b64(signature),
    );
  const cmsOk = (cms: string, content?: string): void => {
    const sig = join(stack.tmp, 'doc.p7s');
    writeFileSync(sig, b64(cms));
    const ca = join(stack.tmp, 'root.pem');
    writeFileSync(ca, stack.demo.ca.rootPem);
    let contentFile: string | undefined;
    if (content !== undefined) {
      contentFile = join(stack.tmp, 'doc.txt');
      writeFileSync(contentFile, content);
    }
    const r = opensslCmsVerify({ signature: sig, caFile: ca, content: contentFile });
    expect(r.ok, r.output).toBe(true);
  };
  /** What the page has logged so far (listeners log after the module ended). */
  const pageLogs = async (r: BlockRun): Promise<unknown[][]> =>
    JSON.parse(
      await r.page!.evaluate(() => JSON.stringify((globalThis as unknown as { __logs: unknown }).__logs)),
    ) as unknown[][];
  const loggedWith = (r: BlockRun, first: unknown): unknown[] | undefined =>
    r.logs.find((l) => l[0] === first);

  const CHECKS: Record<string, Check> = {
    // docs/sdk.md: the intro. A fresh origin asks for access, then lists the token's certificates.
    intro: {
      verify(r) {
        expect(calls(r, 'requestAccess')).toHaveLength(1);
        const [list] = calls(r, 'listCertificates');
        expect((list!.r as unknown[]).length).toBeGreaterThan(0);
        expect(r.logs.at(-1)).toEqual([(list!.r as unknown[]).length]);
      },
    },
    'served-sdk': { verify: (r) => expect(r.logs).toEqual([['unknown']]) },
    connect: {
      async verify(r) {
        expect(r.logs).toEqual([['wss', `wss://127.0.0.1:${stack.agent.port}/v1`, true]]);
        // The error branch: no agent on that port (a free one, closed again).
        const closed = await r.rerun!(`wss://127.0.0.1:${await freePort()}/v1`);
        await closed.page?.close();
        expect(closed.error).toBeUndefined();
        expect(closed.calls.find((c) => c.m === 'openConnection')).toMatchObject({
          code: 'ERR_AGENT_UNREACHABLE',
        });
        const [[message, hint, permission]] = closed.logs as [[string, string, string]];
        expect(message).toMatch(/\S/);
        expect(hint).toMatch(/\S/);
        expect(['granted', 'prompt', 'denied', 'unsupported', 'unknown']).toContain(permission);
      },
    },
    access: {
      verify(r) {
        expect(r.logs).toEqual([['site']]);
        expect(calls(r, 'requestAccess')[0]!.r).toMatchObject({ tier: 'site' });
      },
    },
    certificates: {
      verify(r) {
        expect(loggedWith(r, 'Docs')).toEqual(['Docs', true, false, false, false]);
        const [forCms, forLogin, fromOneIssuer] = calls(r, 'listCertificates').map(
          (c) => c.r as Array<Record<string, unknown>>,
        );
        expect(forCms!.map((c) => c.subject)).toEqual([expect.stringContaining('Docs Signer')]);
        expect(forCms![0]!.allowedUses).toContain('cms');
        expect(forLogin!.map((c) => c.subject)).toEqual([expect.stringContaining('Docs Login')]);
        // The demo's issuer is not "Citizen CA".
        expect(fromOneIssuer).toEqual([]);
        expect(r.logs.at(-1)).toEqual([1, 0]);
      },
    },
    status: {
      // The demo CA's OCSP responder knows the certificate it issued.
      verify: (r) => expect(r.logs).toEqual([['good', 'ocsp', expect.stringMatching(/^\d{4}-/)]]),
    },
    'sign-raw': {
      verify(r) {
        const cert = (calls(r, 'listCertificates')[0]!.r as Array<{ certificate: string }>)[0]!.certificate;
        const raw = calls(r, 'signRaw')[0]!.r as { signature: string; signatureAlgorithm: string };
        expect(raw.signatureAlgorithm).toBe('ES256');
        expect(verifies(cert, 'transfer 1,000,000 IRR to 0123', raw.signature)).toBe(true);
        const { results } = calls(r, 'signBatch')[0]!.r as { results: Array<{ signature: string }> };
        expect(results.map((x, i) => verifies(cert, `invoice ${i + 1}`, x.signature))).toEqual([
          true,
          true,
          true,
        ]);
        expect(r.logs.at(-1)).toEqual([3]);
      },
    },
    'sign-cms': {
      verify(r) {
        const [attached, detached] = calls(r, 'signCms').map((c) => (c.r as { cms: string }).cms);
        cmsOk(attached!);
        cmsOk(detached!, '<xml>…</xml>');
        cmsOk((calls(r, 'signFile')[0]!.r as { cms: string }).cms, FILE_TEXT);
        expect(r.logs.some((l) => l[0] === '100%')).toBe(true);
      },
    },
    // docs/sdk.md's sign-in: the page posts the token to /login (answered by this test).
    'sign-in': {
      origin: 'https://bank.example',
      verify(r) {
        expect(r.logs).toEqual([[true]]);
        expect(login.token).toMatchObject({ format: 'kelid-auth:1', origin: 'https://bank.example' });
      },
    },
    // docs/sdk.md's server side of that sign-in, in Node against the built package.
    'verify-token': {
      globals: () => {
        if (login.token === undefined) throw new Error('runs after the sign-in example (its token)');
        return {
          req: { body: { token: login.token } },
          nonceIssuedForThisSession: login.nonce,
          nationalRootDer: pki.root.der,
          citizenCaDer: pki.intermediate.der,
        };
      },
      verify(r) {
        expect(r.logs).toHaveLength(1);
        expect(String(r.logs[0]![0])).toContain('Docs Login');
      },
    },
    'ra-flow': {
      origin: RA_ORIGIN,
      verify(r) {
        expect(calls(r, 'initToken')[0]!.r).toMatchObject({ label: 'Ali Rezaei', initialized: true });
        const imported = calls(r, 'importCertificate')[0]!.r as { subject: string };
        expect(imported.subject).toBe('CN=علی رضایی,C=IR');
        // listKeys: the key generated, with its certificate imported.
        expect(r.logs.find((l) => l[1] === 'signing')).toEqual([expect.any(String), 'signing', true]);
        expect(r.logs.at(-1)).toEqual([1]);
      },
    },
    cancel: {
      verify(r) {
        cmsOk((calls(r, 'signCms')[0]!.r as { cms: string }).cms, 'hello');
        expect(r.logs.find((l) => l[0] === 'waiting for the user')).toBeDefined();
        expect(Number(r.logs.at(-1)![0])).toBeGreaterThan(0);
      },
    },
    hash: {
      verify(r) {
        const hex = createHash('sha384').update(FILE_TEXT).digest('hex');
        expect(r.logs.at(-1)).toEqual([hex, 48, 2, expect.any(Number)]);
      },
    },
    // The block's listeners hear a token being plugged in.
    events: {
      async verify(r) {
        hsm.initToken('Plugged', SO_PIN, USER_PIN);
        const logs = await until(
          () => pageLogs(r),
          (l) => l.some((x) => x[0] === 'plugged'),
          'tokensChanged',
        );
        // SoftHSM offers a new empty slot beside the new token.
        expect(logs.find((l) => l[0] === 'plugged')).toEqual([
          'plugged',
          expect.arrayContaining(['Plugged']),
          'unplugged',
          expect.any(Array),
        ]);
      },
    },
    // A malformed certificate id: the error branch shows the user's message.
    errors: {
      verify(r) {
        expect(calls(r, 'signCms')[0]!.code).toBe('ERR_INVALID_INPUT');
        expect(r.logs).toHaveLength(1);
        expect(r.logs[0]![0]).toBe('show');
        expect(String(r.logs[0]![1])).not.toBe('');
      },
    },
    // docs/agent.md: the SDK, then JSON-RPC by hand over a WebSocket of the page's own.
    'by-hand': {
      async verify(r) {
        expect(calls(r, 'requestAccess')[0]!.r).toMatchObject({ tier: 'site' });
        const all = await until(
          () => pageLogs(r),
          (l) => l.some((x) => x[0] === 2),
          'the answer to id 2',
        );
        expect(all.find((l) => l[0] === 1)![1]).toMatchObject({ tier: 'site', origin: r.origin });
        expect(all.find((l) => l[0] === 2)![1]).toMatchObject({ tier: 'site' });
      },
    },
    // docs/extension.md: this browser has no Kelid extension.
    transports: {
      throws: 'ERR_AGENT_UNREACHABLE',
      verify: (r) => expect(calls(r, 'info')).toEqual([]),
    },
  };

  /**
   * A block's page origin: the one its check names, else one for every `given=access` block (approved
   * once), else a fresh one of its own (an origin the agent has not seen yet).
   */
  const pageOf = (m: JsMarker): string =>
    CHECKS[m.check]?.origin ??
    (m.given === 'access' ? 'https://site.docs.example' : `https://${m.check}.docs.example`);
  const approvedOrigins = new Set<string>();

  /**
   * Type what the consent page asks for and approve. The user PIN is the demo one until a page of this
   * run sets a new one (initToken, changePin, unblockPin): each new user PIN is a fresh value, as the
   * PIN change must differ from the old one.
   */
  async function approve(p: Page, pins: { user: string; next: number }): Promise<void> {
    let newUserPin: string | undefined;
    for (const input of await p.locator('input[data-testid^="pin-"]:visible').all()) {
      const need = (await input.getAttribute('data-testid'))!.replace(/^pin-/, '').replace(/-confirm$/, '');
      if (need === 'newUserPin') newUserPin ??= String(pins.next++);
      const value =
        need === 'newUserPin' ? newUserPin : /^(old)?[uU]serPin$/.test(need) ? pins.user : SECRETS[need];
      if (value === undefined) throw new Error(`no secret for ${need}`);
      await input.fill(value);
    }
    await p.getByTestId('consent-approve').click();
    await p.locator('[data-testid="consent-result"][data-result="approved"]').waitFor();
    await p.close();
    if (newUserPin !== undefined) pins.user = newUserPin;
  }

  function prelude(agentUrl: string): string {
    return `import * as __sdk from '${sdkUrl}';
const __w = window;
__w.__logs = []; __w.__calls = [];
const __json = (v) => JSON.parse(JSON.stringify(v, (_k, x) => (x instanceof Uint8Array ? __sdk.toBase64(x) : x)) ?? 'null');
const __log = console.log.bind(console);
console.log = (...a) => { __w.__logs.push(__json(a)); __log(...a); };
const __connect = __sdk.KelidClient.connect;
__sdk.KelidClient.connect = function (o = {}) { return __connect.call(this, { url: '${agentUrl}', ...o }); };
for (const m of Object.getOwnPropertyNames(__sdk.KelidClient.prototype)) {
  const f = Object.getOwnPropertyDescriptor(__sdk.KelidClient.prototype, m).value;
  if (m === 'constructor' || typeof f !== 'function' || f.constructor.name !== 'AsyncFunction') continue;
  __sdk.KelidClient.prototype[m] = async function (...args) {
    try { const r = await f.apply(this, args); __w.__calls.push({ m, args: __json(args), r: __json(r) }); return r; }
    catch (e) { __w.__calls.push({ m, args: __json(args), code: e?.code ?? String(e) }); throw e; }
  };
}
__w.file = new File([${JSON.stringify(FILE_TEXT)}], 'loan.txt', { type: 'text/plain' });
__w.show = (text) => console.log('show', text);
__w.sendToCa = async (csr) => (await fetch('/ca/issue', { method: 'POST', body: csr })).json();
`;
  }

  /** Run `code` (JS) as a module of a page of `origin`, answering its consents; the page stays open. */
  async function inBrowser(
    origin: string,
    code: string,
    agentUrl = `wss://127.0.0.1:${stack.agent.port}/v1`,
  ): Promise<BlockRun> {
    const page = await stack.browser.page(errors);
    const url = `${origin}/docs-example.html`;
    await page.route(url, (route) =>
      route.fulfill({
        contentType: 'text/html',
        body: `<!doctype html><html lang="en"><meta charset="utf-8">
<script>window.addEventListener('error', (e) => { window.__error = String(e.error?.code ?? (e.error?.stack || e.message)); });</script>
<script type="module">${prelude(agentUrl)}${code}
;window.__done = true;</script>`,
      }),
    );
    await page.route(`${origin}/ca/issue`, async (route) =>
      route.fulfill({
        contentType: 'application/json',
        body: JSON.stringify(await stack.demo.ca.issue(route.request().postData()!)),
      }),
    );
    await page.route(`${origin}/login/challenge`, (route) => {
      login.nonce = createHash('sha256')
        .update(origin + Date.now())
        .digest('base64');
      return route.fulfill({ contentType: 'application/json', body: JSON.stringify({ nonce: login.nonce }) });
    });
    await page.route(`${origin}/login`, (route) => {
      login.token = (JSON.parse(route.request().postData()!) as { token: unknown }).token;
      return route.fulfill({ status: 204 });
    });
    await page.context().grantPermissions(['local-network-access'], { origin });
    let seen = stack.consents.urls().length;
    const pins = { user: USER_PIN, next: 582_901 };
    await page.goto(url);
    const state = (): Promise<{ done: boolean; error?: string }> =>
      page.evaluate(() => {
        const w = globalThis as unknown as { __done?: boolean; __error?: string };
        return { done: w.__done === true, error: w.__error };
      });
    const deadline = Date.now() + 30_000;
    for (let s = await state(); !s.done && s.error === undefined; s = await state()) {
      if (Date.now() > deadline) throw new Error(`${origin}: the example did not finish`);
      if (stack.consents.urls().length > seen) {
        seen += 1;
        await approve(await stack.consents.next({ lang: 'en' }), pins);
      } else await new Promise((r) => setTimeout(r, 50));
    }
    const out = (await page.evaluate(() => {
      const w = globalThis as unknown as { __logs: unknown[][]; __calls: Call[]; __error?: string };
      return JSON.stringify({ logs: w.__logs ?? [], calls: w.__calls ?? [], error: w.__error });
    })) as string;
    return { origin, page, ...(JSON.parse(out) as Omit<BlockRun, 'origin' | 'page'>) };
  }

  async function inNode(code: string, globals: Record<string, unknown>): Promise<BlockRun> {
    const file = join(stack.tmp, 'docs-example.mjs');
    const set = Object.entries(globals)
      .map(
        ([k, v]) =>
          `globalThis[${JSON.stringify(k)}] = ${v instanceof Uint8Array ? `Buffer.from(${JSON.stringify(Buffer.from(v).toString('base64'))}, 'base64')` : JSON.stringify(v)};`,
      )
      .join('\n');
    // The package's main entry as an npm user imports it (`kelid`), from the build.
    const body = code.replace(
      /from\s*['"]kelid['"]/g,
      `from '${pathToFileURL(join(REPO, 'dist/index.js')).href}'`,
    );
    writeFileSync(file, `${body}\n`);
    writeFileSync(join(stack.tmp, 'docs-globals.mjs'), set);
    const { stdout } = await run(
      process.execPath,
      ['--import', pathToFileURL(join(stack.tmp, 'docs-globals.mjs')).href, file],
      {
        timeout: 30_000,
      },
    );
    return {
      origin: 'node',
      logs: stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => [l]),
      calls: [],
    };
  }

  async function generate(ra: RpcClient, tokenId: string, label: string): Promise<string> {
    const id = ra.nextId;
    const call = ra.call<{ csr: string }>('keys.generate', {
      tokenId,
      algorithm: { name: 'EC', namedCurve: 'P-256' },
      label,
      csr: { subject: `CN=Docs ${label},C=IR` },
    });
    const approved = await stack.agent.consent(await ra.consentFor(id), { userPin: USER_PIN });
    if (approved.status !== 0) throw new Error(`consent approve failed: ${approved.stderr}`);
    return (await call).csr;
  }

  async function importCert(
    ra: RpcClient,
    tokenId: string,
    certificate: string,
    chain: string[],
  ): Promise<void> {
    const id = ra.nextId;
    const call = ra.call('certificates.import', { tokenId, certificate, chain });
    const approved = await stack.agent.consent(await ra.consentFor(id), { userPin: USER_PIN });
    if (approved.status !== 0) throw new Error(`consent approve failed: ${approved.stderr}`);
    await call;
  }

  beforeAll(async () => {
    assertBuilt();
    hsm = new SoftHsm('kelid-doc-sdk-hsm-');
    hsm.initToken('Docs', SO_PIN, USER_PIN);
    pki = await TestPki.create();
    stack = await startDemoStack({
      prefix: 'kelid-e2e-doc-sdk-',
      errors,
      agentConfig: () => ({
        modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
        raOrigins: [RA_ORIGIN],
      }),
      prepare: async (s) => {
        stack = { ...stack, ...s } as DemoStack;
        const ra = await s.agent.connect(RA_ORIGIN);
        const { tokens } = await ra.call<{ tokens: Array<{ tokenId: string; label: string }> }>(
          'tokens.list',
        );
        const tokenId = tokens.find((t) => t.label === 'Docs')!.tokenId;
        // A signing certificate from the demo CA (dual-use, which signs by default: raw and cms) …
        const issued = await s.demo.ca.issue(await generate(ra, tokenId, 'Signer'));
        await importCert(ra, tokenId, issued.certificate, issued.chain);
        // … and a login certificate (clientAuth only) from a second CA: the sign-in example's roots.
        const login = await pki.issueFromCsr('login', await generate(ra, tokenId, 'Login'), {
          keyUsage: 'critical,digitalSignature',
          extendedKeyUsage: 'clientAuth',
          ocspUrl: null,
          crlUrl: null,
        });
        await importCert(ra, tokenId, login.pem, [pki.intermediate.pem]);
        await ra.close();
      },
    });
    sdkUrl = `https://127.0.0.1:${stack.agent.port}/sdk/kelid.js`;
  }, 90_000);

  afterEach(async ({ task }) => screenshotOnFailure(stack?.browser, task));

  afterAll(async () => {
    await stack?.close();
    await pki?.cleanup();
    hsm?.cleanup();
  });

  it('has an outcome check for every marked block, and a marked block for every check', () => {
    expect(blocks.map((b) => b.marker.check).filter((c) => !(c in CHECKS))).toEqual([]);
    expect(Object.keys(CHECKS).filter((c) => !blocks.some((b) => b.marker.check === c))).toEqual([]);
  });

  it.each(blocks.map((b) => [`${b.block.file}:${b.block.line} (${b.marker.check})`, b] as const))(
    '%s runs and has its outcome',
    async (_name, { block, marker }) => {
      const check = CHECKS[marker.check]!;
      const { code } = await transform(block.code, { loader: 'ts', format: 'esm', target: 'es2022' });
      let result: BlockRun;
      if (marker.run === 'node') {
        result = await inNode(code, check.globals?.() ?? {});
      } else {
        const origin = pageOf(marker);
        const js = code
          .replace(
            /from\s*['"](kelid\/client|https:\/\/127\.0\.0\.1:17443\/sdk\/kelid\.js)['"]/g,
            `from '${sdkUrl}'`,
          )
          .replaceAll('127.0.0.1:17443', `127.0.0.1:${stack.agent.port}`);
        if (marker.given === 'access' && !approvedOrigins.has(origin)) {
          const granted = await inBrowser(
            origin,
            `await (await __sdk.KelidClient.connect()).requestAccess('Docs');`,
          );
          await granted.page?.close();
          expect(granted.error).toBeUndefined();
          approvedOrigins.add(origin);
        }
        result = await inBrowser(origin, js);
        result.rerun = (agentUrl) => inBrowser(origin, js, agentUrl);
      }
      try {
        expect(result.error).toBe(check.throws);
        await check.verify(result);
      } finally {
        await result.page?.close();
      }
    },
    60_000,
  );
});
