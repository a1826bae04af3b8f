// The hostile-input suite (issue 3): each hostile command is refused with its code and leaves the car exactly as it was;
// a hostile link (no explicit consent to exactly unlock and lock) is refused and leaves the store as it was.
import { createHmac, createPublicKey } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../gateway/errors.ts';
import { auditTreeSize } from '../gateway/store/audit.ts';
import { findVehicle } from '../gateway/store/vehicles.ts';
import {
  type KeyRing,
  keyRingFrom,
  MAX_TOKEN_BYTES,
  parseStrictJson,
  type ReplayGuard,
  TOKEN_ISSUER,
  TOKEN_TYP,
  type TrustedKeysFile,
  verifyAccessToken,
} from '../protocols/index.ts';
import { CLOCK_BACKSTEP_TOLERANCE_MS } from '../simulator/car-clock.ts';
import { createFileKeyStore } from '../simulator/key-store.ts';
import { createFileReplayStore } from '../simulator/replay-store.ts';
import { createFileRevocationStore } from '../simulator/revocation-store.ts';
import { type CarRig, carRig } from './helpers/car-rig.ts';
import {
  forgeCommand,
  jws,
  kidOf,
  NOW,
  NOW_S,
  nextId,
  OTHER_VIN,
  privateKey,
  publicJwk,
  VIN,
  wrap,
} from './helpers/forge.ts';
import { CAR_VIN, type Loopback, startLoopback } from './helpers/loopback.ts';

let trusted: TrustedKeysFile;
let kidA: string;

beforeAll(async () => {
  trusted = { keys: [await publicJwk('gateway-a'), await publicJwk('gateway-retired', NOW - 3_600_000)] };
  kidA = await kidOf('gateway-a');
});

const newRig = (over: Partial<Parameters<typeof carRig>[0]> = {}): CarRig =>
  carRig({ vin: VIN, now: NOW, trustedKeys: trusted, ...over });

/** Everything about the car a command could change: lock state, used jtis, last good time, revocations, keys. */
const observe = (r: CarRig) => ({
  state: r.car.snapshot(),
  jtis: r.replay.size(),
  lastGoodTime: r.replay.lastGoodTime(),
  revoked: r.revocations.size(),
  keySeq: r.keys.seq(),
});

/** Sends raw to the car and checks the refusal code (null: no ack at all) and that nothing about the car changed. */
async function expectRefusedUnchanged(r: CarRig, raw: Buffer, code: string | null): Promise<void> {
  const before = observe(r);
  const { ack, stateChanged } = await r.car.handleCommand(raw);
  if (code === null) expect(ack).toBeNull();
  else expect(ack).toMatchObject({ outcome: 'refused', reason: code, locked: true });
  expect(stateChanged).toBe(false);
  expect(observe(r)).toEqual(before);
}

const header = (over: Record<string, unknown> = {}) => ({ alg: 'EdDSA', typ: TOKEN_TYP, kid: kidA, ...over });
const claims = (over: Record<string, unknown> = {}) => ({
  iss: TOKEN_ISSUER,
  aud: VIN,
  sub: 'dlv_1',
  act: 'unlock',
  jti: nextId('jti'),
  cid: 'cmd_h',
  iat: NOW_S,
  nbf: NOW_S,
  exp: NOW_S + 60,
  ...over,
});
/** A command for cmd_h / dlv_1 / unlock carrying exactly this token. */
const carrying = (token: string): Buffer =>
  wrap(token, { commandId: 'cmd_h', deliveryId: 'dlv_1', action: 'unlock' });
const b64 = (s: string) => Buffer.from(s).toString('base64url');

