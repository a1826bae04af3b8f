// Owns the token cases: every vector of vectors/tokens.json that needs no key set-up, run live against the
// endpoint with the kit's key, the endpoint's VIN and its clock (TOKEN.md §5).
import { createHmac, createPublicKey, type KeyObject } from 'node:crypto';
import { compactJws, malleateSignature, nonCanonicalSegment } from '../../forge.ts';
import { KEYS_TYP } from '../../key-announcement.ts';
import type { TokenAction } from '../../messages.ts';
import { CLOCK_SKEW_S, MAX_TOKEN_BYTES, TOKEN_STEPS, TOKEN_TYP } from '../../token.ts';
import { type Built, type CaseContext, type ConformanceCase, executed, refused, sendToken } from '../case.ts';
import type { TokenIds } from '../session.ts';
import { throwawayKey } from '../signer.ts';

/**
 * How far inside or outside the 30 s skew the boundary cases aim: the kit knows the endpoint's time only as
 * well as a round trip lets it, so the vectors' one second becomes ten.
 */
export const SKEW_MARGIN_S = 10;

/** A VIN that is not the endpoint's. */
export const otherVin = (vin: string): string =>
  vin === 'YV1A22MK3F1900345' ? '1G1ZE5ST5KF100231' : 'YV1A22MK3F1900345';

const b64 = (data: string | Buffer): string => Buffer.from(data).toString('base64url');

/** The tools a token case builds with, for one command's ids. */
export interface Forge {
  ids: TokenIds;
  /** The kit's header with members replaced (undefined removes). */
  header(over?: Record<string, unknown>): Record<string, unknown>;
  claims(over?: Record<string, unknown>): Record<string, unknown>;
  /** Signed with the kit's key unless another is given. */
  sign(header: unknown, claims: unknown, key?: KeyObject): string;
  /** A valid token for these ids, split: header, payload and signature segments. */
  valid(): [string, string, string];
  now: number;
  otherVin: string;
  ctx: CaseContext;
}

export function forgeFor(ctx: CaseContext, ids: TokenIds): Forge {
  const { session } = ctx;
  const header = (over: Record<string, unknown> = {}): Record<string, unknown> => {
    const h: Record<string, unknown> = { alg: 'EdDSA', typ: TOKEN_TYP, kid: session.signer.kid };
    for (const [k, v] of Object.entries(over)) {
      if (v === undefined) delete h[k];
      else h[k] = v;
    }
    return h;
  };
  const claims = (over: Record<string, unknown> = {}) => session.claims(ids, over);
  const sign = (h: unknown, c: unknown, key = session.signer.key): string => compactJws(h, c, key);
  return {
    ids,
    header,
    claims,
    sign,
    valid: () => sign(header(), claims()).split('.') as [string, string, string],
    now: Math.floor(session.now() / 1000),
    otherVin: otherVin(session.vin),
    ctx,
  };
}

interface TokenVectorCase {
  id: string;
  /** The vector's name in vectors/tokens.json. */
  vector: string;
  /** Envelope and token action (default unlock). */
  action?: TokenAction;
  /** 'ok' or the refusal code. */
  expect: 'ok' | string;
  /** Other vectors the same case runs (vectors/commands.json's whole commands). */
  also?: string[];
  /** The spec section, when more precise than the step of its code. */
  spec?: string;
  build(f: Forge): Built | Promise<Built>;
}

const stepOf = (code: string): number =>
  TOKEN_STEPS.findIndex((s) => (s.codes as readonly string[]).includes(code)) + 1;

/** A case that sends one token and expects its verdict. */
export function tokenCase(t: TokenVectorCase, extra: Partial<ConformanceCase> = {}): ConformanceCase {
  const action = t.action ?? 'unlock';
  const expectation = t.expect === 'ok' ? executed(action) : refused(t.expect);
  return {
    id: t.id,
    title: t.vector,
    spec:
      t.spec ?? (t.expect === 'ok' ? 'TOKEN.md §5 (all 19 steps)' : `TOKEN.md §5 step ${stepOf(t.expect)}`),
    requires: ['locked'],
    expected: t.expect === 'ok' ? `executed (${action})` : `refused ${t.expect}`,
    vectors: [`tokens: ${t.vector}`, ...(t.also ?? [])],
    run: (ctx) => sendToken(ctx, action, (ids) => t.build(forgeFor(ctx, ids)), expectation),
    ...extra,
  };
}

