// The demo script never completes another delivery's opening: a car that another delivery has open is left alone.
import { afterEach, describe, expect, it } from 'vitest';
import { DemoError, playDemoDelivery } from '../demo/script.ts';
import { openedByAnother } from '../demo/system.ts';
import { timelineOf } from '../gateway/store/timeline.ts';
import type { SeedLocation, SeedVehicle } from '../seeds/index.ts';
import { type Stack, startStack } from './helpers/stack.ts';

let stack: Stack | undefined;

afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

describe('the demo delivery', { timeout: 60_000 }, () => {
  it('leaves the car alone when another delivery opened it meanwhile, before its own unlock', async () => {
    const s = await startStack();
    stack = s;
    const baseUrl = await s.gateway.app.listen({ host: '127.0.0.1', port: 0 });
    const vehicle = s.seeds.vehicles.find((v) => v.vin === '1G1ZE5ST5KF100231') as SeedVehicle;
    const location = s.seeds.locations.find((l) => l.ownerId === vehicle.ownerId) as SeedLocation;
    let other = '';
    const inUse = openedByAnother(s.gateway.store.db);
    const printed: string[] = [];

    const played = playDemoDelivery({
      baseUrl,
      apiKey: s.apiKey,
      vehicle,
      location,
      print: (line) => printed.push(line),
      // Asked before the demo's unlock: another courier opens the car first, for a delivery of their own.
      carInUse: async (vin, own) => {
        if (other === '') {
          const loc = await s.request('POST', '/v1/locations', {
            ownerId: location.ownerId,
            label: 'Another lot',
            kind: location.kind,
            access: 'public',
            lat: location.lat,
            lon: location.lon,
            radiusM: 200,
          });
          const d = await s.request('POST', '/v1/deliveries', {
            vin,
            locationId: loc.body.id,
            driverId: 'driver-3',
            packageIds: ['pkg-other'],
            window: { start: new Date(Date.now() - 60_000).toISOString() },
          });
          other = d.body.id;
          expect((await s.request('POST', `/v1/deliveries/${other}/parking`)).status).toBe(200);
          const unlocked = await s.request('POST', `/v1/deliveries/${other}/unlock`, {
            driverId: 'driver-3',
            position: { lat: location.lat, lon: location.lon },
            packageId: 'pkg-other',
          });
          expect(unlocked.status).toBe(200);
        }
        return inUse(vin, own);
      },
    });

    const err = await played.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DemoError);
    expect((err as DemoError).code).toBe('DEMO_CAR_IN_USE');
    expect((err as DemoError).message).toContain(other);
    expect(printed.some((l) => l.includes('unlock: right driver'))).toBe(false);
    // The other delivery's opening is untouched: still open, and the car too.
    expect((await s.request('GET', `/v1/deliveries/${other}`)).body.status).toBe('unlocked');
    expect(s.fleet.car(vehicle.vin).car.snapshot().locked).toBe(false);
    // The demo's own delivery sent nothing to the car.
    const own = (
      await s.gateway.store.db.selectFrom('deliveries').select('id').where('id', '!=', other).execute()
    ).map((d) => d.id);
    expect(own).toHaveLength(1);
    const kinds = (await timelineOf(s.gateway.store.db, own[0] as string)).map((e) => e.kind);
    expect(kinds).not.toContain('unlock_granted');
    expect(kinds).not.toContain('command_sent');
  });
});
