// Tests the simulated car's pure logic with a frozen clock and no network: token refusals, execution, fail-safe
// relock, QoS duplicates, the replay store and state reports.
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { verifyAckSignature } from '../protocols/ack-signature.ts';
import { type TrustedJwk, trustedJwkFor } from '../protocols/keys.ts';
import {
  type Ack,
  AckSchema,
  type Action,
  PresenceSchema,
  StateReportSchema,
} from '../protocols/messages.ts';
import { buildClaims, mintAccessToken } from '../protocols/token.ts';
import { createSimulatedCar, type SimulatedCar } from '../simulator/car.ts';
import { type CarState, initialCarState, transition } from '../simulator/car-state.ts';
import { parseCli } from '../simulator/cli.ts';
import { SimulatorError } from '../simulator/errors.ts';
import { createMemoryKeyStore } from '../simulator/key-store.ts';
import {
  createFileReplayStore,
  createMemoryReplayStore,
  type ReplayStore,
} from '../simulator/replay-store.ts';
import { createMemoryRevocationStore } from '../simulator/revocation-store.ts';
import { reconnectDelay } from '../simulator/transport.ts';

const NOW = Date.parse('2025-06-02T09:00:00Z');
const VIN = '1G1ZE5ST5KF100231';
const OTHER_VIN = 'YV1A22MK3F1900345';
const ISSUER = 'urn:gateway:gateway';
const RELOCK_MS = 120_000;
const POSITION = { lat: 47.6117, lon: -122.3379 };

let gatewayKey: KeyObject;
let kid: string;
let jwk: TrustedJwk;
const carKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;

beforeAll(async () => {
  const pair = generateKeyPairSync('ed25519');
  gatewayKey = pair.privateKey;
  jwk = await trustedJwkFor(pair.publicKey);
  kid = jwk.kid;
});

type CarReplay = Pick<ReplayStore, 'claim' | 'lastGoodTime'>;
/** A replay guard that answers claims as told and has no last good time. */
const replayAnswering = (claim: CarReplay['claim']): CarReplay => ({ claim, lastGoodTime: () => null });

interface TokenSpec {
  vin?: string;
  action?: Action;
  commandId?: string;
  deliveryId?: string;
  jti?: string;
  nowMs?: number;
  ttlS?: number;
  privateKey?: KeyObject;
}

let serial = 0;
const nextId = (prefix: string): string => `${prefix}_${++serial}`;

interface Sent {
  raw: Buffer;
  commandId: string;
  deliveryId: string;
  token: string;
}

/** Mints a token and wraps it in a command envelope; `envelope` overrides what the envelope says. */
async function command(
  spec: TokenSpec = {},
  envelope: Partial<{ action: Action; commandId: string; deliveryId: string }> = {},
): Promise<Sent> {
  const commandId = spec.commandId ?? nextId('cmd');
  const deliveryId = spec.deliveryId ?? 'dlv_1';
  const nowMs = spec.nowMs ?? NOW;
  const token = await mintAccessToken({
    privateKey: spec.privateKey ?? gatewayKey,
    kid,
    claims: buildClaims({
      issuer: ISSUER,
      vin: spec.vin ?? VIN,
      deliveryId,
      action: spec.action ?? 'unlock',
      commandId,
      jti: spec.jti ?? nextId('jti'),
      nowMs,
      ttlS: spec.ttlS ?? 60,
      notAfterMs: nowMs + 3_600_000,
    }),
  });
  return envelopeFor(token, {
    commandId: envelope.commandId ?? commandId,
    deliveryId: envelope.deliveryId ?? deliveryId,
    action: envelope.action ?? spec.action ?? 'unlock',
  });
}

function envelopeFor(token: string, e: { commandId: string; deliveryId: string; action: Action }): Sent {
  const raw = Buffer.from(
    JSON.stringify({
      v: 1,
      type: 'command',
      commandId: e.commandId,
      deliveryId: e.deliveryId,
      action: e.action,
      token,
    }),
  );
  return { raw, commandId: e.commandId, deliveryId: e.deliveryId, token };
}

interface Rig {
  car: SimulatedCar;
  replay: CarReplay;
  setTime(t: number | null): void;
}

