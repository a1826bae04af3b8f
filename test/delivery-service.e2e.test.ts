// End to end over real mTLS MQTT and SQLite: linking and consent, VIN agreement, locations, windows, parking
// confirmation, blocking, cancelling, unlinking and the domain events, each rule with the refusal that proves it.
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandTopic } from '../protocols/index.ts';
import type { SeedLocation, SeedVehicle } from '../seeds/index.ts';
import { type Stack, startStack } from './helpers/stack.ts';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.close();
});

const DRIVER = 'driver-7';
const PKG = 'pkg-1';

function seedVehicle(vin: string): SeedVehicle {
  return stack.seeds.vehicles.find((v) => v.vin === vin) as SeedVehicle;
}
function seedLocationOf(v: SeedVehicle): SeedLocation {
  return stack.seeds.locations.find((l) => l.ownerId === v.ownerId) as SeedLocation;
}
const linkBody = (v: SeedVehicle, over: Record<string, unknown> = {}) => ({
  vin: v.vin,
  make: v.make,
  model: v.model,
  year: v.year,
  provider: v.provider,
  ownerId: v.ownerId,
  consent: ['unlock', 'lock'],
  ...over,
});

async function link(vin: string): Promise<SeedVehicle> {
  const v = seedVehicle(vin);
  const r = await stack.request('POST', '/v1/vehicles', linkBody(v));
  expect(r.status).toBe(201);
  return v;
}

async function addLocation(v: SeedVehicle, over: Record<string, unknown> = {}) {
  const l = seedLocationOf(v);
  return stack.request('POST', '/v1/locations', {
    ownerId: l.ownerId,
    label: l.label,
    kind: l.kind,
    access: 'public',
    lat: l.lat,
    lon: l.lon,
    ...over,
  });
}

interface Delivery {
  id: string;
  vehicle: SeedVehicle;
  location: SeedLocation;
}

async function schedule(vin: string, options: { park?: boolean } = {}): Promise<Delivery> {
  const vehicle = seedVehicle(vin);
  const loc = await addLocation(vehicle);
  expect(loc.status).toBe(201);
  const now = Date.now();
  const d = await stack.request('POST', '/v1/deliveries', {
    vin,
    locationId: loc.body.id,
    driverId: DRIVER,
    packageIds: [PKG],
    window: { start: new Date(now - 60_000).toISOString(), end: new Date(now + 3_600_000).toISOString() },
  });
  expect(d.status).toBe(201);
  if (options.park)
    expect((await stack.request('POST', `/v1/deliveries/${d.body.id}/parking`)).status).toBe(200);
  return { id: d.body.id, vehicle, location: seedLocationOf(vehicle) };
}

const unlockBody = (d: Delivery) => ({
  driverId: DRIVER,
  packageId: PKG,
  position: { lat: d.location.lat + 0.0003, lon: d.location.lon },
});
const unlock = (d: Delivery) => stack.request('POST', `/v1/deliveries/${d.id}/unlock`, unlockBody(d));
const carOf = (vin: string) => stack.fleet.car(vin).car;
const commandsTo = (vin: string) => stack.published.filter((p) => p.topic === commandTopic(vin)).length;
const kinds = async (id: string): Promise<string[]> =>
  (await stack.request('GET', `/v1/deliveries/${id}`)).body.timeline.map((e: { kind: string }) => e.kind);
const eventsOf = (id: string) => stack.events.filter((e) => e.deliveryId === id).map((e) => e.type);

/** Waits until the gateway has recorded the car's latest report (position or ignition changes). */
async function gatewaySees(vin: string, match: Record<string, unknown>): Promise<void> {
  await expect
    .poll(async () => (await stack.request('GET', `/v1/vehicles/${vin}`)).body, {
      timeout: 5_000,
      interval: 20,
    })
    .toMatchObject(match);
}

