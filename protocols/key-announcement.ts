// Owns key announcements: the signed JWKS that rotates the gateway keys a car trusts, and its verification (TOKEN.md §8).
import type { KeyObject } from 'node:crypto';
import { CompactSign } from 'jose';
import { z } from 'zod';
import { type KeysErrorCode, TokenError } from './errors.ts';
import {
  GATEWAY_JWS_ALG,
  type KeyRing,
  KID_PATTERN,
  parseJsonObject,
  stepRunner,
  type VerifyStep,
  verifyGatewayJws,
} from './jws.ts';
import { kidForJwk, type TrustedJwk, TrustedJwkSchema } from './keys.ts';

export const KEYS_TYP = 'vehicle-keys+jwt';
export const MAX_ANNOUNCEMENT_BYTES = 8192;

export const KeyAnnouncementSchema = z.strictObject({
  iss: z.string().min(1).max(128),
  /** Increases with every announcement; a car accepts only a seq above the one it holds. */
  seq: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  /** When the gateway signed it, seconds; informative. */
  iat: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  /** The complete set the car trusts afterwards; a key left out is no longer trusted. */
  keys: z.array(TrustedJwkSchema).min(1).max(16),
});
export type KeyAnnouncement = z.infer<typeof KeyAnnouncementSchema>;

/** Steps 9-14 of an announcement, after steps 1-8 of TOKEN.md §5 with typ vehicle-keys+jwt (TOKEN.md §8.2). */
export const ANNOUNCEMENT_STEPS = [
  { step: 'payload', codes: ['KEYS_PAYLOAD_INVALID'] },
  { step: 'clock', codes: ['CLOCK_UNKNOWN'] },
  { step: 'iss', codes: ['TOKEN_ISSUER_MISMATCH'] },
  { step: 'seq', codes: ['KEYS_STALE'] },
  { step: 'retirement', codes: ['KEYS_RETIREMENT_LIFTED'] },
  { step: 'active-key', codes: ['KEYS_NO_ACTIVE_KEY'] },
] as const satisfies ReadonlyArray<{ step: string; codes: readonly KeysErrorCode[] }>;

export interface AnnouncementContext {
  /** The keys the car trusts now; one of them, not retired, must have signed the announcement. */
  keys: KeyRing;
  issuer: string;
  /** The seq of the announcement the car last accepted; 0 for the enrollment file. */
  seq: number;
  /** The car's time in ms, or null when it does not know it. */
  now: number | null;
}

export type AnnouncementVerdict =
  | { ok: true; announcement: KeyAnnouncement; kid: string; steps: VerifyStep[] }
  | { ok: false; code: KeysErrorCode; message: string; steps: VerifyStep[] };

export interface MintAnnouncementInput {
  privateKey: KeyObject;
  kid: string;
  announcement: KeyAnnouncement;
}

export async function mintKeyAnnouncement({
  privateKey,
  kid,
  announcement,
}: MintAnnouncementInput): Promise<string> {
  const valid = KeyAnnouncementSchema.parse(announcement);
  if (!KID_PATTERN.test(kid)) throw new TokenError('TOKEN_KID_UNKNOWN', 'kid syntax');
  return new CompactSign(new TextEncoder().encode(JSON.stringify(valid)))
    .setProtectedHeader({ alg: GATEWAY_JWS_ALG, typ: KEYS_TYP, kid })
    .sign(privateKey);
}

const retiredAtMs = (jwk: TrustedJwk): number | undefined =>
  jwk.retiredAt === undefined ? undefined : Date.parse(jwk.retiredAt);

/**
 * Verifies an announcement as the car does. It passes only when a key the car trusts now, and that is not
 * retired, signed it; its seq is above the car's; it does not lift or postpone a retirement the car knows of;
 * and it leaves the car at least one key that is not retired. The car then replaces its keys with it.
 */
export async function verifyKeyAnnouncement(
  jws: string,
  ctx: AnnouncementContext,
): Promise<AnnouncementVerdict> {
  const steps: VerifyStep[] = [];
  const runner = stepRunner(steps);
  const { run, runAsync } = runner;
  try {
    const verified = await verifyGatewayJws(
      jws,
      { typ: KEYS_TYP, maxBytes: MAX_ANNOUNCEMENT_BYTES },
      ctx.keys,
      ctx.now,
      runner,
    );
    const announcement = await runAsync('payload', async () => {
      const parsed = KeyAnnouncementSchema.safeParse(
        parseJsonObject(verified.payload, 'KEYS_PAYLOAD_INVALID', 'payload'),
      );
      if (!parsed.success) {
        throw new TokenError(
          'KEYS_PAYLOAD_INVALID',
          `member ${parsed.error.issues[0]?.path.join('.') ?? ''}`,
        );
      }
      const kids = new Set<string>();
      for (const jwk of parsed.data.keys) {
        // A kid is the key's RFC 7638 thumbprint, so one kid can never name two keys.
        if (kids.has(jwk.kid) || (await kidForJwk(jwk)) !== jwk.kid) {
          throw new TokenError(
            'KEYS_PAYLOAD_INVALID',
            `kid ${jwk.kid} is not its key's thumbprint or repeats`,
          );
        }
        kids.add(jwk.kid);
      }
      return parsed.data;
    });
    const now = run('clock', () => {
      if (ctx.now === null) throw new TokenError('CLOCK_UNKNOWN', 'car time unknown');
      return ctx.now;
    });
    run('iss', () => {
      if (announcement.iss !== ctx.issuer)
        throw new TokenError('TOKEN_ISSUER_MISMATCH', 'iss is another issuer');
    });
    run('seq', () => {
      if (announcement.seq <= ctx.seq)
        throw new TokenError('KEYS_STALE', `seq ${announcement.seq} ≤ ${ctx.seq}`);
    });
    run('retirement', () => {
      for (const jwk of announcement.keys) {
        const known = ctx.keys.get(jwk.kid)?.retiredAt;
        const next = retiredAtMs(jwk);
        if (known !== undefined && (next === undefined || next > known)) {
          throw new TokenError('KEYS_RETIREMENT_LIFTED', `kid ${jwk.kid}`);
        }
      }
    });
    run('active-key', () => {
      if (!announcement.keys.some((jwk) => (retiredAtMs(jwk) ?? Number.POSITIVE_INFINITY) > now)) {
        throw new TokenError('KEYS_NO_ACTIVE_KEY', 'every key would be retired');
      }
    });
    return { ok: true, announcement, kid: verified.kid, steps };
  } catch (err) {
    if (err instanceof TokenError) {
      return { ok: false, code: err.code as KeysErrorCode, message: err.message, steps };
    }
    throw err;
  }
}