describe('hostile tokens are refused and the car stays as it was', () => {
  const fetchSpy = vi.fn(() => {
    throw new Error('the car must never fetch anything');
  });
  beforeEach(() => {
    vi.stubGlobal('fetch', fetchSpy);
  });
  afterEach(() => {
    vi.unstubAllGlobals();
  });
  const cases: Array<[string, () => Promise<Buffer> | Buffer, string | null]> = [
    [
      'alg none',
      () => carrying(`${b64(JSON.stringify(header({ alg: 'none' })))}.${b64(JSON.stringify(claims()))}.`),
      'TOKEN_MALFORMED',
    ],
    [
      'alg none with a dummy signature',
      () => carrying(`${b64(JSON.stringify(header({ alg: 'none' })))}.${b64(JSON.stringify(claims()))}.AAAA`),
      'TOKEN_ALG_NOT_ALLOWED',
    ],
    [
      'HS256 keyed with the gateway public key (raw bytes)',
      async () => {
        const secret = Buffer.from((await publicJwk('gateway-a')).x, 'base64url');
        const input = `${b64(JSON.stringify(header({ alg: 'HS256' })))}.${b64(JSON.stringify(claims()))}`;
        return carrying(`${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`);
      },
      'TOKEN_ALG_NOT_ALLOWED',
    ],
    [
      'HS256 keyed with the gateway public key (PEM)',
      () => {
        const pem = createPublicKey(privateKey('gateway-a')).export({
          type: 'spki',
          format: 'pem',
        }) as string;
        const input = `${b64(JSON.stringify(header({ alg: 'HS256' })))}.${b64(JSON.stringify(claims()))}`;
        return carrying(`${input}.${createHmac('sha256', pem).update(input).digest('base64url')}`);
      },
      'TOKEN_ALG_NOT_ALLOWED',
    ],
    [
      'an embedded jwk of the attacker key, signed by it',
      async () => {
        const jwk = await publicJwk('attacker');
        return carrying(jws(header({ kid: jwk.kid, jwk }), claims(), privateKey('attacker')));
      },
      'TOKEN_HEADER_FORBIDDEN',
    ],
    [
      'a jku header',
      () => carrying(jws(header({ jku: 'https://attacker.example/jwks.json' }), claims())),
      'TOKEN_HEADER_FORBIDDEN',
    ],
    [
      'an x5u header',
      () => carrying(jws(header({ x5u: 'https://attacker.example/c.pem' }), claims())),
      'TOKEN_HEADER_FORBIDDEN',
    ],
    [
      'a kid with a path',
      () => carrying(jws(header({ kid: '../../../etc/passwd' }), claims())),
      'TOKEN_KID_UNKNOWN',
    ],
    [
      'a kid with SQL',
      () => carrying(jws(header({ kid: "k'; DROP TABLE keys;--" }), claims())),
      'TOKEN_KID_UNKNOWN',
    ],
    [
      'a kid naming a prototype member',
      () => carrying(jws(header({ kid: '__proto__' }), claims())),
      'TOKEN_KID_UNKNOWN',
    ],
    ['an unknown kid', async () => (await forgeCommand({ key: 'attacker' })).raw, 'TOKEN_KID_UNKNOWN'],
    ['a retired kid', async () => (await forgeCommand({ key: 'gateway-retired' })).raw, 'TOKEN_KID_RETIRED'],
    ['aud as an array', () => carrying(jws(header(), claims({ aud: [VIN] }))), 'TOKEN_CLAIMS_INVALID'],
    ['aud another VIN', () => carrying(jws(header(), claims({ aud: OTHER_VIN }))), 'TOKEN_AUDIENCE_MISMATCH'],
    [
      'act outside the allowed set',
      () => carrying(jws(header(), claims({ act: 'open_trunk' }))),
      'TOKEN_CLAIMS_INVALID',
    ],
    ['act missing', () => carrying(jws(header(), claims({ act: undefined }))), 'TOKEN_CLAIMS_INVALID'],
    ['typ missing', () => carrying(jws(header({ typ: undefined }), claims())), 'TOKEN_TYP_INVALID'],
    ['typ wrong', () => carrying(jws(header({ typ: 'JWT' }), claims())), 'TOKEN_TYP_INVALID'],
    [
      'a truncated signature',
      () => {
        const [h, p, s] = jws(header(), claims()).split('.') as [string, string, string];
        return carrying(`${h}.${p}.${Buffer.from(s, 'base64url').subarray(0, 48).toString('base64url')}`);
      },
      'TOKEN_SIGNATURE_INVALID',
    ],
    [
      'a malleated signature (S + L)',
      () => {
        const [h, p, s] = jws(header(), claims()).split('.') as [string, string, string];
        const sig = Buffer.from(s, 'base64url');
        let S = 0n;
        for (let i = 63; i >= 32; i--) S = (S << 8n) | BigInt(sig[i] as number);
        S += (1n << 252n) + 27742317777372353535851937790883648493n;
        for (let i = 32; i < 64; i++, S >>= 8n) sig[i] = Number(S & 0xffn);
        return carrying(`${h}.${p}.${sig.toString('base64url')}`);
      },
      'TOKEN_SIGNATURE_INVALID',
    ],
    [
      'duplicate header members',
      () => carrying(jws(`{"alg":"EdDSA","typ":"${TOKEN_TYP}","kid":"${kidA}","kid":"${kidA}"}`, claims())),
      'TOKEN_MALFORMED',
    ],
    [
      'duplicate claims (aud twice)',
      () =>
        carrying(
          jws(
            header(),
            JSON.stringify(claims({ aud: OTHER_VIN })).replace('"aud":', `"aud":"${VIN}","aud":`),
          ),
        ),
      'TOKEN_CLAIMS_INVALID',
    ],
    [
      'duplicate envelope members (two commandIds)',
      async () =>
        Buffer.from(
          (await forgeCommand()).raw.toString().replace('"commandId":', '"commandId":"cmd_x","commandId":'),
        ),
      null,
    ],
    [
      'a token above the size limit inside a valid envelope',
      () => carrying('a'.repeat(MAX_TOKEN_BYTES + 1)),
      'TOKEN_TOO_LARGE',
    ],
    [
      'a 1 MB command (above the payload limit: nothing is parsed)',
      () => carrying('a'.repeat(1_000_000)),
      null,
    ],
    [
      'a header nested 300 deep',
      () => carrying(jws(`{"alg":"EdDSA","x":${'['.repeat(300)}${']'.repeat(300)}}`, claims())),
      'TOKEN_MALFORMED',
    ],
    ['exp past beyond the skew', async () => (await forgeCommand({ at: NOW - 91_000 })).raw, 'TOKEN_EXPIRED'],
    [
      'nbf in the future beyond the skew',
      async () => (await forgeCommand({ at: NOW + 31_000 })).raw,
      'TOKEN_NOT_YET_VALID',
    ],
    [
      'a lifetime above the maximum',
      () => carrying(jws(header(), claims({ exp: NOW_S + 301 }))),
      'TOKEN_LIFETIME_EXCEEDED',
    ],
    [
      'another issuer',
      () => carrying(jws(header(), claims({ iss: 'urn:gateway:evil' }))),
      'TOKEN_ISSUER_MISMATCH',
    ],
  ];

  it.each(cases)('%s → %s', async (_name, make, code) => {
    await expectRefusedUnchanged(newRig(), await make(), code);
  });

  it('no case made the car fetch anything (jwk, jku, x5u are refused as members, never followed)', () => {
    expect(fetchSpy).not.toHaveBeenCalled();
  });

  it.each([
    ['header', 0],
    ['claims', 1],
    ['signature', 2],
  ] as const)('one flipped byte in the %s is refused', async (_segment, index) => {
    const { raw, token, commandId, deliveryId } = await forgeCommand();
    expect((await newRig().car.handleCommand(raw)).ack?.outcome).toBe('executed');
    const parts = token.split('.');
    const bytes = Buffer.from(parts[index] as string, 'base64url');
    bytes[Math.floor(bytes.length / 2)] = (bytes[Math.floor(bytes.length / 2)] as number) ^ 0x20;
    parts[index] = bytes.toString('base64url');
    const r = newRig();
    const before = observe(r);
    const { ack } = await r.car.handleCommand(
      wrap(parts.join('.'), { commandId, deliveryId, action: 'unlock' }),
    );
    expect(ack?.outcome).toBe('refused');
    expect(observe(r)).toEqual(before);
  });
});

