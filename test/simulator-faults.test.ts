// Tests the fault layer between the simulated car and its MQTT session: fake client, fake timers, seeded faults.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { type TrustedKeysFile, trustedJwkFor } from '../protocols/keys.ts';
import { type Action, type Command, StateReportSchema } from '../protocols/messages.ts';
import { onstar } from '../protocols/providers/index.ts';
import { buildClaims, mintAccessToken } from '../protocols/token.ts';
import { loadSeeds } from '../seeds/index.ts';
import { createSimulatedCar, type ExecutedCommand, type SimulatedCar } from '../simulator/car.ts';
import {
  type CarFaults,
  createCarFaults,
  createFleetFaults,
  type FaultPlan,
  mulberry32,
  planFor,
  seedFor,
} from '../simulator/faults.ts';
import { startFleet } from '../simulator/fleet.ts';
import { createMemoryKeyStore } from '../simulator/key-store.ts';
import { createOutcomeMemory } from '../simulator/outcome-memory.ts';
import { createMemoryReplayStore } from '../simulator/replay-store.ts';
import { createMemoryRevocationStore } from '../simulator/revocation-store.ts';
import { type CarConnection, connectCar } from '../simulator/transport.ts';
import { type FakeClient, fakeClients } from './helpers/fake-mqtt.ts';

const NOW = Date.parse('2025-06-02T09:00:00Z');
const VIN = '1G1ZE5ST5KF100231';
const RELOCK_MS = 120_000;

let gatewayKey: KeyObject;
let trustedKeys: TrustedKeysFile;
/** The car's P-256 key: it signs the acks (TOKEN.md §9). */
let carKey: KeyObject;

beforeAll(async () => {
  const pair = generateKeyPairSync('ed25519');
  gatewayKey = pair.privateKey;
  trustedKeys = { keys: [await trustedJwkFor(pair.publicKey)] };
  carKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
});

/** The test car is an OnStar car: everything on its command topic is in that dialect (PROVIDERS.md §4.1). */
const toCar = (message: Parameters<typeof onstar.encodeToCar>[0]): Buffer =>
  Buffer.from(onstar.encodeToCar(message));

interface CommandSpec {
  id: string;
  action?: Action;
  ttlS?: number;
  vin?: string;
}

/** A command with a token minted now (fake Date), in the car's dialect; ids given by the test, so two runs send the same bytes. */
async function command({ id, action = 'unlock', ttlS = 60, vin = VIN }: CommandSpec): Promise<Buffer> {
  const commandId = `cmd_${id}`;
  const token = await mintAccessToken({
    privateKey: gatewayKey,
    kid: trustedKeys.keys[0]?.kid as string,
    claims: buildClaims({
      issuer: 'urn:gateway:gateway',
      vin,
      deliveryId: 'dlv_1',
      action,
      commandId,
      jti: `jti_${id}`,
      nowMs: Date.now(),
      ttlS,
      notAfterMs: Date.now() + 3_600_000,
    }),
  });
  const message: Command = { v: 1, type: 'command', commandId, deliveryId: 'dlv_1', action, token };
  return toCar(message);
}

