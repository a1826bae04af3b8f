// Owns the refusal codes of the car-side verifications (TOKEN.md §5, §8) and the error class that carries them.

/** Steps 1-8, shared by every gateway-signed JWS: access tokens and key announcements. */
export type JwsCheckCode =
  | 'TOKEN_TOO_LARGE'
  | 'TOKEN_MALFORMED'
  | 'TOKEN_ALG_NOT_ALLOWED'
  | 'TOKEN_HEADER_FORBIDDEN'
  | 'TOKEN_TYP_INVALID'
  | 'TOKEN_KID_UNKNOWN'
  | 'TOKEN_KID_RETIRED'
  | 'TOKEN_SIGNATURE_INVALID';

export type TokenErrorCode =
  | JwsCheckCode
  | 'TOKEN_CLAIMS_INVALID'
  | 'CLOCK_UNKNOWN'
  | 'TOKEN_ISSUER_MISMATCH'
  | 'TOKEN_AUDIENCE_MISMATCH'
  | 'TOKEN_ACTION_MISMATCH'
  | 'TOKEN_BINDING_MISMATCH'
  | 'TOKEN_LIFETIME_EXCEEDED'
  | 'TOKEN_NOT_YET_VALID'
  | 'TOKEN_EXPIRED'
  | 'TOKEN_REVOKED'
  | 'TOKEN_REPLAYED'
  | 'REPLAY_STORE_FULL';

export type KeysErrorCode =
  | JwsCheckCode
  | 'CLOCK_UNKNOWN'
  | 'TOKEN_ISSUER_MISMATCH'
  | 'KEYS_PAYLOAD_INVALID'
  | 'KEYS_STALE'
  | 'KEYS_RETIREMENT_LIFTED'
  | 'KEYS_NO_ACTIVE_KEY';

export type VerifyErrorCode = TokenErrorCode | KeysErrorCode;

export class TokenError extends Error {
  readonly code: VerifyErrorCode;
  constructor(code: VerifyErrorCode, message: string) {
    super(message);
    this.name = 'TokenError';
    this.code = code;
  }
}
