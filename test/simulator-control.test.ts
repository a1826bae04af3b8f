// Tests driving simulated cars by hand and by script: the control API, scenario files, and their CLI flags.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { type TrustedKeysFile, trustedJwkFor } from '../protocols/keys.ts';
import { loadSeeds } from '../seeds/index.ts';
import { parseCli } from '../simulator/cli.ts';
import { type ControlServer, startControlServer } from '../simulator/control.ts';
import { SimulatorError } from '../simulator/errors.ts';
import { createFleetFaults, type FleetFaults } from '../simulator/faults.ts';
import { type Fleet, startFleet } from '../simulator/fleet.ts';
import { loadScenario, parseScenario, playScenario } from '../simulator/scenario.ts';
import { fakeClients } from './helpers/fake-mqtt.ts';

const MALIBU = '1G1ZE5ST5KF100231';
const TAHOE = '1GNSKBKC3FR200114';
const EXAMPLE = join(import.meta.dirname, '..', 'simulator', 'scenarios', 'parking-deck.json');

let trustedKeys: TrustedKeysFile;
/** The cars' P-256 key, PKCS#8 PEM: they sign their acks with it (TOKEN.md §9). */
let carKey: string;
beforeAll(async () => {
  trustedKeys = { keys: [await trustedJwkFor(generateKeyPairSync('ed25519').publicKey)] };
  carKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();
});

let dir: string;
let fleet: Fleet;
let faults: FleetFaults;
let fake: ReturnType<typeof fakeClients>;

async function twoCars(): Promise<void> {
  fake = fakeClients();
  faults = createFleetFaults({ seed: 9 });
  fleet = await startFleet({
    brokerUrl: 'mqtts://127.0.0.1:8883',
    vehicles: loadSeeds().vehicles.filter((v) => v.vin === MALIBU || v.vin === TAHOE),
    pki: { ca: 'CA', certFor: () => ({ cert: 'C', key: carKey }) },
    trustedKeys,
    dataDir: dir,
    createClient: fake.create,
    faults,
  });
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sim-control-'));
});
afterEach(async () => {
  vi.useRealTimers();
  await fleet?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('scenario files', () => {
  it('the example in simulator/scenarios parses, and names only cars of the seed fleet', () => {
    const scenario = loadScenario(EXAMPLE);
    const vins = new Set(loadSeeds().vehicles.map((v) => v.vin));
    expect(scenario.seed).toBe(42);
    for (const vin of Object.keys(scenario.faults?.cars ?? {})) expect(vins).toContain(vin);
    for (const step of scenario.steps ?? []) if (step.vin) expect(vins).toContain(step.vin);
    expect(scenario.steps?.[1]).toEqual({ atMs: 10_000, vin: TAHOE, op: { op: 'link', mode: 'no_signal' } });
  });

  it.each([
    ['an unknown operation', { steps: [{ atMs: 0, op: 'explode' }] }, /steps\.0/],
    ['a bad field of an operation', { steps: [{ atMs: 0, op: 'link', mode: 'sideways' }] }, /steps\.0\.mode/],
    ['a member the operation does not have', { steps: [{ atMs: 0, op: 'report', extra: 1 }] }, /steps\.0/],
    ['a negative time', { steps: [{ atMs: -1, op: 'report' }] }, /steps\.0\.atMs/],
    ['a malformed VIN', { steps: [{ atMs: 0, vin: 'SHORT', op: 'report' }] }, /steps\.0\.vin/],
    ['a probability above 1', { faults: { fleet: { acks: { drop: 2 } } } }, /faults\.fleet\.acks\.drop/],
    ['an unknown top-level member', { seeds: 1 }, /\(root\)/],
  ])('refuses %s with SIM_SCENARIO_INVALID naming the field', (_name, doc, where) => {
    let caught: unknown;
    try {
      parseScenario(doc);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SimulatorError);
    expect((caught as SimulatorError).code).toBe('SIM_SCENARIO_INVALID');
    expect((caught as SimulatorError).message).toMatch(where);
  });

  it('refuses a file that is not JSON', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, '{ steps: [] }');
    expect(() => loadScenario(file)).toThrow(expect.objectContaining({ code: 'SIM_SCENARIO_INVALID' }));
  });

  it('plays steps at their times, for one car or all of them', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    await twoCars();
    const { steps = [] } = parseScenario({
      steps: [
        { atMs: 2_000, op: 'battery', level: 'low' },
        { atMs: 1_000, vin: MALIBU, op: 'door', door: 'driver', to: 'open' },
        { atMs: 3_000, vin: TAHOE, op: 'link', mode: 'offline' },
      ],
    });
    const run = playScenario(fleet, steps);
    await vi.advanceTimersByTimeAsync(999);
    expect(fleet.car(MALIBU).car.snapshot().doors.driver).toBe('closed');
    await vi.advanceTimersByTimeAsync(1);
    expect(fleet.car(MALIBU).car.snapshot().doors.driver).toBe('open');
    await vi.advanceTimersByTimeAsync(1_000);
    expect(faults.forCar(MALIBU).status().battery).toBe('low');
    expect(faults.forCar(TAHOE).status().battery).toBe('low');
    await vi.advanceTimersByTimeAsync(1_000);
    await run.done;
    expect(faults.forCar(TAHOE).status().link).toBe('offline');
    expect(faults.forCar(MALIBU).status().link).toBe('online');
  });
});

