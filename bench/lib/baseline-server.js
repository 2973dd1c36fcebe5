// Start-up baseline for `npm run bench`: the least a token agent must do before it can answer —
// load pkcs11js and the module, list the tokens, and answer GET /health over HTTPS.
// Usage: node bench/lib/baseline-server.js <module> <port> <key.pem> <cert.pem>
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { createRequire } from 'node:module';

const [modulePath, port, keyFile, certFile] = process.argv.slice(2);
const pkcs11js = createRequire(import.meta.url)('pkcs11js');
const p11 = new pkcs11js.PKCS11();
p11.load(modulePath);
p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
const tokens = p11.C_GetSlotList(true).map((s) => p11.C_GetTokenInfo(s).label.trim());
createServer({ key: readFileSync(keyFile), cert: readFileSync(certFile) }, (req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ status: 'ok', tokens: tokens.length }));
}).listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => {
  p11.C_Finalize();
  process.exit(0);
});