const MALIBU = '1G1ZE5ST5KF100231';
const TAHOE = '1GNSKBKC3FR200114';
const LACROSSE = '1G4ZR5SS4JU300882';
const ENCORE = 'KL4CJASB4MB400775';
const SIERRA = '1GTU9DED2LZ500431';
const ACADIA = '1GKKNRLS3GZ600212';
const CT6 = '1G6AX5SX5H0700019';
const S60 = 'YV1A22MK3F1900345';

describe('linking: VIN agreement and consent', () => {
  it('refuses a VIN whose model-year character disagrees with the stated year: 422 VIN_YEAR_MISMATCH', async () => {
    const r = await stack.request('POST', '/v1/vehicles', linkBody(seedVehicle(MALIBU), { year: 2018 }));
    expect(r.status).toBe(422);
    expect(r.body.code).toBe('VIN_YEAR_MISMATCH');
    // 'K' is 1989 only with a digit at position 7; this Malibu has a letter there, so it is a 2019.
    const cycle = await stack.request('POST', '/v1/vehicles', linkBody(seedVehicle(MALIBU), { year: 1989 }));
    expect(cycle.status).toBe(422);
    expect(cycle.body.code).toBe('VIN_YEAR_MISMATCH');
  });

  it('refuses a VIN whose WMI is not the stated make: 422 VIN_MAKE_MISMATCH', async () => {
    // 1G1 is Chevrolet; a Buick uses 1G4, 2G4, 5GA, KL4, LRB.
    const r = await stack.request('POST', '/v1/vehicles', linkBody(seedVehicle(MALIBU), { make: 'Buick' }));
    expect(r.status).toBe(422);
    expect(r.body.code).toBe('VIN_MAKE_MISMATCH');
    const volvo = await stack.request(
      'POST',
      '/v1/vehicles',
      linkBody(seedVehicle(S60), { make: 'Chevrolet' }),
    );
    expect(volvo.body.code).toBe('VIN_MAKE_MISMATCH');
  });

  it('keeps the syntax codes at 400: a wrong check digit is VIN_CHECK_DIGIT', async () => {
    const r = await stack.request(
      'POST',
      '/v1/vehicles',
      linkBody(seedVehicle(MALIBU), { vin: '1G1ZE5ST0KF100231' }),
    );
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('VIN_CHECK_DIGIT');
  });

  it('refuses a link that states no consent: 422 CONSENT_INVALID, and nothing is written', async () => {
    const linkedBefore = await sql<{
      n: number;
    }>`select count(*) as n from audit_entries where kind = 'vehicle_linked'`.execute(stack.gateway.store.db);
    const r = await stack.request(
      'POST',
      '/v1/vehicles',
      linkBody(seedVehicle(MALIBU), { consent: undefined }),
    );
    expect(r.status).toBe(422);
    expect(r.body).toMatchObject({ code: 'CONSENT_INVALID', retryable: false, resolution: 'FIX_REQUEST' });
    // A consent that is not a list of actions never reaches the service.
    for (const consent of [null, 'unlock,lock', { unlock: true, lock: true }, [['unlock'], ['lock']]]) {
      const hostile = await stack.request('POST', '/v1/vehicles', linkBody(seedVehicle(MALIBU), { consent }));
      expect(hostile.status).toBe(400);
      expect(hostile.body.code).toBe('VALIDATION_FAILED');
    }
    expect((await stack.request('GET', `/v1/vehicles/${MALIBU}`)).status).toBe(404);
    const row = await sql`select vin from vehicles where vin = ${MALIBU}`.execute(stack.gateway.store.db);
    expect(row.rows).toEqual([]);
    const linkedAfter = await sql<{
      n: number;
    }>`select count(*) as n from audit_entries where kind = 'vehicle_linked'`.execute(stack.gateway.store.db);
    expect(linkedAfter.rows).toEqual(linkedBefore.rows);
  });

  it('refuses consent to anything but exactly unlock and lock: 422 CONSENT_INVALID', async () => {
    for (const consent of [['unlock', 'lock', 'remote_start'], ['unlock'], ['unlock', 'unlock'], []]) {
      const r = await stack.request('POST', '/v1/vehicles', linkBody(seedVehicle(MALIBU), { consent }));
      expect(r.status).toBe(422);
      expect(r.body.code).toBe('CONSENT_INVALID');
    }
    expect((await stack.request('GET', `/v1/vehicles/${MALIBU}`)).status).toBe(404);
  });

  it('records exactly unlock and lock', async () => {
    const r = await stack.request(
      'POST',
      '/v1/vehicles',
      linkBody(seedVehicle(MALIBU), { consent: ['lock', 'unlock'] }),
    );
    expect(r.status).toBe(201);
    expect(r.body.consent).toEqual(['unlock', 'lock']);
    expect(r.body.blocked).toBe(false);
    for (const vin of [TAHOE, LACROSSE, ENCORE, SIERRA, ACADIA, CT6, S60]) await link(vin);
  });
});

