// Owns the conformance kit's error codes and the error class that carries them.

export type ConformanceErrorCode =
  /** Bad command-line arguments or options: the program exits 2 with one line. */
  | 'CONFORMANCE_ARGS_INVALID'
  /** A file the kit needs (certificate, key, trust anchors) is missing or not what it should be. */
  | 'CONFORMANCE_MATERIAL_INVALID'
  /** The broker refused the kit or could not be reached. */
  | 'CONFORMANCE_CONNECT_FAILED'
  /** The state hook failed (not: declined); the case that needed it fails. */
  | 'CONFORMANCE_HOOK_FAILED'
  /** The endpoint did not answer in time. */
  | 'CONFORMANCE_NO_ANSWER';

export class ConformanceError extends Error {
  readonly code: ConformanceErrorCode;
  constructor(code: ConformanceErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ConformanceError';
    this.code = code;
  }
}
