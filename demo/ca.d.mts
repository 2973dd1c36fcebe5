// Types of demo/ca.mjs (for the tests that drive it).
export declare class DemoCa {
  constructor(options: { dir: string; baseUrl: string; name?: string; statusValiditySeconds?: number });
  readonly dir: string;
  readonly baseUrl: string;
  readonly ocspUrl: string;
  readonly crlUrl: string;
  rootPem: string;
  issuingPem: string;
  init(): Promise<void>;
  issue(csrPem: string): Promise<{ certificate: string; chain: string[] }>;
  revoke(certificatePem: string, reason?: string): Promise<{ revoked: boolean }>;
  ocsp(requestDer: Uint8Array): Promise<Buffer>;
  crlDer(): Promise<Buffer>;
  readonly statusValiditySeconds: number;
  issuingDer(): Buffer;
}

export declare class DemoCaError extends Error {
  constructor(status: number, message: string);
  readonly status: number;
}
