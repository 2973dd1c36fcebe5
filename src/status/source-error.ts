// Why one status source (an OCSP responder, a CRL, an issuer download) gave no usable answer. These
// stay inside the status layer; StatusService folds them into one ERR_STATUS_UNAVAILABLE whose
// `data.attempts` lists them, so an operator can see why each source was refused.

export type StatusFailureReason =
  | 'unsupported-url'
  | 'forbidden-destination'
  | 'redirect-refused'
  | 'network'
  | 'timeout'
  | 'http-status'
  | 'too-large'
  | 'unsupported-algorithm'
  | 'ocsp-malformed'
  | 'ocsp-error-status'
  | 'ocsp-no-matching-response'
  | 'ocsp-unauthorized-signer'
  | 'ocsp-bad-signature'
  | 'ocsp-nonce-mismatch'
  | 'ocsp-nonce-missing'
  | 'ocsp-stale'
  | 'ocsp-not-yet-valid'
  | 'crl-malformed'
  | 'crl-wrong-issuer'
  | 'crl-unauthorized-signer'
  | 'crl-bad-signature'
  | 'crl-stale'
  | 'crl-not-yet-valid'
  | 'crl-unsupported'
  | 'issuer-not-found'
  | 'no-source';

export class StatusSourceError extends Error {
  readonly reason: StatusFailureReason;
  /** The HTTP status, for `http-status`. */
  readonly httpStatus: number | undefined;

  constructor(
    reason: StatusFailureReason,
    message: string,
    options: { cause?: unknown; httpStatus?: number } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StatusSourceError';
    this.reason = reason;
    this.httpStatus = options.httpStatus;
  }
}

/** One failed source, as reported in `ERR_STATUS_UNAVAILABLE`'s `data.attempts`. */
export interface StatusAttempt {
  source: 'ocsp' | 'crl' | 'issuer' | 'none';
  url?: string;
  reason: StatusFailureReason;
  message: string;
}
