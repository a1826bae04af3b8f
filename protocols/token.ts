// Owns the access token: claims, minting, and the car-side verification pipeline (TOKEN.md §3-§5).
import type { KeyObject } from 'node:crypto';
import { z } from 'zod';
import { TokenError, type TokenErrorCode } from './errors.ts';
import {
  GATEWAY_JWS_ALG,
  type KeyRing,
  KID_PATTERN,
  parseJsonObject,
  signGatewayJws,
  stepRunner,
  type VerifyStep,
  verifyGatewayJws,
} from './jws.ts';
import { type TokenAction, TokenActionSchema, Vin } from './messages.ts';

export { type KeyRing, KID_PATTERN, type TrustedKey, type VerifyStep } from './jws.ts';

export const TOKEN_ALG = GATEWAY_JWS_ALG;
export const TOKEN_TYP = 'vehicle-access+jwt';
/** The issuer a car expects unless it was enrolled with another (TOKEN.md §3). */
export const TOKEN_ISSUER = 'urn:gateway:gateway';
/** Tokens above this size are refused before any decoding or cryptography. */
export const MAX_TOKEN_BYTES = 2048;
/** Longest span from nbf to exp the car accepts. */
export const MAX_TOKEN_LIFETIME_S = 300;
/** Clock difference tolerated between gateway and car, either way. */
export const CLOCK_SKEW_S = 30;
/**
 * How long after a revoke token's iat the car keeps the delivery revoked: any token minted for it before the
 * revoke (by any replica, whose clocks agree within the skew) has expired at the car by then (TOKEN.md §10).
 */
export const REVOCATION_RETENTION_S = MAX_TOKEN_LIFETIME_S + 2 * CLOCK_SKEW_S;

const IdClaim = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_-]+$/);
const Seconds = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

export const TokenClaimsSchema = z.strictObject({
  iss: z.string().min(1).max(128),
  aud: Vin,
  sub: IdClaim,
  act: TokenActionSchema,
  jti: IdClaim,
  cid: IdClaim,
  iat: Seconds,
  nbf: Seconds,
  exp: Seconds,
});
export type TokenClaims = z.infer<typeof TokenClaimsSchema>;

/** The verification steps in order, with the codes each may refuse with: TOKEN.md §5 is this table. */
export const TOKEN_STEPS = [
  { step: 'size', codes: ['TOKEN_TOO_LARGE'] },
  { step: 'structure', codes: ['TOKEN_MALFORMED'] },
  { step: 'alg', codes: ['TOKEN_ALG_NOT_ALLOWED'] },
  { step: 'header-members', codes: ['TOKEN_HEADER_FORBIDDEN'] },
  { step: 'typ', codes: ['TOKEN_TYP_INVALID'] },
  { step: 'kid', codes: ['TOKEN_KID_UNKNOWN'] },
  { step: 'kid-retired', codes: ['TOKEN_KID_RETIRED'] },
  { step: 'signature', codes: ['TOKEN_SIGNATURE_INVALID'] },
  { step: 'claims', codes: ['TOKEN_CLAIMS_INVALID'] },
  { step: 'clock', codes: ['CLOCK_UNKNOWN'] },
  { step: 'iss', codes: ['TOKEN_ISSUER_MISMATCH'] },
  { step: 'aud', codes: ['TOKEN_AUDIENCE_MISMATCH'] },
  { step: 'act', codes: ['TOKEN_ACTION_MISMATCH'] },
  { step: 'binding', codes: ['TOKEN_BINDING_MISMATCH'] },
  { step: 'lifetime', codes: ['TOKEN_LIFETIME_EXCEEDED'] },
  { step: 'nbf', codes: ['TOKEN_NOT_YET_VALID'] },
  { step: 'exp', codes: ['TOKEN_EXPIRED'] },
  { step: 'revocation', codes: ['TOKEN_REVOKED'] },
  { step: 'replay', codes: ['TOKEN_REPLAYED', 'REPLAY_STORE_FULL'] },
] as const satisfies ReadonlyArray<{ step: string; codes: readonly TokenErrorCode[] }>;

/** Single-use memory of jti values; the car persists it across reboots. */
export interface ReplayGuard {
  /**
   * Records jti until expMs and nowMs as the car's last known good time, in one durable write (TOKEN.md §6.4,
   * §7). 'replayed' if jti is already recorded, 'full' if it cannot be recorded (fail closed).
   */
  claim(jti: string, expMs: number, nowMs: number): 'ok' | 'replayed' | 'full';
}

export interface VerifyContext {
  keys: KeyRing;
  /** The issuer the car was enrolled with; tokens naming another are refused before their jti is used. */
  issuer: string;
  vin: string;
  action: TokenAction;
  commandId: string;
  deliveryId: string;
  /** The car's time in ms, or null when the car does not know it. */
  now: number | null;
  replay: ReplayGuard;
  /** Deliveries whose tokens the car must refuse (revoked: cancelled, blocked or unlinked). */
  isRevoked: (deliveryId: string) => boolean;
  skewS?: number;
  maxLifetimeS?: number;
}

export type Verdict =
  | { ok: true; claims: TokenClaims; kid: string; steps: VerifyStep[] }
  | { ok: false; code: TokenErrorCode; message: string; steps: VerifyStep[] };

export interface MintInput {
  privateKey: KeyObject;
  kid: string;
  claims: TokenClaims;
}