describe('oversized and deeply nested input is refused before any cryptography, with bounded work', () => {
  /** A key ring that records lookups: a lookup is the last thing before the signature check. */
  const spyRing = (): { ring: KeyRing; lookups: string[] } => {
    const real = keyRingFrom(trusted);
    const lookups: string[] = [];
    const get = (kid: string) => {
      lookups.push(kid);
      return real.get(kid);
    };
    const ring = { get } as unknown as KeyRing;
    return { ring, lookups };
  };
  const ctx = (ring: KeyRing) => ({
    keys: ring,
    issuer: TOKEN_ISSUER,
    vin: VIN,
    action: 'unlock' as const,
    commandId: 'cmd_h',
    deliveryId: 'dlv_1',
    now: NOW,
    replay: { claim: () => 'ok' } satisfies ReplayGuard,
    isRevoked: () => false,
  });

  it('a 1 MB token stops at step 1 (size) without being split or decoded', async () => {
    const { ring, lookups } = spyRing();
    const oneMb = `${b64(JSON.stringify(header()))}.${'A'.repeat(1_000_000)}.AAAA`;
    const verdict = await verifyAccessToken(oneMb, ctx(ring));
    expect(verdict).toMatchObject({ ok: false, code: 'TOKEN_TOO_LARGE' });
    expect(verdict.steps).toEqual([expect.objectContaining({ step: 'size', ok: false })]);
    expect(lookups).toEqual([]);
  });

  it('a deeply nested header stops at step 2 (structure), before any key lookup', async () => {
    const { ring, lookups } = spyRing();
    const nested = jws(
      `{"alg":"EdDSA","typ":"${TOKEN_TYP}","kid":"${kidA}","x":${'['.repeat(600)}${']'.repeat(600)}}`,
      claims(),
    );
    expect(nested.length).toBeLessThanOrEqual(MAX_TOKEN_BYTES);
    const verdict = await verifyAccessToken(nested, ctx(ring));
    expect(verdict).toMatchObject({ ok: false, code: 'TOKEN_MALFORMED' });
    expect(verdict.steps.map((s) => s.step)).toEqual(['size', 'structure']);
    expect(lookups).toEqual([]);
  });

  it('the strict JSON scan refuses a million levels without recursing (no stack growth)', () => {
    expect(() => parseStrictJson(`${'{"a":'.repeat(1_000_000)}1${'}'.repeat(1_000_000)}`)).toThrow(
      expect.objectContaining({ code: 'JSON_TOO_DEEP' }),
    );
  });
});

