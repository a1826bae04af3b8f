// End to end: the relock guarantee. The watchdog (its clock moved, never slept on), across a gateway restart,
// the car's own fail-safe with and without the gateway, and a car that cannot be confirmed locked.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SeedLocation, SeedVehicle } from '../seeds/index.ts';
import { type Stack, startStack } from './helpers/stack.ts';

const RELOCK_AFTER_MS = 90_000;
const MALIBU = '1G1ZE5ST5KF100231';
const TAHOE = '1GNSKBKC3FR200114';
const LACROSSE = '1G4ZR5SS4JU300882';
const XC40 = 'YV4102RL7K1110583';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack(
    { COMMAND_TIMEOUT_MS: '1500', RELOCK_AFTER_S: String(RELOCK_AFTER_MS / 1000) },
    // The cars retry at most every second: with the default 30 s cap, a restart slower than a few seconds (a busy
    // machine) pushed their next attempt past restartGateway's 20 s wait.
    { fleet: { backoff: { initialMs: 100, maxMs: 1_000 } } },
  );
  for (const vin of [MALIBU, LACROSSE, XC40]) {
    const v = stack.seeds.vehicles.find((x) => x.vin === vin) as SeedVehicle;
    const r = await stack.request('POST', '/v1/vehicles', {
      vin: v.vin,
      make: v.make,
      model: v.model,
      year: v.year,
      provider: v.provider,
      ownerId: v.ownerId,
      consent: ['unlock', 'lock'],
    });
    expect(r.status).toBe(201);
  }
});
afterAll(async () => {
  await stack?.close();
});

/** Schedules, confirms the parking and unlocks; returns the delivery id with the car open. */
async function openCar(vin: string): Promise<string> {
  const v = stack.seeds.vehicles.find((x) => x.vin === vin) as SeedVehicle;
  const l = stack.seeds.locations.find((x) => x.ownerId === v.ownerId) as SeedLocation;
  const loc = await stack.request('POST', '/v1/locations', { ...l, id: undefined });
  expect(loc.status).toBe(201);
  const d = await stack.request('POST', '/v1/deliveries', {
    vin,
    locationId: loc.body.id,
    driverId: 'driver-7',
    packageIds: ['pkg-1'],
    window: { start: new Date(Date.now() - 60_000).toISOString() },
  });
  expect(d.status).toBe(201);
  expect((await stack.request('POST', `/v1/deliveries/${d.body.id}/parking`)).status).toBe(200);
  const unlocked = await stack.request('POST', `/v1/deliveries/${d.body.id}/unlock`, {
    driverId: 'driver-7',
    packageId: 'pkg-1',
    position: { lat: l.lat, lon: l.lon },
  });
  expect(unlocked.status).toBe(200);
  expect(stack.fleet.car(vin).car.snapshot().locked).toBe(false);
  return d.body.id;
}

const view = async (id: string) => (await stack.request('GET', `/v1/deliveries/${id}`)).body;
const kinds = async (id: string): Promise<string[]> =>
  (await view(id)).timeline.map((e: { kind: string }) => e.kind);

/** Sweeps with the watchdog's clock moved by `ms`, then puts the clock back. */
async function sweepAfter(ms: number) {
  stack.advanceWatchdog(ms);
  try {
    return await stack.gateway.watchdog.sweep();
  } finally {
    stack.advanceWatchdog(-ms);
  }
}

describe('the relock watchdog', () => {
  it('leaves a car alone before RELOCK_AFTER_S, then locks it and records relocked_by_watchdog', async () => {
    const id = await openCar(MALIBU);
    expect(await sweepAfter(RELOCK_AFTER_MS - 5_000)).toEqual([]);
    expect(stack.fleet.car(MALIBU).car.snapshot().locked).toBe(false);

    expect(await sweepAfter(RELOCK_AFTER_MS + 1_000)).toEqual([{ deliveryId: id, outcome: 'locked' }]);
    expect(stack.fleet.car(MALIBU).car.snapshot().locked).toBe(true);
    const d = await view(id);
    expect(d.status).toBe('completed');
    expect(d.timeline.map((e: { kind: string }) => e.kind).slice(-4)).toEqual([
      'lock_granted',
      'command_sent',
      'relocked_by_watchdog',
      'delivery_completed',
    ]);
    const events = stack.events.filter((e) => e.deliveryId === id);
    expect(events.find((e) => e.type === 'vehicle.relocked')?.data).toMatchObject({ by: 'watchdog' });
    expect(events.at(-1)?.type).toBe('delivery.completed');
    // Done is done: nothing left for the next sweep.
    expect(await sweepAfter(10 * RELOCK_AFTER_MS)).toEqual([]);
  });

  it('survives a gateway restart: the new gateway finds the old unlock in the store and locks the car', async () => {
    const id = await openCar(XC40);
    // Resolves once every car has reconnected to the new broker and reported again.
    await stack.restartGateway();
    expect(await sweepAfter(RELOCK_AFTER_MS + 1_000)).toEqual([{ deliveryId: id, outcome: 'locked' }]);
    expect(stack.fleet.car(XC40).car.snapshot().locked).toBe(true);
    expect(await kinds(id)).toContain('relocked_by_watchdog');
  }, 90_000);
});

