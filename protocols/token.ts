// Owns the access token: claims, minting, and the car-side verification pipeline (PROTOCOL.md §4).
import { type KeyObject, sign, verify } from 'node:crypto';
import { z } from 'zod';
import { type Action, ActionSchema, Vin } from './messages.ts';
import { parseStrictJson, StrictJsonError } from './strict-json.ts';

export const TOKEN_ALG = 'EdDSA';
export const TOKEN_TYP = 'vehicle-access+jwt';
/** Tokens above this size are refused before any decoding or cryptography. */
export const MAX_TOKEN_BYTES = 2048;
/** Longest span from nbf to exp the car accepts. */
export const MAX_TOKEN_LIFETIME_S = 300;
/** Clock difference tolerated between gateway and car, either way. */
export const CLOCK_SKEW_S = 30;

export const KID_PATTERN = /^[A-Za-z0-9_-]{8,64}$/;
const HEADER_MEMBERS = new Set(['alg', 'typ', 'kid']);
const SEGMENT = /^[A-Za-z0-9_-]+$/;
/** The one key type EdDSA names here (RFC 8037 §3.1: Ed25519); anything else is refused, not tried. */
const KEY_TYPE = 'ed25519';
const utf8 = new TextDecoder('utf-8', { fatal: true });
const b64url = (text: string): string => Buffer.from(text, 'utf8').toString('base64url');

const IdClaim = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_-]+$/);
const Seconds = z.number().int().nonnegative();

export const TokenClaimsSchema = z.strictObject({
  iss: z.string().min(1).max(128),
  aud: Vin,
  sub: IdClaim,
  act: ActionSchema,
  jti: IdClaim,
  cid: IdClaim,
  iat: Seconds,
  nbf: Seconds,
  exp: Seconds,
});
export type TokenClaims = z.infer<typeof TokenClaimsSchema>;

export type TokenErrorCode =
  | 'TOKEN_TOO_LARGE'
  | 'TOKEN_MALFORMED'
  | 'TOKEN_ALG_NOT_ALLOWED'
  | 'TOKEN_HEADER_FORBIDDEN'
  | 'TOKEN_TYP_INVALID'
  | 'TOKEN_KID_UNKNOWN'
  | 'TOKEN_KID_RETIRED'
  | 'TOKEN_SIGNATURE_INVALID'
  | 'TOKEN_CLAIMS_INVALID'
  | 'CLOCK_UNKNOWN'
  | 'TOKEN_AUDIENCE_MISMATCH'
  | 'TOKEN_ACTION_MISMATCH'
  | 'TOKEN_BINDING_MISMATCH'
  | 'TOKEN_LIFETIME_EXCEEDED'
  | 'TOKEN_NOT_YET_VALID'
  | 'TOKEN_EXPIRED'
  | 'TOKEN_REVOKED'
  | 'TOKEN_REPLAYED'
  | 'REPLAY_STORE_FULL';

export class TokenError extends Error {
  readonly code: TokenErrorCode;
  constructor(code: TokenErrorCode, message: string) {
    super(message);
    this.name = 'TokenError';
    this.code = code;
  }
}

/** A gateway signing key the car trusts, pinned at enrollment. */
export interface TrustedKey {
  kid: string;
  publicKey: KeyObject;
  /** ms since the epoch after which tokens under this kid are refused (retirement). */
  retiredAt?: number;
}
export type KeyRing = ReadonlyMap<string, TrustedKey>;

/** Single-use memory of jti values; the car persists it across reboots. */
export interface ReplayGuard {
  /** Records jti until expMs; 'replayed' if already recorded, 'full' if it cannot record (fail closed). */
  claim(jti: string, expMs: number): 'ok' | 'replayed' | 'full';
}

export interface VerifyContext {
  keys: KeyRing;
  vin: string;
  action: Action;
  commandId: string;
  deliveryId: string;
  /** The car's time in ms, or null when the car does not know it. */
  now: number | null;
  replay: ReplayGuard;
  /** Deliveries whose tokens the car must refuse (cancelled or unlinked). */
  isRevoked?: (deliveryId: string) => boolean;
  skewS?: number;
  maxLifetimeS?: number;
}

export interface VerifyStep {
  step: string;
  ok: boolean;
  code?: TokenErrorCode;
  detail?: string;
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
 * The signature is node:crypto's one-shot Ed25519 (RFC 8032), byte for byte what jose's CompactSign makes
 * (Ed25519 is deterministic), without WebCrypto's trip through the thread pool.
 */
export async function mintAccessToken({ privateKey, kid, claims }: MintInput): Promise<string> {
  const valid = TokenClaimsSchema.parse(claims);
  if (valid.exp - valid.nbf > MAX_TOKEN_LIFETIME_S || valid.exp <= valid.nbf) {
    throw new TokenError('TOKEN_LIFETIME_EXCEEDED', 'token lifetime outside (0, max]');
  }
  if (!KID_PATTERN.test(kid)) throw new TokenError('TOKEN_KID_UNKNOWN', 'kid syntax');
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== KEY_TYPE) {
    throw new TypeError('the token signing key must be an Ed25519 private key');
  }
  const signingInput = `${b64url(JSON.stringify({ alg: TOKEN_ALG, typ: TOKEN_TYP, kid }))}.${b64url(JSON.stringify(valid))}`;
  return `${signingInput}.${sign(null, Buffer.from(signingInput), privateKey).toString('base64url')}`;
}