function rig(overrides: { replay?: CarReplay; issuer?: string } = {}): Rig {
  let time: number | null = NOW;
  const clock = (): number | null => time;
  const replay = overrides.replay ?? createMemoryReplayStore({ capacity: 100 });
  const car = createSimulatedCar({
    vin: VIN,
    make: 'Chevrolet',
    model: 'Malibu',
    year: 2019,
    provider: 'onstar',
    initial: { position: POSITION },
    keys: createMemoryKeyStore({ keys: [jwk] }),
    replay,
    revocations: createMemoryRevocationStore({ capacity: 10, lastGoodTime: () => replay.lastGoodTime() }),
    signingKey: carKey,
    clock,
    failsafeRelockMs: RELOCK_MS,
    issuer: overrides.issuer,
  });
  return {
    car,
    replay,
    setTime(t) {
      time = t;
    },
  };
}

function expectRefused(ack: Ack | null, reason: string): Ack {
  expect(ack).not.toBeNull();
  const valid = AckSchema.parse(ack);
  expect(valid).toMatchObject({ outcome: 'refused', reason, locked: true, vin: VIN });
  return valid;
}

describe('a refused token leaves the car locked', () => {
  const cases: Array<{ name: string; code: string; send: (r: Rig) => Promise<Sent> }> = [
    {
      name: 'forged signature (other key, same kid)',
      code: 'TOKEN_SIGNATURE_INVALID',
      send: () => command({ privateKey: generateKeyPairSync('ed25519').privateKey }),
    },
    {
      name: 'token for another VIN',
      code: 'TOKEN_AUDIENCE_MISMATCH',
      send: () => command({ vin: OTHER_VIN }),
    },
    {
      name: 'a lock token sent as unlock',
      code: 'TOKEN_ACTION_MISMATCH',
      send: () => command({ action: 'lock' }, { action: 'unlock' }),
    },
    { name: 'expired', code: 'TOKEN_EXPIRED', send: () => command({ nowMs: NOW - 200_000, ttlS: 60 }) },
    { name: 'not yet valid', code: 'TOKEN_NOT_YET_VALID', send: () => command({ nowMs: NOW + 120_000 }) },
    {
      name: 'token moved to another command envelope',
      code: 'TOKEN_BINDING_MISMATCH',
      send: () => command({}, { commandId: 'cmd_other' }),
    },
    {
      name: 'car clock unknown',
      code: 'CLOCK_UNKNOWN',
      send: async (r) => {
        r.setTime(null);
        return command();
      },
    },
  ];

  it.each(cases)('$name → $code', async ({ code, send }) => {
    const r = rig();
    const sent = await send(r);
    const result = await r.car.handleCommand(sent.raw);
    const ack = expectRefused(result.ack, code);
    expect(ack.commandId).toBe(sent.commandId);
    expect(result.stateChanged).toBe(false);
    expect(r.car.snapshot()).toEqual(initialCarState(POSITION));
  });

  it('the clock-unknown refusal carries at: null', async () => {
    const r = rig();
    r.setTime(null);
    const { ack } = await r.car.handleCommand((await command()).raw);
    expect(ack?.at).toBeNull();
  });

  it('replayed: a used token in a new envelope is refused, and so is the same command re-encoded', async () => {
    const r = rig();
    const unlock = await command({ action: 'unlock' });
    expect((await r.car.handleCommand(unlock.raw)).ack?.outcome).toBe('executed');
    expect((await r.car.handleCommand((await command({ action: 'lock' })).raw)).ack?.outcome).toBe(
      'executed',
    );
    expect(r.car.snapshot().locked).toBe(true);

    // Same token under a different commandId: the binding check (§4.3 step 13) stops it before the jti.
    const moved = envelopeFor(unlock.token, {
      commandId: nextId('cmd'),
      deliveryId: 'dlv_1',
      action: 'unlock',
    });
    expectRefused((await r.car.handleCommand(moved.raw)).ack, 'TOKEN_BINDING_MISMATCH');

    // Same token and commandId but different bytes: not a QoS duplicate, so the replay guard decides.
    const reencoded = Buffer.from(`${unlock.raw.toString()} `);
    expectRefused((await r.car.handleCommand(reencoded)).ack, 'TOKEN_REPLAYED');
    expect(r.car.snapshot().locked).toBe(true);
  });

  it('a fresh token whose jti was already used is refused as TOKEN_REPLAYED', async () => {
    const r = rig();
    await r.car.handleCommand((await command({ action: 'lock', jti: 'jti_reused' })).raw);
    const again = await command({ action: 'unlock', jti: 'jti_reused' });
    expectRefused((await r.car.handleCommand(again.raw)).ack, 'TOKEN_REPLAYED');
    expect(r.car.snapshot().locked).toBe(true);
  });

  it('a full replay store makes the car refuse (fail closed)', async () => {
    const r = rig({ replay: replayAnswering(() => 'full') });
    expectRefused((await r.car.handleCommand((await command()).raw)).ack, 'REPLAY_STORE_FULL');
  });

  it('a token from another issuer is refused when the car pins an issuer', async () => {
    const r = rig({ issuer: 'urn:gateway:elsewhere' });
    expectRefused((await r.car.handleCommand((await command()).raw)).ack, 'TOKEN_ISSUER_MISMATCH');
  });

  it('a replay guard that throws makes the car refuse with CAR_FAULT', async () => {
    const r = rig({
      replay: replayAnswering(() => {
        throw new Error('disk on fire');
      }),
    });
    expectRefused((await r.car.handleCommand((await command()).raw)).ack, 'CAR_FAULT');
  });
});