describe('locations', () => {
  it('refuses a garage or a restricted area: 422 LOCATION_NOT_PUBLIC', async () => {
    const v = seedVehicle(MALIBU);
    for (const access of ['garage', 'restricted']) {
      const r = await addLocation(v, { access });
      expect(r.status).toBe(422);
      expect(r.body.code).toBe('LOCATION_NOT_PUBLIC');
    }
  });

  it('needs the access stated: omitting it is 400, never assumed public', async () => {
    const { access: _, ...rest } = { ...seedLocationOf(seedVehicle(MALIBU)), radiusM: undefined };
    const r = await stack.request('POST', '/v1/locations', { ...rest, id: undefined });
    expect(r.status).toBe(400);
  });

  it('defaults the radius to 200 m and refuses one above the cap: 400 RADIUS_TOO_LARGE', async () => {
    const v = seedVehicle(MALIBU);
    const r = await addLocation(v);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ radiusM: 200, access: 'public' });
    const big = await addLocation(v, { radiusM: 1_001 });
    expect(big.status).toBe(400);
    expect(big.body.code).toBe('RADIUS_TOO_LARGE');
  });

  it('refuses to schedule at a location stored before access was asked for (access unknown)', async () => {
    const loc = await addLocation(seedVehicle(MALIBU));
    await sql`update locations set access = 'unknown' where id = ${loc.body.id}`.execute(
      stack.gateway.store.db,
    );
    const r = await stack.request('POST', '/v1/deliveries', {
      vin: MALIBU,
      locationId: loc.body.id,
      driverId: DRIVER,
      packageIds: [PKG],
      window: { start: new Date().toISOString() },
    });
    expect(r.status).toBe(422);
    expect(r.body.code).toBe('LOCATION_NOT_PUBLIC');
  });
});

describe('delivery window', () => {
  it('lasts 4 hours when only its start is given', async () => {
    const loc = await addLocation(seedVehicle(MALIBU));
    const start = new Date(Date.now() + 60_000);
    start.setMilliseconds(0);
    const r = await stack.request('POST', '/v1/deliveries', {
      vin: MALIBU,
      locationId: loc.body.id,
      driverId: DRIVER,
      packageIds: [PKG],
      window: { start: start.toISOString() },
    });
    expect(r.status).toBe(201);
    expect(Date.parse(r.body.window.end) - Date.parse(r.body.window.start)).toBe(4 * 3_600_000);
  });
});

describe('after the window', () => {
  it('opens nothing once the window has ended: 403 OUTSIDE_WINDOW, no command sent', async () => {
    const d = await schedule(MALIBU, { park: true });
    await sql`update deliveries set window_end = ${Date.now() - 1} where id = ${d.id}`.execute(
      stack.gateway.store.db,
    );
    const before = commandsTo(MALIBU);
    const r = await unlock(d);
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('OUTSIDE_WINDOW');
    expect((await stack.request('POST', `/v1/deliveries/${d.id}/parking`)).body.code).toBe('OUTSIDE_WINDOW');
    expect(commandsTo(MALIBU)).toBe(before);
    expect(carOf(MALIBU).snapshot().locked).toBe(true);
  });
});

