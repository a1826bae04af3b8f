// Owns the checks every gateway-signed compact JWS passes before its payload is read (TOKEN.md §5 steps 1-8).
import { type KeyObject, sign, verify } from 'node:crypto';
import { TokenError, type VerifyErrorCode } from './errors.ts';
import { parseStrictJson, StrictJsonError } from './strict-json.ts';

/** The only algorithm the gateway signs with (RFC 8037); no other is looked at (RFC 8725 §3.1). */
export const GATEWAY_JWS_ALG = 'EdDSA';
export const KID_PATTERN = /^[A-Za-z0-9_-]{8,64}$/;
/** Every other header member (jwk, jku, x5u, x5c, crit, b64, …) is refused, so nothing is ever fetched. */
const HEADER_MEMBERS = new Set(['alg', 'typ', 'kid']);
const SEGMENT = /^[A-Za-z0-9_-]+$/;
const ED25519_SIGNATURE_BYTES = 64;
/** The one key type EdDSA names here (RFC 8037 §3.1: Ed25519); anything else is refused, not tried. */
const KEY_TYPE = 'ed25519';
const b64url = (bytes: string | Uint8Array): string => Buffer.from(bytes).toString('base64url');
/** A header is a flat object; a little room is left so a nested member is named by step 4, not step 2. */
const HEADER_MAX_DEPTH = 4;

/** A gateway signing key the car trusts, pinned at enrollment or by a key announcement. */
export interface TrustedKey {
  kid: string;
  publicKey: KeyObject;
  /** ms since the epoch from which signatures under this kid are refused (retirement). */
  retiredAt?: number;
}
export type KeyRing = ReadonlyMap<string, TrustedKey>;

export interface VerifyStep {
  step: string;
  ok: boolean;
  code?: VerifyErrorCode;
  detail?: string;
}

export interface StepRunner {
  /** Runs one named check and records it; a failing check records its code and throws its TokenError on. */
  run<T>(step: string, fn: () => T): T;
  runAsync<T>(step: string, fn: () => Promise<T>): Promise<T>;
}

export function stepRunner(steps: VerifyStep[]): StepRunner {
  const fail = (step: string, err: unknown): never => {
    if (err instanceof TokenError) steps.push({ step, ok: false, code: err.code, detail: err.message });
    throw err;
  };
  return {
    run(step, fn) {
      try {
        const out = fn();
        steps.push({ step, ok: true });
        return out;
      } catch (err) {
        return fail(step, err);
      }
    },
    async runAsync(step, fn) {
      try {
        const out = await fn();
        steps.push({ step, ok: true });
        return out;
      } catch (err) {
        return fail(step, err);
      }
    },
  };
}

/**
 * Decodes a base64url segment, refusing any other spelling of the same bytes (unused trailing bits set):
 * decoders ignore those bits, so without this one token would have several valid spellings.
 */
function decodeCanonical(segment: string): Buffer {
  const bytes = Buffer.from(segment, 'base64url');
  if (bytes.toString('base64url') !== segment)
    throw new TokenError('TOKEN_MALFORMED', 'non-canonical base64url');
  return bytes;
}