/**
 * Signs claims as a compact JWS (RFC 7515 §7.1) after checking them against the same rules the car applies.
 * node:crypto's one-shot Ed25519 signs it, byte for byte what jose's CompactSign makes (signGatewayJws).
 */
export async function mintAccessToken({ privateKey, kid, claims }: MintInput): Promise<string> {
  const valid = TokenClaimsSchema.parse(claims);
  if (valid.exp - valid.nbf > MAX_TOKEN_LIFETIME_S || valid.exp <= valid.nbf || valid.iat > valid.nbf) {
    throw new TokenError('TOKEN_LIFETIME_EXCEEDED', 'token lifetime outside (0, max]');
  }
  if (!KID_PATTERN.test(kid)) throw new TokenError('TOKEN_KID_UNKNOWN', 'kid syntax');
  return signGatewayJws(new TextEncoder().encode(JSON.stringify(valid)), TOKEN_TYP, kid, privateKey);
}

export interface ClaimsInput {
  issuer: string;
  vin: string;
  deliveryId: string;
  action: TokenAction;
  commandId: string;
  jti: string;
  nowMs: number;
  ttlS: number;
  /** The delivery window's end, ms: no token outlives it. */
  notAfterMs: number;
}

/** Builds claims whose lifetime is the shorter of ttlS, the protocol maximum and the window end. */
export function buildClaims(input: ClaimsInput): TokenClaims {
  const iat = Math.floor(input.nowMs / 1000);
  const exp = Math.min(iat + Math.min(input.ttlS, MAX_TOKEN_LIFETIME_S), Math.floor(input.notAfterMs / 1000));
  return {
    iss: input.issuer,
    aud: input.vin,
    sub: input.deliveryId,
    act: input.action,
    jti: input.jti,
    cid: input.commandId,
    iat,
    nbf: iat,
    exp,
  };
}

/**
 * Verifies a token as the car does, in the order of TOKEN.md §5: cheap structural checks first, cryptography
 * only on a well-formed header with a pinned kid, claims only after the signature holds, and the single-use
 * record last, so a refused token never consumes a jti.
 */
export async function verifyAccessToken(token: string, ctx: VerifyContext): Promise<Verdict> {
  const steps: VerifyStep[] = [];
  const skew = ctx.skewS ?? CLOCK_SKEW_S;
  const maxLifetime = ctx.maxLifetimeS ?? MAX_TOKEN_LIFETIME_S;
  const runner = stepRunner(steps);
  const { run } = runner;
  try {
    const jws = await verifyGatewayJws(
      token,
      { typ: TOKEN_TYP, maxBytes: MAX_TOKEN_BYTES },
      ctx.keys,
      ctx.now,
      runner,
    );
    const claims = run('claims', () => {
      const parsed = TokenClaimsSchema.safeParse(
        parseJsonObject(jws.payload, 'TOKEN_CLAIMS_INVALID', 'claims'),
      );
      if (!parsed.success) {
        const where = parsed.error.issues[0]?.path.join('.') ?? '';
        throw new TokenError('TOKEN_CLAIMS_INVALID', `claim ${where}`);
      }
      return parsed.data;
    });
    const nowMs = run('clock', () => {
      if (ctx.now === null) throw new TokenError('CLOCK_UNKNOWN', 'car time unknown');
      return ctx.now;
    });
    const now = Math.floor(nowMs / 1000);
    run('iss', () => {
      if (claims.iss !== ctx.issuer) throw new TokenError('TOKEN_ISSUER_MISMATCH', 'iss is another issuer');
    });
    run('aud', () => {
      if (claims.aud !== ctx.vin) throw new TokenError('TOKEN_AUDIENCE_MISMATCH', 'aud is another vehicle');
    });
    run('act', () => {
      if (claims.act !== ctx.action) throw new TokenError('TOKEN_ACTION_MISMATCH', `act ${claims.act}`);
    });
    run('binding', () => {
      if (claims.cid !== ctx.commandId || claims.sub !== ctx.deliveryId) {
        throw new TokenError('TOKEN_BINDING_MISMATCH', 'token not issued for this command');
      }
    });
    run('lifetime', () => {
      if (claims.exp <= claims.nbf || claims.exp - claims.nbf > maxLifetime || claims.iat > claims.nbf) {
        throw new TokenError('TOKEN_LIFETIME_EXCEEDED', `lifetime ${claims.exp - claims.nbf}s`);
      }
    });
    run('nbf', () => {
      if (now + skew < claims.nbf) throw new TokenError('TOKEN_NOT_YET_VALID', 'nbf in the future');
    });
    run('exp', () => {
      if (now - skew >= claims.exp) throw new TokenError('TOKEN_EXPIRED', 'exp passed');
    });
    run('revocation', () => {
      if (ctx.isRevoked(claims.sub)) throw new TokenError('TOKEN_REVOKED', 'delivery revoked');
    });
    run('replay', () => {
      const r = ctx.replay.claim(claims.jti, (claims.exp + skew) * 1000, nowMs);
      if (r === 'replayed') throw new TokenError('TOKEN_REPLAYED', 'jti already used');
      if (r === 'full') throw new TokenError('REPLAY_STORE_FULL', 'replay store full');
    });
    return { ok: true, claims, kid: jws.kid, steps };
  } catch (err) {
    if (err instanceof TokenError) {
      return { ok: false, code: err.code as TokenErrorCode, message: err.message, steps };
    }
    throw err;
  }
}
