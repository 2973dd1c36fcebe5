import { KelidError } from '../model/errors.js';

/** Where a command gets PINs: a no-echo TTY prompt or `--pin-stdin` — never argv or the environment. */
export interface SecretSource {
  /** Ask for one secret. `confirm` asks twice on a terminal (new PINs). */
  read(prompt: string, options?: { confirm?: boolean }): Promise<string>;
}

async function readAllStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += b.length;
    if (size > 64 * 1024) throw new KelidError('ERR_INVALID_INPUT', 'too much input on stdin');
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** `--pin-stdin`: one secret per line, in the order the command asks for them. */
export function stdinSecrets(): SecretSource {
  let lines: Promise<string[]> | undefined;
  let next = 0;
  return {
    async read(prompt) {
      lines ??= readAllStdin().then((t) => t.split(/\r?\n/));
      const all = await lines;
      const value = all[next++];
      if (value === undefined || value === '') {
        throw new KelidError('ERR_INVALID_INPUT', `expected a line on stdin for: ${prompt}`);
      }
      return value;
    },
  };
}

// Keystrokes typed (or pasted) after the Enter of one prompt belong to the next prompt.
let typeAhead = '';

function promptHidden(prompt: string): Promise<string> {
  const stdin = process.stdin;
  return new Promise((resolve, reject) => {
    process.stderr.write(prompt);
    let value = '';
    const done = (err?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const consume = (text: string) => {
      const chars = [...text];
      for (let i = 0; i < chars.length; i++) {
        const ch = chars[i]!;
        if (ch === '\r' || ch === '\n') {
          typeAhead = chars.slice(i + (ch === '\r' && chars[i + 1] === '\n' ? 2 : 1)).join('');
          return done();
        }
        if (ch === '\u0003') return done(new KelidError('ERR_USER_CANCELLED', 'cancelled'));
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else if (ch >= ' ') value += ch;
      }
    };
    const onData = (buf: Buffer) => consume(buf.toString('utf8'));
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', onData);
    const pending = typeAhead;
    typeAhead = '';
    if (pending) consume(pending);
  });
}

/** No-echo prompts on the controlling terminal. */
export function ttySecrets(): SecretSource {
  return {
    async read(prompt, options) {
      const first = await promptHidden(`${prompt}: `);
      if (options?.confirm) {
        const again = await promptHidden(`${prompt} (again): `);
        if (again !== first) throw new KelidError('ERR_INVALID_INPUT', 'the two entries do not match');
      }
      return first;
    },
  };
}

export function secretSource(options: { pinStdin?: boolean }): SecretSource {
  if (options.pinStdin) return stdinSecrets();
  if (!process.stdin.isTTY) {
    throw new KelidError('ERR_INVALID_INPUT', 'no terminal to ask for the PIN on: use --pin-stdin');
  }
  return ttySecrets();
}
