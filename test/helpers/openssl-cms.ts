import { spawnSync } from 'node:child_process';

export interface CmsVerifyResult {
  ok: boolean;
  /** stdout + stderr; contains "CAdES Verification successful" on success. */
  output: string;
}

/**
 * `openssl cms -verify -cades -binary` on a DER signature file: detached when `content` (a file) is
 * given, attached otherwise; trust anchored at `caFile`. Paths may be relative to `cwd`.
 */
export function opensslCmsVerify(o: {
  signature: string;
  caFile: string;
  content?: string;
  cwd?: string;
  out?: string;
}): CmsVerifyResult {
  const args = [
    'cms',
    '-verify',
    '-cades',
    '-binary',
    '-inform',
    'DER',
    '-in',
    o.signature,
    '-CAfile',
    o.caFile,
  ];
  if (o.content) args.push('-content', o.content);
  args.push('-out', o.out ?? '/dev/null');
  const r = spawnSync('openssl', args, { cwd: o.cwd, encoding: 'utf8' });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}
