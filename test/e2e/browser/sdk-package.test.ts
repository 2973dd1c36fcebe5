// softhsm-only: tests the packed SDK in a fresh project; the module does not matter
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { REPO } from '../../helpers/agent-process.js';
import { screenshotOnFailure, until } from '../../helpers/browser.js';
import { enrollOnToken, startDemoStack } from '../../helpers/demo-stack.js';
import type { DemoStack } from '../../helpers/demo-stack.js';
import { opensslCmsVerify } from '../../helpers/openssl-cms.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// What a web developer does with the SDK (issue 17, section 6): `npm pack` the built package, install
// the tarball into a fresh project, `import … from 'kelid/client'` in a page script, type-check it
// with tsc and bundle it with esbuild, serve the page, and sign in Chromium against a real agent and
// a SoftHSM token; openssl checks the signatures.
//
// The tarball is installed the way npm installs a package (its `package/` directory becomes
// node_modules/kelid), without the agent's own dependencies: this runs offline, and it proves that
// `kelid/client` needs none of them (a page bundle must not pull in pkcs11js, express, …).

const run = promisify(execFile);
const PIN = '2468';
const TEXT = 'Payment order 77: 5,000,000 IRR — دستور پرداخت ۷۷';

const PAGE_TS = `import { KelidClient, KelidError, createHash, utf8 } from 'kelid/client';
import type { Certificate, SignCmsResult, SignRawResult } from 'kelid/client';

interface PageResult {
  transport?: string;
  certificate?: Certificate;
  raw?: SignRawResult;
  cms?: SignCmsResult;
  error?: string;
}

const w = window as unknown as { pageResult?: PageResult };

async function main(): Promise<PageResult> {
  const agent = new URLSearchParams(location.search).get('agent') ?? undefined;
  const kelid = await KelidClient.connect({ url: agent, reconnect: false });
  if ((await kelid.info()).tier === 'unknown') await kelid.requestAccess('Sign a payment order');
  const [certificate] = await kelid.listCertificates({ filter: { use: 'raw', hasPrivateKey: true } });
  if (certificate === undefined) throw new Error('no certificate for raw signatures');
  const text = document.getElementById('text')!.textContent!;
  const raw = await kelid.signRaw({
    certificateId: certificate.certificateId,
    digest: createHash('SHA-256').update(utf8(text)).digest(),
    digestAlgorithm: 'SHA-256',
    summary: 'Payment order 77 (raw)',
  });
  const cms = await kelid.signCms({ certificateId: certificate.certificateId, content: text,
    detached: false, summary: 'Payment order 77' });
  const transport = kelid.transport;
  kelid.close();
  return { transport, certificate, raw, cms };
}

main().then(
  (r) => (w.pageResult = r),
  (e: unknown) => (w.pageResult = { error: e instanceof KelidError ? e.code + ': ' + e.message : String(e) }),
);
`;

// Type errors tsc must report with the package's declarations; unused if the types were \`any\`.
const WRONG_TS = `import { KelidClient } from 'kelid/client';
import type { Certificate, KelidErrorCode } from 'kelid/client';

declare const kelid: KelidClient;
// @ts-expect-error listCertificates takes { filter }, not the filter itself
void kelid.listCertificates({ keyUsage: ['nonRepudiation'] });
// @ts-expect-error subject is a string
const n: number = ({} as Certificate).subject;
const code: KelidErrorCode = 'ERR_PIN_LOCKED';
export { n, code };
`;

function listFiles(dir: string, base = dir): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? listFiles(p, base) : [p.slice(base.length + 1)];
  });
}