describe('a whole delivery and its events', () => {
  it('emits each step to Notify, with the owner and the VIN', async () => {
    const d = await schedule(MALIBU);
    const denied = await stack.request('POST', `/v1/deliveries/${d.id}/unlock`, {
      ...unlockBody(d),
      driverId: 'x',
    });
    expect(denied.status).toBe(403);
    expect((await stack.request('POST', `/v1/deliveries/${d.id}/parking`)).status).toBe(200);
    expect((await unlock(d)).status).toBe(200);
    expect((await stack.request('POST', `/v1/deliveries/${d.id}/lock`, { driverId: DRIVER })).status).toBe(
      200,
    );
    expect(eventsOf(d.id)).toEqual([
      'delivery.scheduled',
      'access.denied',
      'delivery.parking_confirmed',
      'vehicle.unlocked',
      'vehicle.relocked',
      'delivery.completed',
    ]);
    for (const e of stack.events.filter((x) => x.deliveryId === d.id)) {
      expect(e).toMatchObject({ vin: MALIBU, ownerId: 'owner-ada' });
      expect(typeof e.at).toBe('number');
    }
    const accessDenied = stack.events.find((e) => e.deliveryId === d.id && e.type === 'access.denied');
    expect(accessDenied?.data).toMatchObject({ code: 'DRIVER_NOT_ASSIGNED', request: 'unlock_requested' });
  });

  it('calls Notify in the transaction of the decision: a failing Notify leaves no delivery behind', async () => {
    const count = async () =>
      Number(
        (
          await stack.gateway.store.db
            .selectFrom('deliveries')
            .select((eb) => eb.fn.countAll().as('n'))
            .executeTakeFirstOrThrow()
        ).n,
      );
    const before = await count();
    stack.failNotify.add('delivery.scheduled');
    try {
      const loc = await addLocation(seedVehicle(MALIBU));
      const r = await stack.request('POST', '/v1/deliveries', {
        vin: MALIBU,
        locationId: loc.body.id,
        driverId: DRIVER,
        packageIds: [PKG],
        window: { start: new Date().toISOString() },
      });
      expect(r.status).toBe(500);
    } finally {
      stack.failNotify.clear();
    }
    expect(await count()).toBe(before);
  });

  it('runs through the Volvo On Call dialect as through OnStar', async () => {
    const d = await schedule(S60, { park: true });
    expect((await unlock(d)).status).toBe(200);
    expect(carOf(S60).snapshot().locked).toBe(false);
    expect((await stack.request('POST', `/v1/deliveries/${d.id}/lock`, { driverId: DRIVER })).status).toBe(
      200,
    );
    expect(carOf(S60).snapshot().locked).toBe(true);
    const last = stack.published.filter((p) => p.topic === commandTopic(S60)).at(-1);
    expect(JSON.parse(String(last?.payload))).toMatchObject({ voc_api: 2, service: 'RDL' });
  });
});

describe('consent at the gateway', () => {
  it('refuses a command for an action nobody consented to: 403 ACTION_NOT_CONSENTED, no command sent', async () => {
    const d = await schedule(MALIBU, { park: true });
    const before = commandsTo(MALIBU);
    for (const action of ['remote-start', 'honk', 'unlock-trunk']) {
      const r = await stack.request('POST', `/v1/deliveries/${d.id}/${action}`, {});
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('ACTION_NOT_CONSENTED');
    }
    expect(commandsTo(MALIBU)).toBe(before);
    const view = await stack.request('GET', `/v1/deliveries/${d.id}`);
    expect(view.body.timeline.at(-1)).toMatchObject({
      kind: 'action_requested',
      outcome: 'denied',
      code: 'ACTION_NOT_CONSENTED',
      detail: { action: 'unlock-trunk' },
    });
    expect(eventsOf(d.id).filter((t) => t === 'access.denied')).toHaveLength(3);
  });

  it('refuses an unlock when the recorded consent lacks it, whatever else holds', async () => {
    const d = await schedule(CT6, { park: true });
    await sql`update vehicles set consent = 'lock' where vin = ${CT6}`.execute(stack.gateway.store.db);
    try {
      const r = await unlock(d);
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('ACTION_NOT_CONSENTED');
      expect(carOf(CT6).snapshot().locked).toBe(true);
    } finally {
      await sql`update vehicles set consent = 'unlock,lock' where vin = ${CT6}`.execute(
        stack.gateway.store.db,
      );
    }
  });
});

