// Owns the audit log's errors: one class, a stable code for each way an entry, a checkpoint or a bundle can fail.

/** Codes of the offline verifier, in the order it checks (AUDIT.md §7), then the writer's own refusals. */
export type AuditErrorCode =
  | 'BUNDLE_MALFORMED'
  | 'KEY_INVALID'
  | 'CHECKPOINT_MALFORMED'
  | 'CHECKPOINT_ORIGIN_MISMATCH'
  | 'CHECKPOINT_UNTRUSTED_SIGNER'
  | 'CHECKPOINT_SIGNATURE_INVALID'
  | 'CHECKPOINTS_INCONSISTENT'
  | 'ENTRY_MALFORMED'
  | 'ENTRY_OUT_OF_ORDER'
  | 'ENTRY_MISSING'
  | 'ENTRY_INSERTED'
  | 'ENTRY_ALTERED'
  | 'LOG_TRUNCATED'
  | 'ENTRY_NOT_CHECKPOINTED'
  | 'ROOT_MISMATCH'
  | 'ENTRY_REFUSED'
  | 'LOG_GAP';

export class AuditError extends Error {
  readonly code: AuditErrorCode;
  constructor(code: AuditErrorCode, message: string) {
    super(message);
    this.name = 'AuditError';
    this.code = code;
  }
}