describe('every mutation of a valid token is refused (property)', () => {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ';
  type Mutation =
    | { kind: 'replace'; at: number; ch: string }
    | { kind: 'delete'; at: number }
    | { kind: 'insert'; at: number; ch: string }
    | { kind: 'swap'; at: number; with: number }
    | { kind: 'truncate'; at: number }
    /** The last character of a segment: where base64url has unused bits, so sloppy decoders accept other spellings. */
    | { kind: 'segment-end'; segment: number; ch: string };
  const apply = (t: string, m: Mutation): string => {
    const i = 'at' in m ? m.at % (t.length + (m.kind === 'insert' ? 1 : 0)) : 0;
    switch (m.kind) {
      case 'replace':
        return `${t.slice(0, i)}${m.ch}${t.slice(i + 1)}`;
      case 'delete':
        return `${t.slice(0, i)}${t.slice(i + 1)}`;
      case 'insert':
        return `${t.slice(0, i)}${m.ch}${t.slice(i)}`;
      case 'swap': {
        const j = m.with % t.length;
        const chars = [...t];
        [chars[i], chars[j]] = [chars[j] as string, chars[i] as string];
        return chars.join('');
      }
      case 'truncate':
        return t.slice(0, i);
      case 'segment-end': {
        const parts = t.split('.');
        const seg = parts[m.segment % parts.length] ?? '';
        parts[m.segment % parts.length] = `${seg.slice(0, -1)}${m.ch}`;
        return parts.join('.');
      }
    }
  };
  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), ch: fc.constantFrom(...alphabet) }),
    fc.record({ kind: fc.constant('delete' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), ch: fc.constantFrom(...alphabet) }),
    fc.record({ kind: fc.constant('swap' as const), at: fc.nat(), with: fc.nat() }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({
      kind: fc.constant('segment-end' as const),
      segment: fc.nat(2),
      ch: fc.constantFrom(...alphabet.slice(0, 64)),
    }),
  );

  it('one to three edits anywhere: never accepted', async () => {
    const { token } = await forgeCommand({ commandId: 'cmd_h', deliveryId: 'dlv_1' });
    const keys = keyRingFrom(trusted);
    const verify = (t: string) =>
      verifyAccessToken(t, {
        keys,
        issuer: TOKEN_ISSUER,
        vin: VIN,
        action: 'unlock',
        commandId: 'cmd_h',
        deliveryId: 'dlv_1',
        now: NOW,
        replay: { claim: () => 'ok' },
        isRevoked: () => false,
      });
    expect((await verify(token)).ok).toBe(true);
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 3 }), async (edits) => {
        const mutated = edits.reduce(apply, token);
        fc.pre(mutated !== token);
        expect((await verify(mutated)).ok).toBe(false);
      }),
      { numRuns: 1_000 },
    );
  });
});

