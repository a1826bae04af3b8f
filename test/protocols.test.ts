// Unit tests of the wire contract's pure logic: VIN rules, topics, strict JSON, and the token pipeline.
import { generateKeyPairSync } from 'node:crypto';
import { CompactSign, compactVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import {
  buildClaims,
  composeVin,
  computeCheckDigit,
  keyRingFrom,
  mintAccessToken,
  modelYearOf,
  parseStrictJson,
  parseTopic,
  type ReplayGuard,
  TOKEN_ISSUER,
  TOKEN_STEPS,
  TOKEN_TYP,
  type TokenClaims,
  trustedJwkFor,
  verifyAccessToken,
  vinAgreesWithWmi,
  vinAgreesWithYear,
  vinProblem,
} from '../protocols/index.ts';

const VIN = '1G1ZE5ST5KF100231';
const OTHER_VIN = 'YV1A22MK3F1900345';
const NOW = Date.parse('2026-06-01T12:00:00Z');

function memoryReplay(): ReplayGuard {
  const seen = new Set<string>();
  return {
    claim(jti) {
      if (seen.has(jti)) return 'replayed';
      seen.add(jti);
      return 'ok';
    },
  };
}

async function fixture() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const jwk = await trustedJwkFor(publicKey);
  const keys = keyRingFrom({ keys: [jwk] });
  const claims = (over: Partial<TokenClaims> = {}): TokenClaims => ({
    ...buildClaims({
      issuer: 'urn:gateway:gateway',
      vin: VIN,
      deliveryId: 'dlv_1',
      action: 'unlock',
      commandId: 'cmd_1',
      jti: 'jti_1',
      nowMs: NOW,
      ttlS: 60,
      notAfterMs: NOW + 3_600_000,
    }),
    ...over,
  });
  const ctx = (over: Partial<Parameters<typeof verifyAccessToken>[1]> = {}) => ({
    keys,
    issuer: TOKEN_ISSUER,
    isRevoked: () => false,
    vin: VIN,
    action: 'unlock' as const,
    commandId: 'cmd_1',
    deliveryId: 'dlv_1',
    now: NOW,
    replay: memoryReplay(),
    ...over,
  });
  const mint = (c: TokenClaims = claims()) => mintAccessToken({ privateKey, kid: jwk.kid, claims: c });
  return { privateKey, jwk, keys, claims, ctx, mint };
}

describe('VIN', () => {
  it('accepts a VIN with the right check digit and rejects a wrong one', () => {
    expect(vinProblem(VIN)).toBeNull();
    expect(vinProblem(`${VIN.slice(0, 8)}0${VIN.slice(9)}`)).toBe('VIN_CHECK_DIGIT');
  });
  it('refuses I, O, Q and wrong lengths', () => {
    expect(vinProblem('1G1ZE5ST5KF10023I')).toBe('VIN_MALFORMED');
    expect(vinProblem('1G1ZE5ST5KF10023')).toBe('VIN_MALFORMED');
  });
  it('computes the check digit of the classic example 1M8GDM9AXKP042788', () => {
    expect(computeCheckDigit('1M8GDM9AXKP042788')).toBe('X');
  });
  it('reads the model year from position 10, in the 30-year cycle position 7 names (49 CFR 565.15)', () => {
    // A 2019 Chevrolet Malibu: a letter at position 7 ('S') puts 'K' in 2010-2039.
    expect(modelYearOf(VIN)).toBe(2019);
    // The check-digit worked example: a digit at position 7 ('9') puts the same 'K' in 1980-2009.
    expect(modelYearOf('1M8GDM9AXKP042788')).toBe(1989);
    // A 2003 Honda Accord and a 1993 Acura Legend: digits at position 7, so '3' is 2003 and 'P' 1993.
    expect(modelYearOf('1HGCM82633A004352')).toBe(2003);
    expect(modelYearOf('JH4KA7561PC008269')).toBe(1993);
    // A 2015 Volvo S60 and a 2022 XC90: letters at position 7.
    expect(modelYearOf(OTHER_VIN)).toBe(2015);
    expect(modelYearOf('YV4A22PKXN1010762')).toBe(2022);
    // Position 10 is never U, Z or 0.
    expect(modelYearOf('1G1ZE5ST5UF100231')).toBeNull();
    expect(modelYearOf('1G1ZE5ST50F100231')).toBeNull();
  });
  it('agrees with the stated model year only through positions 7 and 10', () => {
    expect(vinAgreesWithYear(VIN, 2019)).toBe(true); // K, letter at 7
    expect(vinAgreesWithYear(VIN, 1989)).toBe(false); // the same code one cycle earlier needs a digit at 7
    expect(vinAgreesWithYear(VIN, 2018)).toBe(false);
    expect(vinAgreesWithYear(VIN, 2020)).toBe(false);
    expect(vinAgreesWithYear('1M8GDM9AXKP042788', 1989)).toBe(true);
    expect(vinAgreesWithYear('1M8GDM9AXKP042788', 2019)).toBe(false);
  });
  it('agrees with a make only through its world manufacturer identifier', () => {
    expect(vinAgreesWithWmi(VIN, ['1G1', '1GN'])).toBe(true);
    expect(vinAgreesWithWmi(OTHER_VIN, ['1G1', '1GN'])).toBe(false);
    expect(vinAgreesWithWmi(OTHER_VIN, ['YV1'])).toBe(true);
  });
  it('composes VINs whose model-year code round-trips', () => {
    const vin = composeVin('YV4', 'A22PK', 2022, '1010762');
    expect(vinProblem(vin)).toBeNull();
    expect(modelYearOf(vin)).toBe(2022);
    const older = composeVin('1G1', 'JC514', 1989, 'B100231');
    expect(vinProblem(older)).toBeNull();
    expect(modelYearOf(older)).toBe(1989);
  });
  it('refuses to compose a VIN whose position 7 names the other 30-year cycle', () => {
    expect(() => composeVin('1G1', 'JC514', 2019, 'B100231')).toThrow(RangeError); // a digit at 7: 1980-2009
    expect(() => composeVin('1G1', 'ZE5ST', 1989, 'F100231')).toThrow(RangeError); // a letter at 7: 2010-2039
    expect(() => composeVin('1G1', 'ZE5ST', 2040, 'F100231')).toThrow(RangeError);
    expect(() => composeVin('1G1', 'JC514', 1979, 'B100231')).toThrow(RangeError);
  });
});