describe('parking confirmation', () => {
  it('refuses an unlock before the car confirmed its parking: 409 PARKING_NOT_CONFIRMED', async () => {
    const d = await schedule(LACROSSE);
    const before = commandsTo(LACROSSE);
    const r = await unlock(d);
    expect(r.status).toBe(409);
    expect(r.body.code).toBe('PARKING_NOT_CONFIRMED');
    // Only the unlock is refused; the car was asked nothing.
    expect(commandsTo(LACROSSE)).toBe(before);
  });

  it('asks the car itself, with a fresh nonce, and records where it said it was', async () => {
    const d = await schedule(LACROSSE);
    const r = await stack.request('POST', `/v1/deliveries/${d.id}/parking`, {});
    expect(r.status).toBe(200);
    expect(r.body.status).toBe('parking_confirmed');
    const query = JSON.parse(
      String(stack.published.filter((p) => p.topic === commandTopic(LACROSSE)).at(-1)?.payload),
    );
    expect(query).toMatchObject({ onstar: '1.0', commandRequest: { type: 'vehicleStatus' } });
    expect(query.commandRequest.requestId).toMatch(/^[A-Za-z0-9_-]{22,}$/);
    const view = await stack.request('GET', `/v1/deliveries/${d.id}`);
    expect(view.body.parking).toMatchObject({ position: seedVehicle(LACROSSE).position, invalidCode: null });
  });

  it('refuses a car outside the radius: 409 VEHICLE_NOT_AT_LOCATION', async () => {
    const d = await schedule(LACROSSE);
    const car = carOf(LACROSSE);
    car.moveTo({ lat: d.location.lat + 0.01, lon: d.location.lon });
    try {
      const r = await stack.request('POST', `/v1/deliveries/${d.id}/parking`);
      expect(r.status).toBe(409);
      expect(r.body.code).toBe('VEHICLE_NOT_AT_LOCATION');
      expect(r.body.distanceM).toBeGreaterThan(1_000);
    } finally {
      car.moveTo(d.vehicle.position);
    }
  });

  it('refuses a car with its ignition on: 409 VEHICLE_NOT_PARKED', async () => {
    const d = await schedule(LACROSSE);
    const car = carOf(LACROSSE);
    car.setIgnition('on');
    try {
      const r = await stack.request('POST', `/v1/deliveries/${d.id}/parking`);
      expect(r.status).toBe(409);
      expect(r.body.code).toBe('VEHICLE_NOT_PARKED');
    } finally {
      car.setIgnition('off');
    }
  });

  it('refuses an unlock once the car moved after the confirmation: 409 VEHICLE_MOVED', async () => {
    const d = await schedule(LACROSSE, { park: true });
    const car = carOf(LACROSSE);
    // Still inside the location's radius, but not where it was confirmed parked.
    const moved = { lat: d.vehicle.position.lat + 0.0008, lon: d.vehicle.position.lon };
    car.moveTo(moved);
    try {
      await gatewaySees(LACROSSE, { position: moved });
      const before = commandsTo(LACROSSE);
      const r = await unlock(d);
      expect(r.status).toBe(409);
      expect(r.body.code).toBe('VEHICLE_MOVED');
      expect(commandsTo(LACROSSE)).toBe(before);
      expect(car.snapshot().locked).toBe(true);
      expect(await kinds(d.id)).toContain('parking_invalidated');
    } finally {
      car.moveTo(d.vehicle.position);
    }
    // Moving back does not restore it: the parking must be confirmed again.
    await gatewaySees(LACROSSE, { position: d.vehicle.position });
    expect((await unlock(d)).body.code).toBe('VEHICLE_MOVED');
    expect((await stack.request('POST', `/v1/deliveries/${d.id}/parking`)).status).toBe(200);
    expect((await unlock(d)).status).toBe(200);
    expect((await stack.request('POST', `/v1/deliveries/${d.id}/lock`, { driverId: DRIVER })).status).toBe(
      200,
    );
  });

  it('refuses an unlock once the engine was started after the confirmation: 409 VEHICLE_NOT_PARKED', async () => {
    const d = await schedule(LACROSSE, { park: true });
    const car = carOf(LACROSSE);
    car.setIgnition('on');
    try {
      await gatewaySees(LACROSSE, { ignition: 'on' });
      const r = await unlock(d);
      expect(r.status).toBe(409);
      expect(r.body.code).toBe('VEHICLE_NOT_PARKED');
      expect(car.snapshot().locked).toBe(true);
      const view = await stack.request('GET', `/v1/deliveries/${d.id}`);
      expect(view.body.parking.invalidCode).toBe('VEHICLE_NOT_PARKED');
    } finally {
      car.setIgnition('off');
    }
  });
});

