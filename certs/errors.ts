// Owns the errors of the private PKI: one base class, every refusal with a stable code.

export type CertErrorCode =
  | 'CERT_OPTIONS_INVALID'
  | 'CA_KEY_UNSUPPORTED'
  | 'CA_KEY_MISMATCH'
  | 'CA_NOT_A_CA'
  | 'CA_MALFORMED'
  | 'CERT_MALFORMED'
  | 'VIN_INVALID'
  | 'PKI_INCOMPLETE'
  | 'PKI_STATE_INVALID'
  | 'VEHICLE_UNKNOWN'
  | 'CRL_INVALID'
  | 'CLI_USAGE';

export class CertError extends Error {
  readonly code: CertErrorCode;
  constructor(code: CertErrorCode, message: string) {
    super(message);
    this.name = 'CertError';
    this.code = code;
  }
}
