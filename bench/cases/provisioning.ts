// Provisioning: the whole RA flow (init with SO-PIN and user PIN, RSA-2048 key pair, CSR, import of
// the issued certificate and its chain) through the API, against the same steps as direct pkcs11js
// calls on a twin token. The CA's issuance (openssl ca) happens between the steps, outside both timings.
import { createPublicKey } from 'node:crypto';
import type { Template } from 'pkcs11js';
import type { AgentProcess, RpcClient } from '../../test/helpers/agent-process.js';
import { RA_ORIGIN, SO_PIN, USER_PIN, dist } from '../lib/fixture.js';
import type { Fixture } from '../lib/fixture.js';
import type { Profile } from '../lib/profile.js';
import { pkcs11js } from '../lib/raw-token.js';
import type { RawModule } from '../lib/raw-token.js';
import { row } from '../lib/report.js';
import type { Row } from '../lib/report.js';
import { median, nowMs } from '../lib/stats.js';
import type * as TemplatesModule from '../../src/pkcs11/templates.js';
import type * as CertificateModule from '../../src/pki/certificate.js';
import type * as CsrModule from '../../src/pki/csr.js';
import type * as DerModule from '../../src/pki/der.js';
import type * as KeyIdModule from '../../src/pki/key-id.js';

const SECTION = 'Provisioning: init + PINs, RSA-2048 key + CSR, certificate + chain import (ms)';
const SUBJECT = 'CN=علی رضایی,serialNumber=0012345678,O=Kelid bench,C=IR';
const SECRETS = { soPin: SO_PIN, newSoPin: SO_PIN, newUserPin: USER_PIN, userPin: USER_PIN };

type Steps = { init: number; keygen: number; import: number };

function total(s: Steps): number {
  return s.init + s.keygen + s.import;
}

/** pkcs11js wants Buffers where Kelid's templates hold Uint8Arrays. */
function rawTemplate(t: ReadonlyArray<{ type: number; value?: unknown }>): Template {
  return t.map((a) => ({
    type: a.type,
    value: a.value instanceof Uint8Array && !Buffer.isBuffer(a.value) ? Buffer.from(a.value) : a.value,
  })) as Template;
}

async function apiRound(f: Fixture, agent: AgentProcess, ra: RpcClient, name: string): Promise<Steps> {
  const { tokens } = await ra.call<{ tokens: Array<{ tokenId: string; label: string }> }>('tokens.list', {});
  const target = tokens.find((t) => t.label === 'prov-api');
  if (!target) throw new Error('no prov-api token');
  const step = async <T>(method: string, params: Record<string, unknown>): Promise<{ ms: number; r: T }> => {
    const t0 = nowMs();
    const id = ra.nextId;
    const p = ra.call<T>(method, params);
    await f.approveCall(agent, ra, id, SECRETS);
    const r = await p;
    return { ms: nowMs() - t0, r };
  };
  const init = await step<{ token: { tokenId: string } }>('tokens.init', {
    tokenId: target.tokenId,
    label: 'prov-api',
  });
  const tokenId = init.r.token.tokenId;
  const gen = await step<{ key: { keyId: string }; csr: string }>('keys.generate', {
    tokenId,
    algorithm: { name: 'RSA', modulusLength: 2048 },
    label: 'citizen',
    csr: { subject: SUBJECT, keyUsage: ['digitalSignature', 'nonRepudiation'] },
  });
  const cert = await f.pki.issueFromCsr(name, gen.r.csr, { ocspUrl: null, crlUrl: null, caIssuersUrl: null });
  const imp = await step<{ certificate: { keyId: string } }>('certificates.import', {
    tokenId,
    certificate: cert.pem,
    chain: [f.pki.intermediate.pem, f.pki.root.pem],
  });
  if (imp.r.certificate.keyId !== gen.r.key.keyId)
    throw new Error('imported certificate is not bound to the key');
  return { init: init.ms, keygen: gen.ms, import: imp.ms };
}