describe('a replay after the car restarted is refused (file stores)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'hostile-restart-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const bootCar = (): CarRig => {
    const replay = createFileReplayStore({ file: join(dir, 'replay.json'), capacity: 100 });
    return newRig({
      replay,
      revocations: createFileRevocationStore({
        file: join(dir, 'revoked.json'),
        capacity: 100,
        lastGoodTime: () => replay.lastGoodTime(),
      }),
      keys: createFileKeyStore({ file: join(dir, 'keys.json'), enrolled: trusted }),
    });
  };

  it('a used unlock sent again to the restarted car → TOKEN_REPLAYED', async () => {
    const sent = await forgeCommand();
    const first = bootCar();
    expect((await first.car.handleCommand(sent.raw)).ack?.outcome).toBe('executed');
    const restarted = bootCar();
    await expectRefusedUnchanged(restarted, sent.raw, 'TOKEN_REPLAYED');
  });

  it('a delivery revoked before the restart stays revoked after it → TOKEN_REVOKED', async () => {
    const first = bootCar();
    const revoke = await forgeCommand({ action: 'revoke', deliveryId: 'dlv_gone' });
    expect((await first.car.handleCommand(revoke.raw)).ack?.outcome).toBe('executed');
    const restarted = bootCar();
    await expectRefusedUnchanged(
      restarted,
      (await forgeCommand({ deliveryId: 'dlv_gone' })).raw,
      'TOKEN_REVOKED',
    );
  });
});

