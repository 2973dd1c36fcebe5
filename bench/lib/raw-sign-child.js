// Memory baseline for `npm run bench`: raw pkcs11js signing in a process of its own, reporting its
// resident set size idle and after each batch of signatures (the first `warm-up` batches included).
// Usage: node bench/lib/raw-sign-child.js <module> <token label> <keyId hex> <pin> <batches> <batch size>
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const [modulePath, label, keyId, pin, batches, batchSize] = process.argv.slice(2);
const pkcs11js = createRequire(import.meta.url)('pkcs11js');
const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;

const p11 = new pkcs11js.PKCS11();
p11.load(modulePath);
p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === label);
const session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
p11.C_Login(session, pkcs11js.CKU_USER, pin);
p11.C_FindObjectsInit(session, [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
  { type: pkcs11js.CKA_ID, value: Buffer.from(keyId, 'hex') },
]);
const [key] = p11.C_FindObjects(session, 1);
p11.C_FindObjectsFinal(session);
await new Promise((r) => setTimeout(r, 1000));
const idle = rss();
const sign = async (n) => {
  for (let i = 0; i < n; i++) {
    p11.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, key);
    await p11.C_SignAsync(session, randomBytes(32), Buffer.alloc(256));
  }
};
const samples = [];
for (let b = 0; b < Number(batches); b++) {
  await sign(Number(batchSize));
  samples.push(rss());
}
p11.C_Logout(session);
p11.C_Finalize();
process.stdout.write(JSON.stringify({ idle, samples }));
