// Small helpers for the PKI integration tests: run the openssl CLI and read `openssl asn1parse` output.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface OpensslResult {
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

export function openssl(args: readonly string[], input?: string | Uint8Array): OpensslResult {
  const r = spawnSync('openssl', args, { input, maxBuffer: 16 * 1024 * 1024 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString('utf8') };
}

/** Run openssl and return stdout as UTF-8; throws with stderr when it fails. */
export function opensslText(args: readonly string[], input?: string | Uint8Array): string {
  const r = openssl(args, input);
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout.toString('utf8');
}

export interface TempDir {
  dir: string;
  path(name: string): string;
  write(name: string, data: string | Uint8Array): string;
  remove(): void;
}

export function makeTempDir(prefix: string): TempDir {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return {
    dir,
    path: (name) => join(dir, name),
    write(name, data) {
      const p = join(dir, name);
      writeFileSync(p, data);
      return p;
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface Asn1Line {
  offset: number;
  depth: number;
  headerLength: number;
  length: number;
  /** e.g. `SEQUENCE`, `INTEGER           :8F00AA11`, `cont [ 0 ]`. */
  text: string;
}

/** `openssl asn1parse -inform DER` of the given bytes, one entry per line. */
export function asn1parse(der: Uint8Array): Asn1Line[] {
  return opensslText(['asn1parse', '-inform', 'DER'], der)
    .split('\n')
    .flatMap((line) => {
      const m = /^\s*(\d+):d=(\d+)\s+hl=(\d+)\s+l=\s*(\d+)\s+(?:prim|cons):\s*(.*)$/.exec(line);
      return m
        ? [{ offset: +m[1]!, depth: +m[2]!, headerLength: +m[3]!, length: +m[4]!, text: m[5]!.trim() }]
        : [];
    });
}

/** The bytes of one asn1parse entry, header included. */
export function sliceOf(der: Uint8Array, line: Asn1Line): Uint8Array {
  return der.subarray(line.offset, line.offset + line.headerLength + line.length);
}

/** DER from a PEM text (first block). */
export function pemToDer(pem: string): Uint8Array {
  const body = /-----BEGIN [^-]+-----([\s\S]*?)-----END/.exec(pem)?.[1] ?? '';
  return new Uint8Array(Buffer.from(body.replace(/\s/g, ''), 'base64'));
}
