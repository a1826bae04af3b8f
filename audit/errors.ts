// Owns the audit command line's own errors; verification failures are protocols/audit AuditError codes.

export type AuditCliErrorCode =
  | 'CLI_USAGE'
  | 'FILE_UNREADABLE'
  | 'STORE_MISSING'
  | 'KEY_MISSING'
  | 'UNLOCK_NOT_RELOCKED';

export class AuditCliError extends Error {
  readonly code: AuditCliErrorCode;
  constructor(code: AuditCliErrorCode, message: string) {
    super(message);
    this.name = 'AuditCliError';
    this.code = code;
  }
}
