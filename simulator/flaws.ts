// Owns the simulator's deliberately flawed modes: each disables exactly one check of the car, so the conformance
// kit (protocols/conformance/) can show that a case catches it. Off unless named one by one with --flaw.
import { createHmac, createPublicKey, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { z } from 'zod';
import type { KeyRing, TrustedKey } from '../protocols/jws.ts';
import { CLOCK_SKEW_S, type VerifyContext } from '../protocols/token.ts';
import type { OutcomeMemory } from './outcome-memory.ts';

/** Every flaw, with the one check it disables: the list `--help` and the README print. */
export const FLAW_CHECKS = {
  'skip-aud': 'TOKEN.md §5 step 12: a token for another car is accepted',
  'skip-act': 'TOKEN.md §5 step 13: a token for another action is accepted',
  'skip-binding': 'TOKEN.md §5 step 14: a token for another command or delivery is accepted',
  'skip-iss': 'TOKEN.md §5 step 11: a token from another issuer is accepted',
  'skip-lifetime': 'TOKEN.md §5 step 15: a token living longer than 300 s is accepted',
  'skip-nbf': 'TOKEN.md §5 step 16: a token before its nbf (beyond the skew) is accepted',
  'skip-exp': 'TOKEN.md §5 step 17: an expired token is accepted',
  'skip-signature': 'TOKEN.md §5 step 8: any EdDSA signature under a trusted kid is accepted',
  'accept-hs256': 'TOKEN.md §5 step 3: HS256 keyed with the public key of a trusted kid is accepted',
  'accept-retired-key': 'TOKEN.md §5 step 7: tokens under a retired key are accepted',
  'skip-replay': 'TOKEN.md §5 step 19: a used jti is accepted again',
  'forget-replay-on-reboot': 'TOKEN.md §7: the used jti are kept in memory only, so a reboot forgets them',
  'ignore-revoke': 'TOKEN.md §5 step 18: tokens of a revoked delivery are accepted',
  'revoke-leaves-open': 'TOKEN.md §10 step 3: a revoke does not lock an unlocked car',
  'accept-stale-keys': 'TOKEN.md §8.2 step 12: a replayed or rolled-back key announcement is accepted',
  'unsigned-acks': 'TOKEN.md §9: acks carry no signature',
  'no-failsafe': 'PROTOCOL.md §5: the car never relocks by itself',
  'no-disown': 'PROTOCOL.md §3.5: a command a state query said had not arrived is still acted on',
  'no-dedupe': 'PROTOCOL.md §3.2: a redelivered command is verified again instead of answered with its ack',
} as const;

export const FlawSchema = z.enum(Object.keys(FLAW_CHECKS) as [keyof typeof FLAW_CHECKS]);
export type Flaw = z.infer<typeof FlawSchema>;
export const FLAWS = FlawSchema.options;
export type Flaws = ReadonlySet<Flaw>;
export const NO_FLAWS: Flaws = new Set();

/** The token's claims as written, without verifying anything; null when they cannot be read. */
function peekClaims(token: string): Record<string, unknown> | null {
  try {
    const value = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}

function peekHeader(token: string): Record<string, unknown> | null {
  try {
    const value = JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}

const b64 = (bytes: string | Buffer): string => Buffer.from(bytes).toString('base64url');

/** HS256 over the signing input, keyed with the raw public key and with its PEM: the two alg-confusion keys. */
function hs256Holds(token: string, publicKey: KeyObject): boolean {
  const input = token.slice(0, token.lastIndexOf('.'));
  const signature = token.slice(token.lastIndexOf('.') + 1);
  const raw = Buffer.from(String(publicKey.export({ format: 'jwk' }).x), 'base64url');
  const pem = String(publicKey.export({ type: 'spki', format: 'pem' }));
  return [raw, pem].some((key) => createHmac('sha256', key).update(input).digest('base64url') === signature);
}

/**
 * The signature step made to pass: the flawed car re-signs what it received with a throwaway key and trusts
 * that key under the token's kid (keeping its retirement), so every later step still runs as written.
 */
function resigned(
  token: string,
  header: Record<string, unknown>,
  trusted: TrustedKey,
  keys: KeyRing,
): { token: string; keys: KeyRing } {
  const throwaway = generateKeyPairSync('ed25519');
  const [h, p] = token.split('.') as [string, string];
  const headerSegment = header.alg === 'EdDSA' ? h : b64(JSON.stringify({ ...header, alg: 'EdDSA' }));
  const input = `${headerSegment}.${p}`;
  const signature = sign(null, Buffer.from(input), throwaway.privateKey).toString('base64url');
  const ring = new Map(keys);
  ring.set(trusted.kid, { ...trusted, publicKey: createPublicKey(throwaway.privateKey) });
  return { token: `${input}.${signature}`, keys: ring };
}

/**
 * What a flawed car hands to verifyAccessToken: the token and a context in which the one check each flaw
 * disables cannot fail (its input is made to agree with the token). Without flaws both come back unchanged.
 */
export function flawedVerification(
  token: string,
  ctx: VerifyContext,
  flaws: Flaws,
): { token: string; ctx: VerifyContext } {
  if (flaws.size === 0) return { token, ctx };
  const claims = peekClaims(token) ?? {};
  const next: VerifyContext = { ...ctx };
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);
  const skew = ctx.skewS ?? CLOCK_SKEW_S;
  if (flaws.has('skip-aud')) next.vin = str(claims.aud) ?? ctx.vin;
  if (
    flaws.has('skip-act') &&
    (claims.act === 'unlock' || claims.act === 'lock' || claims.act === 'revoke')
  ) {
    next.action = claims.act;
  }
  if (flaws.has('skip-binding')) {
    next.commandId = str(claims.cid) ?? ctx.commandId;
    next.deliveryId = str(claims.sub) ?? ctx.deliveryId;
  }
  if (flaws.has('skip-iss')) next.issuer = str(claims.iss) ?? ctx.issuer;
  if (flaws.has('skip-lifetime')) next.maxLifetimeS = Number.MAX_SAFE_INTEGER;
  if (ctx.now !== null) {
    let now = ctx.now;
    const nbf = num(claims.nbf);
    const exp = num(claims.exp);
    if (flaws.has('skip-nbf') && nbf !== undefined) now = Math.max(now, (nbf - skew) * 1000);
    if (flaws.has('skip-exp') && exp !== undefined) now = Math.min(now, (exp + skew - 1) * 1000);
    next.now = now;
    // The replay memory still records the car's real time as its last good time.
    const real = ctx.now;
    next.replay = { claim: (jti, expMs) => ctx.replay.claim(jti, expMs, real) };
  }
  if (flaws.has('skip-replay')) {
    const inner = next.replay;
    next.replay = {
      claim: (jti, expMs, nowMs) => {
        const r = inner.claim(jti, expMs, nowMs);
        return r === 'replayed' ? 'ok' : r;
      },
    };
  }
  if (flaws.has('ignore-revoke')) next.isRevoked = () => false;
  if (flaws.has('accept-retired-key')) {
    next.keys = new Map([...ctx.keys].map(([kid, { retiredAt: _retired, ...key }]) => [kid, key]));
  }
  const header = peekHeader(token);
  const trusted = typeof header?.kid === 'string' ? next.keys.get(header.kid) : undefined;
  const segments = token.split('.');
  const canonicalSignature =
    segments.length === 3 &&
    segments[2] !== '' &&
    b64(Buffer.from(segments[2] ?? '', 'base64url')) === segments[2];
  if (header && trusted && canonicalSignature) {
    const forged =
      (flaws.has('skip-signature') && header.alg === 'EdDSA') ||
      (flaws.has('accept-hs256') && header.alg === 'HS256' && hs256Holds(token, trusted.publicKey));
    if (forged) {
      const r = resigned(token, header, trusted, next.keys);
      return { token: r.token, ctx: { ...next, keys: r.keys } };
    }
  }
  return { token, ctx: next };
}

/** The seq a flawed car compares an announcement's with: 0 under accept-stale-keys, so no seq is stale. */
export const flawedKeySeq = (seq: number, flaws: Flaws): number => (flaws.has('accept-stale-keys') ? 0 : seq);

/** A car's outcome memory under no-disown: it answers what it knows and never disowns a command. */
export function flawedOutcomeMemory(memory: OutcomeMemory, flaws: Flaws): OutcomeMemory {
  if (!flaws.has('no-disown')) return memory;
  return { ...memory, answer: (ids) => memory.lookup(ids), disowned: () => false };
}

/** Parses flaw names, refusing unknown ones; the caller turns the error into its own usage error. */
export function parseFlaws(names: readonly string[]): Flaws {
  const flaws = new Set<Flaw>();
  for (const name of names) {
    const parsed = FlawSchema.safeParse(name);
    if (!parsed.success) throw new RangeError(`unknown flaw ${name} (one of ${FLAWS.join(', ')})`);
    flaws.add(parsed.data);
  }
  return flaws;
}