describe('malformed commands', () => {
  it('a schema failure with a usable commandId is refused as COMMAND_MALFORMED', async () => {
    const r = rig();
    const raw = Buffer.from(JSON.stringify({ v: 1, type: 'command', commandId: 'cmd_9', action: 'unlock' }));
    const { ack } = await r.car.handleCommand(raw);
    expect(expectRefused(ack, 'COMMAND_MALFORMED')).toMatchObject({ commandId: 'cmd_9', action: 'unlock' });
    expect(ack?.deliveryId).toBeUndefined();
  });

  it.each([
    ['not JSON', Buffer.from('{"commandId":"cmd_1"')],
    ['no commandId', Buffer.from('{"v":1,"type":"command"}')],
    ['a commandId outside the id syntax', Buffer.from('{"commandId":"cmd 1/../"}')],
    ['duplicate commandId members', Buffer.from('{"commandId":"cmd_1","commandId":"cmd_2"}')],
    ['an array', Buffer.from('[{"commandId":"cmd_1"}]')],
    ['above the size limit', Buffer.from(`{"commandId":"cmd_1","pad":"${'x'.repeat(17_000)}"}`)],
  ])('%s → no ack', async (_name, raw) => {
    const r = rig();
    expect(await r.car.handleCommand(raw)).toEqual({ ack: null, stateChanged: false });
  });

  it('a valid command with a duplicated member is treated as malformed', async () => {
    const r = rig();
    const sent = await command();
    const text = sent.raw.toString().replace('"v":1,', '"v":1,"v":1,');
    expect((await r.car.handleCommand(Buffer.from(text))).ack).toBeNull();
    expect(r.car.snapshot().locked).toBe(true);
  });
});

