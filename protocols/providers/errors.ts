// Owns the provider adapters' error: one class, a stable code per way a dialect message can be refused.

export type ProviderErrorCode =
  /** Above the protocol's payload limit; refused before parsing (PROTOCOL.md §3). */
  | 'MESSAGE_TOO_LARGE'
  /** Not JSON, or JSON with duplicate member names or deeper than the dialect allows. */
  | 'MESSAGE_NOT_JSON'
  /** A JSON object, but not in this provider's dialect (another provider's, or none). */
  | 'DIALECT_MISMATCH'
  /** In this dialect, but not a valid message of it, or not translatable into a canonical one. */
  | 'MESSAGE_INVALID'
  /** A well-formed request for an action outside unlock and lock (remote start, horn, trunk…). */
  | 'ACTION_NOT_ALLOWED'
  /** No adapter is registered under this provider id. */
  | 'PROVIDER_UNKNOWN';

/** What a refused command can still be answered with: its ids, read from the payload's own dialect. */
export interface RecoveredIds {
  commandId: string;
  deliveryId?: string;
  /** The canonical action when the dialect name maps to one, else the dialect's own name. */
  action: string;
}

export class ProviderError extends Error {
  readonly code: ProviderErrorCode;
  /** Set on refusals of a command whose ids could be read, so the car can still address an ack. */
  readonly ids: RecoveredIds | undefined;
  constructor(code: ProviderErrorCode, message: string, ids?: RecoveredIds) {
    super(message);
    this.name = 'ProviderError';
    this.code = code;
    this.ids = ids;
  }
}

/**
 * The door action a provider command carries. A revoke is this protocol's own security message and travels
 * canonical in every dialect (PROVIDERS.md), so an adapter asked to encode one refuses.
 */
export function doorAction(action: 'unlock' | 'lock' | 'revoke'): 'unlock' | 'lock' {
  if (action === 'revoke')
    throw new ProviderError('ACTION_NOT_ALLOWED', 'a revoke travels canonical, not in a dialect');
  return action;
}
