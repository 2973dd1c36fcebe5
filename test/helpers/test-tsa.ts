// A throwaway RFC 3161 time-stamping authority: node:http in front of `openssl ts -reply`, with its
// own root and TSA certificate (extendedKeyUsage critical timeStamping) made by openssl.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestTsaOptions {
  /** Digests (openssl names) the TSA accepts; others get a badAlg rejection. Default sha256, sha384, sha512. */
  digests?: string[];
  /** Answer every request with the first response (to test nonce checks). */
  replay?: boolean;
}

export interface TestTsa {
  /** http://127.0.0.1:PORT/tsa */
  url: string;
  /** Path of the TSA root certificate (PEM), for `openssl ts -verify -CAfile`. */
  caCertPem: string;
  /** Path of the TSA signing certificate (PEM). */
  tsaCertPem: string;
  /** Number of queries answered so far. */
  readonly requests: number;
  close(): Promise<void>;
}

const MAX_QUERY_BYTES = 64 * 1024;

async function openssl(args: string[], cwd: string): Promise<void> {
  await run('openssl', args, { cwd });
}

async function makeCertificates(dir: string): Promise<void> {
  fs.writeFileSync(
    path.join(dir, 'ext.cnf'),
    [
      '[tsa]',
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature,nonRepudiation',
      'extendedKeyUsage = critical,timeStamping',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid',
      '',
    ].join('\n'),
  );
  const ec = ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  await Promise.all([
    openssl(['genpkey', ...ec, '-out', 'tsa-root.key'], dir),
    openssl(['genpkey', ...ec, '-out', 'tsa.key'], dir),
  ]);
  await openssl(
    [
      'req',
      '-x509',
      '-new',
      '-key',
      'tsa-root.key',
      '-subj',
      '/CN=Kelid Test TSA Root',
      '-days',
      '3',
      '-sha256',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-out',
      'tsa-root.pem',
    ],
    dir,
  );
  await openssl(['req', '-new', '-key', 'tsa.key', '-subj', '/CN=Kelid Test TSA', '-out', 'tsa.csr'], dir);
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      'tsa.csr',
      '-CA',
      'tsa-root.pem',
      '-CAkey',
      'tsa-root.key',
      '-set_serial',
      '0x1001',
      '-days',
      '3',
      '-sha256',
      '-extfile',
      'ext.cnf',
      '-extensions',
      'tsa',
      '-out',
      'tsa.crt',
    ],
    dir,
  );
}

function tsaConfig(dir: string, digests: string[]): string {
  return [
    '[tsa]',
    'default_tsa = kelid_test',
    '[kelid_test]',
    `serial = ${dir}/tsaserial`,
    'crypto_device = builtin',
    `signer_cert = ${dir}/tsa.crt`,
    `certs = ${dir}/tsa-root.pem`,
    `signer_key = ${dir}/tsa.key`,
    'signer_digest = sha256',
    'default_policy = 1.3.6.1.4.1.55555.1.1',
    `digests = ${digests.join(', ')}`,
    'accuracy = secs:1',
    'clock_precision_digits = 0',
    'ordering = no',
    'tsa_name = yes',
    'ess_cert_id_chain = no',
    'ess_cert_id_alg = sha256',
    '',
  ].join('\n');
}

/** Starts the TSA on 127.0.0.1 with a fresh temp directory; `close()` stops it and removes the directory. */
export async function startTestTsa(options: TestTsaOptions = {}): Promise<TestTsa> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-tsa-'));
  try {
    await makeCertificates(dir);
    fs.writeFileSync(path.join(dir, 'tsaserial'), '01\n');
    fs.writeFileSync(
      path.join(dir, 'tsa.cnf'),
      tsaConfig(dir, options.digests ?? ['sha256', 'sha384', 'sha512']),
    );
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  let requests = 0;
  let first: Buffer | undefined;
  // openssl ts -reply updates the serial file: one query at a time.
  let queue: Promise<unknown> = Promise.resolve();

  const answer = async (query: Buffer): Promise<Buffer> => {
    const n = ++requests;
    if (options.replay && first) return first;
    const q = path.join(dir, `q${n}.tsq`);
    const r = path.join(dir, `r${n}.tsr`);
    fs.writeFileSync(q, query);
    await openssl(
      [
        'ts',
        '-reply',
        '-config',
        path.join(dir, 'tsa.cnf'),
        '-queryfile',
        q,
        '-inkey',
        path.join(dir, 'tsa.key'),
        '-signer',
        path.join(dir, 'tsa.crt'),
        '-out',
        r,
      ],
      dir,
    );
    const reply = fs.readFileSync(r);
    first ??= reply;
    return reply;
  };

  const server = http.createServer((req, res) => {
    if (req.method !== 'POST') {
      res.writeHead(405).end();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_QUERY_BYTES) req.destroy();
      else chunks.push(chunk);
    });
    req.on('end', () => {
      const job = queue.then(() => answer(Buffer.concat(chunks)));
      queue = job.catch(() => undefined);
      job.then(
        (reply) => res.writeHead(200, { 'content-type': 'application/timestamp-reply' }).end(reply),
        () => res.writeHead(500).end(),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/tsa`,
    caCertPem: path.join(dir, 'tsa-root.pem'),
    tsaCertPem: path.join(dir, 'tsa.crt'),
    get requests() {
      return requests;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