describe('executing commands', () => {
  it('a valid unlock executes, and the fail-safe relocks after failsafeRelockMs', async () => {
    const r = rig();
    const sent = await command({ action: 'unlock' });
    const result = await r.car.handleCommand(sent.raw);
    expect(AckSchema.parse(result.ack)).toEqual({
      v: 1,
      type: 'ack',
      vin: VIN,
      commandId: sent.commandId,
      deliveryId: 'dlv_1',
      action: 'unlock',
      outcome: 'executed',
      locked: false,
      at: NOW,
      sig: expect.any(String),
    });
    expect(verifyAckSignature(result.ack as Ack, createPublicKey(carKey))).toEqual({ ok: true });
    expect(result.stateChanged).toBe(true);
    expect(r.car.snapshot()).toMatchObject({ locked: false, relockDeadline: NOW + RELOCK_MS });

    expect(r.car.tick(NOW + RELOCK_MS - 1)).toEqual([]);
    expect(r.car.snapshot().locked).toBe(false);

    r.setTime(NOW + RELOCK_MS);
    expect(r.car.tick()).toEqual([{ type: 'relocked_by_car' }, { type: 'report_state' }]);
    expect(r.car.snapshot()).toMatchObject({ locked: true, relockDeadline: null });
  });

  it('a lock clears the pending relock', async () => {
    const r = rig();
    await r.car.handleCommand((await command({ action: 'unlock' })).raw);
    r.setTime(NOW + 10_000);
    const { ack, stateChanged } = await r.car.handleCommand(
      (await command({ action: 'lock', nowMs: NOW })).raw,
    );
    expect(ack).toMatchObject({ outcome: 'executed', locked: true, at: NOW + 10_000 });
    expect(stateChanged).toBe(true);
    expect(r.car.snapshot().relockDeadline).toBeNull();
    expect(r.car.tick(NOW + 10 * RELOCK_MS)).toEqual([]);
  });

  it('a QoS duplicate (same bytes twice) executes once and gets the identical ack', async () => {
    const r = rig();
    const changes: string[] = [];
    r.car.onChange((c) => changes.push(c.cause));
    const sent = await command({ action: 'unlock' });
    const first = await r.car.handleCommand(sent.raw);
    r.setTime(NOW + 5_000);
    const second = await r.car.handleCommand(Buffer.from(sent.raw));
    expect(second.ack).toBe(first.ack);
    expect(JSON.stringify(second.ack)).toBe(JSON.stringify(first.ack));
    expect(second.stateChanged).toBe(false);
    expect(changes).toEqual(['command']);
    // Executing again would have restarted the fail-safe window from the later time.
    expect(r.car.snapshot().relockDeadline).toBe(NOW + RELOCK_MS);
  });

  it('a duplicate of a refused command gets the same refusal, even after the token became valid', async () => {
    const r = rig();
    const early = await command({ nowMs: NOW + 120_000 });
    const first = await r.car.handleCommand(early.raw);
    expectRefused(first.ack, 'TOKEN_NOT_YET_VALID');
    r.setTime(NOW + 120_000);
    expect((await r.car.handleCommand(early.raw)).ack).toBe(first.ack);
    expect(r.car.snapshot().locked).toBe(true);
  });

  it('concurrent deliveries are handled one at a time, in order', async () => {
    const r = rig();
    const unlock = await command({ action: 'unlock' });
    const lock = await command({ action: 'lock' });
    const results = await Promise.all([
      r.car.handleCommand(unlock.raw),
      r.car.handleCommand(unlock.raw),
      r.car.handleCommand(lock.raw),
    ]);
    expect(results.map((x) => x.ack?.outcome)).toEqual(['executed', 'executed', 'executed']);
    expect(results[1]?.ack).toBe(results[0]?.ack);
    expect(r.car.snapshot().locked).toBe(true);
  });
});

describe('the state machine', () => {
  const config = { failsafeRelockMs: RELOCK_MS };
  const unlocked = (): CarState =>
    transition(initialCarState(POSITION), { type: 'remote_command', action: 'unlock', now: NOW }, config)
      .state;

  it('locks with a door open and reports the door as it is', () => {
    const open = transition(unlocked(), { type: 'door', door: 'rearLeft', to: 'open' }, config).state;
    const { state, effects } = transition(open, { type: 'remote_command', action: 'lock', now: NOW }, config);
    expect(state).toMatchObject({ locked: true, doors: { rearLeft: 'open' }, relockDeadline: null });
    expect(effects).toEqual([{ type: 'report_state' }]);
  });

  it('a second unlock restarts the window without a report', () => {
    const { state, effects } = transition(
      unlocked(),
      { type: 'remote_command', action: 'unlock', now: NOW + 60_000 },
      config,
    );
    expect(state.relockDeadline).toBe(NOW + 60_000 + RELOCK_MS);
    expect(effects).toEqual([]);
  });

  it('relocks at once when the car loses the time or its clock goes back before the unlock', () => {
    expect(transition(unlocked(), { type: 'tick', now: null }, config).state.locked).toBe(true);
    expect(transition(unlocked(), { type: 'tick', now: NOW - 1 }, config).state.locked).toBe(true);
    expect(transition(unlocked(), { type: 'tick', now: NOW }, config).state.locked).toBe(false);
  });

  it('does nothing on a tick while locked, and nothing reported changes on connectivity', () => {
    const s = initialCarState(POSITION);
    expect(transition(s, { type: 'tick', now: null }, config)).toEqual({ state: s, effects: [] });
    expect(transition(s, { type: 'connectivity', online: true }, config).effects).toEqual([]);
  });
});