/** Waits for real asynchronous work (token verification runs on the thread pool), not for fake time. */
async function until(predicate: () => boolean, what: string): Promise<void> {
  // performance.now is not faked here: the budget is real time, for a loaded machine.
  const deadline = performance.now() + 10_000;
  while (performance.now() < deadline) {
    if (predicate()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`never happened: ${what}`);
}

/** Advances fake time in small steps until the predicate holds: delays that start after real work still fire. */
async function drive(predicate: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (performance.now() < deadline) {
    if (predicate()) return;
    await vi.advanceTimersByTimeAsync(50);
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`never happened: ${what}`);
}

interface Rig {
  faults: CarFaults;
  car: SimulatedCar;
  client: FakeClient;
  conn: CarConnection;
  executed: ExecutedCommand[];
}

async function rig(plan: FaultPlan = {}, seed = 7): Promise<Rig> {
  const faults = createCarFaults({ vin: VIN, seed, plan, now: () => Date.now() });
  const executed: ExecutedCommand[] = [];
  const replay = createMemoryReplayStore({ capacity: 100 });
  const car = createSimulatedCar({
    vin: VIN,
    make: 'Chevrolet',
    model: 'Malibu',
    year: 2019,
    provider: 'onstar',
    initial: { position: { lat: 47.6, lon: -122.3 } },
    keys: createMemoryKeyStore(trustedKeys),
    replay,
    revocations: createMemoryRevocationStore({ capacity: 100, lastGoodTime: () => replay.lastGoodTime() }),
    signingKey: carKey,
    clock: () => faults.carTime(),
    failsafeRelockMs: RELOCK_MS,
    faults,
    onExecuted: (e) => executed.push(e),
  });
  const fake = fakeClients();
  const conn = await connectCar({
    car,
    brokerUrl: 'mqtts://127.0.0.1:8883',
    ca: 'CA',
    cert: 'CERT',
    key: 'KEY',
    reportIntervalMs: 3_600_000,
    random: () => 0.5,
    backoff: { initialMs: 100, maxMs: 1_000 },
    createClient: fake.create,
    faults,
    outcomes: createOutcomeMemory(),
  });
  const client = fake.byVin(VIN);
  client.sent = [];
  return { faults, car, client, conn, executed };
}

beforeEach(() => {
  vi.useFakeTimers({
    now: NOW,
    toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'],
  });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('the seeded PRNG', () => {
  it('replays the same stream for a seed and gives each label its own', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const first = Array.from({ length: 5 }, a);
    expect(Array.from({ length: 5 }, b)).toEqual(first);
    expect(first.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(Array.from({ length: 5 }, mulberry32(43))).not.toEqual(first);
    expect(seedFor(1, 'A/commands')).not.toBe(seedFor(1, 'A/acks'));
    expect(seedFor(1, 'A/commands')).toBe(seedFor(1, 'A/commands'));
  });

  it('takes a car plan section by section: the car replaces the fleet', () => {
    const plan = {
      fleet: { battery: 'low' as const, commands: { drop: 0.5 } },
      cars: { [VIN]: { commands: { duplicate: 1 } } },
    };
    expect(planFor(plan, VIN)).toEqual({ battery: 'low', commands: { duplicate: 1 } });
    expect(planFor(plan, 'YV1A22MK3F1900345')).toEqual({ battery: 'low', commands: { drop: 0.5 } });
  });
});

describe('reproducibility', () => {
  const noisy: FaultPlan = {
    commands: { drop: 0.15, duplicate: 0.2, reorder: 0.15, latencyMs: 20, jitterMs: 200 },
    acks: { drop: 0.2, duplicate: 0.2, jitterMs: 100 },
  };

  async function play(seed: number) {
    vi.setSystemTime(NOW);
    const r = await rig(noisy, seed);
    for (let i = 0; i < 24; i++) {
      r.client.deliver(await command({ id: String(i), action: i % 2 === 0 ? 'unlock' : 'lock' }));
      // Enough fake time for any delay and any reorder hold, with real time for the token checks.
      for (let k = 0; k < 6; k++) {
        await vi.advanceTimersByTimeAsync(250);
        await until(() => true, 'a turn');
        await r.car.handleCommand(Buffer.from('{}')); // waits for the car's queue to drain
      }
    }
    await r.conn.close();
    // ECDSA signatures are randomised (TOKEN.md §9): the acks are compared without theirs.
    const acks = r.client.messages('acks').map(({ sig: _sig, ...ack }) => ack);
    return { trace: [...r.faults.trace()], acks };
  }

  it('the same seed gives the same fault trace and the same acks; another seed does not', async () => {
    const one = await play(2024);
    const two = await play(2024);
    expect(two.trace).toEqual(one.trace);
    expect(two.acks).toEqual(one.acks);
    const kinds = new Set(one.trace.map((e) => e.kind));
    for (const kind of ['command_dropped', 'command_duplicated', 'command_reordered', 'ack_lost']) {
      expect(kinds).toContain(kind);
    }
    const other = await play(2025);
    expect(other.trace).not.toEqual(one.trace);
  });
});

describe('message faults', () => {
  it('a duplicated command executes once and the same ack goes out twice', async () => {
    const r = await rig({ commands: { duplicate: 1 } });
    r.client.deliver(await command({ id: 'dup' }));
    await until(() => r.client.onTopic('acks').length === 2, 'two acks');
    const [a, b] = r.client.onTopic('acks');
    expect(b?.payload).toBe(a?.payload);
    expect(r.executed).toHaveLength(1);
    expect(r.faults.counts()).toMatchObject({ command_duplicated: 1 });
    await r.conn.close();
  });

  it('a lost ack: the car executed, nothing reaches the gateway but the state report', async () => {
    const r = await rig({ acks: { drop: 1 } });
    r.client.deliver(await command({ id: 'lost' }));
    await until(() => r.executed.length === 1, 'executed');
    await until(() => r.client.onTopic('state').length === 1, 'state report');
    expect(r.client.onTopic('acks')).toEqual([]);
    expect(r.car.snapshot().locked).toBe(false);
    expect(r.client.messages('state')[0]).toMatchObject({ locked: false });
    expect(r.faults.counts()).toMatchObject({ ack_lost: 1 });
    await r.conn.close();
  });

  it('a dropped command is acknowledged to the broker but never handled', async () => {
    const r = await rig({ commands: { drop: 1 } });
    r.client.deliver(await command({ id: 'gone' }));
    expect(r.client.pubacks).toBe(1);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(r.client.onTopic('acks')).toEqual([]);
    expect(r.car.snapshot().locked).toBe(true);
    await r.conn.close();
  });

  it('a reordered command is handled after the one behind it', async () => {
    const r = await rig({ commands: { reorder: 1 } });
    r.client.deliver(await command({ id: 'first', action: 'unlock' }));
    r.client.deliver(await command({ id: 'second', action: 'lock' }));
    await until(() => r.client.onTopic('acks').length === 2, 'two acks');
    expect(r.client.messages('acks').map((a) => a.commandId)).toEqual(['cmd_second', 'cmd_first']);
    // The unlock ran last: the car is open, as the reordering made it.
    expect(r.car.snapshot().locked).toBe(false);
    await r.conn.close();
  });

  it('a command a state query overtook is refused (COMMAND_DISOWNED): the answer said it never came, so it never runs', async () => {
    const r = await rig({ commands: { reorder: 1 } });
    // The unlock is held back by the network; the gateway, without an ack, asks the car about it.
    r.client.deliver(await command({ id: 'late', action: 'unlock' }));
    r.client.deliver(
      toCar({ v: 1, type: 'state_query', nonce: 'BBBBBBBBBBBBBBBBBBBBBB', commandIds: ['cmd_late'] }),
    );
    await until(() => r.client.onTopic('acks').length === 1, 'the late unlock answered');
    const answer = r.client.messages('state').find((m) => m.nonce === 'BBBBBBBBBBBBBBBBBBBBBB');
    // The answer lists nothing: the command had not reached the car (PROTOCOL.md §3.5)…
    expect(answer?.commands).toEqual([]);
    // …and when it arrives after all, the car keeps that answer true: refused, still locked, nothing executed.
    expect(r.client.messages('acks')[0]).toMatchObject({
      commandId: 'cmd_late',
      outcome: 'refused',
      reason: 'COMMAND_DISOWNED',
      locked: true,
    });
    expect(r.car.snapshot().locked).toBe(true);
    expect(r.executed).toEqual([]);
    await r.conn.close();
  });

  it('latency holds the PUBACK until the command is handled', async () => {
    const r = await rig({ commands: { latencyMs: 3_000 } });
    r.client.deliver(await command({ id: 'slow' }));
    await vi.advanceTimersByTimeAsync(2_999);
    expect(r.client.pubacks).toBe(0);
    expect(r.client.onTopic('acks')).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await until(() => r.client.pubacks === 1, 'puback');
    expect(r.client.messages('acks')[0]).toMatchObject({ outcome: 'executed' });
    await r.conn.close();
  });
});

describe('sleep and wake', () => {
  it('an asleep car wakes on the first command and handles it after the wake latency', async () => {
    const r = await rig({ link: 'asleep', wakeLatencyMs: 8_000 });
    r.conn.reportState();
    expect(r.client.onTopic('state')).toEqual([]); // dormant: nothing unasked
    r.client.deliver(await command({ id: 'wake' }));
    await vi.advanceTimersByTimeAsync(7_999);
    expect(r.client.onTopic('acks')).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await until(() => r.client.onTopic('acks').length === 1, 'ack after wake');
    expect(r.client.messages('acks')[0]).toMatchObject({ outcome: 'executed', locked: false });
    expect(r.faults.trace().map((e) => e.kind)).toEqual(['wake_requested', 'woken']);
    await r.conn.close();
  });

  it('a car that wakes after the token expired refuses it with TOKEN_EXPIRED and stays locked', async () => {
    const r = await rig({ link: 'asleep', wakeLatencyMs: 120_000 });
    r.client.deliver(await command({ id: 'late', ttlS: 60 }));
    await vi.advanceTimersByTimeAsync(120_000);
    await until(() => r.client.onTopic('acks').length === 1, 'ack after wake');
    expect(r.client.messages('acks')[0]).toMatchObject({
      outcome: 'refused',
      reason: 'TOKEN_EXPIRED',
      locked: true,
    });
    expect(r.car.snapshot().locked).toBe(true);
    expect(r.executed).toEqual([]);
    await r.conn.close();
  });

  it('falls asleep again after sleepAfterMs without a message', async () => {
    const r = await rig({ sleepAfterMs: 10_000 });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(r.faults.status().link).toBe('asleep');
    await r.conn.close();
  });
});

describe('link faults', () => {
  it('offline drops the session and does not reconnect until online; then reconnects with backoff', async () => {
    const r = await rig();
    r.faults.setLink('offline');
    await vi.advanceTimersByTimeAsync(0);
    expect(r.conn.connected).toBe(false);
    expect(r.car.snapshot().online).toBe(false);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(r.client.connects).toBe(1);
    r.faults.setLink('online');
    await vi.advanceTimersByTimeAsync(74); // first backoff step: 100 ms, jitter 0.5 → 75 ms
    expect(r.client.connects).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    await until(() => r.conn.connected, 'reconnected');
    expect(r.client.connects).toBe(2);
    await r.conn.close();
  });

  it('no signal: every attempt fails with growing backoff until the signal returns', async () => {
    const r = await rig();
    r.faults.setLink('no_signal');
    await vi.advanceTimersByTimeAsync(10_000);
    const failed = r.faults.counts().connect_failed ?? 0;
    // 75, 150, 300, 600, then 750 ms each: about 17 attempts in 10 s, never a connect.
    expect(failed).toBeGreaterThan(5);
    expect(failed).toBeLessThan(30);
    expect(r.client.connects).toBe(1);
    r.faults.setLink('online');
    await vi.advanceTimersByTimeAsync(1_000);
    await until(() => r.conn.connected, 'reconnected');
    expect(r.client.connects).toBe(2);
    await r.conn.close();
  });

  it('a car that starts offline goes off the network right after its first connect', async () => {
    const r = await rig({ link: 'offline' });
    await vi.advanceTimersByTimeAsync(0);
    expect(r.conn.connected).toBe(false);
    await r.conn.close();
  });
});

describe('battery and clock', () => {
  it('a low battery refuses with LOW_BATTERY and consumes no jti', async () => {
    const r = await rig({ battery: 'low' });
    const raw = await command({ id: 'batt' });
    r.client.deliver(raw);
    await until(() => r.client.onTopic('acks').length === 1, 'ack');
    expect(r.client.messages('acks')[0]).toMatchObject({
      outcome: 'refused',
      reason: 'LOW_BATTERY',
      locked: true,
    });
    r.faults.setBattery('ok');
    // The same token in a re-encoded envelope (not a QoS duplicate) now runs: its jti was never used.
    r.client.deliver(Buffer.from(`${raw.toString()} `));
    await until(() => r.client.onTopic('acks').length === 2, 'second ack');
    expect(r.client.messages('acks')[1]).toMatchObject({ outcome: 'executed' });
    await r.conn.close();
  });

  it('a clock jumped forward past exp refuses TOKEN_EXPIRED; a lost clock refuses CLOCK_UNKNOWN', async () => {
    const r = await rig();
    r.faults.jumpClock(10 * 60_000);
    r.client.deliver(await command({ id: 'jump' }));
    await until(() => r.client.onTopic('acks').length === 1, 'ack');
    expect(r.client.messages('acks')[0]).toMatchObject({ reason: 'TOKEN_EXPIRED' });
    r.faults.setClockKnown(false);
    r.client.deliver(await command({ id: 'lost' }));
    await until(() => r.client.onTopic('acks').length === 2, 'ack');
    expect(r.client.messages('acks')[1]).toMatchObject({ reason: 'CLOCK_UNKNOWN', at: null });
    await r.conn.close();
  });

  it('a clock jumped back while unlocked makes the fail-safe relock at once', async () => {
    const r = await rig();
    r.client.deliver(await command({ id: 'open' }));
    await until(() => r.executed.length === 1, 'executed');
    r.faults.jumpClock(-60_000);
    await vi.advanceTimersByTimeAsync(250);
    expect(r.car.snapshot().locked).toBe(true);
    await r.conn.close();
  });

  it('drift runs the car clock fast or slow against real time', async () => {
    const r = await rig({ clock: { offsetMs: 5_000, driftPpm: 10_000 } });
    expect(r.faults.carTime()).toBe(NOW + 5_000);
    await vi.advanceTimersByTimeAsync(100_000);
    expect(r.faults.carTime()).toBe(NOW + 100_000 + 5_000 + 1_000);
    await r.conn.close();
  });
});

describe('state query', () => {
  it('is answered with a state report carrying its nonce, after the command before it', async () => {
    const r = await rig({ commands: { latencyMs: 500 } });
    const nonce = 'n'.repeat(22);
    r.client.deliver(await command({ id: 'before-query' }));
    r.client.deliver(toCar({ v: 1, type: 'state_query', nonce }));
    await drive(() => r.client.messages('state').some((m) => m.nonce === nonce), 'answer');
    const answer = StateReportSchema.parse(r.client.messages('state').find((m) => m.nonce === nonce));
    expect(answer.locked).toBe(false);
    expect(r.client.onTopic('acks')).toHaveLength(1);
    await r.conn.close();
  });

  it('names the outcomes of the commands it asks about, and only when it asks', async () => {
    const r = await rig({ acks: { drop: 1 } });
    r.client.deliver(await command({ id: 'acked-never' }));
    await until(() => r.executed.length === 1, 'executed');
    const asked = 'a'.repeat(22);
    const plain = 'p'.repeat(22);
    r.client.deliver(
      toCar({ v: 1, type: 'state_query', nonce: asked, commandIds: ['cmd_acked-never', 'cmd_x'] }),
    );
    r.client.deliver(toCar({ v: 1, type: 'state_query', nonce: plain }));
    await drive(() => r.client.messages('state').some((m) => m.nonce === plain), 'answers');
    const answers = r.client.messages('state');
    expect(answers.find((m) => m.nonce === asked)?.commands).toEqual([
      { commandId: 'cmd_acked-never', outcome: 'executed' },
    ]);
    expect(answers.find((m) => m.nonce === plain)).not.toHaveProperty('commands');
    await r.conn.close();
  });

  it('a malformed query is not answered as a query', async () => {
    const r = await rig();
    r.client.deliver(
      onstar
        .encodeToCar({ v: 1, type: 'state_query', nonce: 'n'.repeat(22) })
        .replace('n'.repeat(22), 'short'),
    );
    await vi.advanceTimersByTimeAsync(10);
    expect(r.client.messages('state').filter((m) => 'nonce' in m)).toEqual([]);
    await r.conn.close();
  });
});

const carKeyPem = (): string => carKey.export({ type: 'pkcs8', format: 'pem' }).toString();

describe('reboot', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'sim-reboot-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps lock state, relock deadline and seen jtis; the redelivered command is refused as replayed', async () => {
    const { vehicles } = loadSeeds();
    const fake = fakeClients();
    const faults = createFleetFaults({ seed: 1, now: () => Date.now() });
    const fleet = await startFleet({
      brokerUrl: 'mqtts://127.0.0.1:8883',
      vehicles: vehicles.filter((v) => v.vin === VIN),
      pki: { ca: 'CA', certFor: () => ({ cert: 'C', key: carKeyPem() }) },
      trustedKeys,
      dataDir: dir,
      now: () => Date.now(),
      failsafeRelockMs: RELOCK_MS,
      createClient: fake.create,
      faults,
    });
    const raw = await command({ id: 'before-reboot' });
    fake.byVin(VIN).deliver(raw);
    await until(() => fleet.car(VIN).executed.length === 1, 'executed');
    const before = fleet.car(VIN).car.snapshot();
    expect(before.locked).toBe(false);

    const rebooted = fleet.reboot(VIN, 5_000);
    await vi.advanceTimersByTimeAsync(5_000);
    await rebooted;
    const after = fleet.car(VIN).car.snapshot();
    expect(after).toMatchObject({ locked: false, relockDeadline: before.relockDeadline });
    expect(fake.clients.filter((c) => c.vin === VIN)).toHaveLength(2);
    expect(fleet.car(VIN).faults?.counts()).toMatchObject({ reboot: 1 });

    // The broker redelivers the command whose PUBACK the dead unit never sent.
    fake.byVin(VIN).deliver(raw);
    await until(() => fake.byVin(VIN).onTopic('acks').length === 1, 'ack');
    expect(fake.byVin(VIN).messages('acks')[0]).toMatchObject({
      outcome: 'refused',
      reason: 'TOKEN_REPLAYED',
    });

    // The fail-safe still relocks on the deadline set before the reboot.
    await vi.advanceTimersByTimeAsync(RELOCK_MS);
    expect(fleet.car(VIN).car.snapshot().locked).toBe(true);
    await fleet.stop();
  });

  it('a car that boots while the broker is away keeps trying with backoff', async () => {
    const { vehicles } = loadSeeds();
    const fake = fakeClients();
    const fleet = await startFleet({
      brokerUrl: 'mqtts://127.0.0.1:8883',
      vehicles: vehicles.filter((v) => v.vin === VIN),
      pki: { ca: 'CA', certFor: () => ({ cert: 'C', key: carKeyPem() }) },
      trustedKeys,
      dataDir: dir,
      createClient: fake.create,
      backoff: { initialMs: 100, maxMs: 400 },
      random: () => 0.5,
      faults: createFleetFaults({ seed: 1, now: () => Date.now() }),
    });
    fake.brokerDown = true;
    const rebooted = fleet.reboot(VIN, 0);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(fake.clients.filter((c) => c.vin === VIN).length).toBeGreaterThan(3);
    fake.brokerDown = false;
    await vi.advanceTimersByTimeAsync(400);
    await rebooted;
    expect(fleet.car(VIN).connection.connected).toBe(true);
    await fleet.stop();
  });
});