describe("the car's clock", () => {
  it('unknown → CLOCK_UNKNOWN, and the ack says at: null', async () => {
    const r = newRig();
    r.setTime(null);
    await expectRefusedUnchanged(r, (await forgeCommand()).raw, 'CLOCK_UNKNOWN');
  });

  it('moved back beyond the tolerance below the last good time → CLOCK_UNKNOWN, even for a token valid then', async () => {
    const r = newRig();
    expect((await r.car.handleCommand((await forgeCommand({ action: 'lock' })).raw)).ack?.outcome).toBe(
      'executed',
    );
    expect(r.replay.lastGoodTime()).toBe(NOW);
    // An attacker winds the clock back ten minutes to use a token captured then and never delivered.
    const tenMinutesAgo = NOW - 600_000;
    r.setTime(tenMinutesAgo);
    const old = await forgeCommand({ at: tenMinutesAgo });
    const before = observe(r);
    const { ack } = await r.car.handleCommand(old.raw);
    expect(ack).toMatchObject({ outcome: 'refused', reason: 'CLOCK_UNKNOWN', at: null, locked: true });
    expect(observe(r)).toEqual(before);
  });

  it('moved back within the tolerance → time stands still at the last good time', async () => {
    const r = newRig();
    await r.car.handleCommand((await forgeCommand({ action: 'lock' })).raw);
    r.setTime(NOW - CLOCK_BACKSTEP_TOLERANCE_MS);
    const { ack } = await r.car.handleCommand((await forgeCommand()).raw);
    expect(ack).toMatchObject({ outcome: 'executed', at: NOW, locked: false });
    // The unlock's fail-safe counts from the last good time, not from the earlier raw clock.
    expect(r.car.snapshot().relockDeadline).toBe(NOW + 120_000);
  });

  it('an unlocked car whose clock jumps back beyond the tolerance relocks at the next tick', async () => {
    const r = newRig();
    await r.car.handleCommand((await forgeCommand()).raw);
    expect(r.car.snapshot().locked).toBe(false);
    r.setTime(NOW - CLOCK_BACKSTEP_TOLERANCE_MS - 1);
    expect(r.car.tick()).toEqual([{ type: 'relocked_by_car' }, { type: 'report_state' }]);
    expect(r.car.snapshot().locked).toBe(true);
  });

  it('the last good time survives a restart, so winding the clock back across a reboot is refused too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hostile-clock-'));
    try {
      const file = join(dir, 'replay.json');
      const first = newRig({ replay: createFileReplayStore({ file, capacity: 10 }) });
      await first.car.handleCommand((await forgeCommand({ action: 'lock' })).raw);
      const restarted = newRig({ replay: createFileReplayStore({ file, capacity: 10 }) });
      restarted.setTime(NOW - 3_600_000);
      await expectRefusedUnchanged(
        restarted,
        (await forgeCommand({ at: NOW - 3_600_000 })).raw,
        'CLOCK_UNKNOWN',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a revoked delivery', () => {
  it('a token for it → TOKEN_REVOKED, and its jti is not used up', async () => {
    const r = newRig();
    expect(
      (await r.car.handleCommand((await forgeCommand({ action: 'revoke', deliveryId: 'dlv_r' })).raw)).ack,
    ).toMatchObject({
      outcome: 'executed',
      action: 'revoke',
    });
    await expectRefusedUnchanged(r, (await forgeCommand({ deliveryId: 'dlv_r' })).raw, 'TOKEN_REVOKED');
    await expectRefusedUnchanged(
      r,
      (await forgeCommand({ deliveryId: 'dlv_r', action: 'lock' })).raw,
      'TOKEN_REVOKED',
    );
  });

  it('revoking the delivery that holds the car open locks it at once', async () => {
    const r = newRig();
    await r.car.handleCommand((await forgeCommand({ deliveryId: 'dlv_open' })).raw);
    expect(r.car.snapshot().locked).toBe(false);
    const { ack, stateChanged } = await r.car.handleCommand(
      (await forgeCommand({ action: 'revoke', deliveryId: 'dlv_open' })).raw,
    );
    expect(ack).toMatchObject({ outcome: 'executed', locked: true });
    expect(stateChanged).toBe(true);
    expect(r.car.snapshot()).toMatchObject({ locked: true, relockDeadline: null });
  });

  it('a revoke is itself a signed, single-use command: a forged one is refused', async () => {
    const r = newRig();
    await expectRefusedUnchanged(
      r,
      (await forgeCommand({ action: 'revoke', key: 'attacker', kid: kidA })).raw,
      'TOKEN_SIGNATURE_INVALID',
    );
  });
});

describe('a link without explicit consent to exactly unlock and lock', () => {
  let loop: Loopback;
  beforeAll(async () => {
    loop = await startLoopback();
  });
  afterAll(async () => {
    await loop?.close();
  });
  const malibu = {
    vin: CAR_VIN,
    make: 'Chevrolet',
    model: 'Malibu',
    year: 2019,
    provider: 'onstar',
    ownerId: 'owner-ada',
  };
  const codeOf = async (consent: string[] | undefined): Promise<string> => {
    try {
      await loop.vehicles.link({ ...malibu, ...(consent === undefined ? {} : { consent }) });
      return 'LINKED';
    } catch (err) {
      if (err instanceof ApiError) return err.code;
      throw err;
    }
  };
  const exact = (c: string[] | undefined): boolean =>
    c !== undefined && c.length === 2 && c.includes('unlock') && c.includes('lock');

  it('is refused with CONSENT_INVALID whatever it says instead, and nothing is written (property)', async () => {
    const auditBefore = await auditTreeSize(loop.store.db);
    const word = fc.oneof(
      fc.constantFrom(
        'unlock',
        'lock',
        'UNLOCK',
        'Lock',
        ' unlock',
        'lock ',
        'unlock\u0000',
        'un\u200block',
        'unl\u043eck', // a Cyrillic o
        'remote_start',
        'trunk',
        '*',
        '',
      ),
      fc.string({ maxLength: 12 }),
    );
    await fc.assert(
      fc.asyncProperty(fc.option(fc.array(word, { maxLength: 5 }), { nil: undefined }), async (consent) => {
        fc.pre(!exact(consent));
        expect(await codeOf(consent)).toBe('CONSENT_INVALID');
      }),
      {
        numRuns: 300,
        examples: [[undefined], [[]], [['unlock']], [['unlock', 'unlock']], [['lock', 'lock']]],
      },
    );
    expect(await findVehicle(loop.store.db, CAR_VIN)).toBeNull();
    expect(await auditTreeSize(loop.store.db)).toBe(auditBefore);
  });

  it('stated exactly (in either order) links the car with unlock and lock', async () => {
    expect(await codeOf(['lock', 'unlock'])).toBe('LINKED');
    expect((await findVehicle(loop.store.db, CAR_VIN))?.consent).toEqual(['unlock', 'lock']);
  });
});