/** Strict JSON object: no duplicate member names (RFC 7515 §5.2, RFC 8725 §3.1), bounded nesting. */
export function parseJsonObject(
  bytes: Uint8Array,
  code: VerifyErrorCode,
  what: string,
  maxDepth = 4,
): Record<string, unknown> {
  let value: unknown;
  try {
    value = parseStrictJson(new TextDecoder('utf-8', { fatal: true }).decode(bytes), maxDepth);
  } catch (err) {
    throw new TokenError(code, `${what}: ${err instanceof StrictJsonError ? err.code : 'not UTF-8'}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TokenError(code, `${what}: not an object`);
  }
  return value as Record<string, unknown>;
}

export interface GatewayJwsProfile {
  /** The one `typ` this kind of JWS carries (RFC 8725 §3.11: explicit typing, so kinds cannot be swapped). */
  typ: string;
  maxBytes: number;
}

export interface VerifiedJws {
  kid: string;
  /** The payload bytes, authenticated but not yet parsed. */
  payload: Uint8Array;
}

/**
 * Steps 1-8 of TOKEN.md §5: size, structure, alg, header members, typ, kid, retirement, signature. Steps 1-7
 * cost no cryptography and no allocation beyond the bounded token; step 8 runs only with a pinned key.
 * `now` is the car's time in ms; a key with a retirement date counts as retired when the time is unknown.
 */
export async function verifyGatewayJws(
  token: string,
  profile: GatewayJwsProfile,
  keys: KeyRing,
  now: number | null,
  { run, runAsync }: StepRunner,
): Promise<VerifiedJws> {
  run('size', () => {
    // length first: a huge string is refused without scanning it.
    if (token.length > profile.maxBytes || Buffer.byteLength(token, 'utf8') > profile.maxBytes) {
      throw new TokenError('TOKEN_TOO_LARGE', `above ${profile.maxBytes} bytes`);
    }
  });
  const { header, payloadBytes, signature } = run('structure', () => {
    const parts = token.split('.');
    if (parts.length !== 3 || !parts.every((p) => SEGMENT.test(p))) {
      throw new TokenError('TOKEN_MALFORMED', 'not three base64url segments');
    }
    const [h, p, s] = parts as [string, string, string];
    const payloadBytes = decodeCanonical(p);
    return {
      header: parseJsonObject(decodeCanonical(h), 'TOKEN_MALFORMED', 'header', HEADER_MAX_DEPTH),
      payloadBytes,
      signature: decodeCanonical(s),
    };
  });
  run('alg', () => {
    if (header.alg !== GATEWAY_JWS_ALG)
      throw new TokenError('TOKEN_ALG_NOT_ALLOWED', `alg ${String(header.alg)}`);
  });
  run('header-members', () => {
    const extra = Object.keys(header).filter((k) => !HEADER_MEMBERS.has(k));
    if (extra.length > 0) throw new TokenError('TOKEN_HEADER_FORBIDDEN', `header members ${extra.join(',')}`);
  });
  run('typ', () => {
    if (header.typ !== profile.typ) throw new TokenError('TOKEN_TYP_INVALID', `typ ${String(header.typ)}`);
  });
  const trusted = run('kid', () => {
    const kid = header.kid;
    // The syntax check comes before the lookup, so a kid is never a path, a query or a prototype key.
    if (typeof kid !== 'string' || !KID_PATTERN.test(kid))
      throw new TokenError('TOKEN_KID_UNKNOWN', 'kid syntax');
    const key = keys.get(kid);
    if (!key) throw new TokenError('TOKEN_KID_UNKNOWN', 'kid not pinned');
    return key;
  });
  run('kid-retired', () => {
    if (trusted.retiredAt !== undefined && (now === null || now >= trusted.retiredAt)) {
      throw new TokenError('TOKEN_KID_RETIRED', 'kid retired');
    }
  });
  const payload = await runAsync('signature', async () => {
    if (signature.length !== ED25519_SIGNATURE_BYTES) {
      throw new TokenError('TOKEN_SIGNATURE_INVALID', 'signature length');
    }
    if (!signatureHolds(token, signature, trusted.publicKey)) {
      throw new TokenError('TOKEN_SIGNATURE_INVALID', 'signature does not verify');
    }
    return payloadBytes;
  });
  return { kid: trusted.kid, payload };
}

/**
 * RFC 7515 §5.2 step 8 for EdDSA: the signature over the first two segments, with the pinned key, which must
 * be Ed25519. node:crypto's one-shot verify is synchronous: no trip through WebCrypto and the thread pool.
 * OpenSSL also refuses a non-canonical S (S ≥ L, RFC 8032 §5.1.7), so signatures are not malleable.
 */
function signatureHolds(token: string, signature: Buffer, publicKey: KeyObject): boolean {
  if (publicKey.type !== 'public' || publicKey.asymmetricKeyType !== KEY_TYPE) return false;
  try {
    return verify(null, Buffer.from(token.slice(0, token.lastIndexOf('.'))), publicKey, signature);
  } catch {
    return false;
  }
}

/**
 * Signs a payload as a gateway compact JWS (RFC 7515 §7.1) with header {alg, typ, kid} in that order. Ed25519
 * is deterministic (RFC 8032), so this is byte for byte what jose's CompactSign makes, without its trip
 * through WebCrypto and the thread pool.
 */
export function signGatewayJws(payload: Uint8Array, typ: string, kid: string, privateKey: KeyObject): string {
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== KEY_TYPE) {
    throw new TypeError('a gateway JWS signing key must be an Ed25519 private key');
  }
  const signingInput = `${b64url(JSON.stringify({ alg: GATEWAY_JWS_ALG, typ, kid }))}.${b64url(payload)}`;
  return `${signingInput}.${sign(null, Buffer.from(signingInput), privateKey).toString('base64url')}`;
}