describe('topics', () => {
  it('parses the three topic kinds and nothing else', () => {
    expect(parseTopic(`vehicles/${VIN}/commands`)).toEqual({ vin: VIN, kind: 'commands' });
    expect(parseTopic(`vehicles/${VIN}/acks`)?.kind).toBe('acks');
    expect(parseTopic('vehicles/+/acks')).toBeNull();
    expect(parseTopic(`vehicles/${VIN}/other`)).toBeNull();
    expect(parseTopic(`$SYS/${VIN}/acks`)).toBeNull();
  });
});

describe('strict JSON', () => {
  it('refuses duplicate member names, even when escaped', () => {
    expect(() => parseStrictJson('{"a":1,"a":2}')).toThrow(
      expect.objectContaining({ code: 'JSON_DUPLICATE_KEY' }),
    );
    expect(() => parseStrictJson('{"a":1,"\\u0061":2}')).toThrow(
      expect.objectContaining({ code: 'JSON_DUPLICATE_KEY' }),
    );
  });
  it('refuses deep nesting without recursing', () => {
    expect(() => parseStrictJson(`${'['.repeat(100_000)}${']'.repeat(100_000)}`)).toThrow(
      expect.objectContaining({ code: 'JSON_TOO_DEEP' }),
    );
  });
  it('keeps duplicate-looking names in different objects apart', () => {
    expect(parseStrictJson('{"a":{"b":1},"c":{"b":2}}')).toEqual({ a: { b: 1 }, c: { b: 2 } });
  });
});

