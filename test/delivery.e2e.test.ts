// End to end over real mTLS MQTT on loopback: a whole delivery, the driver checks, and the timeline.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandTopic } from '../protocols/index.ts';
import type { SeedLocation, SeedVehicle } from '../seeds/index.ts';
import { type Stack, startStack } from './helpers/stack.ts';
import { DIALECTS } from './helpers/temp-store.ts';

let stack: Stack;
let vehicle: SeedVehicle;
let location: SeedLocation;

async function newDelivery(
  over: Record<string, unknown> = {},
  options: { park?: boolean } = {},
): Promise<{ id: string; locationId: string }> {
  const loc = await stack.request('POST', '/v1/locations', {
    ownerId: location.ownerId,
    label: location.label,
    kind: location.kind,
    access: 'public',
    lat: location.lat,
    lon: location.lon,
    radiusM: 200,
  });
  expect(loc.status).toBe(201);
  const now = Date.now();
  const d = await stack.request('POST', '/v1/deliveries', {
    vin: vehicle.vin,
    locationId: loc.body.id,
    driverId: 'driver-7',
    packageIds: ['pkg-1'],
    window: { start: new Date(now - 60_000).toISOString(), end: new Date(now + 3_600_000).toISOString() },
    ...over,
  });
  expect(d.status).toBe(201);
  expect(d.body.status).toBe('scheduled');
  if (options.park) {
    const parked = await stack.request('POST', `/v1/deliveries/${d.body.id}/parking`);
    expect(parked.status).toBe(200);
  }
  return { id: d.body.id, locationId: loc.body.id };
}

const atLocation = () => ({ lat: location.lat + 0.0003, lon: location.lon });
const commandsTo = (vin: string) => stack.published.filter((p) => p.topic === commandTopic(vin)).length;