async function rawRound(f: Fixture, raw: RawModule, name: string): Promise<Steps> {
  const templates = await dist<typeof TemplatesModule>('pkcs11/templates.js');
  const { createCsr } = await dist<typeof CsrModule>('pki/csr.js');
  const { encodeDigestInfo } = await dist<typeof DerModule>('pki/der.js');
  const { keyIdFromRsaModulus } = await dist<typeof KeyIdModule>('pki/key-id.js');
  const { describeCertificate } = await dist<typeof CertificateModule>('pki/certificate.js');
  const p11 = raw.p11;
  const slot = raw.slotOf('prov-raw');

  let t0 = nowMs();
  p11.C_CloseAllSessions(slot);
  p11.C_InitToken(slot, SO_PIN, 'prov-raw'.padEnd(32, ' '));
  let s = raw.openSession(slot, true);
  p11.C_Login(s, pkcs11js.CKU_SO, SO_PIN);
  p11.C_InitPIN(s, USER_PIN);
  p11.C_Logout(s);
  p11.C_CloseSession(s);
  const init = nowMs() - t0;

  t0 = nowMs();
  s = raw.openSession(slot, true);
  p11.C_Login(s, pkcs11js.CKU_USER, USER_PIN);
  const t = templates.signingKeyPairTemplates(
    { name: 'RSA', modulusLength: 2048 },
    { label: 'citizen', id: Buffer.alloc(20, 1), alwaysAuthenticate: false },
  );
  const pair = p11.C_GenerateKeyPair(
    s,
    { mechanism: t.mechanism },
    rawTemplate(t.publicTemplate),
    rawTemplate(t.privateTemplate),
  );
  const [mod, exp] = p11.C_GetAttributeValue(s, pair.publicKey, [
    { type: pkcs11js.CKA_MODULUS },
    { type: pkcs11js.CKA_PUBLIC_EXPONENT },
  ]);
  const modulus = mod.value as Buffer;
  const id = Buffer.from(keyIdFromRsaModulus(modulus), 'hex');
  p11.C_SetAttributeValue(s, pair.publicKey, [{ type: pkcs11js.CKA_ID, value: id }]);
  p11.C_SetAttributeValue(s, pair.privateKey, [{ type: pkcs11js.CKA_ID, value: id }]);
  const spki = createPublicKey({
    key: { kty: 'RSA', n: modulus.toString('base64url'), e: (exp.value as Buffer).toString('base64url') },
    format: 'jwk',
  }).export({ type: 'spki', format: 'der' });
  const csr = await createCsr({
    subject: SUBJECT,
    keyUsage: ['digitalSignature', 'nonRepudiation'],
    signer: {
      publicKey: spki,
      keyType: 'RSA',
      signDigest: async (digest, digestAlgorithm) => {
        p11.C_SignInit(s, { mechanism: pkcs11js.CKM_RSA_PKCS }, pair.privateKey);
        return p11.C_Sign(s, Buffer.from(encodeDigestInfo(digest, digestAlgorithm)), Buffer.alloc(512));
      },
    },
  });
  p11.C_Logout(s);
  p11.C_CloseSession(s);
  const keygen = nowMs() - t0;

  const cert = await f.pki.issueFromCsr(name, csr.pem, { ocspUrl: null, crlUrl: null, caIssuersUrl: null });

  t0 = nowMs();
  s = raw.openSession(slot, true);
  p11.C_Login(s, pkcs11js.CKU_USER, USER_PIN);
  const objects: Array<{ der: Uint8Array; category: 'user' | 'authority' }> = [
    { der: cert.der, category: 'user' },
    { der: f.pki.intermediate.der, category: 'authority' },
    { der: f.pki.root.der, category: 'authority' },
  ];
  for (const o of objects) {
    const d = describeCertificate(o.der);
    p11.C_CreateObject(
      s,
      rawTemplate(
        templates.certificateTemplate({
          der: o.der,
          id: o.category === 'user' ? id : Buffer.from(d.fingerprintSha256.slice(0, 40), 'hex'),
          label: o.category === 'user' ? 'citizen' : d.subject.slice(0, 64),
          subject: d.subjectDer,
          issuer: d.issuerDer,
          serialNumber: d.serialDer,
          category: o.category,
        }),
      ),
    );
  }
  p11.C_Logout(s);
  p11.C_CloseSession(s);
  return { init, keygen, import: nowMs() - t0 };
}

export async function provisioning(f: Fixture, p: Profile): Promise<Row[]> {
  const agent = await f.startAgent();
  const ra = await agent.connect(RA_ORIGIN);
  const api: Steps[] = [];
  const raw: Steps[] = [];
  try {
    for (let r = 0; r < p.provisioningRounds; r++) {
      // Alternate which side goes first so drift in machine load hits both alike.
      if (r % 2 === 0) {
        api.push(await apiRound(f, agent, ra, `prov-api-${r}`));
        raw.push(await rawRound(f, f.raw, `prov-raw-${r}`));
      } else {
        raw.push(await rawRound(f, f.raw, `prov-raw-${r}`));
        api.push(await apiRound(f, agent, ra, `prov-api-${r}`));
      }
    }
  } finally {
    await ra.close();
    await agent.stop();
    agent.cleanup();
  }
  const rows: Row[] = [];
  const steps: Array<[keyof Steps, string]> = [
    ['init', 'tokens.init (C_InitToken, SO login, C_InitPIN)'],
    ['keygen', 'keys.generate with csr (login, RSA-2048 key pair, CKA_ID, CSR)'],
    ['import', 'certificates.import (leaf + 2 CA certificates)'],
  ];
  for (const [k, label] of steps) {
    rows.push(
      row({
        section: SECTION,
        measure: `${label}, median of ${p.provisioningRounds}`,
        unit: 'ms',
        baselineLabel: 'the same pkcs11js calls',
        baseline: median(raw.map((x) => x[k])),
        kelid: median(api.map((x) => x[k])),
        better: 'lower',
        ...(k === 'keygen' ? { note: 'RSA prime search dominates and varies from run to run' } : {}),
      }),
    );
  }
  const apiTotal = median(api.map(total));
  const rawTotal = median(raw.map(total));
  rows.push(
    row({
      section: SECTION,
      measure: `whole flow, median of ${p.provisioningRounds} (consents answered by a program)`,
      unit: 'ms',
      baselineLabel: 'the same pkcs11js calls',
      baseline: rawTotal,
      kelid: apiTotal,
      better: 'lower',
      target: { text: 'overhead ≤ 10%', met: apiTotal <= 1.1 * rawTotal },
    }),
    row({
      section: SECTION,
      measure: 'whole flow without the key-generation step',
      unit: 'ms',
      baselineLabel: 'the same pkcs11js calls',
      baseline: median(raw.map((x) => x.init + x.import)),
      kelid: median(api.map((x) => x.init + x.import)),
      better: 'lower',
    }),
  );
  return rows;
}
