// Owns the reason codes a simulated car refuses with on its own, besides the token verification's (TOKEN.md §5).
/** Car-side refusal reasons beyond the verifiers' codes (which the ack carries as they are). */
export type CarRefusalCode =
  | 'COMMAND_MALFORMED'
  | 'REVOCATION_STORE_FULL'
  | 'CAR_FAULT'
  /** The command is in another provider's dialect, or in none (PROVIDERS.md §3 step 3). */
  | 'DIALECT_MISMATCH'
  /** The command names an action outside unlock and lock, the only two the owner consented to. */
  | 'ACTION_NOT_ALLOWED'
  /** The 12 V battery is too low to actuate the locks (simulator/faults.ts); checked before the token. */
  | 'LOW_BATTERY'
  /**
   * A state query named this command before it arrived, and the car answered that it had not reached it: the
   * gateway settled it as not executed, so the car never acts on it (PROTOCOL.md §3.5).
   */
  | 'COMMAND_DISOWNED';