describe.each(DIALECTS)('on %s', (dialect) => {
  beforeAll(async () => {
    stack = await startStack({}, { dialect });
    vehicle = stack.seeds.vehicles.find((v) => v.make === 'Chevrolet' && v.year >= 2015) as SeedVehicle;
    location = stack.seeds.locations.find((l) => l.ownerId === vehicle.ownerId) as SeedLocation;
    const linked = await stack.request('POST', '/v1/vehicles', {
      vin: vehicle.vin,
      make: vehicle.make,
      model: vehicle.model,
      year: vehicle.year,
      provider: vehicle.provider,
      ownerId: vehicle.ownerId,
      consent: ['unlock', 'lock'],
    });
    expect(linked.status).toBe(201);
  });

  afterAll(async () => {
    await stack?.close();
  });

  describe('a whole delivery', () => {
    it('unlocks the car, locks it again and keeps a complete timeline', async () => {
      const { id } = await newDelivery({}, { park: true });
      const car = stack.fleet.car(vehicle.vin).car;
      expect(car.snapshot().locked).toBe(true);

      const unlocked = await stack.request('POST', `/v1/deliveries/${id}/unlock`, {
        driverId: 'driver-7',
        position: atLocation(),
        packageId: 'pkg-1',
      });
      expect(unlocked.status).toBe(200);
      expect(unlocked.body).toEqual({ status: 'unlocked' });
      expect(car.snapshot().locked).toBe(false);

      const locked = await stack.request('POST', `/v1/deliveries/${id}/lock`, { driverId: 'driver-7' });
      expect(locked.status).toBe(200);
      expect(locked.body).toEqual({ status: 'locked' });
      expect(car.snapshot().locked).toBe(true);

      const view = await stack.request('GET', `/v1/deliveries/${id}`);
      expect(view.status).toBe(200);
      expect(view.body.status).toBe('completed');
      expect(view.body.timeline.map((e: { kind: string }) => e.kind)).toEqual([
        'delivery_scheduled',
        'parking_confirmed',
        'unlock_granted',
        'command_sent',
        'vehicle_unlocked',
        'lock_granted',
        'command_sent',
        'vehicle_locked',
        'delivery_completed',
      ]);
      const seqs = view.body.timeline.map((e: { seq: number }) => e.seq);
      expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
      // The token is kept only as a hash.
      expect(JSON.stringify(view.body)).not.toMatch(/eyJ[A-Za-z0-9_-]+\.eyJ/);
    });

    it('reports what the car last said on GET /v1/vehicles/{vin}', async () => {
      // The state report follows the ack, so the last lock may take a moment to show.
      await expect
        .poll(async () => (await stack.request('GET', `/v1/vehicles/${vehicle.vin}`)).body, {
          timeout: 5_000,
        })
        .toMatchObject({
          vin: vehicle.vin,
          make: vehicle.make,
          online: true,
          locked: true,
          position: vehicle.position,
        });
      const v = await stack.request('GET', `/v1/vehicles/${vehicle.vin}`);
      expect(typeof v.body.lastSeen).toBe('string');
    });
  });

  describe('driver checks', () => {
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['another driver', { driverId: 'driver-9' }, 'DRIVER_NOT_ASSIGNED'],
      ['a package not in the delivery', { packageId: 'pkg-404' }, 'PACKAGE_NOT_IN_DELIVERY'],
      ['a driver 3 km away', { position: { lat: 47.6384, lon: -122.3381 } }, 'DRIVER_NOT_AT_LOCATION'],
    ];
    for (const [name, over, code] of cases) {
      it(`refuses ${name} with 403 ${code} and publishes no command`, async () => {
        const { id } = await newDelivery();
        const before = commandsTo(vehicle.vin);
        const r = await stack.request('POST', `/v1/deliveries/${id}/unlock`, {
          driverId: 'driver-7',
          position: atLocation(),
          packageId: 'pkg-1',
          ...over,
        });
        expect(r.status).toBe(403);
        expect(r.body.code).toBe(code);
        expect(r.body.retryable).toBe(false);
        expect(typeof r.body.requestId).toBe('string');
        expect(commandsTo(vehicle.vin)).toBe(before);
        expect(stack.fleet.car(vehicle.vin).car.snapshot().locked).toBe(true);
        const view = await stack.request('GET', `/v1/deliveries/${id}`);
        expect(view.body.timeline.at(-1)).toMatchObject({
          kind: 'unlock_requested',
          outcome: 'denied',
          code,
        });
      });
    }

    it('refuses an unlock outside the window with 403 OUTSIDE_WINDOW', async () => {
      const now = Date.now();
      const { id } = await newDelivery({
        window: {
          start: new Date(now + 3_600_000).toISOString(),
          end: new Date(now + 7_200_000).toISOString(),
        },
      });
      const before = commandsTo(vehicle.vin);
      const r = await stack.request('POST', `/v1/deliveries/${id}/unlock`, {
        driverId: 'driver-7',
        position: atLocation(),
        packageId: 'pkg-1',
      });
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('OUTSIDE_WINDOW');
      expect(commandsTo(vehicle.vin)).toBe(before);
    });

    it('refuses a second unlock of the same delivery', async () => {
      const { id } = await newDelivery({}, { park: true });
      const body = { driverId: 'driver-7', position: atLocation(), packageId: 'pkg-1' };
      expect((await stack.request('POST', `/v1/deliveries/${id}/unlock`, body)).status).toBe(200);
      const second = await stack.request('POST', `/v1/deliveries/${id}/unlock`, body);
      expect(second.status).toBe(403);
      expect(second.body.code).toBe('UNLOCK_LIMIT_REACHED');
      expect(
        (await stack.request('POST', `/v1/deliveries/${id}/lock`, { driverId: 'driver-7' })).status,
      ).toBe(200);
    });
  });

  describe('API refusals', () => {
    it('needs an API key on every route but /healthz', async () => {
      expect((await stack.gateway.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
      for (const headers of [
        {},
        { authorization: 'Bearer not-a-real-key-0000000000' },
        { authorization: 'Basic abc' },
      ]) {
        const r = await stack.gateway.app.inject({ method: 'GET', url: '/v1/vehicles', headers });
        expect(r.statusCode).toBe(401);
        expect(r.headers['content-type']).toMatch(/^application\/problem\+json/);
        expect(JSON.parse(r.body).code).toBe('UNAUTHENTICATED');
      }
    });

    it('refuses incompatible vehicles with 422 and malformed VINs with 400', async () => {
      const old = stack.seeds.vehicles.find((v) => v.year < 2015) as SeedVehicle;
      const ford = stack.seeds.vehicles.find((v) => v.make === 'Ford') as SeedVehicle;
      for (const v of [old, ford]) {
        const r = await stack.request('POST', '/v1/vehicles', {
          vin: v.vin,
          make: v.make,
          model: v.model,
          year: v.year,
          provider: v.provider,
          ownerId: v.ownerId,
          consent: ['unlock', 'lock'],
        });
        expect(r.status).toBe(422);
        expect(r.body.code).toBe('VEHICLE_NOT_COMPATIBLE');
      }
      const volvoWithOnstar = stack.seeds.vehicles.find((v) => v.make === 'Volvo') as SeedVehicle;
      const wrongProvider = await stack.request('POST', '/v1/vehicles', {
        ...volvoWithOnstar,
        position: undefined,
        provider: 'onstar',
        consent: ['unlock', 'lock'],
      });
      expect(wrongProvider.status).toBe(422);
      expect(wrongProvider.body.code).toBe('VEHICLE_NOT_COMPATIBLE');
      const bad = await stack.request('POST', '/v1/vehicles', {
        vin: '1G1ZE5ST5KF10023O',
        make: 'Chevrolet',
        model: 'Malibu',
        year: 2019,
        provider: 'onstar',
        ownerId: 'o',
        consent: ['unlock', 'lock'],
      });
      expect(bad.status).toBe(400);
      expect(bad.body.code).toBe('VIN_MALFORMED');
      const listed = await stack.request('GET', '/v1/vehicles');
      expect(listed.body.vehicles.map((v: { vin: string }) => v.vin)).toEqual([vehicle.vin]);
    });

    it('refuses windows longer than 24 h or already over with 400', async () => {
      const now = Date.now();
      const loc = await stack.request('POST', '/v1/locations', {
        ownerId: location.ownerId,
        label: 'x',
        access: 'public',
        lat: location.lat,
        lon: location.lon,
        radiusM: 200,
      });
      for (const window of [
        { start: new Date(now).toISOString(), end: new Date(now + 25 * 3_600_000).toISOString() },
        { start: new Date(now - 7_200_000).toISOString(), end: new Date(now - 3_600_000).toISOString() },
      ]) {
        const r = await stack.request('POST', '/v1/deliveries', {
          vin: vehicle.vin,
          locationId: loc.body.id,
          driverId: 'd',
          packageIds: ['p'],
          window,
        });
        expect(r.status).toBe(400);
        expect(r.body.code).toBe('WINDOW_INVALID');
      }
    });

    it('refuses bodies with fields the caller may not set', async () => {
      const { id } = await newDelivery();
      const r = await stack.request('POST', `/v1/deliveries/${id}/unlock`, {
        driverId: 'driver-7',
        position: atLocation(),
        packageId: 'pkg-1',
        vin: 'YV1A22MK3F1900345',
      });
      expect(r.status).toBe(400);
      expect(r.body.code).toBe('VALIDATION_FAILED');
    });
  });
});
