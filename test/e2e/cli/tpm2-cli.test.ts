import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Certificate, Key, Token } from '../../../src/model/types.js';
import { opensslCmsVerify } from '../../helpers/openssl-cms.js';
import { REQUESTED_EXTENSIONS_ONLY, TestPki } from '../../helpers/test-ca.js';
import { Tpm2Stack, tpm2SkipReason } from '../../helpers/tpm2.js';

const BIN = join(process.cwd(), 'bin', 'kelid.js');
const SO = 'Officer99';
const PIN = '4815162342';
const NEW_PIN = '2718281828';
const skip = tpm2SkipReason();

// The RA officer's CLI flow on a second, independent PKCS#11 implementation (tpm2-pkcs11 on swtpm),
// each step checked by openssl or pkcs11-tool. Steps run in order and share the one TPM.
describe.skipIf(skip !== undefined)(
  `kelid CLI on tpm2-pkcs11 (swtpm)${skip ? ` — skipped: ${skip}` : ''}`,
  () => {
    let tpm: Tpm2Stack;
    let pki: TestPki;
    const work = mkdtempSync(join(tmpdir(), 'kelid-tpm2-cli-'));
    const config = join(work, 'kelid.json');
    let tokenId = '';
    const keys: Record<'ec' | 'rsa', Key | undefined> = { ec: undefined, rsa: undefined };
    const certs: Record<'ec' | 'rsa', Certificate | undefined> = { ec: undefined, rsa: undefined };

    function kelid(args: string[], stdin?: string): { code: number; stdout: string; stderr: string } {
      const r = spawnSync('node', [BIN, ...args, '--config', config], {
        input: stdin ?? '',
        encoding: 'utf8',
      });
      return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
    }
    function json<T>(args: string[], stdin?: string): T {
      const r = kelid([...args, '--json'], stdin);
      if (r.code !== 0) throw new Error(`kelid ${args.join(' ')} failed: ${r.stderr}`);
      return JSON.parse(r.stdout) as T;
    }
    const opensslOk = (args: string[]) => spawnSync('openssl', args, { encoding: 'utf8' });

    beforeAll(async () => {
      tpm = await Tpm2Stack.start();
      tpm.addToken('tpm-token', SO, PIN);
      pki = await TestPki.create();
      writeFileSync(
        config,
        JSON.stringify({
          autoDetectModules: false,
          modules: [{ id: 'tpm2', path: tpm.module, env: tpm.env }],
        }),
      );
    }, 60_000);
    afterAll(async () => {
      tpm?.cleanup();
      await pki?.cleanup();
      rmSync(work, { recursive: true, force: true });
    });

    it('lists the token and the spare slot under distinct tokenIds, though both report one serial', () => {
      const tokens = json<Token[]>(['tokens']);
      expect(tokens.length).toBe(2);
      expect(tokens[0]!.serialNumber).toBe(tokens[1]!.serialNumber);
      expect(new Set(tokens.map((t) => t.tokenId)).size).toBe(2);
      const t = tokens.find((x) => x.label === 'tpm-token');
      expect(t?.initialized).toBe(true);
      expect(t?.userPinInitialized).toBe(true);
      expect(tokens.find((x) => x !== t)?.initialized).toBe(false);
      tokenId = t!.tokenId;
      // the label and the tokenId each select exactly that token
      expect(json<Key[]>(['keys', '--token', 'tpm-token'])).toEqual([]);
      expect(json<Key[]>(['keys', '--token', tokenId])).toEqual([]);
    });

    for (const [kind, algorithm] of [
      ['ec', 'p256'],
      ['rsa', 'rsa2048'],
    ] as const) {
      it(`generates a ${algorithm} key pair and its CSR (openssl req -verify; pkcs11-tool sees the key)`, async () => {
        const r = json<{ key: Key; csr: string }>(
          [
            'keygen',
            '--token',
            'tpm-token',
            '-a',
            algorithm,
            '-l',
            `${kind} key`,
            '--subject',
            `CN=TPM ${kind},O=Kelid,C=IR`,
            '--pin-stdin',
          ],
          `${PIN}\n`,
        );
        keys[kind] = r.key;
        const csrFile = join(work, `${kind}.csr`);
        writeFileSync(csrFile, r.csr);
        const v = opensslOk(['req', '-in', csrFile, '-verify', '-noout']);
        expect(v.stderr + v.stdout).toMatch(/self-signature verify OK/);
        const objects = tpm.tool(['--token-label', 'tpm-token', '--login', '--pin', PIN, '--list-objects']);
        expect(objects).toContain(`ID:         ${r.key.keyId}`);
        const leaf = await pki.issueFromCsr(`tpm-${kind}`, r.csr, REQUESTED_EXTENSIONS_ONLY);
        writeFileSync(join(work, `${kind}.pem`), leaf.pem);
      });
    }

    it('imports each issued certificate and the chain next to its key', () => {
      writeFileSync(join(work, 'chain.pem'), pki.chainPem);
      for (const kind of ['ec', 'rsa'] as const) {
        const cert = json<Certificate>(
          [
            'import',
            '--token',
            'tpm-token',
            '--cert',
            join(work, `${kind}.pem`),
            '--chain',
            join(work, 'chain.pem'),
            '--pin-stdin',
          ],
          `${PIN}\n`,
        );
        expect(cert.keyId).toBe(keys[kind]!.keyId);
        certs[kind] = cert;
      }
      const objects = tpm.tool(['--token-label', 'tpm-token', '--list-objects', '--type', 'cert']);
      expect(objects.match(/Certificate Object/g)?.length).toBe(4);
    });

    for (const kind of ['ec', 'rsa'] as const) {
      it(`signs raw with the ${kind} key (openssl dgst -verify) and as CMS (openssl cms -verify -cades)`, () => {
        const data = join(work, 'data.txt');
        writeFileSync(data, 'نامه ۱۲ — TPM');
        const raw = join(work, `${kind}.sig`);
        // RSA: PSS, since tpm2-pkcs11 signs PKCS#1 v1.5 only from the whole message (refused below)
        const scheme = kind === 'rsa' ? ['--scheme', 'RSA-PSS'] : [];
        const cert = certs[kind]!.certificateId;
        json(
          ['sign', '--cert', cert, '-i', data, '-o', raw, '-f', 'raw', ...scheme, '--pin-stdin'],
          `${PIN}\n`,
        );
        const pub = join(work, `${kind}.pub`);
        execFileSync('openssl', ['x509', '-in', join(work, `${kind}.pem`), '-pubkey', '-noout', '-out', pub]);
        const pss =
          kind === 'rsa' ? ['-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:32'] : [];
        const v = opensslOk(['dgst', '-sha256', '-verify', pub, ...pss, '-signature', raw, data]);
        expect(v.stdout).toMatch(/Verified OK/);

        // CMS: RSA PKCS#1 v1.5 through CKM_SHA256_RSA_PKCS (finding 3)
        const cms = join(work, `${kind}.p7s`);
        json(['sign', '--cert', cert, '-i', data, '-o', cms, '--pin-stdin'], `${PIN}\n`);
        const ca = join(work, 'root.pem');
        writeFileSync(ca, pki.root.pem);
        const r = opensslCmsVerify({ signature: cms, content: data, caFile: ca });
        expect(r.output).toMatch(/CAdES Verification successful/);
      });
    }

    it('refuses a raw RSA PKCS#1 v1.5 signature of a bare digest up front (ERR_MECHANISM_UNSUPPORTED)', () => {
      const data = join(work, 'data.txt');
      const r = kelid(
        [
          'sign',
          '--cert',
          certs.rsa!.certificateId,
          '-i',
          data,
          '-o',
          join(work, 'no.sig'),
          '-f',
          'raw',
          '--scheme',
          'RSASSA-PKCS1-v1_5',
          '--pin-stdin',
        ],
        `${PIN}\n`,
      );
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('ERR_MECHANISM_UNSUPPORTED');
    });

    it('changes the user PIN: pkcs11-tool logs in with the new one only', () => {
      const r = kelid(['pin', 'change', '--token', 'tpm-token', '--pin-stdin'], `${PIN}\n${NEW_PIN}\n`);
      expect(r.code).toBe(0);
      expect(
        tpm.tool(['--token-label', 'tpm-token', '--login', '--pin', NEW_PIN, '--list-objects']),
      ).toContain('Private Key Object');
    });

    it('initializes the spare slot (C_InitToken then C_InitPIN on that same token), leaving the first alone', () => {
      const spare = json<Token[]>(['tokens']).find((t) => !t.initialized)!;
      const r = kelid(
        ['init', '--token', spare.tokenId, '--label', 'second', '--pin-stdin'],
        `${SO}\n${PIN}\n`,
      );
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const tokens = json<Token[]>(['tokens']);
      const second = tokens.find((t) => t.label === 'second');
      expect(second?.initialized).toBe(true);
      expect(second?.userPinInitialized).toBe(true);
      // a new spare slot appeared; the three ids differ, and the first token kept its id
      expect(new Set(tokens.map((t) => t.tokenId)).size).toBe(3);
      expect(tokens.find((t) => t.label === 'tpm-token')?.tokenId).toBe(tokenId);
      // pkcs11-tool: the user PIN works on the new token, and the first token's PIN is unchanged
      expect(tpm.tool(['--token-label', 'second', '--login', '--pin', PIN, '--list-objects'])).not.toContain(
        'Private Key Object',
      );
      expect(
        tpm.tool(['--token-label', 'tpm-token', '--login', '--pin', NEW_PIN, '--list-objects']),
      ).toContain('Private Key Object');
    });
  },
);
