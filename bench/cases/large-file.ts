// Large files: the SDK's streaming hash (hashBlob: chunked reads, incremental SHA-256 in the page)
// of a file picked in Chromium, against the page reading the same file in one piece and hashing it
// with WebCrypto (crypto.subtle.digest, which has no streaming form). Both digests are checked
// against node:crypto's hash of the file.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ChromiumHarness } from '../../test/helpers/browser.js';
import type { Profile } from '../lib/profile.js';
import { row } from '../lib/report.js';
import type { Row } from '../lib/report.js';

const SECTION = 'Large files in Chromium: SHA-256 of a picked file (MB/s)';
const SDK = fileURLToPath(new URL('../../dist/client/kelid.js', import.meta.url));

const PAGE = `<!doctype html><meta charset="utf-8"><title>bench</title>
<input type="file" id="file">
<script type="module">
import { hashBlob } from '/kelid.js';
const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');
window.benchSdk = async () => {
  const file = document.getElementById('file').files[0];
  const t0 = performance.now();
  const digest = await hashBlob(file, 'SHA-256');
  return { ms: performance.now() - t0, hex: hex(digest) };
};
window.benchWebCrypto = async () => {
  const file = document.getElementById('file').files[0];
  const t0 = performance.now();
  const bytes = await file.arrayBuffer();
  const t1 = performance.now();
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return { ms: performance.now() - t0, readMs: t1 - t0, hex: hex(digest) };
};
</script>`;

/** A file of `size` bytes (random 1 MiB blocks, each numbered) and its SHA-256 by node:crypto. */
function makeFile(path: string, size: number): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'w');
  const block = randomBytes(1024 * 1024);
  try {
    for (let off = 0, i = 0; off < size; off += block.length, i++) {
      block.writeUInt32BE(i, 0);
      const part = block.subarray(0, Math.min(block.length, size - off));
      writeSync(fd, part);
      hash.update(part);
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

export async function largeFile(p: Profile): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'kelid-bench-file-'));
  const server = createServer((req, res) => {
    if (req.url === '/kelid.js') {
      res.setHeader('content-type', 'text/javascript');
      res.end(readFileSync(SDK));
    } else {
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(PAGE);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const browser = await ChromiumHarness.launch();
  try {
    const file = join(dir, 'document.bin');
    const expected = makeFile(file, p.largeFileBytes);
    const page = await browser.page();
    await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    await page.setInputFiles('#file', file);
    await page.waitForFunction(
      () => typeof (globalThis as unknown as { benchSdk?: unknown }).benchSdk === 'function',
    );
    type Result = { ms: number; hex: string; readMs?: number };
    const sdk = await page.evaluate(() =>
      (globalThis as unknown as { benchSdk(): Promise<Result> }).benchSdk(),
    );
    const web = await page.evaluate(() =>
      (globalThis as unknown as { benchWebCrypto(): Promise<Result> }).benchWebCrypto(),
    );
    if (sdk.hex !== expected) throw new Error('the SDK hash of the file is wrong');
    if (web.hex !== expected) throw new Error('the WebCrypto hash of the file is wrong');
    const mbs = (ms: number): number => p.largeFileBytes / 1e6 / (ms / 1000);
    const size = `${Math.round(p.largeFileBytes / 1024 / 1024)} MiB`;
    return [
      row({
        section: SECTION,
        measure: `SDK hashBlob of a ${size} file (4 MiB chunks, at most two in memory)`,
        unit: 'MB/s',
        baselineLabel: 'WebCrypto, whole file read into memory first',
        baseline: mbs(web.ms),
        kelid: mbs(sdk.ms),
        better: 'higher',
        note: `WebCrypto read ${Math.round(web.readMs ?? 0)} ms of its ${Math.round(web.ms)} ms`,
      }),
    ];
  } finally {
    await browser.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
