// Types of cms-verify.js (for the tests that drive it in Node).
export interface ChainLink {
  subject: string;
  issuer: string;
  signatureValid: boolean | null;
  trustAnchor?: boolean;
}

export interface CmsVerification {
  valid: boolean;
  problems: string[];
  signatureValid: boolean;
  contentDigestMatches: boolean | null;
  signingCertificateBound: boolean | null;
  chainTrusted: boolean;
  chain: ChainLink[];
  attached: boolean;
  content: Uint8Array | null;
  contentType: string;
  digestAlgorithm: string;
  signatureAlgorithm: string;
  messageDigest: string | null;
  signingTime: string | null;
  timestamped: boolean;
  signer: {
    subject: string;
    issuer: string;
    serialNumber: string;
    notBefore: string;
    notAfter: string;
    keyUsage: string[];
  };
}

export declare function verifyCms(
  cmsDer: Uint8Array,
  options?: { content?: Uint8Array; digest?: Uint8Array; trustedRoots?: Uint8Array[] },
): Promise<CmsVerification>;

export declare function parseCertificate(der: Uint8Array): {
  subject: string;
  issuer: string;
  serialNumber: string;
  notBefore: string;
  notAfter: string;
  keyUsage: string[];
  extendedKeyUsage: string[];
};

export declare function pemToDer(pem: string): Uint8Array;
