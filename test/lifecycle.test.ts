// Shutdown: new requests get 503, in-flight commands finish (or end as timeouts past the bound), then the store closes.
import { afterEach, describe, expect, it } from 'vitest';
import { openStore } from '../gateway/store/store.ts';
import { timelineOf } from '../gateway/store/timeline.ts';
import type { SeedLocation, SeedVehicle } from '../seeds/index.ts';
import { type CarControl, carControl } from './helpers/cars.ts';
import { type Stack, startStack } from './helpers/stack.ts';

let stack: Stack | undefined;
let cars: CarControl;

afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

/** A stack with one linked car and a delivery ready to unlock. */
async function ready(): Promise<{ stack: Stack; vin: string; deliveryId: string; unlockBody: unknown }> {
  cars = carControl();
  const s = await startStack({ COMMAND_TIMEOUT_MS: '60000' }, { createClient: cars.createClient });
  stack = s;
  const v = s.seeds.vehicles.find((x) => x.make === 'Cadillac') as SeedVehicle;
  const l = s.seeds.locations.find((x) => x.ownerId === v.ownerId) as SeedLocation;
  const linked = await s.request('POST', '/v1/vehicles', {
    vin: v.vin,
    make: v.make,
    model: v.model,
    year: v.year,
    provider: v.provider,
    ownerId: v.ownerId,
    consent: ['unlock', 'lock'],
  });
  expect(linked.status).toBe(201);
  const loc = await s.request('POST', '/v1/locations', {
    ownerId: l.ownerId,
    label: l.label,
    kind: l.kind,
    lat: l.lat,
    lon: l.lon,
    radiusM: 200,
    access: 'public',
  });
  const now = Date.now();
  const d = await s.request('POST', '/v1/deliveries', {
    vin: v.vin,
    locationId: loc.body.id,
    driverId: 'driver-7',
    packageIds: ['pkg-1'],
    window: { start: new Date(now - 60_000).toISOString(), end: new Date(now + 3_600_000).toISOString() },
  });
  expect(d.status).toBe(201);
  // The car confirms it is parked at the location before anything opens (PROTOCOL.md §3.5).
  expect((await s.request('POST', `/v1/deliveries/${d.body.id}/parking`)).status).toBe(200);
  return {
    stack: s,
    vin: v.vin,
    deliveryId: d.body.id,
    unlockBody: { driverId: 'driver-7', position: { lat: l.lat, lon: l.lon }, packageId: 'pkg-1' },
  };
}

/** Reads what the closed gateway left in its store (its SQLite file, or its PostgreSQL schema). */
async function afterwards(s: Stack, deliveryId: string) {
  const store = await openStore(s.storeConfig);
  try {
    const timeline = await timelineOf(store.db, deliveryId);
    const sent = timeline.find((e) => e.kind === 'command_sent');
    const command = await store.db
      .selectFrom('commands')
      .select(['action', 'status', 'reason'])
      .where('id', '=', sent?.detail.commandId as string)
      .executeTakeFirst();
    return { kinds: timeline.map((e) => e.kind), command };
  } finally {
    await store.close();
  }
}

describe('graceful shutdown', () => {
  it('finishes an in-flight unlock, refuses new requests with 503, then closes the store', async () => {
    const { stack: s, vin, deliveryId, unlockBody } = await ready();
    cars.acks(vin, 'hold');
    const unlocking = s.request('POST', `/v1/deliveries/${deliveryId}/unlock`, unlockBody);
    // The car has acted; its ack is held back, so the command is in flight.
    await expect.poll(() => cars.held(vin)).toBe(1);
    expect(s.gateway.lifecycle.inFlight()).toBe(1);

    const closing = s.gateway.close({ drainMs: 60_000 });
    const refused = await s.request('GET', '/v1/vehicles');
    expect(refused.status).toBe(503);
    expect(refused.body).toMatchObject({ code: 'SHUTTING_DOWN', retryable: true });
    const again = await s.request('POST', `/v1/deliveries/${deliveryId}/lock`, { driverId: 'driver-7' });
    expect(again.body.code).toBe('SHUTTING_DOWN');
    const readyz = await s.gateway.app.inject({ method: 'GET', url: '/readyz' });
    expect(readyz.statusCode).toBe(503);
    expect(JSON.parse(readyz.body)).toMatchObject({
      missing: ['shutdown'],
      checks: { shutdown: 'shutting down' },
    });
    // Still waiting for the car: nothing was closed under the command.
    expect(s.gateway.lifecycle.inFlight()).toBe(1);
    expect(s.gateway.link.connected()).toBe(true);

    cars.release(vin);
    const unlocked = await unlocking;
    expect(unlocked).toEqual({ status: 200, body: { status: 'unlocked' } });
    await closing;
    await expect(s.gateway.store.ping()).rejects.toThrow();

    const left = await afterwards(s, deliveryId);
    expect(left.kinds).toEqual([
      'delivery_scheduled',
      'parking_confirmed',
      'unlock_granted',
      'command_sent',
      'vehicle_unlocked',
    ]);
    expect(left.command).toMatchObject({ status: 'executed', action: 'unlock' });
  });

  it('past the drain bound, ends a command still waiting as a timeout with a complete timeline', async () => {
    const { stack: s, vin, deliveryId, unlockBody } = await ready();
    cars.acks(vin, 'drop');
    const unlocking = s.request('POST', `/v1/deliveries/${deliveryId}/unlock`, unlockBody);
    await expect.poll(() => s.fleet.car(vin).car.snapshot().locked).toBe(false);

    await s.gateway.drain({ drainMs: 100 });
    const r = await unlocking;
    expect(r.status).toBe(504);
    // The car may have acted (it did): the caller is told so and may not assume the door is shut.
    expect(r.body).toMatchObject({ code: 'VEHICLE_UNREACHABLE', mayHaveSucceeded: true, retryable: true });
    // The cars sign off while the broker is still there (as npm start does), then the gateway closes.
    await s.fleet.stop();
    await s.gateway.close();

    const left = await afterwards(s, deliveryId);
    expect(left.kinds).toEqual([
      'delivery_scheduled',
      'parking_confirmed',
      'unlock_granted',
      'command_sent',
      'command_timeout',
    ]);
    expect(left.command).toMatchObject({ status: 'timeout', reason: 'NO_ACK' });
  });

  it('closes at once when nothing is in flight, and only once', async () => {
    const { stack: s } = await ready();
    await s.fleet.stop();
    const first = s.gateway.close();
    expect(s.gateway.close()).toBe(first);
    await first;
    await expect(s.gateway.store.ping()).rejects.toThrow();
  });
});