describe("the car's own fail-safe", () => {
  it('relocks by itself and the gateway completes the delivery from its report (relocked_by_car)', async () => {
    const id = await openCar(LACROSSE);
    const car = stack.fleet.car(LACROSSE).car;
    car.tick(Date.now() + car.failsafeRelockMs + 1);
    expect(car.snapshot().locked).toBe(true);
    await expect.poll(async () => (await view(id)).status, { timeout: 5_000 }).toBe('completed');
    expect((await kinds(id)).slice(-2)).toEqual(['relocked_by_car', 'delivery_completed']);
    const relocked = stack.events.find((e) => e.deliveryId === id && e.type === 'vehicle.relocked');
    expect(relocked?.data).toMatchObject({ by: 'car' });
    expect(await sweepAfter(RELOCK_AFTER_MS + 1_000)).toEqual([]);
  });
});

describe('a car that cannot be confirmed locked', () => {
  it('raises vehicle.lock_unconfirmed once, and the watchdog keeps retrying at RELOCK_AFTER_S', async () => {
    const tahoe = stack.seeds.vehicles.find((x) => x.vin === TAHOE) as SeedVehicle;
    await stack.request('POST', '/v1/vehicles', {
      ...tahoe,
      position: undefined,
      consent: ['unlock', 'lock'],
    });
    const id = await openCar(TAHOE);
    // The car drops off the network while open.
    await stack.fleet.car(TAHOE).connection.close();

    expect(await sweepAfter(RELOCK_AFTER_MS + 1_000)).toEqual([{ deliveryId: id, outcome: 'unconfirmed' }]);
    const unconfirmed = () =>
      stack.events.filter((e) => e.deliveryId === id && e.type === 'vehicle.lock_unconfirmed');
    expect(unconfirmed()).toHaveLength(1);
    expect(unconfirmed()[0]?.data).toMatchObject({ cause: 'watchdog', code: 'VEHICLE_UNREACHABLE' });
    expect((await view(id)).status).toBe('unlocked');
    // The retry waits another RELOCK_AFTER_S from the failed attempt.
    expect(await sweepAfter(RELOCK_AFTER_MS + 1_000)).toEqual([]);
    expect(await sweepAfter(2 * RELOCK_AFTER_MS + 2_000)).toEqual([
      { deliveryId: id, outcome: 'unconfirmed' },
    ]);
    expect(unconfirmed()).toHaveLength(1);
    expect((await kinds(id)).filter((k) => k === 'lock_unconfirmed')).toHaveLength(2);

    // Nobody reaches it, and it still locks: its own fail-safe needs no gateway.
    const car = stack.fleet.car(TAHOE).car;
    expect(car.snapshot().locked).toBe(false);
    car.tick(Date.now() + car.failsafeRelockMs + 1);
    expect(car.snapshot().locked).toBe(true);
  });

  it('relocks by itself with the gateway link stopped', async () => {
    const id = await openCar(MALIBU);
    await stack.gateway.link.close();
    const car = stack.fleet.car(MALIBU).car;
    car.tick(Date.now() + car.failsafeRelockMs - 1_000);
    expect(car.snapshot().locked).toBe(false);
    car.tick(Date.now() + car.failsafeRelockMs + 1);
    expect(car.snapshot().locked).toBe(true);
    // The gateway heard nothing: for it the car is still open, and its watchdog would lock it again.
    expect((await view(id)).status).toBe('unlocked');
  });
});