describe('access token', () => {
  it('verifies a freshly minted token and reports every step', async () => {
    const f = await fixture();
    const verdict = await verifyAccessToken(await f.mint(), f.ctx());
    expect(verdict.ok).toBe(true);
    expect(verdict.steps.map((s) => s.step)).toEqual(TOKEN_STEPS.map((s) => s.step));
    expect(verdict.steps.every((s) => s.ok)).toBe(true);
  });

  const cases: Array<
    [string, (f: Awaited<ReturnType<typeof fixture>>) => Promise<[string, object?]>, string]
  > = [
    ['another VIN', async (f) => [await f.mint(f.claims({ aud: OTHER_VIN }))], 'TOKEN_AUDIENCE_MISMATCH'],
    [
      'a lock token used to unlock',
      async (f) => [await f.mint(f.claims({ act: 'lock' }))],
      'TOKEN_ACTION_MISMATCH',
    ],
    ['another command id', async (f) => [await f.mint(), { commandId: 'cmd_2' }], 'TOKEN_BINDING_MISMATCH'],
    ['an expired token', async (f) => [await f.mint(), { now: NOW + 120_000 }], 'TOKEN_EXPIRED'],
    ['a not-yet-valid token', async (f) => [await f.mint(), { now: NOW - 120_000 }], 'TOKEN_NOT_YET_VALID'],
    ['an unknown clock', async (f) => [await f.mint(), { now: null }], 'CLOCK_UNKNOWN'],
    ['a revoked delivery', async (f) => [await f.mint(), { isRevoked: () => true }], 'TOKEN_REVOKED'],
    [
      'a forged signature',
      async (f) => {
        const other = generateKeyPairSync('ed25519').privateKey;
        return [await mintAccessToken({ privateKey: other, kid: f.jwk.kid, claims: f.claims() })];
      },
      'TOKEN_SIGNATURE_INVALID',
    ],
    [
      'alg none',
      async (f) => {
        const h = Buffer.from(JSON.stringify({ alg: 'none', typ: TOKEN_TYP, kid: f.jwk.kid })).toString(
          'base64url',
        );
        const p = Buffer.from(JSON.stringify(f.claims())).toString('base64url');
        return [`${h}.${p}.AAAA`];
      },
      'TOKEN_ALG_NOT_ALLOWED',
    ],
    [
      'an embedded jwk header',
      async (f) => {
        const [, p, s] = (await f.mint()).split('.');
        const h = Buffer.from(
          JSON.stringify({ alg: 'EdDSA', typ: TOKEN_TYP, kid: f.jwk.kid, jwk: f.jwk }),
        ).toString('base64url');
        return [`${h}.${p}.${s}`];
      },
      'TOKEN_HEADER_FORBIDDEN',
    ],
    ['a 1 MB token', async () => ['a'.repeat(1_000_000)], 'TOKEN_TOO_LARGE'],
  ];
  for (const [name, make, code] of cases) {
    it(`refuses ${name} with ${code}`, async () => {
      const f = await fixture();
      const [token, over] = await make(f);
      const verdict = await verifyAccessToken(token, f.ctx(over));
      expect(verdict.ok).toBe(false);
      if (!verdict.ok) expect(verdict.code).toBe(code);
    });
  }

  it('mints exactly the JWS jose would, and jose verifies it', async () => {
    const f = await fixture();
    const token = await f.mint();
    const jose = await new CompactSign(new TextEncoder().encode(JSON.stringify(f.claims())))
      .setProtectedHeader({ alg: 'EdDSA', typ: TOKEN_TYP, kid: f.jwk.kid })
      .sign(f.privateKey);
    expect(token).toBe(jose);
    const pinned = f.keys.get(f.jwk.kid)?.publicKey;
    if (!pinned) throw new Error('no pinned key');
    const { payload } = await compactVerify(token, pinned, { algorithms: ['EdDSA'] });
    expect(JSON.parse(new TextDecoder().decode(payload))).toEqual(f.claims());
  });

  it('signs and verifies with Ed25519 keys only', async () => {
    const f = await fixture();
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    await expect(
      mintAccessToken({ privateKey: ec.privateKey, kid: f.jwk.kid, claims: f.claims() }),
    ).rejects.toThrow(TypeError);
    const keys = new Map([[f.jwk.kid, { kid: f.jwk.kid, publicKey: ec.publicKey }]]);
    const verdict = await verifyAccessToken(await f.mint(), f.ctx({ keys }));
    expect(verdict.ok ? null : verdict.code).toBe('TOKEN_SIGNATURE_INVALID');
  });

  it('refuses a replay and does not consume the jti of a refused token', async () => {
    const f = await fixture();
    const replay = memoryReplay();
    const token = await f.mint();
    const early = await verifyAccessToken(token, f.ctx({ replay, now: NOW - 120_000 }));
    expect(early.ok).toBe(false);
    expect((await verifyAccessToken(token, f.ctx({ replay }))).ok).toBe(true);
    const again = await verifyAccessToken(token, f.ctx({ replay }));
    expect(again.ok ? null : again.code).toBe('TOKEN_REPLAYED');
  });

  it('never mints a token that outlives the window or the protocol maximum', async () => {
    const c = buildClaims({
      issuer: 'i',
      vin: VIN,
      deliveryId: 'd',
      action: 'unlock',
      commandId: 'c',
      jti: 'j',
      nowMs: NOW,
      ttlS: 10_000,
      notAfterMs: NOW + 20_000,
    });
    expect(c.exp - c.iat).toBe(20);
    const long = buildClaims({
      issuer: 'i',
      vin: VIN,
      deliveryId: 'd',
      action: 'unlock',
      commandId: 'c',
      jti: 'j',
      nowMs: NOW,
      ttlS: 10_000,
      notAfterMs: NOW + 86_400_000,
    });
    expect(long.exp - long.iat).toBe(300);
  });
});