const hs256 = (f: Forge, secret: Buffer | string): string => {
  const input = `${b64(JSON.stringify(f.header({ alg: 'HS256' })))}.${b64(JSON.stringify(f.claims()))}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
};

const kitPublic = (f: Forge) => createPublicKey(f.ctx.session.signer.key);

const TOKEN_VECTORS: TokenVectorCase[] = [
  {
    id: 'token.valid-unlock',
    vector: 'valid unlock: every check passes',
    also: ['commands: valid unlock'],
    expect: 'ok',
    build: (f) => ({ token: f.sign(f.header(), f.claims()) }),
  },
  {
    id: 'token.valid-lock',
    vector: 'valid lock',
    also: ['commands: valid lock'],
    action: 'lock',
    expect: 'ok',
    build: (f) => ({ token: f.sign(f.header(), f.claims()) }),
  },
  {
    id: 'token.valid-revoke',
    vector: 'valid revoke',
    also: ['commands: valid revoke'],
    action: 'revoke',
    expect: 'ok',
    build: (f) => ({ token: f.sign(f.header(), f.claims()) }),
  },
  {
    id: 'token.nbf-within-skew',
    spec: 'TOKEN.md §5 step 16, §6.1',
    vector: 'valid at the earliest accepted time (now = nbf - skew)',
    action: 'lock',
    expect: 'ok',
    build: (f) => {
      const nbf = f.now + CLOCK_SKEW_S - SKEW_MARGIN_S;
      return { token: f.sign(f.header(), f.claims({ iat: nbf, nbf, exp: nbf + 60 })) };
    },
  },
  {
    id: 'token.exp-within-skew',
    spec: 'TOKEN.md §5 step 17, §6.1',
    vector: 'valid at the latest accepted time (now = exp + skew - 1 s)',
    action: 'lock',
    expect: 'ok',
    build: (f) => {
      const exp = f.now - CLOCK_SKEW_S + SKEW_MARGIN_S;
      return { token: f.sign(f.header(), f.claims({ iat: exp - 60, nbf: exp - 60, exp })) };
    },
  },
  {
    id: 'token.longest-lifetime',
    spec: 'TOKEN.md §5 step 15, §6.2',
    vector: 'valid with the longest lifetime (300 s)',
    action: 'lock',
    expect: 'ok',
    build: (f) => ({ token: f.sign(f.header(), f.claims({ exp: f.now + 300 })) }),
  },
  {
    id: 'token.too-large',
    vector: '2049 bytes',
    expect: 'TOKEN_TOO_LARGE',
    build: () => ({ token: 'a'.repeat(MAX_TOKEN_BYTES + 1) }),
  },
  {
    id: 'token.two-segments',
    vector: 'two segments',
    expect: 'TOKEN_MALFORMED',
    build: (f) => ({ token: f.valid().slice(0, 2).join('.') }),
  },
  {
    id: 'token.four-segments',
    vector: 'four segments',
    expect: 'TOKEN_MALFORMED',
    build: (f) => {
      const v = f.valid();
      return { token: [...v, v[2]].join('.') };
    },
  },
  {
    id: 'token.empty-signature',
    vector: 'empty signature segment',
    expect: 'TOKEN_MALFORMED',
    build: (f) => ({ token: `${f.valid().slice(0, 2).join('.')}.` }),
  },
  {
    id: 'token.base64-padding',
    vector: 'base64 padding',
    expect: 'TOKEN_MALFORMED',
    build: (f) => ({ token: `${f.valid().join('.')}==` }),
  },
  {
    id: 'token.standard-base64',
    vector: 'standard base64 alphabet (+ and /)',
    expect: 'TOKEN_MALFORMED',
    build: (f) => {
      const [h, p, s] = f.valid();
      return { token: `${h}.${p}.${s.replaceAll('-', '+').replaceAll('_', '/')}+/` };
    },
  },
  {
    id: 'token.non-canonical-signature',
    vector: 'signature spelled non-canonically (unused bits set)',
    expect: 'TOKEN_MALFORMED',
    build: (f) => {
      const [h, p, s] = f.valid();
      return { token: `${h}.${p}.${nonCanonicalSegment(s)}` };
    },
  },
  {
    id: 'token.header-not-json',
    vector: 'header is not JSON',
    expect: 'TOKEN_MALFORMED',
    build: (f) => ({ token: f.sign('{"alg":"EdDSA",', f.claims()) }),
  },
  {
    id: 'token.header-array',
    vector: 'header is an array',
    expect: 'TOKEN_MALFORMED',
    build: (f) => ({ token: f.sign([f.header()], f.claims()) }),
  },
  {
    id: 'token.header-duplicate-alg',
    vector: 'header with a duplicate member (alg twice)',
    expect: 'TOKEN_MALFORMED',
    build: (f) => ({
      token: f.sign(
        `{"alg":"none","alg":"EdDSA","typ":"${TOKEN_TYP}","kid":"${f.header().kid}"}`,
        f.claims(),
      ),
    }),
  },
  {
    id: 'token.header-duplicate-escaped',
    vector: 'header with a duplicate member spelled with an escape',
    expect: 'TOKEN_MALFORMED',
    build: (f) => ({
      token: f.sign(
        `{"alg":"EdDSA","\\u0061lg":"EdDSA","typ":"${TOKEN_TYP}","kid":"${f.header().kid}"}`,
        f.claims(),
      ),
    }),
  },
  {
    id: 'token.header-nested',
    vector: 'header nested 51 deep',
    expect: 'TOKEN_MALFORMED',
    build: (f) => ({
      token: f.sign(
        `{"alg":"EdDSA","typ":"${TOKEN_TYP}","kid":"${f.header().kid}","x":${'['.repeat(50)}${']'.repeat(50)}}`,
        f.claims(),
      ),
    }),
  },
  {
    id: 'token.alg-none',
    vector: 'alg none',
    expect: 'TOKEN_ALG_NOT_ALLOWED',
    build: (f) => ({ token: `${b64(JSON.stringify(f.header({ alg: 'none' })))}.${f.valid()[1]}.AAAA` }),
  },
  {
    id: 'token.alg-hs256-raw-key',
    vector: 'alg HS256 keyed with the raw gateway public key',
    expect: 'TOKEN_ALG_NOT_ALLOWED',
    build: (f) => ({
      token: hs256(f, Buffer.from(String(kitPublic(f).export({ format: 'jwk' }).x), 'base64url')),
    }),
  },
  {
    id: 'token.alg-hs256-pem',
    vector: 'alg HS256 keyed with the gateway public key PEM',
    expect: 'TOKEN_ALG_NOT_ALLOWED',
    build: (f) => ({ token: hs256(f, String(kitPublic(f).export({ type: 'spki', format: 'pem' }))) }),
  },
  {
    id: 'token.alg-rs256',
    vector: 'alg RS256',
    expect: 'TOKEN_ALG_NOT_ALLOWED',
    build: (f) => ({ token: f.sign(f.header({ alg: 'RS256' }), f.claims()) }),
  },
  {
    id: 'token.alg-es256',
    vector: 'alg ES256',
    expect: 'TOKEN_ALG_NOT_ALLOWED',
    build: (f) => ({ token: f.sign(f.header({ alg: 'ES256' }), f.claims()) }),
  },
  {
    id: 'token.alg-ed25519',
    vector: 'alg Ed25519 (the fully-specified name, not the one we pin)',
    expect: 'TOKEN_ALG_NOT_ALLOWED',
    build: (f) => ({ token: f.sign(f.header({ alg: 'Ed25519' }), f.claims()) }),
  },
  {
    id: 'token.alg-lower-case',
    vector: 'alg in lower case',
    expect: 'TOKEN_ALG_NOT_ALLOWED',
    build: (f) => ({ token: f.sign(f.header({ alg: 'eddsa' }), f.claims()) }),
  },
  {
    id: 'token.alg-missing',
    vector: 'alg missing',
    expect: 'TOKEN_ALG_NOT_ALLOWED',
    build: (f) => ({ token: f.sign(f.header({ alg: undefined }), f.claims()) }),
  },
  {
    id: 'token.header-jwk',
    vector: 'embedded jwk header (the attacker key)',
    expect: 'TOKEN_HEADER_FORBIDDEN',
    build: async (f) => {
      const attacker = await throwawayKey();
      return {
        token: f.sign(
          f.header({ jwk: { kty: 'OKP', crv: 'Ed25519', x: attacker.jwk.x } }),
          f.claims(),
          attacker.key,
        ),
      };
    },
  },
  {
    id: 'token.header-jku',
    vector: 'jku header',
    expect: 'TOKEN_HEADER_FORBIDDEN',
    build: (f) => ({ token: f.sign(f.header({ jku: 'https://attacker.example/jwks.json' }), f.claims()) }),
  },
  {
    id: 'token.header-x5u',
    vector: 'x5u header',
    expect: 'TOKEN_HEADER_FORBIDDEN',
    build: (f) => ({ token: f.sign(f.header({ x5u: 'https://attacker.example/cert.pem' }), f.claims()) }),
  },
  {
    id: 'token.header-x5c',
    vector: 'x5c header',
    expect: 'TOKEN_HEADER_FORBIDDEN',
    build: (f) => ({ token: f.sign(f.header({ x5c: ['MIIB'] }), f.claims()) }),
  },
  {
    id: 'token.header-crit',
    vector: 'crit header',
    expect: 'TOKEN_HEADER_FORBIDDEN',
    build: (f) => ({ token: f.sign(f.header({ crit: ['exp'] }), f.claims()) }),
  },
  {
    id: 'token.header-b64',
    vector: 'b64 false (unencoded payload, RFC 7797)',
    expect: 'TOKEN_HEADER_FORBIDDEN',
    build: (f) => ({ token: f.sign(f.header({ b64: false }), f.claims()) }),
  },
  {
    id: 'token.typ-missing',
    vector: 'typ missing',
    expect: 'TOKEN_TYP_INVALID',
    build: (f) => ({ token: f.sign(f.header({ typ: undefined }), f.claims()) }),
  },
  {
    id: 'token.typ-jwt',
    vector: 'typ JWT',
    expect: 'TOKEN_TYP_INVALID',
    build: (f) => ({ token: f.sign(f.header({ typ: 'JWT' }), f.claims()) }),
  },
  {
    id: 'token.typ-announcement',
    vector: 'typ of a key announcement',
    expect: 'TOKEN_TYP_INVALID',
    build: (f) => ({ token: f.sign(f.header({ typ: KEYS_TYP }), f.claims()) }),
  },
  {
    id: 'token.kid-missing',
    vector: 'kid missing',
    expect: 'TOKEN_KID_UNKNOWN',
    build: (f) => ({ token: f.sign(f.header({ kid: undefined }), f.claims()) }),
  },
  {
    id: 'token.kid-not-pinned',
    vector: 'kid not pinned',
    expect: 'TOKEN_KID_UNKNOWN',
    build: async (f) => {
      const attacker = await throwawayKey();
      return { token: f.sign(f.header({ kid: attacker.kid }), f.claims(), attacker.key) };
    },
  },
  {
    id: 'token.kid-not-announced',
    vector: 'kid of a key not yet announced',
    expect: 'TOKEN_KID_UNKNOWN',
    build: async (f) => {
      const unannounced = await throwawayKey();
      return { token: f.sign(f.header({ kid: unannounced.kid }), f.claims(), unannounced.key) };
    },
  },
  {
    id: 'token.kid-path',
    vector: 'kid with a path',
    expect: 'TOKEN_KID_UNKNOWN',
    build: (f) => ({ token: f.sign(f.header({ kid: '../../../../etc/passwd' }), f.claims()) }),
  },
  {
    id: 'token.kid-sql',
    vector: 'kid with SQL',
    expect: 'TOKEN_KID_UNKNOWN',
    build: (f) => ({ token: f.sign(f.header({ kid: "x' OR '1'='1" }), f.claims()) }),
  },
  {
    id: 'token.kid-proto',
    vector: 'kid __proto__',
    expect: 'TOKEN_KID_UNKNOWN',
    build: (f) => ({ token: f.sign(f.header({ kid: '__proto__' }), f.claims()) }),
  },
  {
    id: 'token.kid-constructor',
    vector: 'kid constructor',
    expect: 'TOKEN_KID_UNKNOWN',
    build: (f) => ({ token: f.sign(f.header({ kid: 'constructor' }), f.claims()) }),
  },
  {
    id: 'token.kid-number',
    vector: 'kid a number',
    expect: 'TOKEN_KID_UNKNOWN',
    build: (f) => ({ token: f.sign(f.header({ kid: 12345678 }), f.claims()) }),
  },
  {
    id: 'token.kid-65-characters',
    vector: 'kid of 65 characters',
    expect: 'TOKEN_KID_UNKNOWN',
    build: (f) => ({ token: f.sign(f.header({ kid: 'k'.repeat(65) }), f.claims()) }),
  },
  {
    id: 'token.signature-bit-flipped',
    vector: 'one bit flipped in the signature',
    expect: 'TOKEN_SIGNATURE_INVALID',
    build: (f) => {
      const [h, p, s] = f.valid();
      const flipped = Buffer.from(s, 'base64url');
      flipped[10] = (flipped[10] as number) ^ 0x01;
      return { token: `${h}.${p}.${flipped.toString('base64url')}` };
    },
  },
  {
    id: 'token.payload-replaced',
    vector: 'payload replaced after signing (aud of another car)',
    expect: 'TOKEN_SIGNATURE_INVALID',
    build: (f) => {
      const [h, , s] = f.valid();
      return { token: `${h}.${b64(JSON.stringify(f.claims({ aud: f.otherVin })))}.${s}` };
    },
  },
  {
    id: 'token.header-replaced',
    vector: 'header replaced after signing (same members, other spacing)',
    expect: 'TOKEN_SIGNATURE_INVALID',
    build: (f) => {
      const [, p, s] = f.valid();
      return { token: `${b64(JSON.stringify(f.header(), null, 1))}.${p}.${s}` };
    },
  },
  {
    id: 'token.signed-by-other-key',
    vector: 'signed by another key under a pinned kid',
    expect: 'TOKEN_SIGNATURE_INVALID',
    build: async (f) => ({ token: f.sign(f.header(), f.claims(), (await throwawayKey()).key) }),
  },
  {
    id: 'token.signature-truncated',
    vector: 'signature truncated to 63 bytes',
    expect: 'TOKEN_SIGNATURE_INVALID',
    build: (f) => {
      const [h, p, s] = f.valid();
      return { token: `${h}.${p}.${Buffer.from(s, 'base64url').subarray(0, 63).toString('base64url')}` };
    },
  },
  {
    id: 'token.signature-malleated',
    vector: 'signature malleated (S + L)',
    expect: 'TOKEN_SIGNATURE_INVALID',
    build: (f) => {
      const [h, p, s] = f.valid();
      return { token: `${h}.${p}.${malleateSignature(s)}` };
    },
  },
  {
    id: 'token.signature-zeros',
    vector: 'signature all zeros',
    expect: 'TOKEN_SIGNATURE_INVALID',
    build: (f) => {
      const [h, p] = f.valid();
      return { token: `${h}.${p}.${b64(Buffer.alloc(64))}` };
    },
  },
  {
    id: 'token.aud-array',
    vector: 'aud an array holding the VIN',
    expect: 'TOKEN_CLAIMS_INVALID',
    build: (f) => ({ token: f.sign(f.header(), f.claims({ aud: [f.ctx.session.vin] })) }),
  },
  {
    id: 'token.act-missing',
    vector: 'act missing',
    expect: 'TOKEN_CLAIMS_INVALID',
    build: (f) => ({ token: f.sign(f.header(), f.claims({ act: undefined })) }),
  },
  {
    id: 'token.act-outside-set',
    vector: 'act outside the allowed set',
    expect: 'TOKEN_CLAIMS_INVALID',
    build: (f) => ({ token: f.sign(f.header(), f.claims({ act: 'open_trunk' })) }),
  },
  {
    id: 'token.extra-claim',
    vector: 'an extra claim',
    expect: 'TOKEN_CLAIMS_INVALID',
    build: (f) => ({ token: f.sign(f.header(), f.claims({ scope: 'all' })) }),
  },
  {
    id: 'token.duplicate-claim',
    vector: 'a duplicate claim (aud twice)',
    expect: 'TOKEN_CLAIMS_INVALID',
    build: (f) => {
      const c = f.claims();
      const text = `{"iss":${JSON.stringify(c.iss)},"aud":"${f.otherVin}","aud":"${c.aud}","sub":"${c.sub}","act":"unlock","jti":"${c.jti}","cid":"${c.cid}","iat":${c.iat},"nbf":${c.nbf},"exp":${c.exp}}`;
      return { token: f.sign(f.header(), text) };
    },
  },
  {
    id: 'token.exp-string',
    vector: 'exp a string',
    expect: 'TOKEN_CLAIMS_INVALID',
    build: (f) => ({ token: f.sign(f.header(), f.claims({ exp: String(f.now + 60) })) }),
  },
  {
    id: 'token.exp-fractional',
    vector: 'exp fractional',
    expect: 'TOKEN_CLAIMS_INVALID',
    build: (f) => ({ token: f.sign(f.header(), f.claims({ exp: f.now + 60.5 })) }),
  },
  {
    id: 'token.sub-path',
    vector: 'sub with a path',
    expect: 'TOKEN_CLAIMS_INVALID',
    build: (f) => ({ token: f.sign(f.header(), f.claims({ sub: '../dlv' })) }),
  },
  {
    id: 'token.claims-not-json',
    vector: 'claims not JSON',
    expect: 'TOKEN_CLAIMS_INVALID',
    build: (f) => ({ token: f.sign(f.header(), '{"iss":') }),
  },
  {
    id: 'token.claims-array',
    vector: 'claims an array',
    expect: 'TOKEN_CLAIMS_INVALID',
    build: (f) => ({ token: f.sign(f.header(), [f.claims()]) }),
  },
  {
    id: 'token.issuer-mismatch',
    vector: 'another issuer',
    expect: 'TOKEN_ISSUER_MISMATCH',
    build: (f) => ({ token: f.sign(f.header(), f.claims({ iss: 'urn:gateway:elsewhere' })) }),
  },
  {
    id: 'token.aud-mismatch',
    vector: 'aud another VIN',
    expect: 'TOKEN_AUDIENCE_MISMATCH',
    build: (f) => ({ token: f.sign(f.header(), f.claims({ aud: f.otherVin })) }),
  },
  {
    id: 'token.act-mismatch-lock',
    vector: 'a lock token sent as unlock',
    expect: 'TOKEN_ACTION_MISMATCH',
    build: (f) => ({ token: f.sign(f.header(), f.claims({ act: 'lock' })) }),
  },
  {
    id: 'token.act-mismatch-revoke',
    vector: 'a revoke token sent as unlock',
    expect: 'TOKEN_ACTION_MISMATCH',
    build: (f) => ({ token: f.sign(f.header(), f.claims({ act: 'revoke' })) }),
  },
  {
    id: 'token.binding-cid',
    vector: 'cid of another command',
    expect: 'TOKEN_BINDING_MISMATCH',
    build: (f) => ({ token: f.sign(f.header(), f.claims({ cid: f.ctx.session.id('cmd') })) }),
  },
  {
    id: 'token.binding-sub',
    vector: 'sub of another delivery',
    expect: 'TOKEN_BINDING_MISMATCH',
    build: (f) => ({ token: f.sign(f.header(), f.claims({ sub: f.ctx.session.id('dlv') })) }),
  },
  {
    id: 'token.lifetime-301',
    spec: 'TOKEN.md §5 step 15, §6.2',
    vector: 'lifetime 301 s',
    expect: 'TOKEN_LIFETIME_EXCEEDED',
    build: (f) => ({ token: f.sign(f.header(), f.claims({ exp: f.now + 301 })) }),
  },
  {
    id: 'token.lifetime-0',
    vector: 'lifetime 0 (exp = nbf)',
    expect: 'TOKEN_LIFETIME_EXCEEDED',
    build: (f) => ({ token: f.sign(f.header(), f.claims({ exp: f.now })) }),
  },
  {
    id: 'token.iat-after-nbf',
    vector: 'iat after nbf',
    expect: 'TOKEN_LIFETIME_EXCEEDED',
    build: (f) => ({ token: f.sign(f.header(), f.claims({ iat: f.now + 1 })) }),
  },
  {
    id: 'token.nbf-beyond-skew',
    spec: 'TOKEN.md §5 step 16, §6.1',
    vector: 'nbf beyond the skew (now = nbf - skew - 1 s)',
    expect: 'TOKEN_NOT_YET_VALID',
    build: (f) => {
      const nbf = f.now + CLOCK_SKEW_S + SKEW_MARGIN_S;
      return { token: f.sign(f.header(), f.claims({ iat: nbf, nbf, exp: nbf + 60 })) };
    },
  },
  {
    id: 'token.exp-beyond-skew',
    spec: 'TOKEN.md §5 step 17, §6.1',
    vector: 'exp beyond the skew (now = exp + skew)',
    expect: 'TOKEN_EXPIRED',
    build: (f) => {
      const exp = f.now - CLOCK_SKEW_S - SKEW_MARGIN_S;
      return { token: f.sign(f.header(), f.claims({ iat: exp - 60, nbf: exp - 60, exp })) };
    },
  },
];

export const TOKEN_CASES: ConformanceCase[] = TOKEN_VECTORS.map((t) => tokenCase(t));
