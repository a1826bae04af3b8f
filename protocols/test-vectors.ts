// Owns building the published test vectors (protocols/vectors/) from the public test keys; expectations are written by hand.
import { createHmac, createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { signAck } from './ack-signature.ts';
import { compactJws, malleateSignature, nonCanonicalSegment } from './forge.ts';
import { KEYS_TYP } from './key-announcement.ts';
import { kidForJwk, type TrustedJwk, type TrustedKeysFile } from './keys.ts';
import type { Ack, TokenAction, UnsignedAck } from './messages.ts';
import { CLOCK_SKEW_S, MAX_TOKEN_BYTES, MAX_TOKEN_LIFETIME_S, TOKEN_ISSUER, TOKEN_TYP } from './token.ts';

/** The vectors' fixed "now": 2026-01-01T12:00:00Z. */
export const VECTOR_NOW = Date.parse('2026-01-01T12:00:00Z');
export const VECTOR_VIN = '1G1ZE5ST5KF100231';
const OTHER_VIN = 'YV1A22MK3F1900345';
const COMMAND_ID = 'cmd_vec_1';
const DELIVERY_ID = 'dlv_vec_1';
const NOW_S = VECTOR_NOW / 1000;
const RETIRED_AT = VECTOR_NOW - 3_600_000;
const OVERLAP_ENDS_AT = VECTOR_NOW + 600_000;

const PrivateJwk = z.object({
  kty: z.enum(['OKP', 'EC']),
  crv: z.enum(['Ed25519', 'P-256']),
  d: z.string(),
  x: z.string(),
  y: z.string().optional(),
});
export const TestKeysFileSchema = z.object({
  warning: z.string(),
  keys: z.object({
    'gateway-a': PrivateJwk,
    'gateway-b': PrivateJwk,
    'gateway-retired': PrivateJwk,
    'gateway-overlap': PrivateJwk,
    attacker: PrivateJwk,
    'car-a': PrivateJwk,
    'car-b': PrivateJwk,
  }),
});
export type TestKeysFile = z.infer<typeof TestKeysFileSchema>;
type KeyName = keyof TestKeysFile['keys'];

export type Expectation = { ok: true } | { ok: false; code: string; step: string };

export interface TokenVector {
  name: string;
  token: string;
  /** The command the token arrives in: what the car compares act, cid and sub with. */
  action: TokenAction;
  commandId: string;
  deliveryId: string;
  /** The car's time, ms; null when it does not know it. */
  now: number | null;
  /** Deliveries the car holds as revoked. */
  revoked: string[];
  /** jti values the car has already accepted. */
  seenJtis: string[];
  /** The car's replay store is full of unexpired entries. */
  replayFull: boolean;
  expect: Expectation;
}

export interface AnnouncementVector {
  name: string;
  announcement: string;
  now: number | null;
  /** The seq of the announcement the car holds. */
  seq: number;
  expect: Expectation;
}

export interface CommandVector {
  name: string;
  /** The MQTT payload on vehicles/{VIN}/commands, as bytes in UTF-8. */
  payload: string;
  /** null: no ack (the command could not be named); otherwise the ack's outcome, reason and lock state. */
  expect: null | { outcome: 'executed' | 'refused'; reason?: string; locked: boolean };
}

export interface AckVector {
  name: string;
  ack: Ack;
  /** Which public key the gateway pinned for the car. */
  pinned: 'car-a';
  expect: { ok: true } | { ok: false; code: string };
}

interface Common {
  description: string;
  warning: string;
  vin: string;
  issuer: string;
  now: number;
  nowIso: string;
  skewS: number;
  maxLifetimeS: number;
  /** The car's trust anchors for every case: gateway-a, gateway-retired and gateway-overlap. */
  trustedKeys: TrustedKeysFile;
}

export interface Vectors {
  tokens: Common & { cases: TokenVector[] };
  announcements: Common & { cases: AnnouncementVector[] };
  commands: Common & { cases: CommandVector[] };
  acks: {
    description: string;
    warning: string;
    publicKeys: Record<'car-a' | 'car-b', JsonWebKey>;
    cases: AckVector[];
  };
}

const b64 = (data: string | Buffer): string => Buffer.from(data).toString('base64url');
const compact = compactJws;
const malleate = malleateSignature;
const nonCanonical = nonCanonicalSegment;

export async function buildVectors(testKeys: TestKeysFile): Promise<Vectors> {
  const privateKey = (name: KeyName): KeyObject =>
    createPrivateKey({ key: testKeys.keys[name] as JsonWebKey, format: 'jwk' });
  const publicJwk = async (name: KeyName, retiredAt?: number): Promise<TrustedJwk> => {
    const { x } = testKeys.keys[name];
    const jwk: TrustedJwk = {
      kty: 'OKP',
      crv: 'Ed25519',
      x,
      kid: await kidForJwk({ kty: 'OKP', crv: 'Ed25519', x }),
    };
    return retiredAt === undefined ? jwk : { ...jwk, retiredAt: new Date(retiredAt).toISOString() };
  };
  const kid = async (name: KeyName): Promise<string> => (await publicJwk(name)).kid;
  const A = privateKey('gateway-a');
  const kidA = await kid('gateway-a');
  const trustedKeys: TrustedKeysFile = {
    keys: [
      await publicJwk('gateway-a'),
      await publicJwk('gateway-retired', RETIRED_AT),
      await publicJwk('gateway-overlap', OVERLAP_ENDS_AT),
    ],
  };
  const common = (description: string): Common => ({
    description,
    warning: testKeys.warning,
    vin: VECTOR_VIN,
    issuer: TOKEN_ISSUER,
    now: VECTOR_NOW,
    nowIso: new Date(VECTOR_NOW).toISOString(),
    skewS: CLOCK_SKEW_S,
    maxLifetimeS: MAX_TOKEN_LIFETIME_S,
    trustedKeys,
  });

  // ---- access tokens (TOKEN.md §5) ----
  let serial = 0;
  const claims = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
    iss: TOKEN_ISSUER,
    aud: VECTOR_VIN,
    sub: DELIVERY_ID,
    act: 'unlock',
    jti: `jti_vec_${++serial}`,
    cid: COMMAND_ID,
    iat: NOW_S,
    nbf: NOW_S,
    exp: NOW_S + 60,
    ...over,
  });
  const header = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
    alg: 'EdDSA',
    typ: TOKEN_TYP,
    kid: kidA,
    ...over,
  });
  const token = (h: unknown = header(), c: unknown = claims(), key: KeyObject = A): string =>
    compact(h, c, key);
  const refused = (code: string, step: string): Expectation => ({ ok: false, code, step });
  const ok: Expectation = { ok: true };
  const tv = (
    name: string,
    t: string,
    expect: Expectation,
    over: Partial<TokenVector> = {},
  ): TokenVector => ({
    name,
    token: t,
    action: 'unlock',
    commandId: COMMAND_ID,
    deliveryId: DELIVERY_ID,
    now: VECTOR_NOW,
    revoked: [],
    seenJtis: [],
    replayFull: false,
    expect,
    ...over,
  });
  const valid = token();
  const [vh, vp, vs] = valid.split('.') as [string, string, string];
  const flipped = Buffer.from(vs, 'base64url');
  flipped[10] = (flipped[10] as number) ^ 0x01;
  const publicA = createPublicKey(A);
  const spkiPem = publicA.export({ type: 'spki', format: 'pem' }) as string;
  const hs256 = (secret: Buffer | string): string => {
    const input = `${b64(JSON.stringify(header({ alg: 'HS256' })))}.${b64(JSON.stringify(claims()))}`;
    return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
  };
  const deep = `{"alg":"EdDSA","typ":"${TOKEN_TYP}","kid":"${kidA}","x":${'['.repeat(50)}${']'.repeat(50)}}`;
  const tokens: TokenVector[] = [
    tv('valid unlock: every check passes', valid, ok),
    tv('valid lock', token(header(), claims({ act: 'lock' })), ok, { action: 'lock' }),
    tv('valid revoke', token(header(), claims({ act: 'revoke' })), ok, { action: 'revoke' }),
    tv(
      'valid under a key in its overlap (retires in 10 min)',
      token(header({ kid: await kid('gateway-overlap') }), claims(), privateKey('gateway-overlap')),
      ok,
    ),
    tv('valid at the earliest accepted time (now = nbf - skew)', token(), ok, {
      now: (NOW_S - CLOCK_SKEW_S) * 1000,
    }),
    tv('valid at the latest accepted time (now = exp + skew - 1 s)', token(), ok, {
      now: (NOW_S + 60 + CLOCK_SKEW_S - 1) * 1000,
    }),
    tv('valid with the longest lifetime (300 s)', token(header(), claims({ exp: NOW_S + 300 })), ok),

    tv('2049 bytes', 'a'.repeat(MAX_TOKEN_BYTES + 1), refused('TOKEN_TOO_LARGE', 'size')),
    tv('two segments', `${vh}.${vp}`, refused('TOKEN_MALFORMED', 'structure')),
    tv('four segments', `${valid}.${vs}`, refused('TOKEN_MALFORMED', 'structure')),
    tv('empty signature segment', `${vh}.${vp}.`, refused('TOKEN_MALFORMED', 'structure')),
    tv('base64 padding', `${vh}.${vp}.${vs}==`, refused('TOKEN_MALFORMED', 'structure')),
    tv(
      'standard base64 alphabet (+ and /)',
      `${vh}.${vp}.${vs.replaceAll('-', '+').replaceAll('_', '/')}+/`,
      refused('TOKEN_MALFORMED', 'structure'),
    ),
    tv(
      'signature spelled non-canonically (unused bits set)',
      `${vh}.${vp}.${nonCanonical(vs)}`,
      refused('TOKEN_MALFORMED', 'structure'),
    ),
    tv('header is not JSON', token('{"alg":"EdDSA",'), refused('TOKEN_MALFORMED', 'structure')),
    tv('header is an array', token([header()]), refused('TOKEN_MALFORMED', 'structure')),
    tv(
      'header with a duplicate member (alg twice)',
      token(`{"alg":"none","alg":"EdDSA","typ":"${TOKEN_TYP}","kid":"${kidA}"}`),
      refused('TOKEN_MALFORMED', 'structure'),
    ),
    tv(
      'header with a duplicate member spelled with an escape',
      token(`{"alg":"EdDSA","\\u0061lg":"EdDSA","typ":"${TOKEN_TYP}","kid":"${kidA}"}`),
      refused('TOKEN_MALFORMED', 'structure'),
    ),
    tv('header nested 51 deep', token(deep), refused('TOKEN_MALFORMED', 'structure')),
    tv(
      'alg none',
      `${b64(JSON.stringify(header({ alg: 'none' })))}.${vp}.AAAA`,
      refused('TOKEN_ALG_NOT_ALLOWED', 'alg'),
    ),
    tv(
      'alg HS256 keyed with the raw gateway public key',
      hs256(Buffer.from(testKeys.keys['gateway-a'].x, 'base64url')),
      refused('TOKEN_ALG_NOT_ALLOWED', 'alg'),
    ),
    tv(
      'alg HS256 keyed with the gateway public key PEM',
      hs256(spkiPem),
      refused('TOKEN_ALG_NOT_ALLOWED', 'alg'),
    ),
    tv('alg RS256', token(header({ alg: 'RS256' })), refused('TOKEN_ALG_NOT_ALLOWED', 'alg')),
    tv('alg ES256', token(header({ alg: 'ES256' })), refused('TOKEN_ALG_NOT_ALLOWED', 'alg')),
    tv(
      'alg Ed25519 (the fully-specified name, not the one we pin)',
      token(header({ alg: 'Ed25519' })),
      refused('TOKEN_ALG_NOT_ALLOWED', 'alg'),
    ),
    tv('alg in lower case', token(header({ alg: 'eddsa' })), refused('TOKEN_ALG_NOT_ALLOWED', 'alg')),
    tv('alg missing', token({ typ: TOKEN_TYP, kid: kidA }), refused('TOKEN_ALG_NOT_ALLOWED', 'alg')),
    tv(
      'embedded jwk header (the attacker key)',
      token(
        header({ jwk: { kty: 'OKP', crv: 'Ed25519', x: testKeys.keys.attacker.x } }),
        claims(),
        privateKey('attacker'),
      ),
      refused('TOKEN_HEADER_FORBIDDEN', 'header-members'),
    ),
    tv(
      'jku header',
      token(header({ jku: 'https://attacker.example/jwks.json' })),
      refused('TOKEN_HEADER_FORBIDDEN', 'header-members'),
    ),
    tv(
      'x5u header',
      token(header({ x5u: 'https://attacker.example/cert.pem' })),
      refused('TOKEN_HEADER_FORBIDDEN', 'header-members'),
    ),
    tv('x5c header', token(header({ x5c: ['MIIB'] })), refused('TOKEN_HEADER_FORBIDDEN', 'header-members')),
    tv('crit header', token(header({ crit: ['exp'] })), refused('TOKEN_HEADER_FORBIDDEN', 'header-members')),
    tv(
      'b64 false (unencoded payload, RFC 7797)',
      token(header({ b64: false })),
      refused('TOKEN_HEADER_FORBIDDEN', 'header-members'),
    ),
    tv('typ missing', token({ alg: 'EdDSA', kid: kidA }), refused('TOKEN_TYP_INVALID', 'typ')),
    tv('typ JWT', token(header({ typ: 'JWT' })), refused('TOKEN_TYP_INVALID', 'typ')),
    tv('typ of a key announcement', token(header({ typ: KEYS_TYP })), refused('TOKEN_TYP_INVALID', 'typ')),
    tv('kid missing', token({ alg: 'EdDSA', typ: TOKEN_TYP }), refused('TOKEN_KID_UNKNOWN', 'kid')),
    tv(
      'kid not pinned',
      token(header({ kid: await kid('attacker') }), claims(), privateKey('attacker')),
      refused('TOKEN_KID_UNKNOWN', 'kid'),
    ),
    tv(
      'kid of a key not yet announced',
      token(header({ kid: await kid('gateway-b') }), claims(), privateKey('gateway-b')),
      refused('TOKEN_KID_UNKNOWN', 'kid'),
    ),
    tv(
      'kid with a path',
      token(header({ kid: '../../../../etc/passwd' })),
      refused('TOKEN_KID_UNKNOWN', 'kid'),
    ),
    tv('kid with SQL', token(header({ kid: "x' OR '1'='1" })), refused('TOKEN_KID_UNKNOWN', 'kid')),
    tv('kid __proto__', token(header({ kid: '__proto__' })), refused('TOKEN_KID_UNKNOWN', 'kid')),
    tv('kid constructor', token(header({ kid: 'constructor' })), refused('TOKEN_KID_UNKNOWN', 'kid')),
    tv('kid a number', token(header({ kid: 12345678 })), refused('TOKEN_KID_UNKNOWN', 'kid')),
    tv('kid of 65 characters', token(header({ kid: 'k'.repeat(65) })), refused('TOKEN_KID_UNKNOWN', 'kid')),
    tv(
      'kid retired an hour ago',
      token(header({ kid: await kid('gateway-retired') }), claims(), privateKey('gateway-retired')),
      refused('TOKEN_KID_RETIRED', 'kid-retired'),
    ),
    tv(
      'kid whose overlap has ended',
      token(
        header({ kid: await kid('gateway-overlap') }),
        claims({ iat: NOW_S + 600, nbf: NOW_S + 600, exp: NOW_S + 660 }),
        privateKey('gateway-overlap'),
      ),
      refused('TOKEN_KID_RETIRED', 'kid-retired'),
      { now: OVERLAP_ENDS_AT },
    ),
    tv(
      'one bit flipped in the signature',
      `${vh}.${vp}.${flipped.toString('base64url')}`,
      refused('TOKEN_SIGNATURE_INVALID', 'signature'),
    ),
    tv(
      'payload replaced after signing (aud of another car)',
      `${vh}.${b64(JSON.stringify(claims({ aud: OTHER_VIN })))}.${vs}`,
      refused('TOKEN_SIGNATURE_INVALID', 'signature'),
    ),
    tv(
      'header replaced after signing (same members, other spacing)',
      `${b64(JSON.stringify(header(), null, 1))}.${vp}.${vs}`,
      refused('TOKEN_SIGNATURE_INVALID', 'signature'),
    ),
    tv(
      'signed by another key under a pinned kid',
      token(header(), claims(), privateKey('attacker')),
      refused('TOKEN_SIGNATURE_INVALID', 'signature'),
    ),
    tv(
      'signature truncated to 63 bytes',
      `${vh}.${vp}.${Buffer.from(vs, 'base64url').subarray(0, 63).toString('base64url')}`,
      refused('TOKEN_SIGNATURE_INVALID', 'signature'),
    ),
    tv(
      'signature malleated (S + L)',
      `${vh}.${vp}.${malleate(vs)}`,
      refused('TOKEN_SIGNATURE_INVALID', 'signature'),
    ),
    tv(
      'signature all zeros',
      `${vh}.${vp}.${b64(Buffer.alloc(64))}`,
      refused('TOKEN_SIGNATURE_INVALID', 'signature'),
    ),
    tv(
      'aud an array holding the VIN',
      token(header(), claims({ aud: [VECTOR_VIN] })),
      refused('TOKEN_CLAIMS_INVALID', 'claims'),
    ),
    tv('act missing', token(header(), claims({ act: undefined })), refused('TOKEN_CLAIMS_INVALID', 'claims')),
    tv(
      'act outside the allowed set',
      token(header(), claims({ act: 'open_trunk' })),
      refused('TOKEN_CLAIMS_INVALID', 'claims'),
    ),
    tv(
      'an extra claim',
      token(header(), claims({ scope: 'all' })),
      refused('TOKEN_CLAIMS_INVALID', 'claims'),
    ),
    tv(
      'a duplicate claim (aud twice)',
      token(
        header(),
        `{"iss":"${TOKEN_ISSUER}","aud":"${OTHER_VIN}","aud":"${VECTOR_VIN}","sub":"${DELIVERY_ID}","act":"unlock","jti":"jti_dup","cid":"${COMMAND_ID}","iat":${NOW_S},"nbf":${NOW_S},"exp":${NOW_S + 60}}`,
      ),
      refused('TOKEN_CLAIMS_INVALID', 'claims'),
    ),
    tv(
      'exp a string',
      token(header(), claims({ exp: String(NOW_S + 60) })),
      refused('TOKEN_CLAIMS_INVALID', 'claims'),
    ),
    tv(
      'exp fractional',
      token(header(), claims({ exp: NOW_S + 60.5 })),
      refused('TOKEN_CLAIMS_INVALID', 'claims'),
    ),
    tv(
      'sub with a path',
      token(header(), claims({ sub: '../dlv' })),
      refused('TOKEN_CLAIMS_INVALID', 'claims'),
    ),
    tv('claims not JSON', token(header(), '{"iss":'), refused('TOKEN_CLAIMS_INVALID', 'claims')),
    tv('claims an array', token(header(), [claims()]), refused('TOKEN_CLAIMS_INVALID', 'claims')),
    tv('the car does not know the time', token(), refused('CLOCK_UNKNOWN', 'clock'), { now: null }),
    tv(
      'another issuer',
      token(header(), claims({ iss: 'urn:gateway:elsewhere' })),
      refused('TOKEN_ISSUER_MISMATCH', 'iss'),
    ),
    tv(
      'aud another VIN',
      token(header(), claims({ aud: OTHER_VIN })),
      refused('TOKEN_AUDIENCE_MISMATCH', 'aud'),
    ),
    tv(
      'a lock token sent as unlock',
      token(header(), claims({ act: 'lock' })),
      refused('TOKEN_ACTION_MISMATCH', 'act'),
    ),
    tv(
      'a revoke token sent as unlock',
      token(header(), claims({ act: 'revoke' })),
      refused('TOKEN_ACTION_MISMATCH', 'act'),
    ),
    tv(
      'cid of another command',
      token(header(), claims({ cid: 'cmd_vec_2' })),
      refused('TOKEN_BINDING_MISMATCH', 'binding'),
    ),
    tv(
      'sub of another delivery',
      token(header(), claims({ sub: 'dlv_vec_2' })),
      refused('TOKEN_BINDING_MISMATCH', 'binding'),
    ),
    tv(
      'lifetime 301 s',
      token(header(), claims({ exp: NOW_S + 301 })),
      refused('TOKEN_LIFETIME_EXCEEDED', 'lifetime'),
    ),
    tv(
      'lifetime 0 (exp = nbf)',
      token(header(), claims({ exp: NOW_S })),
      refused('TOKEN_LIFETIME_EXCEEDED', 'lifetime'),
    ),
    tv(
      'iat after nbf',
      token(header(), claims({ iat: NOW_S + 1 })),
      refused('TOKEN_LIFETIME_EXCEEDED', 'lifetime'),
    ),
    tv('nbf beyond the skew (now = nbf - skew - 1 s)', token(), refused('TOKEN_NOT_YET_VALID', 'nbf'), {
      now: (NOW_S - CLOCK_SKEW_S - 1) * 1000,
    }),
    tv('exp beyond the skew (now = exp + skew)', token(), refused('TOKEN_EXPIRED', 'exp'), {
      now: (NOW_S + 60 + CLOCK_SKEW_S) * 1000,
    }),
    tv('a revoked delivery', token(), refused('TOKEN_REVOKED', 'revocation'), { revoked: [DELIVERY_ID] }),
    tv(
      'a jti already used',
      token(header(), claims({ jti: 'jti_seen' })),
      refused('TOKEN_REPLAYED', 'replay'),
      {
        seenJtis: ['jti_seen'],
      },
    ),
    tv('the replay store is full', token(), refused('REPLAY_STORE_FULL', 'replay'), { replayFull: true }),
  ];

  // ---- key announcements (TOKEN.md §8) ----
  const B = await publicJwk('gateway-b');
  const jwkA = await publicJwk('gateway-a');
  const retired = await publicJwk('gateway-retired', RETIRED_AT);
  const overlap = await publicJwk('gateway-overlap', OVERLAP_ENDS_AT);
  const payload = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
    iss: TOKEN_ISSUER,
    seq: 2,
    iat: NOW_S,
    keys: [jwkA, B, retired, overlap],
    ...over,
  });
  const kh = (over: Record<string, unknown> = {}) => header({ typ: KEYS_TYP, ...over });
  const announce = (p: unknown = payload(), h: unknown = kh(), key: KeyObject = A) => compact(h, p, key);
  const av = (
    name: string,
    a: string,
    expect: Expectation,
    over: Partial<AnnouncementVector> = {},
  ): AnnouncementVector => ({
    name,
    announcement: a,
    now: VECTOR_NOW,
    seq: 1,
    expect,
    ...over,
  });
  const announcements: AnnouncementVector[] = [
    av('valid: adds gateway-b', announce(), ok),
    av(
      'valid: adds gateway-b and retires gateway-a in an hour',
      announce(
        payload({ keys: [{ ...jwkA, retiredAt: new Date(VECTOR_NOW + 3_600_000).toISOString() }, B] }),
      ),
      ok,
    ),
    av(
      'valid: brings a retirement forward',
      announce(
        payload({ keys: [jwkA, { ...overlap, retiredAt: new Date(VECTOR_NOW + 60_000).toISOString() }] }),
      ),
      ok,
    ),
    av('valid: drops keys (a key left out is no longer trusted)', announce(payload({ keys: [jwkA] })), ok),
    av('an access token presented as an announcement', valid, refused('TOKEN_TYP_INVALID', 'typ')),
    av(
      'signed by the retired key',
      announce(payload(), kh({ kid: retired.kid }), privateKey('gateway-retired')),
      refused('TOKEN_KID_RETIRED', 'kid-retired'),
    ),
    av(
      'signed by the key it announces (not yet trusted)',
      announce(payload(), kh({ kid: B.kid }), privateKey('gateway-b')),
      refused('TOKEN_KID_UNKNOWN', 'kid'),
    ),
    av(
      'signed by another key under a pinned kid',
      announce(payload(), kh(), privateKey('attacker')),
      refused('TOKEN_SIGNATURE_INVALID', 'signature'),
    ),
    av(
      'jku header',
      announce(payload(), kh({ jku: 'https://attacker.example/jwks.json' })),
      refused('TOKEN_HEADER_FORBIDDEN', 'header-members'),
    ),
    av('an extra member', announce(payload({ note: 'x' })), refused('KEYS_PAYLOAD_INVALID', 'payload')),
    av(
      "a kid that is not its key's thumbprint",
      announce(payload({ keys: [jwkA, { ...B, kid: 'not-the-thumbprint' }] })),
      refused('KEYS_PAYLOAD_INVALID', 'payload'),
    ),
    av(
      'the same key twice',
      announce(payload({ keys: [jwkA, B, B] })),
      refused('KEYS_PAYLOAD_INVALID', 'payload'),
    ),
    av(
      'seventeen keys',
      announce(payload({ keys: Array.from({ length: 17 }, () => jwkA) })),
      refused('KEYS_PAYLOAD_INVALID', 'payload'),
    ),
    av(
      'an RSA key',
      announce(payload({ keys: [jwkA, { kty: 'RSA', n: 'AQAB', e: 'AQAB', kid: 'rsa-key-0001' }] })),
      refused('KEYS_PAYLOAD_INVALID', 'payload'),
    ),
    av('the car does not know the time', announce(), refused('CLOCK_UNKNOWN', 'clock'), { now: null }),
    av(
      'another issuer',
      announce(payload({ iss: 'urn:gateway:elsewhere' })),
      refused('TOKEN_ISSUER_MISMATCH', 'iss'),
    ),
    av('seq the car already holds (a replay)', announce(payload({ seq: 1 })), refused('KEYS_STALE', 'seq')),
    av("seq below the car's (a rollback)", announce(payload({ seq: 3 })), refused('KEYS_STALE', 'seq'), {
      seq: 7,
    }),
    av(
      'lifts the retirement of gateway-retired',
      announce(payload({ keys: [jwkA, { ...retired, retiredAt: undefined }] })),
      refused('KEYS_RETIREMENT_LIFTED', 'retirement'),
    ),
    av(
      'postpones the retirement of gateway-overlap',
      announce(
        payload({ keys: [jwkA, { ...overlap, retiredAt: new Date(OVERLAP_ENDS_AT + 1_000).toISOString() }] }),
      ),
      refused('KEYS_RETIREMENT_LIFTED', 'retirement'),
    ),
    av(
      'leaves no key that is not retired',
      announce(payload({ keys: [{ ...jwkA, retiredAt: new Date(VECTOR_NOW).toISOString() }, retired] })),
      refused('KEYS_NO_ACTIVE_KEY', 'active-key'),
    ),
  ];

  // ---- whole command payloads through a car (PROTOCOL.md §3.1, TOKEN.md §5, §7) ----
  const envelope = (over: Record<string, unknown> = {}, t: string = token()): string =>
    JSON.stringify({
      v: 1,
      type: 'command',
      commandId: COMMAND_ID,
      deliveryId: DELIVERY_ID,
      action: 'unlock',
      token: t,
      ...over,
    });
  const executed = (locked: boolean) => ({ outcome: 'executed' as const, locked });
  const refusedAck = (reason: string) => ({ outcome: 'refused' as const, reason, locked: true });
  const commands: CommandVector[] = [
    { name: 'valid unlock', payload: envelope(), expect: executed(false) },
    {
      name: 'valid lock',
      payload: envelope({ action: 'lock' }, token(header(), claims({ act: 'lock' }))),
      expect: executed(true),
    },
    {
      name: 'valid revoke',
      payload: envelope({ action: 'revoke' }, token(header(), claims({ act: 'revoke' }))),
      expect: executed(true),
    },
    {
      name: 'valid key announcement',
      payload: JSON.stringify({ v: 1, type: 'keys', commandId: COMMAND_ID, announcement: announce() }),
      expect: executed(true),
    },
    {
      name: 'envelope action differs from act',
      payload: envelope({ action: 'lock' }),
      expect: refusedAck('TOKEN_ACTION_MISMATCH'),
    },
    {
      name: 'envelope commandId differs from cid',
      payload: envelope({ commandId: 'cmd_vec_2' }),
      expect: refusedAck('TOKEN_BINDING_MISMATCH'),
    },
    {
      name: 'envelope deliveryId differs from sub',
      payload: envelope({ deliveryId: 'dlv_vec_2' }),
      expect: refusedAck('TOKEN_BINDING_MISMATCH'),
    },
    {
      name: 'token of 3000 characters',
      payload: envelope({}, 'a'.repeat(3000)),
      expect: refusedAck('TOKEN_TOO_LARGE'),
    },
    {
      name: 'unknown envelope member',
      payload: envelope({ priority: 'high' }),
      expect: refusedAck('COMMAND_MALFORMED'),
    },
    { name: 'protocol version 2', payload: envelope({ v: 2 }), expect: refusedAck('COMMAND_MALFORMED') },
    {
      name: 'action outside the set',
      payload: envelope({ action: 'open_trunk' }),
      expect: refusedAck('COMMAND_MALFORMED'),
    },
    {
      name: 'duplicate commandId members',
      payload: envelope().replace('"commandId":', '"commandId":"cmd_vec_9","commandId":'),
      expect: null,
    },
    { name: 'not JSON', payload: envelope().slice(0, -1), expect: null },
    { name: 'commandId with a path', payload: envelope({ commandId: '../cmd' }), expect: null },
  ];

  // ---- signed acks (TOKEN.md §9) ----
  const carA = privateKey('car-a');
  const carB = privateKey('car-b');
  const unsigned: UnsignedAck = {
    v: 1,
    type: 'ack',
    vin: VECTOR_VIN,
    commandId: COMMAND_ID,
    deliveryId: DELIVERY_ID,
    action: 'lock',
    outcome: 'executed',
    locked: true,
    at: VECTOR_NOW + 420,
  };
  const signedA = signAck(unsigned, carA);
  const [sigHeader, sigValue] = signedA.sig.split('..') as [string, string];
  const reordered = Object.fromEntries(Object.entries(signedA).reverse()) as Ack;
  const otherHeader = (h: Record<string, unknown>): string => `${b64(JSON.stringify(h))}..${sigValue}`;
  const acks: AckVector[] = [
    { name: 'valid: executed, locked', ack: signedA, pinned: 'car-a', expect: { ok: true } },
    {
      name: 'valid: refused with a reason',
      ack: signAck({ ...unsigned, action: 'unlock', outcome: 'refused', reason: 'TOKEN_EXPIRED' }, carA),
      pinned: 'car-a',
      expect: { ok: true },
    },
    {
      name: 'valid: members in another order (the signature covers the canonical form)',
      ack: reordered,
      pinned: 'car-a',
      expect: { ok: true },
    },
    {
      name: 'locked changed after signing',
      ack: { ...signedA, locked: false },
      pinned: 'car-a',
      expect: { ok: false, code: 'ACK_SIGNATURE_INVALID' },
    },
    {
      name: 'commandId changed after signing (an old ack re-sent for a new command)',
      ack: { ...signedA, commandId: 'cmd_vec_2' },
      pinned: 'car-a',
      expect: { ok: false, code: 'ACK_SIGNATURE_INVALID' },
    },
    {
      name: 'at changed after signing',
      ack: { ...signedA, at: VECTOR_NOW + 421 },
      pinned: 'car-a',
      expect: { ok: false, code: 'ACK_SIGNATURE_INVALID' },
    },
    {
      name: 'signed by another car',
      ack: signAck(unsigned, carB),
      pinned: 'car-a',
      expect: { ok: false, code: 'ACK_SIGNATURE_INVALID' },
    },
    {
      name: 'signature truncated to 63 bytes',
      ack: { ...signedA, sig: `${sigHeader}..${b64(Buffer.from(sigValue, 'base64url').subarray(0, 63))}` },
      pinned: 'car-a',
      expect: { ok: false, code: 'ACK_SIGNATURE_INVALID' },
    },
    {
      name: 'header alg ES384',
      ack: { ...signedA, sig: otherHeader({ alg: 'ES384', typ: 'vehicle-ack+jws' }) },
      pinned: 'car-a',
      expect: { ok: false, code: 'ACK_SIGNATURE_MALFORMED' },
    },
    {
      name: 'header alg none',
      ack: { ...signedA, sig: otherHeader({ alg: 'none', typ: 'vehicle-ack+jws' }) },
      pinned: 'car-a',
      expect: { ok: false, code: 'ACK_SIGNATURE_MALFORMED' },
    },
    {
      name: 'header with an embedded jwk',
      ack: { ...signedA, sig: otherHeader({ alg: 'ES256', typ: 'vehicle-ack+jws', jwk: { kty: 'EC' } }) },
      pinned: 'car-a',
      expect: { ok: false, code: 'ACK_SIGNATURE_MALFORMED' },
    },
  ];
  const publicOf = (name: 'car-a' | 'car-b'): JsonWebKey => {
    const { kty, crv, x, y } = testKeys.keys[name];
    return { kty, crv, x, y };
  };

  return {
    tokens: {
      ...common(
        "Access tokens: verify each with the context and the case's command; expect says the verdict and the failing step (TOKEN.md §5).",
      ),
      cases: tokens,
    },
    announcements: {
      ...common("Key announcements: verify each against trustedKeys, the case's seq and now (TOKEN.md §8)."),
      cases: announcements,
    },
    commands: {
      ...common(
        'Command payloads, each to a fresh car with trustedKeys, empty stores and its clock at now (PROTOCOL.md §3.1).',
      ),
      cases: commands,
    },
    acks: {
      description:
        'Signed acks: verify sig against the pinned car key over the canonical ack without sig (TOKEN.md §9). ECDSA signatures are randomised: regenerating changes the bytes, not the verdicts.',
      warning: testKeys.warning,
      publicKeys: { 'car-a': publicOf('car-a'), 'car-b': publicOf('car-b') },
      cases: acks,
    },
  };
}