describe('The packed SDK in a web developer’s project', () => {
  let work: string;
  let tarball: string;
  let project: string;
  let stack: DemoStack;
  let hsm: SoftHsm;
  let server: Server;
  let pageOrigin: string;
  const errors: string[] = [];

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'kelid-e2e-sdk-package-'));
    // The page's own server, started first: its origin goes into the agent's devOrigins.
    server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      const file = { '/': 'index.html', '/page.js': 'dist/page.js', '/page.js.map': 'dist/page.js.map' }[
        path
      ];
      if (file === undefined) {
        res.writeHead(404).end();
        return;
      }
      const type = extname(file) === '.html' ? 'text/html; charset=utf-8' : 'text/javascript';
      res.writeHead(200, { 'content-type': type }).end(readFileSync(join(project, file)));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    pageOrigin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    hsm = new SoftHsm();
    hsm.initToken('Payments', '12345678', PIN);
    stack = await startDemoStack({
      prefix: 'kelid-e2e-sdk-package-stack-',
      errors,
      agentConfig: (d) => ({
        modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
        raOrigins: [d.urls.ra],
        devOrigins: [d.urls.ra, pageOrigin],
      }),
      prepare: async (s) => {
        stack = { ...stack, ...s } as DemoStack;
        await enrollOnToken(s, {
          tokenLabel: 'Payments',
          keyLabel: 'payments',
          algorithm: { name: 'EC', namedCurve: 'P-256' },
          subject: 'CN=Package Tester,C=IR',
          userPin: PIN,
        });
      },
    });
  });

  afterEach(async ({ task }) => screenshotOnFailure(stack?.browser, task));

  afterAll(async () => {
    await stack?.close();
    hsm?.cleanup();
    server?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('packs a tarball with the SDK and its types, and no tests, keys or agent state', async () => {
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', work], {
      cwd: REPO,
      timeout: 120_000,
    });
    const [packed] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    tarball = join(work, packed!.filename);
    const files = packed!.files.map((f) => f.path);
    for (const f of [
      'package.json',
      'dist/client/index.js',
      'dist/client/index.d.ts',
      'dist/client/types.d.ts',
      'dist/client/kelid.js',
    ])
      expect(files).toContain(f);
    expect(
      files.filter((f) => /(^|\/)(test|tests|__tests__|fixtures)\/|\.(test|spec)\.[cm]?[jt]s$/.test(f)),
    ).toEqual([]);
    expect(files.filter((f) => /\.(pem|key|p12|pfx|der|crt|csr|tgz)$/.test(f))).toEqual([]);
    expect(
      files.filter((f) =>
        /(^|\/)\.kelid|(^|\/)(agent\.json|origin-ids\.key|audit\.jsonl|grants\.json)$/.test(f),
      ),
    ).toEqual([]);
    expect(files.filter((f) => f.startsWith('src/') && !f.startsWith('src/ui/'))).toEqual([]);

    // Installed as npm does: the tarball's package/ directory becomes node_modules/kelid.
    project = join(work, 'bank-page');
    const installed = join(project, 'node_modules', 'kelid');
    mkdirSync(installed, { recursive: true });
    execFileSync('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1']);
    const contents = listFiles(installed);
    expect(contents.sort()).toEqual([...files].sort());
    // No private key in any file, whatever its name.
    const withKey = contents.filter((f) =>
      /-----BEGIN [A-Z ]*PRIVATE KEY-----\s*[A-Za-z0-9+/=]{40}/.test(
        readFileSync(join(installed, f), 'latin1'),
      ),
    );
    expect(withKey).toEqual([]);
    const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as {
      exports: Record<string, { types: string; default: string }>;
    };
    expect(manifest.exports['./client']).toEqual({
      types: './dist/client/index.d.ts',
      default: './dist/client/index.js',
    });
  });

  it('type-checks `import` and `import type` from kelid/client in the project (tsc)', async () => {
    expect(tarball, 'the pack test ran').toBeDefined();
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({
        name: 'bank-page',
        version: '1.0.0',
        private: true,
        type: 'module',
        dependencies: { kelid: `file:${tarball}` },
      }),
    );
    mkdirSync(join(project, 'src'), { recursive: true });
    writeFileSync(join(project, 'src', 'page.ts'), PAGE_TS);
    writeFileSync(join(project, 'src', 'wrong.ts'), WRONG_TS);
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          target: 'es2022',
          module: 'esnext',
          moduleResolution: 'bundler',
          lib: ['es2022', 'dom'],
          types: [],
          verbatimModuleSyntax: true,
          noUnusedLocals: true,
        },
        include: ['src'],
      }),
    );
    const r = await run(join(REPO, 'node_modules', '.bin', 'tsc'), ['-p', project, '--pretty', 'false'], {
      cwd: project,
      timeout: 120_000,
    }).then(
      () => '',
      (e: { stdout?: string }) => e.stdout ?? 'tsc failed',
    );
    expect(r).toBe('');
  });

  it('bundles the page with esbuild, and signs in Chromium; openssl verifies both signatures', async () => {
    expect(tarball, 'the pack test ran').toBeDefined();
    const bundle = await build({
      absWorkingDir: project,
      entryPoints: ['src/page.ts'],
      outfile: 'dist/page.js',
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2020',
      sourcemap: true,
      metafile: true,
      logLevel: 'silent',
    });
    // The SDK came from the installed package, and nothing else did.
    const inputs = Object.keys(bundle.metafile.inputs);
    expect(inputs.some((i) => i.startsWith('node_modules/kelid/dist/client/'))).toBe(true);
    expect(
      inputs.filter((i) => i !== 'src/page.ts' && !i.startsWith('node_modules/kelid/dist/client/')),
    ).toEqual([]);
    writeFileSync(
      join(project, 'index.html'),
      `<!doctype html><meta charset="utf-8"><title>Bank</title><p id="text">${TEXT}</p><script type="module" src="/page.js"></script>`,
    );

    const page = stack.page;
    await page.goto(`${pageOrigin}/?agent=${encodeURIComponent(stack.agentUrl)}`);
    // The page asks for access (no PIN), then two signatures (PIN each): answer them as they come.
    const result = async (): Promise<unknown> =>
      page.evaluate(() => (globalThis as unknown as { pageResult?: unknown }).pageResult);
    const answers: Array<Record<string, string>> = [{}, { userPin: PIN }, { userPin: PIN }];
    for (const secrets of answers) {
      const [pending] = await until(
        () => stack.agent.pendingConsents(),
        (l) => l.length > 0,
        'a consent request from the page',
        30_000,
      );
      expect(pending!.origin).toBe(pageOrigin);
      const approved = await stack.agent.consent(pending!.requestId, secrets);
      expect(approved.status, approved.stderr).toBe(0);
      await until(
        () => stack.agent.pendingConsents(),
        (l) => !l.some((p) => p.requestId === pending!.requestId),
        'the consent to be answered',
      );
    }
    const r = (await until(result, (v) => v !== undefined, 'the page to finish', 30_000)) as {
      transport?: string;
      certificate?: { certificate: string; subject: string };
      raw?: { signature: string; signatureAlgorithm: string };
      cms?: { cms: string };
      error?: string;
    };
    expect(r.error).toBeUndefined();
    expect(r.transport).toBe('wss');
    expect(r.certificate!.subject).toContain('Package Tester');

    const tmp = join(work, 'verify');
    mkdirSync(tmp, { recursive: true });
    writeFileSync(join(tmp, 'text.txt'), TEXT);
    writeFileSync(join(tmp, 'root.pem'), stack.demo.ca.rootPem);
    // Raw ECDSA signature (DER) over SHA-256 of the text, with the certificate's public key.
    writeFileSync(join(tmp, 'cert.der'), Buffer.from(r.certificate!.certificate, 'base64'));
    execFileSync(
      'openssl',
      ['x509', '-inform', 'DER', '-in', 'cert.der', '-pubkey', '-noout', '-out', 'pub.pem'],
      {
        cwd: tmp,
      },
    );
    writeFileSync(join(tmp, 'raw.sig'), Buffer.from(r.raw!.signature, 'base64'));
    const raw = execFileSync(
      'openssl',
      ['dgst', '-sha256', '-verify', 'pub.pem', '-signature', 'raw.sig', 'text.txt'],
      { cwd: tmp, encoding: 'utf8' },
    );
    expect(raw).toContain('Verified OK');
    // Attached CAdES over the text, chained to the demo CA's root.
    writeFileSync(join(tmp, 'text.p7s'), Buffer.from(r.cms!.cms, 'base64'));
    const cms = opensslCmsVerify({ signature: 'text.p7s', caFile: 'root.pem', cwd: tmp, out: 'signed.txt' });
    expect(cms.output).toContain('CAdES Verification successful');
    expect(readFileSync(join(tmp, 'signed.txt'), 'utf8')).toBe(TEXT);
    expect(errors.filter((e) => !e.includes('favicon'))).toEqual([]);
  });
});