describe('blocking', () => {
  it('refuses an unlock of a blocked delivery: 403 ACCESS_BLOCKED; unblocking restores it', async () => {
    const d = await schedule(TAHOE, { park: true });
    const blocked = await stack.request('POST', `/v1/deliveries/${d.id}/block`, { reason: 'not today' });
    expect(blocked.status).toBe(200);
    expect(blocked.body).toEqual({ id: d.id, blocked: true, relocked: 'not_open' });
    const before = commandsTo(TAHOE);
    const r = await unlock(d);
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('ACCESS_BLOCKED');
    expect(commandsTo(TAHOE)).toBe(before);
    expect(carOf(TAHOE).snapshot().locked).toBe(true);
    expect((await stack.request('POST', `/v1/deliveries/${d.id}/unblock`)).body.blocked).toBe(false);
    expect((await unlock(d)).status).toBe(200);
    expect((await stack.request('POST', `/v1/deliveries/${d.id}/lock`, { driverId: DRIVER })).status).toBe(
      200,
    );
  });

  it('relocks at once when a delivery is blocked while the car is open', async () => {
    const d = await schedule(TAHOE, { park: true });
    expect((await unlock(d)).status).toBe(200);
    expect(carOf(TAHOE).snapshot().locked).toBe(false);
    const r = await stack.request('POST', `/v1/deliveries/${d.id}/block`);
    expect(r.body).toEqual({ id: d.id, blocked: true, relocked: 'locked' });
    expect(carOf(TAHOE).snapshot().locked).toBe(true);
    expect((await kinds(d.id)).slice(-5)).toEqual([
      'access_blocked',
      'lock_granted',
      'command_sent',
      'relocked_on_block',
      'delivery_completed',
    ]);
  });

  it('blocks every delivery of a vehicle, relocking an open one; unblocking the vehicle restores access', async () => {
    const open = await schedule(TAHOE, { park: true });
    const waiting = await schedule(TAHOE, { park: true });
    expect((await unlock(open)).status).toBe(200);
    const r = await stack.request('POST', `/v1/vehicles/${TAHOE}/block`, {});
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ vin: TAHOE, blocked: true, relocked: { [open.id]: 'locked' } });
    expect(carOf(TAHOE).snapshot().locked).toBe(true);
    expect((await stack.request('GET', `/v1/vehicles/${TAHOE}`)).body.blocked).toBe(true);
    const refused = await unlock(waiting);
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe('ACCESS_BLOCKED');
    expect((await stack.request('POST', `/v1/vehicles/${TAHOE}/unblock`)).body.blocked).toBe(false);
    expect((await unlock(waiting)).status).toBe(200);
    expect(
      (await stack.request('POST', `/v1/deliveries/${waiting.id}/lock`, { driverId: DRIVER })).status,
    ).toBe(200);
  });
});

