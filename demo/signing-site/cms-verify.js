// Verifies a CMS SignedData (CAdES-B) in the browser: DER parsing by hand, signatures with WebCrypto.
// Checks the signer's signature over the signed attributes, the messageDigest against the content
// (or its digest), the ESS signing-certificate binding, and the certificate chain up to a trusted root.
// A demo-sized verifier: one signer, DER only, RSA (PKCS#1 v1.5, PSS) and ECDSA P-256/384/521.

const OID = {
  signedData: '1.2.840.113549.1.7.2',
  data: '1.2.840.113549.1.7.1',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  signingTime: '1.2.840.113549.1.9.5',
  signingCertificateV2: '1.2.840.113549.1.9.16.2.47',
  signingCertificate: '1.2.840.113549.1.9.16.2.12',
  timeStampToken: '1.2.840.113549.1.9.16.2.14',
  rsaEncryption: '1.2.840.113549.1.1.1',
  rsaPss: '1.2.840.113549.1.1.10',
  ecPublicKey: '1.2.840.10045.2.1',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
};

const DIGESTS = {
  '1.3.14.3.2.26': 'SHA-1',
  '2.16.840.1.101.3.4.2.1': 'SHA-256',
  '2.16.840.1.101.3.4.2.2': 'SHA-384',
  '2.16.840.1.101.3.4.2.3': 'SHA-512',
};

const SIGNATURES = {
  '1.2.840.113549.1.1.11': ['RSASSA-PKCS1-v1_5', 'SHA-256'],
  '1.2.840.113549.1.1.12': ['RSASSA-PKCS1-v1_5', 'SHA-384'],
  '1.2.840.113549.1.1.13': ['RSASSA-PKCS1-v1_5', 'SHA-512'],
  '1.2.840.10045.4.3.2': ['ECDSA', 'SHA-256'],
  '1.2.840.10045.4.3.3': ['ECDSA', 'SHA-384'],
  '1.2.840.10045.4.3.4': ['ECDSA', 'SHA-512'],
};

const CURVES = {
  '1.2.840.10045.3.1.7': ['P-256', 32],
  '1.3.132.0.34': ['P-384', 48],
  '1.3.132.0.35': ['P-521', 66],
};

const NAMES = {
  '2.5.4.3': 'CN',
  '2.5.4.4': 'SN',
  '2.5.4.5': 'serialNumber',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '2.5.4.12': 'title',
  '2.5.4.42': 'GN',
  '1.2.840.113549.1.9.1': 'emailAddress',
};

const KEY_USAGE_BITS = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
];

// ---- DER --------------------------------------------------------------------------------------------

function node(buf, pos) {
  if (pos + 2 > buf.length) throw new Error('truncated DER');
  const tag = buf[pos];
  let len = buf[pos + 1];
  let hdr = 2;
  if (len === 0x80) throw new Error('indefinite length is not DER');
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n > 4) throw new Error('DER length too long');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[pos + 2 + i];
    hdr += n;
  }
  const end = pos + hdr + len;
  if (end > buf.length) throw new Error('truncated DER');
  return { tag, pos, start: pos + hdr, end };
}

function kids(buf, n) {
  const out = [];
  for (let p = n.start; p < n.end;) {
    const c = node(buf, p);
    out.push(c);
    p = c.end;
  }
  return out;
}

const raw = (buf, n) => buf.subarray(n.pos, n.end);
const body = (buf, n) => buf.subarray(n.start, n.end);

function expect(n, tag, what) {
  if (n === undefined || n.tag !== tag) throw new Error(`malformed CMS: ${what}`);
  return n;
}

