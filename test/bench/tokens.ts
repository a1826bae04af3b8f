// Owns phase 6: protocols/token.ts minting and verifying against a reference run of jose with the same checks,
// and node:crypto's bare Ed25519 sign and verify as the floor under both.
import { type KeyObject, sign, verify } from 'node:crypto';
import { jwtVerify, SignJWT } from 'jose';
import {
  buildClaims,
  CLOCK_SKEW_S,
  type KeyRing,
  KID_PATTERN,
  MAX_TOKEN_LIFETIME_S,
  mintAccessToken,
  type ReplayGuard,
  TOKEN_ALG,
  TOKEN_ISSUER,
  TOKEN_TYP,
  type TokenClaims,
  verifyAccessToken,
} from '../../protocols/token.ts';
import { benchVin } from './fleet-data.ts';

export interface TokenRun {
  ops: number;
  /** Operations per second. */
  mint: { ours: number; jose: number; ed25519: number };
  verify: { ours: number; jose: number; ed25519: number };
}

/** Remembers every jti; the cars' bounded store is not what this phase measures. */
const setGuard = (): ReplayGuard => {
  const seen = new Set<string>();
  return {
    claim(jti) {
      if (seen.has(jti)) return 'replayed';
      seen.add(jti);
      return 'ok';
    },
  };
};

const HEADER_MEMBERS = new Set(['alg', 'typ', 'kid']);

/** No delivery is revoked in this phase; the lookup is still made, as the car makes it. */
const revoked = new Set<string>();
const isRevoked = (deliveryId: string): boolean => revoked.has(deliveryId);

/**
 * jose's jwtVerify with the checks verifyAccessToken makes: alg allowlist, typ, header members, pinned kid,
 * signature, iss, aud, nbf/exp with the same skew, then act, the command binding, lifetime, revocation and
 * single use.
 */
async function joseVerify(
  token: string,
  keys: KeyRing,
  expect: TokenClaims,
  replay: ReplayGuard,
): Promise<void> {
  const { payload, protectedHeader } = await jwtVerify(
    token,
    (header) => {
      if (typeof header.kid !== 'string' || !KID_PATTERN.test(header.kid)) throw new Error('kid syntax');
      const key = keys.get(header.kid);
      if (!key) throw new Error('kid not pinned');
      return key.publicKey;
    },
    {
      algorithms: [TOKEN_ALG],
      typ: TOKEN_TYP,
      issuer: TOKEN_ISSUER,
      audience: expect.aud,
      clockTolerance: CLOCK_SKEW_S,
      requiredClaims: ['iss', 'sub', 'jti', 'iat', 'nbf', 'exp'],
    },
  );
  if (Object.keys(protectedHeader).some((k) => !HEADER_MEMBERS.has(k))) throw new Error('header members');
  const claims = payload as unknown as TokenClaims;
  if (claims.act !== expect.act) throw new Error('act');
  if (claims.cid !== expect.cid || claims.sub !== expect.sub) throw new Error('binding');
  if (claims.exp <= claims.nbf || claims.exp - claims.nbf > MAX_TOKEN_LIFETIME_S || claims.iat > claims.nbf) {
    throw new Error('lifetime');
  }
  if (isRevoked(claims.sub)) throw new Error('revoked');
  if (replay.claim(claims.jti, (claims.exp + CLOCK_SKEW_S) * 1000, Date.now()) !== 'ok') {
    throw new Error('replayed');
  }
}

async function timed(ops: number, op: (i: number) => unknown): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < ops; i++) await op(i);
  return (ops * 1000) / (performance.now() - started);
}

export async function runTokenPhase(input: {
  ops: number;
  privateKey: KeyObject;
  publicKey: KeyObject;
  kid: string;
}): Promise<TokenRun> {
  const { ops, privateKey, kid } = input;
  const keys: KeyRing = new Map([[kid, { kid, publicKey: input.publicKey }]]);
  const now = Date.now();
  const vin = benchVin(0);
  const claimsOf = (i: number): TokenClaims =>
    buildClaims({
      issuer: TOKEN_ISSUER,
      vin,
      deliveryId: `dlv_${i}`,
      action: i % 2 === 0 ? 'unlock' : 'lock',
      commandId: `cmd_${i}`,
      jti: `jti_${now}_${i}`,
      nowMs: now,
      ttlS: 60,
      notAfterMs: now + 3_600_000,
    });
  const claims = Array.from({ length: ops }, (_, i) => claimsOf(i));
  const tokens: string[] = new Array(ops);

  const mintOurs = await timed(ops, async (i) => {
    tokens[i] = await mintAccessToken({ privateKey, kid, claims: claims[i] as TokenClaims });
  });
  const mintJose = await timed(ops, (i) =>
    new SignJWT({ ...(claims[i] as TokenClaims) })
      .setProtectedHeader({ alg: TOKEN_ALG, typ: TOKEN_TYP, kid })
      .sign(privateKey),
  );
  const data = Buffer.from(tokens[0]?.split('.').slice(0, 2).join('.') ?? '');
  const signature = sign(null, data, privateKey);
  const rawSign = await timed(ops, () => sign(null, data, privateKey));

  let refused = 0;
  const oursGuard = setGuard();
  const verifyOurs = await timed(ops, async (i) => {
    const c = claims[i] as TokenClaims;
    const verdict = await verifyAccessToken(tokens[i] as string, {
      keys,
      issuer: TOKEN_ISSUER,
      vin,
      action: c.act,
      commandId: c.cid,
      deliveryId: c.sub,
      now: Date.now(),
      replay: oursGuard,
      isRevoked,
    });
    if (!verdict.ok) refused++;
  });
  const joseGuard = setGuard();
  const verifyJose = await timed(ops, (i) =>
    joseVerify(tokens[i] as string, keys, claims[i] as TokenClaims, joseGuard).catch(() => {
      refused++;
    }),
  );
  const rawVerify = await timed(ops, () => verify(null, data, input.publicKey, signature));
  if (refused > 0) throw new Error(`phase 6: ${refused} valid tokens were refused`);
  return {
    ops,
    mint: { ours: mintOurs, jose: mintJose, ed25519: rawSign },
    verify: { ours: verifyOurs, jose: verifyJose, ed25519: rawVerify },
  };
}