/** RFC 7515 §5.2 step 8 for EdDSA: the signature over the first two segments, with the pinned Ed25519 key. */
function signatureHolds(token: string, publicKey: KeyObject): boolean {
  if (publicKey.asymmetricKeyType !== KEY_TYPE) return false;
  const cut = token.lastIndexOf('.');
  try {
    return verify(
      null,
      Buffer.from(token.slice(0, cut)),
      publicKey,
      Buffer.from(token.slice(cut + 1), 'base64url'),
    );
  } catch {
    return false;
  }
}

export interface ClaimsInput {
  issuer: string;
  vin: string;
  deliveryId: string;
  action: Action;
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

function decodeSegment(segment: string): string {
  return Buffer.from(segment, 'base64url').toString('utf8');
}

function parseObject(text: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = parseStrictJson(text);
  } catch (err) {
    const why = err instanceof StrictJsonError ? err.code : 'JSON_SYNTAX';
    throw new TokenError(what === 'header' ? 'TOKEN_MALFORMED' : 'TOKEN_CLAIMS_INVALID', `${what}: ${why}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TokenError(
      what === 'header' ? 'TOKEN_MALFORMED' : 'TOKEN_CLAIMS_INVALID',
      `${what}: not an object`,
    );
  }
  return value as Record<string, unknown>;
}

function decodeToken(token: string): { header: Record<string, unknown>; payload: string } {
  if (token.length > MAX_TOKEN_BYTES) throw new TokenError('TOKEN_TOO_LARGE', `${token.length} bytes`);
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((p) => SEGMENT.test(p))) {
    throw new TokenError('TOKEN_MALFORMED', 'not three base64url segments');
  }
  return { header: parseObject(decodeSegment(parts[0] as string), 'header'), payload: parts[1] as string };
}

/**
 * Verifies a token as the car does, in the order of PROTOCOL.md §4.3: cheap structural checks first,
 * cryptography only on a well-formed header with a pinned kid, claims only after the signature holds,
 * and the single-use record last, so a refused token never consumes a jti.
 */
export async function verifyAccessToken(token: string, ctx: VerifyContext): Promise<Verdict> {
  const steps: VerifyStep[] = [];
  const skew = ctx.skewS ?? CLOCK_SKEW_S;
  const maxLifetime = ctx.maxLifetimeS ?? MAX_TOKEN_LIFETIME_S;
  const run = <T>(step: string, fn: () => T): T => {
    try {
      const out = fn();
      steps.push({ step, ok: true });
      return out;
    } catch (err) {
      if (err instanceof TokenError) steps.push({ step, ok: false, code: err.code, detail: err.message });
      throw err;
    }
  };
  try {
    const { header, payload } = run('structure', () => decodeToken(token));
    run('alg', () => {
      if (header.alg !== TOKEN_ALG)
        throw new TokenError('TOKEN_ALG_NOT_ALLOWED', `alg ${String(header.alg)}`);
    });
    run('header-members', () => {
      const extra = Object.keys(header).filter((k) => !HEADER_MEMBERS.has(k));
      if (extra.length > 0)
        throw new TokenError('TOKEN_HEADER_FORBIDDEN', `header members ${extra.join(',')}`);
    });
    run('typ', () => {
      if (header.typ !== TOKEN_TYP) throw new TokenError('TOKEN_TYP_INVALID', `typ ${String(header.typ)}`);
    });
    const trusted = run('kid', () => {
      const kid = header.kid;
      if (typeof kid !== 'string' || !KID_PATTERN.test(kid))
        throw new TokenError('TOKEN_KID_UNKNOWN', 'kid syntax');
      const key = ctx.keys.get(kid);
      if (!key) throw new TokenError('TOKEN_KID_UNKNOWN', 'kid not pinned');
      if (key.retiredAt !== undefined && (ctx.now === null || ctx.now >= key.retiredAt)) {
        throw new TokenError('TOKEN_KID_RETIRED', 'kid retired');
      }
      return key;
    });
    run('signature', () => {
      if (!signatureHolds(token, trusted.publicKey)) {
        throw new TokenError('TOKEN_SIGNATURE_INVALID', 'signature does not verify');
      }
    });
    const claims = run('claims', () => {
      const raw = parseObject(utf8.decode(Buffer.from(payload, 'base64url')), 'claims');
      const parsed = TokenClaimsSchema.safeParse(raw);
      if (!parsed.success) {
        const where = parsed.error.issues[0]?.path.join('.') ?? '';
        throw new TokenError('TOKEN_CLAIMS_INVALID', `claim ${where}`);
      }
      return parsed.data;
    });
    const now = run('clock', () => {
      if (ctx.now === null) throw new TokenError('CLOCK_UNKNOWN', 'car time unknown');
      return Math.floor(ctx.now / 1000);
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
      if (ctx.isRevoked?.(claims.sub)) throw new TokenError('TOKEN_REVOKED', 'delivery revoked');
    });
    run('replay', () => {
      const r = ctx.replay.claim(claims.jti, (claims.exp + skew) * 1000);
      if (r === 'replayed') throw new TokenError('TOKEN_REPLAYED', 'jti already used');
      if (r === 'full') throw new TokenError('REPLAY_STORE_FULL', 'replay store full');
    });
    return { ok: true, claims, kid: trusted.kid, steps };
  } catch (err) {
    if (err instanceof TokenError) return { ok: false, code: err.code, message: err.message, steps };
    throw err;
  }
}