describe('state reports', () => {
  it('validate against StateReportSchema, follow control ops, and take an increasing seq', () => {
    const r = rig();
    const causes: string[] = [];
    r.car.onChange((c) => causes.push(c.cause));
    const first = StateReportSchema.parse(r.car.stateReport());
    expect(first).toMatchObject({ vin: VIN, locked: true, online: true, position: POSITION, at: NOW });

    expect(r.car.openDoor('driver')).toEqual([{ type: 'report_state' }]);
    expect(r.car.openDoor('driver')).toEqual([]);
    r.car.setTrunk('open');
    r.car.setIgnition('on');
    r.car.moveTo({ lat: 47.62, lon: -122.34 });
    expect(causes).toEqual(['control', 'control', 'control', 'control']);

    r.setTime(null);
    const second = StateReportSchema.parse(r.car.stateReport());
    expect(second).toMatchObject({
      doors: { driver: 'open', passenger: 'closed' },
      trunk: 'open',
      ignition: 'on',
      position: { lat: 47.62, lon: -122.34 },
      at: null,
    });
    expect(second.seq).toBeGreaterThan(first.seq);
    expect(r.car.closeDoor('driver')).toEqual([{ type: 'report_state' }]);
  });

  it('refuses an impossible position', () => {
    expect(() => rig().car.moveTo({ lat: 91, lon: 0 })).toThrow();
  });

  it('the presence message is the will the protocol expects', () => {
    expect(PresenceSchema.parse(rig().car.presence())).toEqual({
      v: 1,
      type: 'presence',
      vin: VIN,
      online: false,
    });
  });
});

describe('replay stores', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'sim-replay-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('the file store survives re-creation from the same file, written with mode 0600', () => {
    const file = join(dir, 'cars', `${VIN}.replay.json`);
    const first = createFileReplayStore({ file, capacity: 10 });
    expect(first.claim('jti_a', NOW + 60_000, NOW)).toBe('ok');
    expect(first.claim('jti_a', NOW + 60_000, NOW)).toBe('replayed');
    expect(statSync(file).mode & 0o777).toBe(0o600);

    const second = createFileReplayStore({ file, capacity: 10 });
    expect(second.lastGoodTime()).toBe(NOW);
    expect(second.claim('jti_a', NOW + 60_000, NOW)).toBe('replayed');
    expect(second.claim('jti_b', NOW + 60_000, NOW + 5)).toBe('ok');
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({
      v: 2,
      lastGoodTime: NOW + 5,
      entries: [
        ['jti_a', NOW + 60_000],
        ['jti_b', NOW + 60_000],
      ],
    });
  });

  it('loads a version 1 file, with no last good time', () => {
    const file = join(dir, 'v1.json');
    writeFileSync(file, JSON.stringify({ v: 1, entries: [['jti_a', NOW + 60_000]] }));
    const store = createFileReplayStore({ file, capacity: 10 });
    expect(store.lastGoodTime()).toBeNull();
    expect(store.claim('jti_a', NOW + 60_000, NOW)).toBe('replayed');
  });

  it('a restarted car refuses a command it executed before the restart', async () => {
    const file = join(dir, `${VIN}.replay.json`);
    const sent = await command({ action: 'unlock' });
    const before = rig({ replay: createFileReplayStore({ file, capacity: 10 }) });
    expect((await before.car.handleCommand(sent.raw)).ack?.outcome).toBe('executed');
    const after = rig({ replay: createFileReplayStore({ file, capacity: 10 }) });
    expectRefused((await after.car.handleCommand(sent.raw)).ack, 'TOKEN_REPLAYED');
  });

  it("answers 'full' at capacity and frees room once entries expire by the last good time", () => {
    const file = join(dir, 'r.json');
    const store = createFileReplayStore({ file, capacity: 2 });
    expect(store.claim('a', NOW + 1_000, NOW)).toBe('ok');
    expect(store.claim('b', NOW + 5_000, NOW)).toBe('ok');
    expect(store.claim('c', NOW + 5_000, NOW)).toBe('full');
    expect(createFileReplayStore({ file, capacity: 2 }).claim('c', NOW + 5_000, NOW)).toBe('full');
    expect(store.claim('c', NOW + 5_000, NOW + 1_000)).toBe('ok');
    expect(store.size()).toBe(2);
    expect(store.lastGoodTime()).toBe(NOW + 1_000);
  });

  it('the memory store has the same semantics, and its last good time never goes back', () => {
    const store = createMemoryReplayStore({ capacity: 1 });
    expect(store.lastGoodTime()).toBeNull();
    expect(store.claim('a', NOW + 1_000, NOW)).toBe('ok');
    expect(store.claim('a', NOW + 1_000, NOW)).toBe('replayed');
    // A claim at an earlier time neither prunes by it nor lowers the last good time.
    expect(store.claim('b', NOW + 2_000, NOW - 60_000)).toBe('full');
    expect(store.lastGoodTime()).toBe(NOW);
    expect(store.claim('b', NOW + 2_000, NOW + 1_000)).toBe('ok');
  });

  it('a damaged file stops the store instead of forgetting used tokens', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, '{"v":1,"entries":[["a","soon"]]}');
    expect(() => createFileReplayStore({ file, capacity: 2 })).toThrow(
      expect.objectContaining({ code: 'SIM_REPLAY_STORE_CORRUPT' }),
    );
  });

  it("a claim that cannot be written is refused as 'full' and not recorded", () => {
    const file = join(dir, 'w.json');
    const errors: unknown[] = [];
    const store = createFileReplayStore({ file, capacity: 5, onError: (e) => errors.push(e) });
    mkdirSync(`${file}.tmp`); // the temporary file's path is now a directory
    expect(store.claim('a', NOW + 1_000, NOW)).toBe('full');
    expect(errors).toHaveLength(1);
    expect(store.size()).toBe(0);
    expect(store.lastGoodTime()).toBeNull();
    rmSync(`${file}.tmp`, { recursive: true });
    expect(store.claim('a', NOW + 1_000, NOW)).toBe('ok');
  });

  it('keeps the file private even when a stale temporary file had wider permissions', () => {
    const file = join(dir, 'p.json');
    writeFileSync(`${file}.tmp`, 'stale');
    chmodSync(`${file}.tmp`, 0o644);
    createFileReplayStore({ file, capacity: 5 }).claim('a', NOW + 1_000, NOW);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });
});