function oid(bytes) {
  const parts = [
    Math.min(2, Math.floor(bytes[0] / 40)),
    bytes[0] - 40 * Math.min(2, Math.floor(bytes[0] / 40)),
  ];
  let v = 0;
  for (const b of bytes.subarray(1)) {
    v = v * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function text(buf, n) {
  const b = body(buf, n);
  if (n.tag === 0x1e) {
    let s = '';
    for (let i = 0; i + 1 < b.length; i += 2) s += String.fromCharCode((b[i] << 8) | b[i + 1]);
    return s;
  }
  if (n.tag === 0x14) return String.fromCharCode(...b);
  return new TextDecoder().decode(b);
}

function time(buf, n) {
  const s = text(buf, n);
  const full = n.tag === 0x17 ? (Number(s.slice(0, 2)) < 50 ? '20' : '19') + s : s;
  return `${full.slice(0, 4)}-${full.slice(4, 6)}-${full.slice(6, 8)}T${full.slice(8, 10)}:${full.slice(10, 12)}:${full.slice(12, 14)}Z`;
}

function nameText(buf, n) {
  return kids(buf, n)
    .map((rdn) =>
      kids(buf, rdn)
        .map((atv) => {
          const [type, value] = kids(buf, atv);
          const o = oid(body(buf, type));
          return `${NAMES[o] ?? o}=${text(buf, value)}`;
        })
        .join('+'),
    )
    .reverse()
    .join(', ');
}

// ---- certificates ------------------------------------------------------------------------------------

/** Parse the fields of an X.509 certificate that the verifier and the page need. */
export function parseCertificate(der) {
  const cert = node(der, 0);
  const [tbsNode, sigAlgNode, sigNode] = kids(der, cert);
  const tbs = kids(der, tbsNode);
  let i = tbs[0].tag === 0xa0 ? 1 : 0;
  const serial = tbs[i++];
  i++; // signature algorithm (repeated in the outer structure)
  const issuer = tbs[i++];
  const validity = kids(der, tbs[i++]);
  const subject = tbs[i++];
  const spki = tbs[i++];
  const result = {
    der,
    tbs: raw(der, tbsNode),
    signatureAlgorithm: kids(der, sigAlgNode).map((n) => raw(der, n)),
    signatureAlgorithmOid: oid(body(der, kids(der, sigAlgNode)[0])),
    signature: body(der, sigNode).subarray(1),
    serialRaw: raw(der, serial),
    serialNumber: hex(body(der, serial)).replace(/^00(?=[89a-f])/, ''),
    issuerRaw: raw(der, issuer),
    subjectRaw: raw(der, subject),
    issuer: nameText(der, issuer),
    subject: nameText(der, subject),
    notBefore: time(der, validity[0]),
    notAfter: time(der, validity[1]),
    spki: raw(der, spki),
    keyUsage: [],
    extendedKeyUsage: [],
  };
  const extWrapper = tbs.slice(i).find((n) => n.tag === 0xa3);
  if (extWrapper) {
    for (const ext of kids(der, kids(der, extWrapper)[0])) {
      const parts = kids(der, ext);
      const id = oid(body(der, parts[0]));
      const value = node(der, parts[parts.length - 1].start);
      if (id === OID.keyUsage) {
        const bits = body(der, value);
        const unused = bits[0];
        for (let b = 0; b < (bits.length - 1) * 8 - unused; b++) {
          if (bits[1 + (b >> 3)] & (0x80 >> (b & 7)) && KEY_USAGE_BITS[b])
            result.keyUsage.push(KEY_USAGE_BITS[b]);
        }
      } else if (id === OID.extKeyUsage) {
        result.extendedKeyUsage = kids(der, value).map((n) => oid(body(der, n)));
      }
    }
  }
  return result;
}

function spkiInfo(spki) {
  const [alg] = kids(spki, node(spki, 0));
  const [algOid, params] = kids(spki, alg);
  const keyOid = oid(body(spki, algOid));
  if (keyOid === OID.ecPublicKey) {
    const curve = CURVES[oid(body(spki, params))];
    if (!curve) throw new Error('unsupported elliptic curve');
    return { type: 'EC', namedCurve: curve[0], size: curve[1] };
  }
  if (keyOid === OID.rsaEncryption) return { type: 'RSA' };
  throw new Error('unsupported public key algorithm');
}

function ecdsaRaw(sigDer, size) {
  const [r, s] = kids(sigDer, node(sigDer, 0)).map((n) => body(sigDer, n));
  const out = new Uint8Array(size * 2);
  const put = (int, offset) => {
    const v = int[0] === 0 ? int.subarray(1) : int;
    if (v.length > size) throw new Error('ECDSA integer too long');
    out.set(v, offset + size - v.length);
  };
  put(r, 0);
  put(s, size);
  return out;
}

/**
 * Verify `signature` over `data` with the key of `spki`.
 * algorithmOid: the signature algorithm; hash: the digest to use when the OID names only the key type.
 */
async function verifySignature(spki, algorithmOid, algorithmParams, hash, signature, data) {
  const key = spkiInfo(spki);
  let scheme;
  let h = hash;
  if (SIGNATURES[algorithmOid]) [scheme, h] = SIGNATURES[algorithmOid];
  else if (algorithmOid === OID.rsaEncryption) scheme = 'RSASSA-PKCS1-v1_5';
  else if (algorithmOid === OID.ecPublicKey) scheme = 'ECDSA';
  else if (algorithmOid === OID.rsaPss) scheme = 'RSA-PSS';
  else throw new Error(`unsupported signature algorithm ${algorithmOid}`);
  let saltLength = { 'SHA-256': 32, 'SHA-384': 48, 'SHA-512': 64 }[h];
  if (scheme === 'RSA-PSS' && algorithmParams) {
    for (const p of kids(algorithmParams, node(algorithmParams, 0))) {
      const inner = node(algorithmParams, p.start);
      if (p.tag === 0xa0) h = DIGESTS[oid(body(algorithmParams, kids(algorithmParams, inner)[0]))] ?? h;
      if (p.tag === 0xa2) saltLength = Number(`0x${hex(body(algorithmParams, inner))}`);
    }
  }
  if ((scheme === 'ECDSA') !== (key.type === 'EC'))
    throw new Error('signature algorithm does not match the key');
  const importAlg =
    key.type === 'EC' ? { name: 'ECDSA', namedCurve: key.namedCurve } : { name: scheme, hash: h };
  const publicKey = await crypto.subtle.importKey('spki', spki, importAlg, false, ['verify']);
  const verifyAlg =
    scheme === 'ECDSA'
      ? { name: 'ECDSA', hash: h }
      : scheme === 'RSA-PSS'
        ? { name: 'RSA-PSS', saltLength }
        : { name: scheme };
  const sig = scheme === 'ECDSA' ? ecdsaRaw(signature, key.size) : signature;
  return crypto.subtle.verify(verifyAlg, publicKey, sig, data);
}

async function certificateSignedBy(cert, issuer) {
  const params = cert.signatureAlgorithm[1];
  return verifySignature(
    issuer.spki,
    cert.signatureAlgorithmOid,
    params,
    undefined,
    cert.signature,
    cert.tbs,
  ).catch(() => false);
}

// ---- CMS ---------------------------------------------------------------------------------------------

/**
 * Verify a DER CMS SignedData.
 * @param {Uint8Array} cmsDer
 * @param {{ content?: Uint8Array, digest?: Uint8Array, trustedRoots?: Uint8Array[] }} options
 *   content or digest: the signed data for a detached signature; trustedRoots: DER root certificates.
 */
export async function verifyCms(cmsDer, options = {}) {
  const der = cmsDer;
  const problems = [];
  const top = kids(der, expect(node(der, 0), 0x30, 'ContentInfo'));
  if (oid(body(der, expect(top[0], 0x06, 'contentType'))) !== OID.signedData)
    throw new Error('not a SignedData');
  const sd = kids(der, expect(kids(der, expect(top[1], 0xa0, 'content'))[0], 0x30, 'SignedData'));
  const encap = kids(der, expect(sd[2], 0x30, 'encapContentInfo'));
  const eContentType = oid(body(der, encap[0]));
  let eContent = null;
  if (encap[1]) eContent = body(der, expect(kids(der, encap[1])[0], 0x04, 'eContent'));
  let idx = 3;
  const certificates = [];
  if (sd[idx] && sd[idx].tag === 0xa0) {
    for (const c of kids(der, sd[idx]))
      if (c.tag === 0x30) certificates.push(parseCertificate(der.slice(c.pos, c.end)));
    idx++;
  }
  if (sd[idx] && sd[idx].tag === 0xa1) idx++;
  const signerInfos = kids(der, expect(sd[idx], 0x31, 'signerInfos'));
  if (signerInfos.length !== 1) problems.push(`expected one signer, found ${signerInfos.length}`);
  const si = kids(der, expect(signerInfos[0], 0x30, 'SignerInfo'));
  const sid = si[1];
  const digestAlgorithm = DIGESTS[oid(body(der, kids(der, si[2])[0]))];
  if (!digestAlgorithm) throw new Error('unsupported digest algorithm');
  let j = 3;
  let signedAttrs = null;
  if (si[j].tag === 0xa0) signedAttrs = si[j++];
  const sigAlgParts = kids(der, si[j++]);
  const signatureAlgorithmOid = oid(body(der, sigAlgParts[0]));
  const signatureAlgorithmParams = sigAlgParts[1] ? raw(der, sigAlgParts[1]) : null;
  const signature = body(der, expect(si[j++], 0x04, 'signature'));
  const unsignedAttrs = si[j] && si[j].tag === 0xa1 ? si[j] : null;

  // Signer certificate: by issuer and serial number, or by subject key identifier.
  let signer;
  if (sid.tag === 0x30) {
    const [issuer, serial] = kids(der, sid);
    signer = certificates.find(
      (c) => equal(c.issuerRaw, raw(der, issuer)) && equal(c.serialRaw, raw(der, serial)),
    );
  }
  if (!signer) throw new Error('the signer certificate is not in the CMS');

  const attrs = {};
  let toVerify;
  if (signedAttrs) {
    for (const a of kids(der, signedAttrs)) {
      const [type, values] = kids(der, a);
      attrs[oid(body(der, type))] = kids(der, values)[0];
    }
    // RFC 5652 5.4: the signature covers the attributes' DER with the SET OF tag, not [0].
    toVerify = der.slice(signedAttrs.pos, signedAttrs.end);
    toVerify[0] = 0x31;
  } else {
    problems.push('no signed attributes (not CAdES)');
    toVerify = eContent ?? options.content ?? new Uint8Array();
  }

  const signatureValid = await verifySignature(
    signer.spki,
    signatureAlgorithmOid,
    signatureAlgorithmParams,
    digestAlgorithm,
    signature,
    toVerify,
  ).catch((e) => {
    problems.push(e.message);
    return false;
  });
  if (!signatureValid) problems.push('the signature does not verify');

  let messageDigest = null;
  let contentDigestMatches = null;
  if (attrs[OID.messageDigest]) {
    messageDigest = body(der, attrs[OID.messageDigest]);
    let actual = null;
    if (eContent) actual = new Uint8Array(await crypto.subtle.digest(digestAlgorithm, eContent));
    else if (options.content)
      actual = new Uint8Array(await crypto.subtle.digest(digestAlgorithm, options.content));
    else if (options.digest) actual = options.digest;
    if (actual) {
      contentDigestMatches = equal(actual, messageDigest);
      if (!contentDigestMatches) problems.push('the content does not match the signed digest');
    } else {
      problems.push('detached signature: no content to check it against');
    }
  } else if (signedAttrs) {
    problems.push('no messageDigest attribute');
  }
  if (signedAttrs && attrs[OID.contentType] && oid(body(der, attrs[OID.contentType])) !== eContentType) {
    problems.push('the contentType attribute does not match');
  }

  // ESS signing-certificate(-v2): binds the signature to this certificate (CAdES).
  let signingCertificateBound = null;
  const ess = attrs[OID.signingCertificateV2] ?? attrs[OID.signingCertificate];
  if (ess) {
    const firstId = kids(der, kids(der, ess)[0])[0];
    const parts = kids(der, firstId);
    let hashAlg = attrs[OID.signingCertificateV2] ? 'SHA-256' : 'SHA-1';
    let hashNode = parts[0];
    if (parts[0].tag === 0x30) {
      hashAlg = DIGESTS[oid(body(der, kids(der, parts[0])[0]))] ?? hashAlg;
      hashNode = parts[1];
    }
    const certHash = new Uint8Array(await crypto.subtle.digest(hashAlg, signer.der));
    signingCertificateBound = equal(certHash, body(der, hashNode));
    if (!signingCertificateBound)
      problems.push('the signing-certificate attribute names another certificate');
  } else {
    problems.push('no signing-certificate attribute (not CAdES-BES)');
  }

  // Chain: follow issuers among the CMS certificates and the trusted roots; check each signature.
  const roots = (options.trustedRoots ?? []).map(parseCertificate);
  const pool = [...certificates, ...roots];
  const chain = [];
  let current = signer;
  let trusted = false;
  for (let depth = 0; depth < 8; depth++) {
    const issuer =
      pool.find((c) => equal(c.subjectRaw, current.issuerRaw) && c !== current) ??
      (equal(current.subjectRaw, current.issuerRaw) ? current : undefined);
    const link = { subject: current.subject, issuer: current.issuer, signatureValid: null };
    chain.push(link);
    if (!issuer) break;
    link.signatureValid = await certificateSignedBy(current, issuer);
    if (!link.signatureValid) {
      problems.push(`the certificate of ${current.subject} is not signed by its issuer`);
      break;
    }
    if (roots.some((r) => equal(r.der, issuer.der))) {
      trusted = true;
      if (issuer !== current)
        chain.push({
          subject: issuer.subject,
          issuer: issuer.issuer,
          signatureValid: true,
          trustAnchor: true,
        });
      break;
    }
    if (issuer === current) break;
    current = issuer;
  }
  if (!trusted) problems.push('the certificate chain does not end at a trusted root');

  const signingTime = attrs[OID.signingTime] ? time(der, attrs[OID.signingTime]) : null;
  const now = signingTime ? Date.parse(signingTime) : Date.now();
  if (now < Date.parse(signer.notBefore) || now > Date.parse(signer.notAfter)) {
    problems.push('the certificate was not valid at signing time');
  }
  let timestamped = false;
  if (unsignedAttrs) {
    for (const a of kids(der, unsignedAttrs))
      if (oid(body(der, kids(der, a)[0])) === OID.timeStampToken) timestamped = true;
  }

  return {
    valid: problems.length === 0,
    problems,
    signatureValid,
    contentDigestMatches,
    signingCertificateBound,
    chainTrusted: trusted,
    chain,
    attached: eContent !== null,
    content: eContent,
    contentType: eContentType,
    digestAlgorithm,
    signatureAlgorithm: signatureAlgorithmOid,
    messageDigest: messageDigest ? hex(messageDigest) : null,
    signingTime,
    timestamped,
    signer: {
      subject: signer.subject,
      issuer: signer.issuer,
      serialNumber: signer.serialNumber,
      notBefore: signer.notBefore,
      notAfter: signer.notAfter,
      keyUsage: signer.keyUsage,
    },
  };
}

/** DER bytes of the first PEM block in `pem`. */
export function pemToDer(pem) {
  const b64 = pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  return Uint8Array.from(globalThis.atob(b64), (c) => c.charCodeAt(0));
}
