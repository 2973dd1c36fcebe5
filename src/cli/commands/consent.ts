import { Command } from 'commander';
import { ttySecrets } from '../secrets.js';
import type { ConsentRequestView } from '../../consent/consent-broker.js';
import { sendControlRequest } from '../../consent/control-channel.js';
import { KelidError } from '../../model/errors.js';
import { resolveStateDir } from '../../state-dir.js';
import { printJson } from '../context.js';

interface StateOptions {
  stateDir?: string;
  json?: boolean;
  secretsStdin?: boolean;
}

const STATE_DIR_HELP =
  'state directory of the running agent (default: $KELID_STATE_DIR or the per-user data dir)';
const MAX_STDIN_BYTES = 64 * 1024;
const PINPAD_NOTE = "type it on the reader's keypad after approving (Kelid does not ask for it)";

export function formatConsentRequests(requests: ConsentRequestView[]): string {
  if (requests.length === 0) return 'No pending consent requests.\n';
  return requests
    .map((r) => {
      const lines = [`${r.requestId}  ${r.method}  from ${r.origin} (${r.tier})`];
      if (r.token)
        lines.push(
          `  token:       ${r.token.label} (${r.token.manufacturer} ${r.token.model}, serial ${r.token.serialNumber})`,
        );
      if (r.certificate)
        lines.push(`  certificate: ${r.certificate.subject} (issuer ${r.certificate.issuer})`);
      if (r.csr) {
        // Already filtered by the agent (controls and bidi overrides shown as <U+XXXX>).
        lines.push(`  csr subject: ${r.csr.subject}`);
        for (const n of r.csr.subjectAltNames) lines.push(`  csr name:    ${n}`);
      }
      if (r.summary !== undefined)
        lines.push(`  summary:     ${JSON.stringify(r.summary)} (text from ${r.origin})`);
      if (r.summaries !== undefined) lines.push(`  items:       ${r.summaries.length}`);
      for (const d of r.digests.slice(0, 5)) lines.push(`  digest:      ${d}`);
      if (r.digests.length > 5) lines.push(`  digests:     … ${r.digests.length - 5} more`);
      lines.push(`  needs:       ${r.needs.length > 0 ? r.needs.join(', ') : '(approval only)'}`);
      if (r.pinpad) lines.push(`  PIN:         ${PINPAD_NOTE}`);
      if (r.warnings.length > 0) lines.push(`  warnings:    ${r.warnings.join(', ')}`);
      lines.push(`  expires:     ${r.expiresAt}`);
      return lines.join('\n');
    })
    .join('\n\n')
    .concat('\n');
}

const NEED_LABELS: Record<string, string> = {
  userPin: 'User PIN',
  soPin: 'SO-PIN',
  oldUserPin: 'Current user PIN',
  newUserPin: 'New user PIN',
  oldSoPin: 'Current SO-PIN',
  newSoPin: 'New SO-PIN',
};

/** Without --secrets-stdin: show the request and ask for each secret on the terminal, without echo. */
async function promptForNeeds(stateDir: string, requestId: string): Promise<Record<string, string>> {
  const requests = (await sendControlRequest(stateDir, { op: 'list' })) as ConsentRequestView[];
  const request = requests.find((r) => r.requestId === requestId);
  if (!request) throw new KelidError('ERR_INVALID_INPUT', 'no pending consent request has this id');
  if (request.pinpad) process.stderr.write(`PIN pad reader: ${PINPAD_NOTE}.\n`);
  if (request.needs.length === 0) return {};
  if (!process.stdin.isTTY) {
    throw new KelidError(
      'ERR_INVALID_INPUT',
      'this request needs secrets: use --secrets-stdin or run on a terminal',
    );
  }
  process.stderr.write(formatConsentRequests([request]));
  const source = ttySecrets();
  const secrets: Record<string, string> = {};
  for (const need of request.needs) {
    secrets[need] = await source.read(NEED_LABELS[need] ?? need, { confirm: need.startsWith('new') });
  }
  return secrets;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of process.stdin) {
    const b = chunk as Buffer;
    length += b.length;
    if (length > MAX_STDIN_BYTES)
      throw new KelidError('ERR_INVALID_INPUT', 'stdin is too large for a secrets object');
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** `kelid consent list|approve|deny`: answer the agent's consent requests from a terminal. */
export function consentCommand(): Command {
  const consent = new Command('consent').description(
    'list, approve or deny pending consent requests of the running agent',
  );
  consent
    .command('list')
    .description('pending consent requests')
    .option('--state-dir <dir>', STATE_DIR_HELP)
    .option('--json', 'print the requests as a JSON array')
    .action(async (opts: StateOptions) => {
      const requests = (await sendControlRequest(resolveStateDir(opts.stateDir), {
        op: 'list',
      })) as ConsentRequestView[];
      if (opts.json) printJson(requests);
      else process.stdout.write(formatConsentRequests(requests));
    });
  consent
    .command('approve <requestId>')
    .description(
      'approve a request; secrets it needs are asked on the terminal (no echo) or read with --secrets-stdin',
    )
    .option('--secrets-stdin', 'read {"<need>": "<secret>", …} from stdin (e.g. {"userPin":"1234"})')
    .option('--state-dir <dir>', STATE_DIR_HELP)
    .action(async (requestId: string, opts: StateOptions) => {
      const stateDir = resolveStateDir(opts.stateDir);
      let secrets: unknown = {};
      if (opts.secretsStdin) {
        const text = await readStdin();
        try {
          secrets = JSON.parse(text);
        } catch {
          throw new KelidError('ERR_INVALID_INPUT', 'stdin is not a JSON object');
        }
      } else {
        secrets = await promptForNeeds(stateDir, requestId);
      }
      await sendControlRequest(stateDir, { op: 'approve', requestId, secrets });
      process.stdout.write(`approved ${requestId}\n`);
    });
  consent
    .command('deny <requestId>')
    .description(
      'deny a request (the page gets ERR_USER_CANCELLED; the site may not ask again for 10 minutes)',
    )
    .option('--state-dir <dir>', STATE_DIR_HELP)
    .action(async (requestId: string, opts: StateOptions) => {
      await sendControlRequest(resolveStateDir(opts.stateDir), { op: 'deny', requestId });
      process.stdout.write(`denied ${requestId}\n`);
    });
  return consent;
}