describe('command line', () => {
  const code = (argv: string[]): string | undefined => {
    try {
      parseCli(argv);
      return undefined;
    } catch (err) {
      return err instanceof SimulatorError ? err.code : 'OTHER';
    }
  };

  it('parses a full command line', () => {
    expect(
      parseCli([
        '--broker',
        'mqtts://127.0.0.1:8883',
        '--certs',
        'c',
        '--data',
        'd',
        '--vin',
        VIN,
        '--vin',
        OTHER_VIN,
      ]),
    ).toEqual({
      kind: 'run',
      options: {
        brokerUrl: 'mqtts://127.0.0.1:8883',
        certsDir: 'c',
        dataDir: 'd',
        vins: [VIN, OTHER_VIN],
        includeIncompatible: false,
      },
    });
    expect(parseCli(['--help'])).toEqual({ kind: 'help' });
  });

  it.each([
    [[]],
    [['--broker', 'mqtt://127.0.0.1:1883']],
    [['--broker', 'not a url']],
    [['--broker', 'mqtts://h:1', '--vin', 'SHORT']],
    [['--broker', 'mqtts://h:1', '--bogus']],
    [['--broker', 'mqtts://h:1', 'positional']],
    [['--broker', 'mqtts://h:1', '--relock-ms', '-5']],
  ])('refuses %j with SIM_ARGS_INVALID', (argv) => {
    expect(code(argv)).toBe('SIM_ARGS_INVALID');
  });
});

describe('reconnect backoff', () => {
  it('grows exponentially up to the cap, with jitter within the upper half', () => {
    const b = { initialMs: 500, maxMs: 30_000 };
    expect(reconnectDelay(0, b, () => 0)).toBe(250);
    expect(reconnectDelay(0, b, () => 0.999999)).toBe(500);
    expect(reconnectDelay(3, b, () => 0.5)).toBe(3_000);
    expect(reconnectDelay(50, b, () => 0)).toBe(15_000);
    expect(reconnectDelay(50, b, () => 0.999999)).toBe(30_000);
  });
});
