#!/usr/bin/env node
// npm run bench: Kelid's signing paths as ratios against raw pkcs11js on the same SoftHSM token in
// the same run (never absolute timings in tests). Writes bench/results/latest.json and latest.md.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_PIN_POLICY } from '../dist/consent/pin-policy.js';
import { ModuleManager } from '../dist/pkcs11/module-manager.js';
import { ProvisioningService } from '../dist/tokens/provisioning-service.js';
import { TokenService } from '../dist/tokens/token-service.js';

const pkcs11js = createRequire(import.meta.url)('pkcs11js');
const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const PIN = '1234';
const N = Number(process.env.BENCH_N ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const dir = mkdtempSync(join(tmpdir(), 'kelid-bench-'));
mkdirSync(join(dir, 'tokens'));
const conf = join(dir, 'softhsm2.conf');
writeFileSync(
  conf,
  `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`,
);
process.env.SOFTHSM2_CONF = conf;
execFileSync(
  'softhsm2-util',
  ['--init-token', '--free', '--label', 'bench', '--so-pin', '87654321', '--pin', PIN],
  { stdio: 'ignore' },
);

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function timed(fn) {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

// Kelid side: provisioning + signing services over a module host process.
const modules = new ModuleManager([{ id: 'softhsm', path: MODULE, env: { SOFTHSM2_CONF: conf } }]);
await modules.start();
const tokens = new TokenService(modules);
const tokenId = (await tokens.listTokens()).find((t) => t.label === 'bench').tokenId;
const provisioning = new ProvisioningService(tokens, DEFAULT_PIN_POLICY);
const keys = {};
for (const [name, algorithm] of [
  ['EC P-256', { name: 'EC', namedCurve: 'P-256' }],
  ['RSA 2048', { name: 'RSA', modulusLength: 2048 }],
]) {
  const { key } = await provisioning.generateKey(tokenId, PIN, { algorithm, label: name });
  keys[name] = key;
}

// Raw pkcs11js side: the same token, in-process, the same mechanisms.
const p11 = new pkcs11js.PKCS11();
p11.load(MODULE);
p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === 'bench');
const session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
p11.C_Login(session, pkcs11js.CKU_USER, PIN);
function rawKey(keyId) {
  p11.C_FindObjectsInit(session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
    { type: pkcs11js.CKA_ID, value: Buffer.from(keyId, 'hex') },
  ]);
  const [h] = p11.C_FindObjects(session, 1);
  p11.C_FindObjectsFinal(session);
  return h;
}

const digests = Array.from({ length: N }, () => createHash('sha256').update(randomBytes(32)).digest());
const results = [];

const { findSigningKey } = await import('../dist/tokens/key-store.js');
const { Pkcs11Signer } = await import('../dist/tokens/token-signer.js');
const { encodeDigestInfo } = await import('../dist/pki/der.js');

for (const [name, key] of Object.entries(keys)) {
  const isEc = key.algorithm.name === 'EC';
  const mech = { mechanism: isEc ? pkcs11js.CKM_ECDSA : pkcs11js.CKM_RSA_PKCS };
  const handle = rawKey(key.keyId);
  const n = isEc ? N : Math.min(N, 500);
  const rawTimes = [];
  const kelidTimes = [];
  for (let r = 0; r < ROUNDS; r++) {
    rawTimes.push(
      await timed(async () => {
        for (let i = 0; i < n; i++) {
          const data = isEc ? digests[i] : Buffer.from(encodeDigestInfo(digests[i], 'SHA-256'));
          p11.C_SignInit(session, mech, handle);
          await p11.C_SignAsync(session, data, Buffer.alloc(1024));
        }
      }),
    );
    kelidTimes.push(
      await timed(() =>
        tokens.withSession(tokenId, { readWrite: false }, async (s) => {
          await s.login('user', PIN);
          const k = await findSigningKey(s, key.keyId);
          const signer = await Pkcs11Signer.create(s, k);
          for (let i = 0; i < n; i++)
            await signer.signDigest(digests[i], 'SHA-256', isEc ? 'ECDSA' : 'RSASSA-PKCS1-v1_5');
        }),
      ),
    );
  }
  const raw = median(rawTimes);
  const kelid = median(kelidTimes);
  results.push({
    case: `${name}: ${n} signatures, one login`,
    rawOpsPerSec: Math.round((n / raw) * 1000),
    kelidOpsPerSec: Math.round((n / kelid) * 1000),
    ratio: Number((kelid / raw).toFixed(2)),
  });
}

// One consented operation end to end (locate certificate-less key, login, sign, logout) vs raw login+sign+logout.
{
  const key = keys['EC P-256'];
  const n = 100;
  const rawT = [];
  const kelT = [];
  for (let r = 0; r < ROUNDS; r++) {
    rawT.push(
      await timed(async () => {
        for (let i = 0; i < n; i++) {
          // the same login isolation Kelid applies: log in for the operation, log out after it
          p11.C_Logout(session);
          p11.C_Login(session, pkcs11js.CKU_USER, PIN);
          p11.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, rawKey(key.keyId));
          await p11.C_SignAsync(session, digests[i], Buffer.alloc(256));
        }
      }),
    );
    kelT.push(
      await timed(async () => {
        for (let i = 0; i < n; i++) {
          await tokens.withSession(tokenId, { readWrite: false }, async (s) => {
            await s.login('user', PIN);
            const k = await findSigningKey(s, key.keyId);
            const signer = await Pkcs11Signer.create(s, k);
            await signer.signDigest(digests[i], 'SHA-256', 'ECDSA');
          });
        }
      }),
    );
  }
  const raw = median(rawT);
  const kelid = median(kelT);
  results.push({
    case: `EC P-256: ${n} × (login, find key, sign, logout) — one consented operation each`,
    rawOpsPerSec: Math.round((n / raw) * 1000),
    kelidOpsPerSec: Math.round((n / kelid) * 1000),
    ratio: Number((kelid / raw).toFixed(2)),
  });
}

p11.C_Logout(session);
p11.C_CloseSession(session);
p11.C_Finalize();
await modules.stop();
rmSync(dir, { recursive: true, force: true });

const meta = {
  date: new Date().toISOString(),
  node: process.version,
  cpus: (await import('node:os')).cpus().length,
  rounds: ROUNDS,
};
const md = [
  `# Kelid bench (${meta.date}, node ${meta.node}, ${meta.cpus} cores, median of ${ROUNDS})`,
  '',
  '| case | raw pkcs11js ops/s | Kelid ops/s | time ratio Kelid / raw |',
  '|---|---:|---:|---:|',
  ...results.map((r) => `| ${r.case} | ${r.rawOpsPerSec} | ${r.kelidOpsPerSec} | ${r.ratio} |`),
  '',
  'Raw pkcs11js runs in-process with one session and one login (the lower bound). Kelid runs every',
  'call through its module host process (IPC), with DigestInfo/DER conversion and its session pool.',
  '',
].join('\n');
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL('./results/latest.json', import.meta.url), JSON.stringify({ meta, results }, null, 2));
writeFileSync(new URL('./results/latest.md', import.meta.url), md);
process.stdout.write(md);