describe('cancelling', () => {
  it('cancels, revokes the delivery through the hook, and refuses any later unlock', async () => {
    const d = await schedule(ENCORE, { park: true });
    const r = await stack.request('POST', `/v1/deliveries/${d.id}/cancel`, {
      reason: 'customer changed plans',
    });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ id: d.id, status: 'cancelled', relocked: 'not_open' });
    expect(stack.revoked).toContain(d.id);
    const later = await unlock(d);
    expect(later.status).toBe(409);
    expect(later.body.code).toBe('DELIVERY_NOT_ACTIVE');
    expect(eventsOf(d.id).at(-2)).toBe('delivery.failed');
    expect((await stack.request('POST', `/v1/deliveries/${d.id}/cancel`)).status).toBe(409);
  });

  it('locks an open car before the revocation', async () => {
    const d = await schedule(ENCORE, { park: true });
    expect((await unlock(d)).status).toBe(200);
    const r = await stack.request('POST', `/v1/deliveries/${d.id}/cancel`);
    expect(r.body).toEqual({ id: d.id, status: 'cancelled', relocked: 'locked' });
    expect(carOf(ENCORE).snapshot().locked).toBe(true);
    expect(stack.revoked.at(-1)).toBe(d.id);
    const view = await stack.request('GET', `/v1/deliveries/${d.id}`);
    expect(view.body.status).toBe('cancelled');
    expect(view.body.timeline.map((e: { kind: string }) => e.kind).slice(-4)).toEqual([
      'delivery_cancelled',
      'lock_granted',
      'command_sent',
      'relocked_on_cancel',
    ]);
  });
});

describe('unlinking', () => {
  it('cancels everything in flight, locks an open car first, revokes, and sends nothing after', async () => {
    const open = await schedule(SIERRA, { park: true });
    const waiting = await schedule(SIERRA);
    expect((await unlock(open)).status).toBe(200);
    expect(carOf(SIERRA).snapshot().locked).toBe(false);

    const r = await stack.request('DELETE', `/v1/vehicles/${SIERRA}`);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      vin: SIERRA,
      unlinked: true,
      cancelled: [open.id, waiting.id],
      lockUnconfirmed: [],
    });
    expect(carOf(SIERRA).snapshot().locked).toBe(true);
    expect(stack.revoked).toEqual(expect.arrayContaining([open.id, waiting.id]));
    for (const id of [open.id, waiting.id]) {
      expect((await stack.request('GET', `/v1/deliveries/${id}`)).body.status).toBe('cancelled');
    }
    expect(await kinds(open.id)).toContain('relocked_on_unlink');

    const before = commandsTo(SIERRA);
    expect((await unlock(waiting)).status).toBe(409);
    expect((await stack.request('POST', `/v1/deliveries/${waiting.id}/parking`)).status).toBe(409);
    const loc = await addLocation(seedVehicle(SIERRA));
    const again = await stack.request('POST', '/v1/deliveries', {
      vin: SIERRA,
      locationId: loc.body.id,
      driverId: DRIVER,
      packageIds: [PKG],
      window: { start: new Date().toISOString() },
    });
    expect(again.status).toBe(422);
    expect(again.body.code).toBe('VEHICLE_NOT_LINKED');
    expect(commandsTo(SIERRA)).toBe(before);
    expect((await stack.request('GET', `/v1/vehicles/${SIERRA}`)).status).toBe(404);
    expect((await stack.request('DELETE', `/v1/vehicles/${SIERRA}`)).status).toBe(404);
  });

  it('lets the owner link the VIN again afterwards', async () => {
    const r = await stack.request('POST', '/v1/vehicles', linkBody(seedVehicle(SIERRA)));
    expect(r.status).toBe(201);
    const d = await schedule(SIERRA, { park: true });
    expect((await unlock(d)).status).toBe(200);
    expect((await stack.request('POST', `/v1/deliveries/${d.id}/lock`, { driverId: DRIVER })).status).toBe(
      200,
    );
  });
});