describe('control API', () => {
  let control: ControlServer;
  let base: string;
  beforeEach(async () => {
    await twoCars();
    control = await startControlServer({ fleet, faults, port: 0 });
    base = `http://127.0.0.1:${control.port}`;
  });
  afterEach(async () => {
    await control.close();
  });

  // biome-ignore lint/suspicious/noExplicitAny: tests read replies by shape and assert on them.
  type Reply = { status: number; body: any };
  const call = async (method: string, path: string, body?: unknown): Promise<Reply> => {
    const res = await fetch(`${base}${path}`, {
      method,
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    return { status: res.status, body: await res.json() };
  };

  it('lists the cars with their state, link, battery and clock', async () => {
    const r = await call('GET', '/cars');
    expect(r.status).toBe(200);
    expect(r.body.cars.map((c: { vin: string }) => c.vin).sort()).toEqual([MALIBU, TAHOE].sort());
    expect(r.body.cars[0]).toMatchObject({
      connected: true,
      state: { locked: true, doors: { driver: 'closed' } },
      faults: { link: 'online', battery: 'ok', clock: { known: true } },
    });
  });

  it('opens a door (the car reports it), skews the clock, and takes a car off the network', async () => {
    const reports = () => fake.byVin(MALIBU).messages('state').length;
    const before = reports();
    const door = await call('POST', `/cars/${MALIBU}/ops`, { op: 'door', door: 'rearLeft', to: 'open' });
    expect(door.status).toBe(200);
    expect(door.body.car.state.doors.rearLeft).toBe('open');
    expect(reports()).toBe(before + 1);

    const clock = await call('POST', `/cars/${MALIBU}/ops`, { op: 'clock', jumpMs: -90_000 });
    expect(clock.body.car.faults.clock.offsetMs).toBeLessThanOrEqual(-89_000);

    const off = await call('POST', `/cars/${MALIBU}/ops`, { op: 'link', mode: 'offline' });
    expect(off.body.car.faults.link).toBe('offline');
    await vi.waitFor(() => expect(fleet.car(MALIBU).connection.connected).toBe(false));
    expect(fleet.car(TAHOE).connection.connected).toBe(true);

    const counts = await call('GET', '/faults');
    expect(counts.body).toMatchObject({ seed: 9, counts: { clock_jump: 1, link_down: 1 } });
    expect(counts.body.cars[MALIBU].trace.map((e: { kind: string }) => e.kind)).toEqual([
      'clock_jump',
      'link_down',
    ]);
  });

  it('applies an operation to the whole fleet, and reboots a car', async () => {
    const low = await call('POST', '/fleet/ops', { op: 'battery', level: 'low' });
    expect(low.body.applied.sort()).toEqual([MALIBU, TAHOE].sort());
    expect(faults.forCar(TAHOE).batteryLow()).toBe(true);
    const reboot = await call('POST', `/cars/${TAHOE}/ops`, { op: 'reboot', downMs: 0 });
    expect(reboot.status).toBe(200);
    expect(fake.clients.filter((c) => c.vin === TAHOE)).toHaveLength(2);
    expect(reboot.body.car.connected).toBe(true);
  });

  it('refuses what it cannot do with a stable code', async () => {
    expect(await call('GET', '/cars/1FA6P8TH6J5130557')).toMatchObject({
      status: 404,
      body: { code: 'SIM_UNKNOWN_VIN' },
    });
    expect(await call('POST', `/cars/${MALIBU}/ops`, { op: 'link', mode: 'gone' })).toMatchObject({
      status: 400,
      body: { code: 'SIM_CONTROL_INVALID' },
    });
    expect(await call('POST', `/cars/${MALIBU}/ops`, '{not json')).toMatchObject({
      status: 400,
      body: { code: 'SIM_CONTROL_INVALID' },
    });
    expect(
      await call('POST', `/cars/${MALIBU}/ops`, JSON.stringify({ op: 'report', pad: 'x'.repeat(20_000) })),
    ).toMatchObject({
      status: 413,
      body: { code: 'SIM_CONTROL_TOO_LARGE' },
    });
    expect(await call('DELETE', '/cars')).toMatchObject({
      status: 404,
      body: { code: 'SIM_CONTROL_NOT_FOUND' },
    });
  });
});

describe('control API on a fleet without fault injection', () => {
  it('answers fault operations with 409 SIM_CONTROL_FAILED and still does the plain ones', async () => {
    fake = fakeClients();
    fleet = await startFleet({
      brokerUrl: 'mqtts://127.0.0.1:8883',
      vehicles: loadSeeds().vehicles.filter((v) => v.vin === MALIBU),
      pki: { ca: 'CA', certFor: () => ({ cert: 'C', key: carKey }) },
      trustedKeys,
      dataDir: dir,
      createClient: fake.create,
    });
    const control = await startControlServer({ fleet, faults: null, port: 0 });
    try {
      const post = (body: unknown) =>
        fetch(`http://127.0.0.1:${control.port}/cars/${MALIBU}/ops`, {
          method: 'POST',
          body: JSON.stringify(body),
        });
      const link = await post({ op: 'link', mode: 'offline' });
      expect(link.status).toBe(409);
      expect(await link.json()).toMatchObject({ code: 'SIM_CONTROL_FAILED' });
      expect((await post({ op: 'trunk', to: 'open' })).status).toBe(200);
      expect(fleet.car(MALIBU).car.snapshot().trunk).toBe('open');
    } finally {
      await control.close();
    }
  });
});

describe('control API started before its fleet', () => {
  it('answers 503 SIM_CONTROL_NOT_READY until the fleet is attached, then serves it', async () => {
    await twoCars();
    const control = await startControlServer({ faults, port: 0 });
    try {
      const cars = () => fetch(`http://127.0.0.1:${control.port}/cars`);
      const early = await cars();
      expect(early.status).toBe(503);
      expect(await early.json()).toMatchObject({ code: 'SIM_CONTROL_NOT_READY' });
      control.attach(fleet);
      const later = await cars();
      expect(later.status).toBe(200);
      expect(((await later.json()) as { cars: unknown[] }).cars).toHaveLength(2);
    } finally {
      await control.close();
    }
  });
});

describe('command line', () => {
  it('takes --faults, --seed and --control-port', () => {
    const parsed = parseCli([
      '--broker',
      'mqtts://h:1',
      '--faults',
      'f.json',
      '--seed',
      '7',
      '--control-port',
      '0',
    ]);
    expect(parsed).toMatchObject({ kind: 'run', options: { faultsFile: 'f.json', seed: 7, controlPort: 0 } });
  });

  it("takes a cluster's nodes as --broker, and refuses a list with a bad one", () => {
    const nodes = 'mqtts://127.0.0.1:18883,mqtts://127.0.0.1:18884,mqtts://127.0.0.1:18885';
    expect(parseCli(['--broker', nodes])).toMatchObject({ kind: 'run', options: { brokerUrl: nodes } });
    for (const bad of [
      'mqtts://127.0.0.1:1,mqtt://127.0.0.1:2',
      'mqtts://127.0.0.1:1,',
      'mqtts://a:1,mqtts://a:1',
    ])
      expect(() => parseCli(['--broker', bad])).toThrow(
        expect.objectContaining({
          code: 'SIM_ARGS_INVALID',
          message: expect.stringMatching(/^--broker must be/),
        }),
      );
  });

  it.each([[['--seed', '-1']], [['--seed', '4294967296']], [['--seed', 'x']], [['--control-port', '70000']]])(
    'refuses %j with SIM_ARGS_INVALID',
    (extra) => {
      expect(() => parseCli(['--broker', 'mqtts://h:1', ...extra])).toThrow(
        expect.objectContaining({ code: 'SIM_ARGS_INVALID' }),
      );
    },
  );
});
