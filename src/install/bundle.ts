import * as fs from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { KelidConfig } from '../config.js';
import { tailLog } from '../log-file.js';
import { ORIGIN_IDS_SECRET_FILE } from '../protocol/origin-ids.js';
import { TLS_DIR } from '../transport/tls.js';
import type { DoctorReport } from './doctor.js';
import { logFileOf } from './doctor.js';
import { readInstallState } from './installer.js';

// `kelid doctor --bundle <file>`: a .tar.gz for the help desk with the doctor report, the versions,
// the config, what install did, and the last log lines. Only those files are ever read into it (never
// the audit log, site grants, TLS keys, the origin-ids secret or token contents), and the text that
// goes in is redacted once more: the state directory's secrets, URL fragments (one-time consent and
// console secrets travel there), private-key blocks and any PIN- or secret-named JSON field.

const LOG_LINES = 500;
const SECRET_FIELD =
  /("(?:[A-Za-z]*[Pp]in|puk|[A-Za-z]*[Ss]ecrets?|password|authorization|token)"\s*:\s*)("(?:[^"\\]|\\.)*"|[0-9]+)/g;

/** The secrets of a state directory, as they could appear in text (file contents, hex, base64 lines). */
export function stateSecrets(stateDir: string): string[] {
  const out: string[] = [];
  const add = (file: string): void => {
    let data: Buffer;
    try {
      data = fs.readFileSync(file);
    } catch {
      return;
    }
    const text = data.toString('utf8').trim();
    out.push(text, data.toString('hex'), data.toString('base64'));
    for (const line of text.split(/\r?\n/))
      if (line.length >= 16 && !line.startsWith('-----')) out.push(line.trim());
  };
  add(path.join(stateDir, ORIGIN_IDS_SECRET_FILE));
  add(path.join(stateDir, TLS_DIR, 'leaf-key.pem'));
  return out.filter((s) => s.length >= 8);
}

/** Remove secrets from text meant for the bundle. */
export function redact(text: string, secrets: string[]): string {
  let out = text;
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) out = out.split(s).join('[redacted]');
  return out
    .replace(
      /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g,
      '[redacted private key]',
    )
    .replace(/#[A-Za-z0-9_\-.~%]{8,}/g, '#[redacted]')
    .replace(/([?&](?:secret|token|s)=)[^&\s"]+/g, '$1[redacted]')
    .replace(/(Bearer\s+)[A-Za-z0-9_\-.~+/=]+/gi, '$1[redacted]')
    .replace(SECRET_FIELD, '$1"[redacted]"');
}

/** The config without values that could hold secrets (module environment variables). */
export function redactConfig(config: KelidConfig): unknown {
  return {
    ...config,
    modules: config.modules.map((m) => ({
      id: m.id,
      path: m.path,
      ...(m.env ? { env: Object.fromEntries(Object.keys(m.env).map((k) => [k, '[redacted]'])) } : {}),
    })),
  };
}

/** A minimal ustar archive of regular files (node:zlib gzips it; no `tar` binary needed). */
export function tarArchive(files: Array<{ name: string; content: string }>): Buffer {
  const blocks: Buffer[] = [];
  const mtime = Math.floor(Date.now() / 1000);
  for (const f of files) {
    const body = Buffer.from(f.content, 'utf8');
    const header = Buffer.alloc(512);
    header.write(f.name.slice(0, 99), 0, 'utf8');
    header.write('0000600\0', 100);
    header.write('0000000\0', 108);
    header.write('0000000\0', 116);
    header.write(`${body.length.toString(8).padStart(11, '0')}\0`, 124);
    header.write(`${mtime.toString(8).padStart(11, '0')}\0`, 136);
    header.write('        ', 148);
    header.write('0', 156);
    header.write('ustar\0', 257);
    header.write('00', 263);
    let sum = 0;
    for (const b of header) sum += b;
    header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    blocks.push(header, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** Write the help-desk bundle (.tar.gz, mode 0600). */
export function writeBundle(file: string, report: DoctorReport, config: KelidConfig, stateDir: string): void {
  const secrets = stateSecrets(stateDir);
  const install = readInstallState(stateDir);
  const files = [
    { name: 'kelid-doctor/doctor.json', content: JSON.stringify(report, null, 2) },
    { name: 'kelid-doctor/versions.json', content: JSON.stringify(report.versions, null, 2) },
    { name: 'kelid-doctor/config.json', content: JSON.stringify(redactConfig(config), null, 2) },
    ...(install ? [{ name: 'kelid-doctor/install.json', content: JSON.stringify(install, null, 2) }] : []),
    { name: 'kelid-doctor/log.txt', content: `${tailLog(logFileOf(stateDir), LOG_LINES).join('\n')}\n` },
  ].map((f) => ({ name: f.name, content: redact(f.content, secrets) }));
  fs.writeFileSync(file, gzipSync(tarArchive(files)), { mode: 0o600 });
  // An existing file keeps its mode on write: the bundle is private even then.
  fs.chmodSync(file, 0o600);
}
